//! ONNX export: turns an [`estimator::Model`](crate::estimator::Model) into an ONNX model.
//!
//! The graph follows the model contract (`onnx_model::contract`, v2): the input `input`
//! (double `[N, n_number_features]`) and, with string features, `input_strings` (string
//! `[N, n_string_features]`); a regressor's output `variable` (double `[N, n_targets]`) or a
//! classifier's `label` (int64 `[N]`) and `probabilities` (double `[N, n_classes]`); the
//! metadata (task, features with their types, nullability and refused categories, classes,
//! provenance). Everything is computed in double: the preprocessing steps (scalers, imputer,
//! ColumnTransformer, encoders; [`preprocess`]), linear models as `MatMul` + `Add`
//! ([`linear`]), trees as `ai.onnx.ml` opset-5 `TreeEnsemble` after sklearn's float32 rounding
//! ([`trees`]), and a classifier's probabilities and label from those scores ([`classifier`]);
//! HistGradientBoosting as one `TreeEnsemble` in float64 with NaN routing and category sets
//! ([`hist`]), LightGBM likewise with its missing-value rules ([`lightgbm`]), both on the
//! shared `TreeEnsemble` attributes of [`ensemble`].

pub mod classifier;
pub mod ensemble;
pub mod graph;
pub mod hist;
pub mod lightgbm;
pub mod linear;
pub mod preprocess;
pub mod trees;
pub mod xgboost;

