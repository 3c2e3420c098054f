//! Feeds arbitrary bytes to the XGBoost model readers (JSON or UBJSON, told by the first bytes,
//! then the typed model) and, when they accept them, to the ONNX writer: none may panic, hang or
//! allocate without bound, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The decoders on their own, whatever the first bytes say.
    let _ = tools::xgboost::json::parse(data);
    let _ = tools::xgboost::ubjson::parse(data);
    if let Ok(model) = tools::xgboost::read_native(data) {
        let source = tools::onnx::Source {
            file_name: "fuzz.json".into(),
            sha256: String::new(),
        };
        let _ = tools::onnx::encode(&model, &source);
    }
});
