//! What the fidelity tests share: the fixture generations of a data folder, reading their
//! JSON, and the relative error of ONNX Runtime's answers.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};

use ndarray::Array2;

/// The generation folders (one per library version) under `tests/data/FOLDER` that hold a
/// `MANIFEST`, sorted.
pub fn generations(folder: &str, manifest: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(folder);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "fixture directory {} is missing ({e}); its README says which script makes it",
            dir.display()
        )
    });
    let mut dirs: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.join(manifest).is_file())
        .collect();
    dirs.sort();
    dirs
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Largest `|a - b| / max(1, |b|)`, or the first value beyond `bound`.
pub fn max_relative(got: &Array2<f64>, want: &[Vec<f64>], bound: f64) -> Result<f64, String> {
    if got.dim() != (want.len(), want.first().map_or(0, Vec::len)) {
        return Err(format!(
            "shape {:?}, expected {} rows",
            got.dim(),
            want.len()
        ));
    }
    let mut max = 0.0f64;
    for (i, (row, want_row)) in got.rows().into_iter().zip(want).enumerate() {
        for (j, (&a, &b)) in row.iter().zip(want_row).enumerate() {
            let rel = if a == b {
                0.0
            } else {
                (a - b).abs() / b.abs().max(1.0)
            };
            if rel.is_nan() || rel > bound {
                return Err(format!("row {i} column {j}: ONNX {a:?}, sklearn {b:?}"));
            }
            max = max.max(rel);
        }
    }
    Ok(max)
}
