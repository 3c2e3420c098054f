//! Feeds arbitrary bytes to the LightGBM text-model parser and, when it accepts them, to the
//! ONNX writer: neither may panic, hang or allocate without bound, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = tools::lightgbm::native_model(data) {
        let source = tools::onnx::Source {
            file_name: "fuzz.txt".into(),
            sha256: String::new(),
        };
        let _ = tools::onnx::encode(&model, &source);
    }
});
