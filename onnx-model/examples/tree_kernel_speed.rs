//! Times one model on a batch of rows with each tree kernel, in process, one thread, and
//! checks that both give the same bits. Reports the best of ten rounds.
//!
//! `cargo run --release -p onnx-model --example tree_kernel_speed -- MODEL.onnx ROWS.json [CALLS [N]]`
//! where ROWS.json is a list of `{"feature": value or null}` objects (null is missing); with N,
//! only its first N rows.

use std::time::Instant;

use ndarray::Array2;
use onnx_model::{Model, TreeKernel, runtime};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (model_path, rows_path) = match args.as_slice() {
        [_, m, r, ..] => (m, r),
        _ => return Err("usage: tree_kernel_speed MODEL.onnx ROWS.json [CALLS]".into()),
    };
    let calls: usize = args.get(3).map_or(Ok(200), |c| c.parse())?;
    let env = runtime::environment(None)?;
    let mut rows: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(&std::fs::read_to_string(rows_path)?)?;
    if let Some(n) = args.get(4) {
        rows.truncate(n.parse()?);
    }
    let mut outputs = Vec::new();
    let kernels = [
        TreeKernel::OnnxRuntime,
        TreeKernel::Compiled { threads: 1 },
        TreeKernel::Compiled { threads: 2 },
    ];
    for kernel in kernels {
        let model = Model::load_with(env, "m", model_path.as_ref(), kernel)?;
        let names = &model.info().feature_names;
        let mut x = Array2::<f64>::zeros((rows.len(), names.len()));
        for (r, row) in rows.iter().enumerate() {
            for (c, name) in names.iter().enumerate() {
                x[[r, c]] = row.get(name).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
            }
        }
        let first = model.predict(x.view())?;
        // The best of ten rounds: the machine's other work only ever adds time.
        let mut per_call = f64::MAX;
        for _ in 0..10 {
            let start = Instant::now();
            for _ in 0..calls.div_ceil(10) {
                std::hint::black_box(model.predict(x.view())?);
            }
            per_call = per_call.min(start.elapsed().as_secs_f64() / calls.div_ceil(10) as f64);
        }
        println!(
            "{:<24} (runs {:<11}) {:>8.3} ms per call of {} rows = {:>10.0} rows/s",
            format!("{kernel:?}"),
            model.tree_kernel().name(),
            per_call * 1e3,
            rows.len(),
            rows.len() as f64 / per_call
        );
        outputs.push(first);
    }
    for other in &outputs[1..] {
        let same = outputs[0]
            .iter()
            .zip(other.iter())
            .filter(|(a, b)| a.to_bits() == b.to_bits())
            .count();
        println!(
            "bit-identical to ONNX Runtime's: {same} of {}",
            outputs[0].len()
        );
    }
    Ok(())
}
