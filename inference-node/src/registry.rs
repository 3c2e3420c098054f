//! The model repository: every model of the models directory, by name and version, each
//! version with its inference thread ([`Batcher`]), and the live changes to it.
//!
//! Layout of `MODELS_DIR` (Triton's, plus the plain one):
//! - `<name>.onnx`: model `<name>`, unversioned. It is version 1 when first loaded; every
//!   file the node loads there later (a replacement, or the model back after a removal or
//!   an unload) becomes the next version (2, 3, ...).
//! - `<name>/<version>/model.onnx`: model `<name>`, version `<version>` (a positive integer).
//!   A name with version directories ignores a `<name>.onnx` beside them (reported).
//!
//! Requests get the newest version unless they pin one. What is served is an immutable
//! [`Snapshot`] behind a lock that is held only to clone an `Arc`: [`Registry::sync`] builds
//! the next snapshot beside the current one (loading new and changed files and running each
//! once on a row of zeros and missing strings) and swaps it in at once. A request holds the `Arc<Served>` it
//! started with, so it finishes on that version even when it is replaced or removed
//! meanwhile; a version's inference thread stops once its last request is answered (drain).
//! A file that fails to load leaves the serving version untouched, is logged, counted
//! (`node_model_load_failures_total`) and listed in [`Registry::load_errors`] until it loads
//! or disappears; it is tried again when it changes.
//!
//! Failures are [`LoadError`] (at startup, and for an explicit load) and [`UnknownModel`]
//! (per request); the node's error table (`crate::error`) decides their HTTP status.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use ndarray::Array2;
use onnx_model::runtime::{self, RuntimeError};
use onnx_model::{Model, ModelError, TreeKernel};
use serde::Serialize;
use tokio::sync::watch;

use crate::batcher::{BatchPolicy, Batcher};
use crate::metrics;

/// The file name of a versioned model (`<name>/<version>/model.onnx`).
pub const VERSIONED_FILE: &str = "model.onnx";

/// Why models could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The ONNX Runtime library could not be found or loaded.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A model file could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A model loaded but failed its check run.
    #[error("model {}: the check run on a row of zeros and missing strings failed: {reason}", path.display())]
    Check { path: PathBuf, reason: String },
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
    /// An explicit load named a model that has no file in the models directory.
    #[error("model {name:?} has no {name}.onnx or {name}/<version>/model.onnx in MODELS_DIR")]
    NoFile { name: String },
    /// The default model cannot be unloaded (requests that name no model need it).
    #[error("model {0:?} is the default model (GDP_MODEL_NAME) and cannot be unloaded")]
    DefaultModel(String),
}

/// No model of that name (or version) is loaded.
#[derive(Debug, thiserror::Error)]
#[error("model {name:?} not found")]
pub struct UnknownModel {
    /// The name asked for (with the version, when one was).
    pub name: String,
    /// Every loaded model's name (or the model's versions), in order.
    pub available: Vec<String>,
}

/// A loaded model version and the handle that runs it.
pub struct Served {
    /// The model (metadata and session).
    pub model: Arc<Model>,
    /// Its version.
    pub version: u64,
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

/// What is served at one moment: every model's versions, plus what the repository reports
/// beside them (files that did not load, unloaded models). Never changes once built.
pub struct Snapshot {
    models: BTreeMap<String, BTreeMap<u64, Arc<Served>>>,
    load_errors: Vec<LoadFailure>,
    unloaded: Vec<String>,
}

impl Snapshot {
    /// Returns model `name`'s newest version, or version `version` when given.
    pub fn get(&self, name: &str, version: Option<u64>) -> Result<Arc<Served>, UnknownModel> {
        let Some(versions) = self.models.get(name) else {
            return Err(UnknownModel {
                name: name.to_string(),
                available: self.models.keys().cloned().collect(),
            });
        };
        let found = match version {
            None => versions.values().next_back(),
            Some(v) => versions.get(&v),
        };
        found.cloned().ok_or_else(|| UnknownModel {
            name: format!("{name} version {}", version.unwrap_or_default()),
            available: versions
                .keys()
                .map(|v| format!("{name} version {v}"))
                .collect(),
        })
    }

