//! What a converted model looks like, as `convert-models` writes it and the node reads it.
//!
//! One input [`INPUT_NAME`] (double, `[N, n_features]`), one output [`OUTPUT_NAME`] (double,
//! `[N, n_targets]`), and metadata properties: [`META_FEATURE_NAMES`] (a JSON list of
//! strings, one per input column), [`META_ESTIMATOR`], [`META_SOURCE_FILE`],
//! [`META_SOURCE_SHA256`], [`META_SKLEARN_VERSION`] and [`META_CONVERTER_VERSION`].

/// The name of the model's single input.
pub const INPUT_NAME: &str = "input";
/// The name of the model's single output.
pub const OUTPUT_NAME: &str = "variable";
/// Metadata key: the input columns' names, as a JSON list of strings.
pub const META_FEATURE_NAMES: &str = "feature_names";
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