pub mod proto {
    //! ONNX protobuf types generated at build time from `proto/onnx-ml.proto`.
    #![allow(clippy::all, missing_docs, rustdoc::all)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

use std::collections::BTreeMap;

use onnx_model::contract::{
    Feature, INPUT_NAME, INPUT_STRINGS_NAME, LABEL_NAME, META_CLASSES, META_CONVERTER_VERSION,
    META_ESTIMATOR, META_FEATURE_NAMES, META_FEATURES, META_SKLEARN_VERSION, META_SOURCE_FILE,
    META_SOURCE_SHA256, META_TASK, OUTPUT_NAME, PROBABILITIES_NAME, Task,
};
use prost::Message;

use crate::error::ConvertError;
use crate::estimator::{Categories, Estimator, Model};
use graph::GraphBuilder;
use proto::tensor_shape_proto::{Dimension, dimension};
use proto::{
    ModelProto, OperatorSetIdProto, StringStringEntryProto, TensorShapeProto, TypeProto,
    ValueInfoProto, tensor_proto::DataType, type_proto,
};

/// IR version 10 (onnx 1.16+): the oldest that allows `ai.onnx.ml` opset 5.
pub const IR_VERSION: i64 = 10;
/// Default-domain opset (Sub/Div/MatMul/Add/Cast/Concat).
pub const OPSET: i64 = 21;
/// The classical-ML operator domain and the opset that has `TreeEnsemble`.
pub const ML_DOMAIN: &str = "ai.onnx.ml";
pub const ML_OPSET: i64 = 5;
/// Recorded as `converter_version`.
pub const CONVERTER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where a model came from, recorded in the ONNX metadata.
#[derive(Debug, Clone)]
pub struct Source {
    /// The pickle's file name (no directories), e.g. `RandomForest.pkl`.
    pub file_name: String,
    /// Lower-case hex sha256 of the pickle's bytes.
    pub sha256: String,
}

/// Returns the feature names recorded for `model`: its own, or `x0..x{n-1}`.
pub fn feature_names(model: &Model) -> Vec<String> {
    match &model.feature_names {
        Some(names) => names.clone(),
        None => (0..model.n_features).map(|i| format!("x{i}")).collect(),
    }
}

/// Builds the ONNX model for `model` from `source`.
pub fn build(model: &Model, source: &Source) -> Result<ModelProto, ConvertError> {
    let (n_features, n_targets) = (model.n_features, model.n_targets);
    if n_features == 0 || n_targets == 0 {
        return Err(ConvertError::InvalidModel(format!(
            "the model has {n_features} features and {n_targets} targets"
        )));
    }
    let names = feature_names(model);
    if names.len() != n_features {
        return Err(ConvertError::InvalidModel(format!(
            "{} feature names for {n_features} features",
            names.len()
        )));
    }

    let mut g = GraphBuilder::default();
    let string_columns = model.string_columns();
    let n_strings = string_columns.iter().filter(|s| **s).count();
    let inputs = preprocess::Inputs {
        numbers: INPUT_NAME,
        strings: (n_strings > 0).then_some(INPUT_STRINGS_NAME),
        string_columns: &string_columns,
    };
    let (x, width) = preprocess::model_steps(&mut g, &inputs, &model.steps, n_features)?;
    let scores = match &model.classifier {
        Some(c) => classifier::scores_name(&mut g, c),
        None => OUTPUT_NAME.to_string(),
    };
    match &model.estimator {
        Estimator::Linear(l) => linear::linear(&mut g, &x, l, width, n_targets, &scores)?,
        Estimator::Trees(e) => trees::ensemble(&mut g, &x, e, width, n_targets, &scores)?,
        // Its own outputs and metadata (contract v2): written whole by `hist`.
        Estimator::Hist(h) => hist::ensemble(&mut g, &x, h, width, &scores)?,
        Estimator::LightGbm(l) => lightgbm::ensemble(&mut g, &x, l, width, &scores)?,
        Estimator::XGBoost(b) => xgboost::ensemble(&mut g, &x, b, width, &scores)?,
    }
    let (task, outputs) = match &model.classifier {
        Some(c) => {
            classifier::outputs(&mut g, &scores, c, n_targets)?;
            let outputs = vec![
                vector_i64(LABEL_NAME),
                matrix(PROBABILITIES_NAME, c.classes.len()),
            ];
            (Task::Classification, outputs)
        }
        None => (Task::Regression, vec![matrix(OUTPUT_NAME, n_targets)]),
    };

    let features: Vec<Feature> = names
        .iter()
        .zip(model.nullable())
        .zip(&string_columns)
        .zip(model.refused_outside())
        .map(|(((name, nullable), is_string), categories)| {
            let mut feature = match is_string {
                true => Feature::string(name.clone(), nullable),
                false => Feature::number(name.clone(), nullable),
            };
            feature.categories = categories.map(|c| match c {
                Categories::Numbers(c) => c.into_iter().map(serde_json::Value::from).collect(),
                Categories::Strings(c) => c.into_iter().map(serde_json::Value::from).collect(),
            });
            feature
        })
        .collect();
    let names_json = serde_json::to_string(&names).expect("a list of strings serialises");
    let features_json = serde_json::to_string(&features).expect("features serialise");
    let mut metadata = vec![
        (META_TASK, task.as_str().to_string()),
        (META_FEATURES, features_json),
        (META_FEATURE_NAMES, names_json),
    ];
    if let Some(c) = &model.classifier {
        let classes = serde_json::to_string(&c.classes).expect("class labels serialise");
        metadata.push((META_CLASSES, classes));
    }
    metadata.extend(
        provenance(model, source)
            .into_iter()
            .map(|(key, value)| (key, value.to_string())),
    );
    let mut opset_import = vec![opset("", OPSET)];
    let uses_ml = g
        .nodes
        .iter()
        .any(|n| n.domain.as_deref() == Some(ML_DOMAIN));
    if uses_ml
        || matches!(
            model.estimator,
            Estimator::Trees(_) | Estimator::Hist(_) | Estimator::LightGbm(_)
        )
    {
        opset_import.push(opset(ML_DOMAIN, ML_OPSET));
    }
    let graph = proto::GraphProto {
        node: g.nodes,
        name: Some(model.kind.clone()),
        initializer: g.initializers,
        input: inputs_of(n_features - n_strings, n_strings),
        output: outputs,
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import,
        producer_name: Some("convert-models".into()),
        producer_version: Some(CONVERTER_VERSION.into()),
        doc_string: Some(format!(
            "{} converted from {}",
            model.kind, source.file_name
        )),
        graph: Some(graph),
        metadata_props: metadata
            .iter()
            .map(|(key, value)| StringStringEntryProto {
                key: Some(key.to_string()),
                value: Some(value.to_string()),
            })
            .collect(),
        ..Default::default()
    })
}

