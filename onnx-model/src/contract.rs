//! What a converted model looks like, as `convert-models` writes it and the node reads it
//! (model contract v2; every v1 regressor is a valid v2 model).
//!
//! Input [`INPUT_NAME`]: double `[N, n_number_columns]`, the numeric features in feature
//! order (NaN = a missing value). A model with string features (`"type": "string"`) has a
//! second input [`INPUT_STRINGS_NAME`]: string `[N, n_string_columns]`, the string features in
//! feature order, a missing value sent as the empty string `""`; such a model still has
//! [`INPUT_NAME`], of width 0 when every feature is a string. A feature may carry
//! `categories`: the model refuses any other value there (OneHotEncoder/OrdinalEncoder with
//! `handle_unknown='error'`), and the node answers such a value before inference.
//!
//! Outputs by [`Task`] (metadata [`META_TASK`], absent = regression):
//! - regression: [`OUTPUT_NAME`], double `[N, n_targets]`;
//! - classification: [`LABEL_NAME`], int64 `[N]` (the index into [`META_CLASSES`] of sklearn's
//!   `predict`) and [`PROBABILITIES_NAME`], double `[N, n_classes]` (sklearn's
//!   `predict_proba`). No ZipMap, no string outputs.
//!
//! Metadata properties: [`META_FEATURES`] (a JSON list of [`Feature`], one per input column,
//! in the model's column order), [`META_FEATURE_NAMES`] (the same names as a JSON list of
//! strings, kept for compatibility), [`META_CLASSES`] (classification: a JSON list of
//! [`ClassLabel`], sklearn's `classes_` as typed there), [`META_ESTIMATOR`],
//! [`META_SOURCE_FILE`], [`META_SOURCE_SHA256`], [`META_SKLEARN_VERSION`] and
//! [`META_CONVERTER_VERSION`]. A model without `features` has only numeric, non-nullable
//! features named by `feature_names`. Everything is computed in double precision.

use serde::{Deserialize, Serialize};

/// The name of the model's numeric input.
pub const INPUT_NAME: &str = "input";
/// The name of the model's string input (only when some feature is a string).
pub const INPUT_STRINGS_NAME: &str = "input_strings";
/// The name of a regressor's single output.
pub const OUTPUT_NAME: &str = "variable";
/// The name of a classifier's label output (int64 `[N]`, an index into the classes).
pub const LABEL_NAME: &str = "label";
/// The name of a classifier's probabilities output (double `[N, n_classes]`).
pub const PROBABILITIES_NAME: &str = "probabilities";
/// Metadata key: the input columns' names, as a JSON list of strings.
pub const META_FEATURE_NAMES: &str = "feature_names";
/// Metadata key: the input columns, as a JSON list of [`Feature`] objects.
pub const META_FEATURES: &str = "features";
/// Metadata key: `"regression"` or `"classification"` ([`Task`]); absent means regression.
pub const META_TASK: &str = "task";
/// Metadata key (classification): sklearn's `classes_`, as a JSON list of [`ClassLabel`]s.
pub const META_CLASSES: &str = "classes";
/// Metadata key: the scikit-learn estimator's class name.
pub const META_ESTIMATOR: &str = "estimator";
/// Metadata key: the file name of the pickle the model was converted from.
pub const META_SOURCE_FILE: &str = "source_file";
/// Metadata key: the sha256 (hex) of that pickle.
pub const META_SOURCE_SHA256: &str = "source_sha256";
/// Metadata key: the scikit-learn version that wrote the pickle.
pub const META_SKLEARN_VERSION: &str = "sklearn_version";
/// Metadata key: the version of `convert-models` that wrote the model.
pub const META_CONVERTER_VERSION: &str = "converter_version";

/// What a model predicts (metadata [`META_TASK`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Numbers: output [`OUTPUT_NAME`].
    #[default]
    Regression,
    /// One of [`META_CLASSES`]: outputs [`LABEL_NAME`] and [`PROBABILITIES_NAME`].
    Classification,
}

impl Task {
    /// The metadata value, `"regression"` or `"classification"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Regression => "regression",
            Task::Classification => "classification",
        }
    }

    /// Parses the metadata value.
    pub fn parse(text: &str) -> Option<Task> {
        match text {
            "regression" => Some(Task::Regression),
            "classification" => Some(Task::Classification),
            _ => None,
        }
    }
}

