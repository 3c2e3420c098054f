//! Golden predictions: scikit-learn's own outputs, used to verify converted models.
//!
//! `golden.json` sits next to the pickles it describes:
//! `{"feature_names": [...], "holdout": {"rows": [[...]]},
//!   "models": {"<Name>": {"file": "<Name>.pkl", "predictions": [[...]]}}}`.
//! Floats may be JSON numbers or strings (`"nan"`, `"-inf"`, `"0.1"`), since JSON has no NaN.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::{Deserialize, Deserializer};

use crate::error::ConvertError;

/// The file name looked up in each model directory.
pub const FILE_NAME: &str = "golden.json";

/// A parsed `golden.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Golden {
    #[serde(default)]
    pub feature_names: Option<Vec<String>>,
    pub holdout: Holdout,
    pub models: BTreeMap<String, GoldenModel>,
}

/// The hold-out rows every model was evaluated on, `[n_rows][n_features]`.
#[derive(Debug, Clone, Deserialize)]
pub struct Holdout {
    #[serde(deserialize_with = "matrix")]
    pub rows: Vec<Vec<f64>>,
}

/// sklearn's predictions for one model on the hold-out rows.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldenModel {
    /// The pickle's file name (e.g. `RandomForest.pkl`); the map key is used if absent.
    #[serde(default)]
    pub file: Option<String>,
    /// `[n_rows][n_targets]` (a flat list is read as one target).
    #[serde(deserialize_with = "matrix")]
    pub predictions: Vec<Vec<f64>>,
}

/// How close ONNX predictions must be to sklearn's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// Bit-for-bit equal (NaN equals NaN).
    Exact,
    /// `|a - b| <= r * max(1, |b|)`.
    Relative(f64),
}

/// The tolerance the issue sets for every non-single-tree model.
pub const RELATIVE: Tolerance = Tolerance::Relative(1e-12);

impl Golden {
    /// Reads `path`, or returns `None` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<Golden>, ConvertError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ConvertError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let golden: Golden = serde_json::from_str(&text).map_err(|e| ConvertError::Golden {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Some(golden))
    }

    /// The golden file for the models in `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// The entry for the pickle called `file_name` (matched on `file`, else on the map key
    /// equal to the file stem).
    pub fn model(&self, file_name: &str) -> Option<&GoldenModel> {
        let stem = file_name.split('.').next().unwrap_or(file_name);
        self.models
            .values()
            .find(|m| m.file.as_deref() == Some(file_name))
            .or_else(|| {
                self.models
                    .iter()
                    .find(|(name, m)| m.file.is_none() && name.as_str() == stem)
                    .map(|(_, m)| m)
            })
    }

    /// The hold-out rows as an `[n_rows, n_features]` matrix.
    pub fn rows(&self, path: &Path) -> Result<Array2<f64>, ConvertError> {
        to_array(&self.holdout.rows).map_err(|reason| ConvertError::Golden {
            path: path.to_path_buf(),
            reason: format!("holdout rows: {reason}"),
        })
    }
}

/// Compares ONNX predictions with sklearn's and returns the largest absolute difference.
pub fn compare(
    onnx: &Array2<f64>,
    expected: &[Vec<f64>],
    tolerance: Tolerance,
) -> Result<f64, ConvertError> {
    if onnx.nrows() != expected.len() || expected.iter().any(|r| r.len() != onnx.ncols()) {
        let shape = expected.first().map_or(0, Vec::len);
        return Err(ConvertError::InvalidModel(format!(
            "ONNX gives [{}, {}] predictions, sklearn [{}, {shape}]",
            onnx.nrows(),
            onnx.ncols(),
            expected.len()
        )));
    }
    let mut max_delta = 0.0f64;
    for (row, (got, want)) in onnx.rows().into_iter().zip(expected).enumerate() {
        for (target, (&a, &b)) in got.iter().zip(want).enumerate() {
            // Equal values (incl. NaN vs NaN, inf vs inf) differ by 0; NaN vs a number by NaN.
            let delta = if a == b || (a.is_nan() && b.is_nan()) {
                0.0
            } else {
                (a - b).abs()
            };
            let allowed = match tolerance {
                Tolerance::Exact => 0.0,
                Tolerance::Relative(r) => r * b.abs().max(1.0),
            };
            if delta.is_nan() || delta > allowed {
                return Err(ConvertError::Mismatch {
                    row,
                    target,
                    onnx: a,
                    expected: b,
                    delta,
                    tolerance: allowed,
                });
            }
            max_delta = max_delta.max(delta);
        }
    }
    Ok(max_delta)
}