/// Builds and serialises the ONNX model for `model`.
pub fn encode(model: &Model, source: &Source) -> Result<Vec<u8>, ConvertError> {
    Ok(build(model, source)?.encode_to_vec())
}

/// Parses a serialised ONNX model.
pub fn decode(bytes: &[u8]) -> Result<ModelProto, prost::DecodeError> {
    ModelProto::decode(bytes)
}

/// Reads the `metadata_props` of a serialised ONNX model.
pub fn metadata(bytes: &[u8]) -> Result<BTreeMap<String, String>, prost::DecodeError> {
    Ok(metadata_of(&decode(bytes)?))
}

/// The `metadata_props` of an ONNX model as a map.
pub fn metadata_of(model: &ModelProto) -> BTreeMap<String, String> {
    model
        .metadata_props
        .iter()
        .map(|entry| {
            let key = entry.key.clone().unwrap_or_default();
            (key, entry.value.clone().unwrap_or_default())
        })
        .collect()
}

/// The number of trees of a model this module wrote (`None` if it has no `TreeEnsemble`).
pub fn tree_count(model: &ModelProto) -> Option<usize> {
    let node = model
        .graph
        .as_ref()?
        .node
        .iter()
        .find(|n| n.op_type.as_deref() == Some("TreeEnsemble"))?;
    let roots = node
        .attribute
        .iter()
        .find(|a| a.name.as_deref() == Some("tree_roots"))?;
    Some(roots.ints.len())
}

/// The metadata every converted model records about where it came from.
fn provenance<'a>(model: &'a Model, source: &'a Source) -> [(&'static str, &'a str); 5] {
    [
        (META_ESTIMATOR, model.kind.as_str()),
        (META_SOURCE_FILE, source.file_name.as_str()),
        (META_SOURCE_SHA256, source.sha256.as_str()),
        (META_SKLEARN_VERSION, model.sklearn_version.as_str()),
        (META_CONVERTER_VERSION, CONVERTER_VERSION),
    ]
}

/// The graph inputs: `input` (double, the numeric features; present even with width 0) and,
/// with string features, `input_strings`.
fn inputs_of(n_numbers: usize, n_strings: usize) -> Vec<ValueInfoProto> {
    let mut inputs = vec![matrix(INPUT_NAME, n_numbers)];
    if n_strings > 0 {
        inputs.push(value_info(
            INPUT_STRINGS_NAME,
            DataType::String,
            &[n_strings],
        ));
    }
    inputs
}

/// A double `[N, width]` tensor description with a dynamic batch dimension.
fn matrix(name: &str, width: usize) -> ValueInfoProto {
    value_info(name, DataType::Double, &[width])
}

/// An int64 `[N]` tensor description.
fn vector_i64(name: &str) -> ValueInfoProto {
    value_info(name, DataType::Int64, &[])
}

