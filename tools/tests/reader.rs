//! Reads every committed fixture (tools/tests/data/fixtures) and the shipped models.

use std::path::{Path, PathBuf};

use tools::pickle::{self, Limits};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures")
}

fn model_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("pkl" | "joblib")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_fixture_decodes() {
    let dir = std::env::var_os("PICKLE_DEV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(fixtures_dir);
    let files = model_files(&dir);
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        match pickle::read_file(file, &Limits::default()) {
            Ok(_) if name.starts_with("unsupported_") => {
                failures.push(format!("{}: decoded but must be refused", file.display()))
            }
            Ok(_) => {}
            Err(e) if name.starts_with("unsupported_") => {
                assert!(e.to_string().contains("KNeighborsRegressor"), "{e}");
            }
            Err(e) => failures.push(format!("{}: {e}", file.display())),
        }
    }
    println!("{} files", files.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