    /// Returns the model names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// Returns model `name`'s versions, oldest first (empty when unknown).
    pub fn versions(&self, name: &str) -> Vec<u64> {
        self.models
            .get(name)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Returns every model's newest version, ordered by name.
    pub fn newest(&self) -> impl Iterator<Item = &Arc<Served>> {
        self.models.values().filter_map(|v| v.values().next_back())
    }

    /// Returns the number of models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Returns whether no model is loaded.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

/// A file that did not load, as `/models` and the repository index report it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LoadFailure {
    /// The model the file would be.
    pub model: String,
    /// The file.
    pub path: String,
    /// Why it did not load.
    pub error: String,
}

/// What a file looked like when it was last loaded or tried: a changed file is loaded again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// Where a model version comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    /// `<name>.onnx`.
    Plain,
    /// `<name>/<version>/model.onnx`.
    Versioned(u64),
}

/// A model file found in the directory.
#[derive(Debug)]
struct Found {
    path: PathBuf,
    fingerprint: Fingerprint,
}

/// A file that is served: what it looked like and the version it is served as.
struct Loaded {
    fingerprint: Fingerprint,
    version: u64,
}

/// A file that failed: what it looked like, so it is tried again only once it changes.
struct Failed {
    fingerprint: Fingerprint,
    failure: LoadFailure,
}

/// What the last scan knew about the directory (only [`Registry::sync`] touches it).
#[derive(Default)]
struct Repository {
    loaded: BTreeMap<(String, Slot), Loaded>,
    failed: BTreeMap<(String, Slot), Failed>,
    /// Models unloaded through the repository API: not loaded again until a load asks.
    unloaded: BTreeSet<String>,
    /// The last version given to each model's `<name>.onnx`: the next one counts on from
    /// it, even after the model was removed or unloaded, so a version never names two files.
    plain_versions: BTreeMap<String, u64>,
}

/// What [`Registry::sync`] looks at.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every model of the directory (startup, polling, `POST /v2/repository/index`).
    All,
    /// One model, loaded even if it was unloaded (`POST /v2/repository/models/{m}/load`).
    Load(&'a str),
}

/// The models directory, what is served from it, and how it changes.
pub struct Registry {
    current: RwLock<Arc<Snapshot>>,
    repository: Mutex<Repository>,
    names: watch::Sender<Vec<String>>,
    default: String,
    dir: PathBuf,
    ort_library: Option<PathBuf>,
    policy: BatchPolicy,
    trees: TreeKernel,
}

impl Registry {
    /// Loads every model of `dir` and checks that `default` is among them. Fails on the first
    /// model that does not load.
    pub fn load(
        dir: &Path,
        default: &str,
        ort_library: Option<&Path>,
        policy: BatchPolicy,
        trees: TreeKernel,
    ) -> Result<Registry, LoadError> {
        runtime::environment(ort_library)?;
        let registry = Registry {
            current: RwLock::new(Arc::new(Snapshot {
                models: BTreeMap::new(),
                load_errors: Vec::new(),
                unloaded: Vec::new(),
            })),
            repository: Mutex::new(Repository::default()),
            names: watch::Sender::new(Vec::new()),
            default: default.to_string(),
            dir: dir.to_path_buf(),
            ort_library: ort_library.map(Path::to_path_buf),
            policy,
            trees,
        };
        registry.sync_with(Scope::All, true)?;
        if registry.snapshot().get(default, None).is_err() {
            return Err(LoadError::NoDefault {
                default: default.to_string(),
                dir: dir.to_path_buf(),
                found: registry.names(),
            });
        }
        Ok(registry)
    }

    /// Returns what is served now; it stays valid (and served by its threads) while held.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Returns model `name` (the default model for `None`): its newest version, or `version`.
    pub fn get(
        &self,
        name: Option<&str>,
        version: Option<u64>,
    ) -> Result<Arc<Served>, UnknownModel> {
        self.snapshot().get(name.unwrap_or(&self.default), version)
    }

    /// Returns the default model's name.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// Returns the model names in order.
    pub fn names(&self) -> Vec<String> {
        self.snapshot().names().map(str::to_string).collect()
    }

    /// Follows the model names (for the Consul registration).
    pub fn watch_names(&self) -> watch::Receiver<Vec<String>> {
        self.names.subscribe()
    }