/// A tensor description of `elem_type` and shape `[N, dims...]` (dynamic batch dimension).
fn value_info(name: &str, elem_type: DataType, dims: &[usize]) -> ValueInfoProto {
    let dims = std::iter::once(dimension::Value::DimParam("N".into()))
        .chain(dims.iter().map(|&d| dimension::Value::DimValue(d as i64)));
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type as i32),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .map(|value| Dimension {
                            value: Some(value),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn opset(domain: &str, version: i64) -> OperatorSetIdProto {
    OperatorSetIdProto {
        domain: Some(domain.to_string()),
        version: Some(version),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Runs hand-built models through the loader the inference node uses (`onnx_model`, real
    //! ONNX Runtime).

    use ndarray::Array2;

    use super::{Source, encode};
    use crate::estimator::{Estimator, Model};

    /// A model around `estimator` with default names and provenance.
    pub fn model(estimator: Estimator, n_features: usize, n_targets: usize) -> Model {
        Model {
            kind: "Test".into(),
            feature_names: None,
            n_features,
            n_targets,
            sklearn_version: "1.9.0".into(),
            steps: vec![],
            estimator,
            classifier: None,
            accepts_missing: false,
        }
    }

    /// Converts `model`, loads it with `onnx_model::Model` and predicts `rows`.
    pub fn predict(model: &Model, rows: &[Vec<f64>]) -> Array2<f64> {
        let source = Source {
            file_name: "test.pkl".into(),
            sha256: "00".repeat(32),
        };
        let bytes = encode(model, &source).expect("the model converts");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.onnx");
        std::fs::write(&path, bytes).unwrap();
        let env = onnx_model::runtime::environment(None).expect("ONNX Runtime loads");
        let loaded = onnx_model::Model::load(env, "test", &path).expect("ORT loads it");
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let x = Array2::from_shape_vec((rows.len(), model.n_features), flat).unwrap();
        loaded.predict(x.view()).expect("ORT runs it")
    }

    /// Asserts `|a - b| <= 1e-12 * max(1, |b|)` element-wise.
    pub fn assert_close(got: &Array2<f64>, expected: &[Vec<f64>]) {
        assert_eq!(got.nrows(), expected.len());
        for (row, want) in got.rows().into_iter().zip(expected) {
            assert_eq!(row.len(), want.len());
            for (a, b) in row.iter().zip(want) {
                assert!(
                    (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                    "got {got:?}, expected {expected:?}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{model, predict};
    use super::*;
    use crate::estimator::Linear;

    #[test]
    fn metadata_follows_the_node_contract() {
        let mut m = model(
            Estimator::Linear(Linear {
                coef: vec![vec![1.0, 2.0]],
                intercept: vec![0.5],
            }),
            2,
            1,
        );
        m.feature_names = Some(vec!["a".into(), "b".into()]);
        let source = Source {
            file_name: "m.pkl".into(),
            sha256: "ab".repeat(32),
        };
        let bytes = encode(&m, &source).unwrap();
        let meta = metadata(&bytes).unwrap();
        assert_eq!(meta[META_FEATURE_NAMES], r#"["a","b"]"#);
        assert_eq!(meta[META_ESTIMATOR], "Test");
        assert_eq!(meta[META_SOURCE_FILE], "m.pkl");
        assert_eq!(meta[META_SOURCE_SHA256], "ab".repeat(32));
        assert_eq!(meta[META_SKLEARN_VERSION], "1.9.0");
        assert_eq!(meta[META_CONVERTER_VERSION], CONVERTER_VERSION);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        std::fs::write(&path, &bytes).unwrap();
        let env = onnx_model::runtime::environment(None).unwrap();
        let loaded = onnx_model::Model::load(env, "m", &path).unwrap();
        let info = loaded.info();
        assert_eq!(info.feature_names, ["a", "b"]);
        assert_eq!(info.n_targets, 1);
        assert_eq!(info.source_sha256, "ab".repeat(32));
        assert_eq!(info.converter_version, CONVERTER_VERSION);
    }

    #[test]
    fn unnamed_features_are_recorded_as_x0_to_xn() {
        let m = model(
            Estimator::Linear(Linear {
                coef: vec![vec![1.0, 2.0, 3.0]],
                intercept: vec![0.0],
            }),
            3,
            1,
        );
        assert_eq!(feature_names(&m), ["x0", "x1", "x2"]);
        let out = predict(&m, &[vec![1.0, 1.0, 1.0]]);
        assert_eq!(out[[0, 0]], 6.0);
    }

    #[test]
    fn empty_models_are_refused() {
        let m = model(
            Estimator::Linear(Linear {
                coef: vec![],
                intercept: vec![],
            }),
            0,
            0,
        );
        let source = Source {
            file_name: "m.pkl".into(),
            sha256: String::new(),
        };
        assert!(matches!(
            build(&m, &source),
            Err(ConvertError::InvalidModel(_))
        ));
    }
}
