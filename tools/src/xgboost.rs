//! XGBoost models, read without XGBoost: native model files (`Booster.save_model`, `.json` and
//! `.ubj`) and the booster bytes inside a pickled `XGBRegressor` / `XGBClassifier` (read by
//! `sklearn`'s wrapper extractor, which hands the bytes here).
//!
//! [`json`] and [`ubjson`] decode bounded bytes into one small [`value::Value`] tree;
//! [`model`] reads the typed, checked [`model::Booster`] from it; [`ensemble`] picks the trees
//! `predict` uses and their base margins. Nothing here calls XGBoost: its arithmetic is
//! reproduced in the ONNX graph (`onnx::xgboost`).

pub mod json;
pub mod model;
pub mod ubjson;
pub mod value;

use crate::estimator::{
    Classifier, Estimator, LabelRule, Model, Probabilities, XGBoost, XgbGroup, XgbOutput,
};
use model::{Booster, Objective};
use value::{DecodeError, Value};

/// Why XGBoost bytes could not become a model.
#[derive(Debug, thiserror::Error)]
pub enum XgbError {
    /// Not JSON or UBJSON, or malformed / over a limit.
    #[error("XGBoost model: {0}")]
    Decode(#[from] DecodeError),
    /// A valid XGBoost model we do not convert (the message names what).
    #[error("unsupported XGBoost model: {0}")]
    Unsupported(String),
    /// A field is missing or has the wrong type, size or value.
    #[error("invalid XGBoost model {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// The encoding of an XGBoost model document, told from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Ubjson,
}

/// Whether `bytes` look like an XGBoost model document: a JSON object whose first key is
/// `"learner"` (`save_model`'s `.json`), or a UBJSON object whose first key is `learner`
/// (`.ubj`) or `Config`/`Model` (a memory snapshot). Other JSON (a `golden.json`) is not.
pub fn sniff(bytes: &[u8]) -> Option<Encoding> {
    let text = bytes.trim_ascii_start();
    if let Some(rest) = text.strip_prefix(b"{") {
        let rest = rest.trim_ascii_start();
        if rest.starts_with(b"\"learner\"") {
            return Some(Encoding::Json);
        }
        // UBJSON: `{` then the first key as `L` + 8-byte length + bytes (or another integer
        // marker and its width).
        for key in [&b"learner"[..], b"Config", b"Model"] {
            let widths: [(u8, usize); 5] = [(b'L', 8), (b'l', 4), (b'I', 2), (b'U', 1), (b'i', 1)];
            for (marker, width) in widths {
                if bytes.get(1) == Some(&marker)
                    && bytes.get(2 + width..2 + width + key.len()) == Some(key)
                {
                    return Some(Encoding::Ubjson);
                }
            }
        }
    }
    None
}

/// Decodes a model document, JSON or UBJSON by its first bytes.
pub fn decode(bytes: &[u8]) -> Result<Value, XgbError> {
    match sniff(bytes) {
        Some(Encoding::Json) => Ok(json::parse(bytes)?),
        Some(Encoding::Ubjson) => Ok(ubjson::parse(bytes)?),
        None if bytes.starts_with(b"binf") || bytes.starts_with(b"bs64") => {
            Err(XgbError::Unsupported(
                "XGBoost's old binary model format (before 1.0's JSON); load and save it again \
                 with XGBoost >= 1.7 as .json or .ubj"
                    .into(),
            ))
        }
        None => Err(XgbError::Invalid {
            path: "booster".into(),
            reason: "neither an XGBoost JSON nor an UBJSON model document".into(),
        }),
    }
}

/// Reads a native model file (`Booster.save_model`) into a [`Model`].
///
/// A file saved through the sklearn wrapper (its `scikit_learn` attribute is set) predicts as
/// the wrapper does, up to `best_iteration` when early stopping recorded one; a plain Booster
/// file predicts with every tree, as `Booster.predict` does. Classification objectives make a
/// classifier with classes `0 … K-1` (XGBClassifier's own).
pub fn read_native(bytes: &[u8]) -> Result<Model, XgbError> {
    let booster = model::booster(&decode(bytes)?)?;
    let from_wrapper = booster.attribute("scikit_learn").is_some();
    let iterations = if from_wrapper {
        best_iteration(&booster)?.map(|b| b + 1)
    } else {
        None
    };
    let classifier = matches!(
        (booster.objective, booster.objective_name.as_str()),
        (Objective::Softprob | Objective::Softmax, _) | (_, "binary:logistic")
    );
    let feature_names = (!booster.feature_names.is_empty()).then(|| booster.feature_names.clone());
    let mut model = model(&booster, iterations, classifier, feature_names)?;
    if let Estimator::XGBoost(b) = &model.estimator {
        model.kind = format!("XGBoost Booster ({})", b.about);
    }
    Ok(model)
}

/// `best_iteration` from the booster's attributes, if recorded.
pub fn best_iteration(booster: &Booster) -> Result<Option<usize>, XgbError> {
    booster
        .attribute("best_iteration")
        .map(|b| {
            b.trim().parse::<usize>().map_err(|_| XgbError::Invalid {
                path: "attributes.best_iteration".into(),
                reason: format!("{b:?} is not a non-negative integer"),
            })
        })
        .transpose()
}

/// `major.minor.patch`.
pub fn version_text(booster: &Booster) -> String {
    let [a, b, c] = booster.version;
    format!("{a}.{b}.{c}")
}

/// The [`Model`] predicting as XGBoost does with the trees of the first `iterations`
/// iterations (all when `None`): a regressor, or a classifier with classes `0 … K-1`.
pub fn model(
    booster: &Booster,
    iterations: Option<usize>,
    classifier: bool,
    feature_names: Option<Vec<String>>,
) -> Result<Model, XgbError> {
    let unsupported = |what: &str| {
        Err(XgbError::Unsupported(format!(
            "{what} with objective {}",
            booster.objective_name
        )))
    };
    let output = match (booster.objective, classifier) {
        (Objective::Identity, false) => XgbOutput::Margin,
        (Objective::Exp, false) => XgbOutput::Exp,
        (Objective::Logistic, false) => XgbOutput::Sigmoid,
        (Objective::Logistic, true) if booster.objective_name == "binary:logistic" => {
            XgbOutput::Binary
        }
        (Objective::Softprob, true) => XgbOutput::Softprob,
        (Objective::Softmax, true) => XgbOutput::Softmax,
        (_, true) => return unsupported("a classifier"),
        (_, false) => return unsupported("a regressor"),
    };
    let estimator = ensemble(booster, iterations, output);
    let n_classes = match output {
        XgbOutput::Binary => 2,
        _ => booster.n_groups,
    };
    let classifier = classifier.then(|| Classifier {
        classes: (0..n_classes as i64)
            .map(onnx_model::contract::ClassLabel::Int)
            .collect(),
        probabilities: Probabilities::Scores,
        label: LabelRule::Given,
    });
    Ok(Model {
        kind: "XGBoost Booster".into(),
        feature_names,
        n_features: booster.n_features,
        n_targets: if classifier.is_some() { n_classes } else { 1 },
        sklearn_version: String::new(),
        steps: vec![],
        estimator: Estimator::XGBoost(estimator),
        classifier,
        accepts_missing: true,
    })
}

/// The trees `predict` sums, per group, with each group's base margin.
pub fn ensemble(booster: &Booster, iterations: Option<usize>, output: XgbOutput) -> XGBoost {
    let mut groups: Vec<XgbGroup> = booster
        .base_margins()
        .into_iter()
        .map(|base_margin| XgbGroup {
            base_margin,
            trees: vec![],
        })
        .collect();
    for (g, tree) in booster.trees_until(iterations) {
        groups[g].trees.push(tree.clone());
    }
    XGBoost {
        groups,
        output,
        about: format!(
            "{}, XGBoost {}",
            booster.objective_name,
            version_text(booster)
        ),
    }
}