    /// Returns the number of models served.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Returns whether no model is served (never true for a registry built by `load`).
    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// Returns the files that failed to load and are not loaded since, by model and file
    /// (never waits for a load in progress).
    pub fn load_errors(&self) -> Vec<LoadFailure> {
        self.snapshot().load_errors.clone()
    }

    /// Returns the models unloaded through the repository API (and not loaded since).
    pub fn unloaded(&self) -> Vec<String> {
        self.snapshot().unloaded.clone()
    }

    /// Brings what is served in line with the directory: loads new and changed files beside
    /// the served versions, drops removed ones, then swaps the new snapshot in. Blocks (file
    /// reads, ONNX Runtime sessions): call it off the async workers. Never fails for a model
    /// file; an explicit [`Scope::Load`] fails when that model's files do not load.
    pub fn sync(&self, scope: Scope<'_>) -> Result<(), LoadError> {
        self.sync_with(scope, false)
    }

    /// Stops serving `name` (requests in progress finish on it) until it is loaded again.
    pub fn unload(&self, name: &str) -> Result<(), LoadError> {
        if name == self.default {
            return Err(LoadError::DefaultModel(name.to_string()));
        }
        let mut repository = self.lock_repository();
        let snapshot = self.snapshot();
        if !snapshot.models.contains_key(name) {
            return Err(LoadError::NoFile {
                name: name.to_string(),
            });
        }
        repository.unloaded.insert(name.to_string());
        repository.loaded.retain(|(model, _), _| model != name);
        repository.failed.retain(|(model, _), _| model != name);
        let mut models = snapshot.models.clone();
        models.remove(name);
        tracing::info!(
            model = name,
            "unloaded model; requests in progress finish on it"
        );
        self.publish(&repository, models);
        Ok(())
    }