/// Builds a matrix from rows of equal length.
pub fn to_array(rows: &[Vec<f64>]) -> Result<Array2<f64>, String> {
    let width = rows.first().map_or(0, Vec::len);
    if let Some(i) = rows.iter().position(|r| r.len() != width) {
        return Err(format!(
            "row {i} has {} values, row 0 has {width}",
            rows[i].len()
        ));
    }
    let flat = rows.iter().flatten().copied().collect();
    Array2::from_shape_vec((rows.len(), width), flat).map_err(|e| e.to_string())
}

/// A float written as a JSON number or as a string such as `"nan"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Float {
    Number(f64),
    Text(String),
}

impl Float {
    fn value<E: serde::de::Error>(self) -> Result<f64, E> {
        match self {
            Float::Number(v) => Ok(v),
            Float::Text(s) => s
                .trim()
                .parse()
                .map_err(|_| E::custom(format!("{s:?} is not a float"))),
        }
    }
}

/// A list of rows, or a flat list read as one column.
#[derive(Deserialize)]
#[serde(untagged)]
enum Matrix {
    Rows(Vec<Vec<Float>>),
    Column(Vec<Float>),
}

/// Deserialises `[[f, ...], ...]` or `[f, ...]` (one column) with numbers or float strings.
pub fn matrix<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Vec<f64>>, D::Error> {
    match Matrix::deserialize(deserializer)? {
        Matrix::Rows(rows) => rows
            .into_iter()
            .map(|row| row.into_iter().map(Float::value).collect())
            .collect(),
        Matrix::Column(column) => column.into_iter().map(|v| Ok(vec![v.value()?])).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_strings_and_flat_predictions() {
        let golden: Golden = serde_json::from_str(
            r#"{"feature_names": ["a", "b"],
                "holdout": {"rows": [[0.1, "nan"], ["-inf", 2]]},
                "models": {"M": {"file": "M.pkl", "predictions": [1.5, "2.5"]},
                           "N": {"predictions": [[1.0, 2.0], [3.0, 4.0]]}}}"#,
        )
        .unwrap();
        let rows = golden.rows(Path::new("golden.json")).unwrap();
        assert_eq!(rows[[0, 0]], 0.1);
        assert!(rows[[0, 1]].is_nan());
        assert_eq!(rows[[1, 0]], f64::NEG_INFINITY);
        assert_eq!(golden.model("M.pkl").unwrap().predictions, [[1.5], [2.5]]);
        assert_eq!(golden.model("N.joblib").unwrap().predictions[1], [3.0, 4.0]);
        assert!(golden.model("O.pkl").is_none());
    }

    #[test]
    fn compare_applies_the_tolerance() {
        let got = Array2::from_shape_vec((2, 1), vec![1000.0 + 1e-10, f64::NAN]).unwrap();
        let expected = vec![vec![1000.0], vec![f64::NAN]];
        let delta = compare(&got, &expected, RELATIVE).unwrap();
        assert!(delta > 0.0 && delta < 1e-9);
        let err = compare(&got, &expected, Tolerance::Exact).unwrap_err();
        assert!(err.to_string().contains("row 0, target 0"), "{err}");
        let far = Array2::from_shape_vec((2, 1), vec![1000.0 + 1e-8, f64::NAN]).unwrap();
        assert!(compare(&far, &expected, RELATIVE).is_err());
        let nan = Array2::from_shape_vec((2, 1), vec![f64::NAN, 0.0]).unwrap();
        assert!(compare(&nan, &expected, RELATIVE).is_err());
    }
}