/// One input column (an element of [`META_FEATURES`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// The column's name (`feature_names_in_`, or `x0`, `x1`, ...).
    pub name: String,
    /// `"number"` or `"string"`.
    #[serde(rename = "type")]
    pub kind: FeatureType,
    /// Whether the model accepts a missing value there (NaN in the input tensor).
    pub nullable: bool,
    /// The only values the model accepts there, when it refuses others (strings for a string
    /// column, numbers for a numeric one); absent when any value is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<serde_json::Value>>,
}

impl Feature {
    /// A numeric column.
    pub fn number(name: impl Into<String>, nullable: bool) -> Feature {
        Feature {
            name: name.into(),
            kind: FeatureType::Number,
            nullable,
            categories: None,
        }
    }

    /// A string column (in [`INPUT_STRINGS_NAME`]).
    pub fn string(name: impl Into<String>, nullable: bool) -> Feature {
        Feature {
            kind: FeatureType::String,
            ..Feature::number(name, nullable)
        }
    }
}

/// The type of an input column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureType {
    /// A column of [`INPUT_NAME`].
    Number,
    /// A column of [`INPUT_STRINGS_NAME`] (a missing value is `""`).
    String,
}

/// One of sklearn's `classes_`, typed as sklearn has it: booleans as `true`/`false`,
/// integers as JSON numbers, strings as strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassLabel {
    Bool(bool),
    Int(i64),
    Str(String),
}

/// Parses [`META_FEATURES`].
pub fn parse_features(json: &str) -> Result<Vec<Feature>, String> {
    serde_json::from_str(json).map_err(|e| format!("metadata {META_FEATURES} is invalid: {e}"))
}

/// Parses [`META_CLASSES`]: a non-empty list of labels of one type, none repeated.
pub fn parse_classes(json: &str) -> Result<Vec<ClassLabel>, String> {
    let classes: Vec<ClassLabel> = serde_json::from_str(json).map_err(|e| {
        format!("metadata {META_CLASSES} is not a list of integers, strings or booleans: {e}")
    })?;
    let Some(first) = classes.first() else {
        return Err(format!("metadata {META_CLASSES} is empty"));
    };
    let same_type = |c: &ClassLabel| std::mem::discriminant(c) == std::mem::discriminant(first);
    if !classes.iter().all(same_type) {
        return Err(format!("metadata {META_CLASSES} mixes label types"));
    }
    if classes
        .iter()
        .enumerate()
        .any(|(i, c)| classes[..i].contains(c))
    {
        return Err(format!("metadata {META_CLASSES} repeats a label"));
    }
    Ok(classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_round_trip_in_the_documented_shape() {
        let features = vec![Feature::number("a", false), Feature::number("b", true)];
        let json = serde_json::to_string(&features).unwrap();
        assert_eq!(
            json,
            r#"[{"name":"a","type":"number","nullable":false},{"name":"b","type":"number","nullable":true}]"#
        );
        assert_eq!(parse_features(&json).unwrap(), features);
        assert!(parse_features(r#"[{"name":"a","type":"date","nullable":false}]"#).is_err());
        let mut color = Feature::string("color", true);
        color.categories = Some(vec!["red".into(), "blue".into()]);
        let json = serde_json::to_string(&[color.clone()]).unwrap();
        assert_eq!(
            json,
            r#"[{"name":"color","type":"string","nullable":true,"categories":["red","blue"]}]"#
        );
        assert_eq!(parse_features(&json).unwrap(), [color]);
        assert!(parse_features(r#"[{"name":"a","type":"number"}]"#).is_err());
    }

    #[test]
    fn classes_keep_their_json_types() {
        for json in [
            r#"[0,1,2]"#,
            r#"["setosa","versicolor"]"#,
            r#"[false,true]"#,
        ] {
            let classes = parse_classes(json).unwrap();
            assert_eq!(serde_json::to_string(&classes).unwrap(), json);
        }
        assert_eq!(parse_classes("[-3]").unwrap(), [ClassLabel::Int(-3)]);
        for bad in ["[]", "[1.5]", r#"[1,"a"]"#, "[1,1]", "{}", "[null]"] {
            assert!(parse_classes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tasks_parse_their_metadata_value() {
        for task in [Task::Regression, Task::Classification] {
            assert_eq!(Task::parse(task.as_str()), Some(task));
            assert_eq!(
                serde_json::to_string(&task).unwrap(),
                format!("\"{}\"", task.as_str())
            );
        }
        assert_eq!(Task::parse("clustering"), None);
    }
}