    fn lock_repository(&self) -> std::sync::MutexGuard<'_, Repository> {
        self.repository
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sync_with(&self, scope: Scope<'_>, strict: bool) -> Result<(), LoadError> {
        let mut repository = self.lock_repository();
        let found = scan(&self.dir)?;
        let unloaded = repository.unloaded.clone();
        let in_scope = |name: &str| match scope {
            Scope::All => !unloaded.contains(name),
            Scope::Load(only) => name == only,
        };
        let found: BTreeMap<(String, Slot), Found> = found
            .into_iter()
            .filter(|((name, _), _)| in_scope(name))
            .collect();
        if let Scope::Load(name) = scope
            && !found.keys().any(|(model, _)| model == name)
        {
            return Err(LoadError::NoFile {
                name: name.to_string(),
            });
        }
        if let Scope::Load(name) = scope {
            repository.unloaded.remove(name);
        }
        let snapshot = self.snapshot();
        let mut models = snapshot.models.clone();
        let mut changed = false;
        let mut explicit_error = None;

        // Files that are gone: their versions stop being served (the default model's last
        // version stays, reported).
        let gone: Vec<(String, Slot)> = repository
            .loaded
            .keys()
            .filter(|key| in_scope(&key.0) && !found.contains_key(*key))
            .cloned()
            .collect();
        for key in gone {
            let version = repository.loaded[&key].version;
            let versions = models.entry(key.0.clone()).or_default();
            if key.0 == self.default && versions.len() == 1 {
                let failure = LoadFailure {
                    model: key.0.clone(),
                    path: display(&self.dir, &key),
                    error: "the file is gone; the default model keeps serving the version it has"
                        .into(),
                };
                report(&mut repository, key, None, failure);
                continue;
            }
            versions.remove(&version);
            if versions.is_empty() {
                models.remove(&key.0);
            }
            tracing::info!(model = %key.0, version, "model file removed; draining its version");
            repository.loaded.remove(&key);
            changed = true;
        }
        let Repository { loaded, failed, .. } = &mut *repository;
        failed.retain(|key, _| {
            found.contains_key(key) || loaded.contains_key(key) || !in_scope(&key.0)
        });

        // New and changed files: loaded and checked beside what is served.
        let versioned: BTreeSet<&str> = found
            .keys()
            .filter(|(_, slot)| matches!(slot, Slot::Versioned(_)))
            .map(|(name, _)| name.as_str())
            .collect();
        for (key, file) in &found {
            let (name, slot) = key;
            if repository
                .loaded
                .get(key)
                .is_some_and(|l| l.fingerprint == file.fingerprint)
            {
                repository.failed.remove(key);
                continue;
            }
            // A file that failed is tried again once it changes, or when a load asks.
            if matches!(scope, Scope::All)
                && repository
                    .failed
                    .get(key)
                    .is_some_and(|f| f.fingerprint == file.fingerprint)
            {
                continue;
            }
            if *slot == Slot::Plain && versioned.contains(name.as_str()) {
                let failure = LoadFailure {
                    model: name.clone(),
                    path: file.path.display().to_string(),
                    error: format!(
                        "ignored: {name}/ has version directories, which take precedence"
                    ),
                };
                report(
                    &mut repository,
                    key.clone(),
                    Some(file.fingerprint),
                    failure,
                );
                continue;
            }
            let version = match slot {
                Slot::Versioned(v) => *v,
                Slot::Plain => repository.plain_versions.get(name).map_or(1, |v| v + 1),
            };
            match self.load_version(name, version, &file.path) {
                Ok(served) => {
                    let versions = models.entry(name.clone()).or_default();
                    if let Some(previous) = repository.loaded.get(key)
                        && previous.version != version
                    {
                        versions.remove(&previous.version);
                    }
                    versions.insert(version, Arc::new(served));
                    tracing::info!(model = %name, version, path = %file.path.display(), "loaded model version");
                    if *slot == Slot::Plain {
                        repository.plain_versions.insert(name.clone(), version);
                    }
                    repository.loaded.insert(
                        key.clone(),
                        Loaded {
                            fingerprint: file.fingerprint,
                            version,
                        },
                    );
                    repository.failed.remove(key);
                    changed = true;
                }
                Err(error) if strict => return Err(error),
                Err(error) => {
                    let failure = LoadFailure {
                        model: name.clone(),
                        path: file.path.display().to_string(),
                        error: error.to_string(),
                    };
                    if matches!(scope, Scope::Load(_)) {
                        explicit_error.get_or_insert(error);
                    }
                    report(
                        &mut repository,
                        key.clone(),
                        Some(file.fingerprint),
                        failure,
                    );
                }
            }
        }
        let reported: Vec<LoadFailure> = repository
            .failed
            .values()
            .map(|f| f.failure.clone())
            .collect();
        let unloaded_now: Vec<String> = repository.unloaded.iter().cloned().collect();
        if changed || reported != snapshot.load_errors || unloaded_now != snapshot.unloaded {
            self.publish(&repository, models);
        }
        match explicit_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Loads `path` as `name` version `version`, runs it once, and starts its thread.
    fn load_version(&self, name: &str, version: u64, path: &Path) -> Result<Served, LoadError> {
        let env = runtime::environment(self.ort_library.as_deref())?;
        let model = Arc::new(Model::load_with(env, name, path, self.trees)?);
        if let Some(reason) = model.compiled_kernel_refused() {
            tracing::warn!(
                model = name,
                reason,
                "the compiled tree kernel refused this model: ONNX Runtime's runs it"
            );
        }
        let zeros = Array2::<f64>::zeros((1, model.info().n_number_features()));
        let missing = vec![String::new(); model.info().n_string_features()];
        let check = model.predict_mixed(zeros.view(), &missing);
        check.map_err(|e| LoadError::Check {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let batcher = Batcher::spawn(model.clone(), version, self.policy).map_err(|error| {
            LoadError::Thread {
                name: name.to_string(),
                error,
            }
        })?;
        let json_keys = model
            .info()
            .feature_names
            .iter()
            .map(|name| json_key(name))
            .collect();
        Ok(Served {
            model,
            version,
            batcher,
            json_keys,
        })
    }

    /// Swaps in the snapshot of `models` and what `repository` reports, and tells the
    /// followers of the names when they changed.
    fn publish(
        &self,
        repository: &Repository,
        models: BTreeMap<String, BTreeMap<u64, Arc<Served>>>,
    ) {
        let next = Snapshot {
            models,
            load_errors: repository
                .failed
                .values()
                .map(|f| f.failure.clone())
                .collect(),
            unloaded: repository.unloaded.iter().cloned().collect(),
        };
        let names: Vec<String> = next.models.keys().cloned().collect();
        let count = next.models.len();
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
        metrics::set_models_loaded(count);
        self.names.send_if_modified(|current| {
            if *current == names {
                false
            } else {
                *current = names;
                true
            }
        });
    }
}

/// Records a failed file once (log and metric), keeping it for `/models`.
fn report(
    repository: &mut Repository,
    key: (String, Slot),
    fingerprint: Option<Fingerprint>,
    failure: LoadFailure,
) {
    if repository
        .failed
        .get(&key)
        .is_some_and(|f| f.failure == failure)
    {
        return;
    }
    tracing::warn!(model = %failure.model, path = %failure.path, error = %failure.error, "model file not loaded; the serving version (if any) stays");
    metrics::record_load_failure(&failure.model);
    let fingerprint = fingerprint.unwrap_or(Fingerprint {
        len: 0,
        modified: None,
        inode: 0,
    });
    repository.failed.insert(
        key,
        Failed {
            fingerprint,
            failure,
        },
    );
}

fn display(dir: &Path, (name, slot): &(String, Slot)) -> String {
    match slot {
        Slot::Plain => dir.join(format!("{name}.onnx")),
        Slot::Versioned(v) => dir.join(name).join(v.to_string()).join(VERSIONED_FILE),
    }
    .display()
    .to_string()
}

/// Lists the model files of `dir`: `<name>.onnx` and `<name>/<version>/model.onnx`.
/// Hidden and temporary files (`.name.onnx.tmp`, anything starting with `.`) are skipped.
fn scan(dir: &Path) -> Result<BTreeMap<(String, Slot), Found>, LoadError> {
    let unreadable = |error| LoadError::UnreadableDir {
        dir: dir.to_path_buf(),
        error,
    };
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let Some(file_name) = path.file_name() else {
            continue;
        };
        if file_name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        if path.is_dir() {
            let Some(name) = file_name.to_str() else {
                continue;
            };
            let Ok(versions) = std::fs::read_dir(&path) else {
                continue;
            };
            for version in versions.filter_map(Result::ok) {
                let Some(number) = version
                    .file_name()
                    .to_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|v| *v > 0)
                else {
                    continue;
                };
                let file = version.path().join(VERSIONED_FILE);
                if let Some(fingerprint) = fingerprint(&file) {
                    found.insert(
                        (name.to_string(), Slot::Versioned(number)),
                        Found {
                            path: file,
                            fingerprint,
                        },
                    );
                }
            }
        } else if path.extension().is_some_and(|ext| ext == "onnx") {
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                return Err(LoadError::NonUtf8Name(path));
            };
            if let Some(fingerprint) = fingerprint(&path) {
                found.insert(
                    (name.to_string(), Slot::Plain),
                    Found {
                        path: path.clone(),
                        fingerprint,
                    },
                );
            }
        }
    }
    Ok(found)
}

/// A regular file's size, modification time and inode (`None` for anything else).
fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    use std::os::unix::fs::MetadataExt;
    Some(Fingerprint {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: meta.ino(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn scan_finds_plain_and_versioned_files_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("A.onnx"));
        touch(&dir.path().join("B/1/model.onnx"));
        touch(&dir.path().join("B/7/model.onnx"));
        touch(&dir.path().join("B/0/model.onnx"));
        touch(&dir.path().join("B/x/model.onnx"));
        touch(&dir.path().join("B/2/other.onnx"));
        touch(&dir.path().join(".A.onnx.tmp"));
        touch(&dir.path().join(".hidden.onnx"));
        touch(&dir.path().join("notes.txt"));
        let found: Vec<(String, Slot)> = scan(dir.path()).unwrap().into_keys().collect();
        assert_eq!(
            found,
            vec![
                ("A".to_string(), Slot::Plain),
                ("B".to_string(), Slot::Versioned(1)),
                ("B".to_string(), Slot::Versioned(7)),
            ]
        );
    }

    #[test]
    fn an_unreadable_directory_is_named() {
        let error = scan(Path::new("/no/such/dir")).unwrap_err().to_string();
        assert!(error.contains("/no/such/dir"), "{error}");
    }
}
