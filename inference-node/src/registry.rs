//! The set of loaded models: every `*.onnx` file of the models directory, each with its
//! inference thread ([`Batcher`]).
//!
//! Failures are [`LoadError`] (at startup) and [`UnknownModel`] (per request); the node's error
//! table (`crate::error`) decides their HTTP status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use onnx_model::runtime::{self, RuntimeError};
use onnx_model::{Model, ModelError, ModelInfo};

use crate::batcher::{BatchPolicy, Batcher};

/// Why the models could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The ONNX Runtime library could not be found or loaded.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A model file could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The models directory cannot be listed.
    #[error("MODELS_DIR {} cannot be read: {error}", dir.display())]
    UnreadableDir { dir: PathBuf, error: std::io::Error },
    /// A model's file name is not valid UTF-8, so it cannot be a model name.
    #[error("model file name {} is not valid UTF-8", .0.display())]
    NonUtf8Name(PathBuf),
    /// A model's inference thread could not be started.
    #[error("cannot start the inference thread for {name}: {error}")]
    Thread { name: String, error: std::io::Error },
    /// The default model is not among the loaded ones.
    #[error(
        "default model GDP_MODEL_NAME={default} has no {default}.onnx in MODELS_DIR {} (found: [{}]); run convert-models first",
        dir.display(),
        found.join(", ")
    )]
    NoDefault {
        default: String,
        dir: PathBuf,
        found: Vec<String>,
    },
}

/// No model of that name is loaded.
#[derive(Debug, thiserror::Error)]
#[error("model {name:?} not found")]
pub struct UnknownModel {
    /// The name asked for.
    pub name: String,
    /// Every loaded model's name, in order.
    pub available: Vec<String>,
}

/// A loaded model and the handle that runs it.
#[derive(Clone)]
pub struct Served {
    /// The model (metadata and session).
    pub model: Arc<Model>,
    /// Its inference thread.
    pub batcher: Batcher,
    /// The feature names as JSON object keys (`"gdp_per_capita":`), escaped once here instead
    /// of once per echoed row.
    pub json_keys: Arc<[String]>,
}

/// `name` as a JSON object key with its colon (`"gdp_per_capita":`).
pub fn json_key(name: &str) -> String {
    format!("{}:", serde_json::Value::from(name))
}

/// Every loaded model, by name, plus which one is the default.
pub struct Registry {
    models: BTreeMap<String, Served>,
    default: String,
}

impl Registry {
    /// Loads every `*.onnx` file in `dir` (the file stem is the model name) and checks that
    /// `default` is among them. Fails on the first model that does not load.
    pub fn load(
        dir: &Path,
        default: &str,
        ort_library: Option<&Path>,
        policy: BatchPolicy,
    ) -> Result<Registry, LoadError> {
        let env = runtime::environment(ort_library)?;
        let entries = std::fs::read_dir(dir).map_err(|error| LoadError::UnreadableDir {
            dir: dir.to_path_buf(),
            error,
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "onnx") && path.is_file())
            .collect();
        paths.sort();
        let mut models = BTreeMap::new();
        for path in paths {
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                return Err(LoadError::NonUtf8Name(path));
            };
            let model = Arc::new(Model::load(env, name, &path)?);
            let batcher =
                Batcher::spawn(model.clone(), policy).map_err(|error| LoadError::Thread {
                    name: name.to_string(),
                    error,
                })?;
            tracing::info!(model = name, estimator = %model.info().estimator, "loaded model");
            let json_keys = model
                .info()
                .feature_names
                .iter()
                .map(|name| json_key(name))
                .collect();
            models.insert(
                name.to_string(),
                Served {
                    model,
                    batcher,
                    json_keys,
                },
            );
        }
        if !models.contains_key(default) {
            return Err(LoadError::NoDefault {
                default: default.to_string(),
                dir: dir.to_path_buf(),
                found: models.into_keys().collect(),
            });
        }
        Ok(Registry {
            models,
            default: default.to_string(),
        })
    }

    /// Returns the model called `name`, or the default model for `None`.
    pub fn get(&self, name: Option<&str>) -> Result<&Served, UnknownModel> {
        let name = name.unwrap_or(&self.default);
        self.models.get(name).ok_or_else(|| UnknownModel {
            name: name.to_string(),
            available: self.names().map(str::to_string).collect(),
        })
    }

    /// Returns the default model's name.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// Returns the model names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// Returns every model's metadata, ordered by name.
    pub fn infos(&self) -> impl Iterator<Item = &ModelInfo> {
        self.models.values().map(|s| s.model.info())
    }

    /// Returns the number of loaded models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Returns whether no model is loaded (never true for a registry built by `load`).
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}
