//! Extracts a typed [`Model`] from the inert object graph of a scikit-learn pickle.
//!
//! Only the estimators listed in [`extract`] are accepted; anything else (another estimator,
//! an unsupported loss, a custom GradientBoosting init) is refused with an error naming it.
//! Per family: [`linear`] (the linear regressors), [`logistic`] (LogisticRegression),
//! [`trees`] (the `tree_` structure, DecisionTree, RandomForest, ExtraTrees, regressors and
//! classifiers), [`boosting`] (GradientBoosting regressor and classifier), [`hist_gradient_boosting`]
//! (HistGradientBoosting regressor and classifier), [`lightgbm`] (LightGBM's LGBMRegressor and
//! LGBMClassifier), [`xgboost`] (XGBoost's wrappers), [`classes`] (a classifier's `classes_`),
//! [`pipeline`] (transformers + a final estimator), [`preprocess`] (the transformers: scalers,
//! SimpleImputer, ColumnTransformer), [`encoders`] (OneHotEncoder, OrdinalEncoder).
//! Nothing here panics on a malformed graph: every access is checked.

mod boosting;
mod classes;
mod encoders;
mod hist_gradient_boosting;
mod lightgbm;
mod linear;
mod logistic;
mod pipeline;
mod preprocess;
mod trees;
mod xgboost;

use crate::estimator::{Classifier, Estimator, Model};
use crate::pickle::{Global, Graph, NdArray, NodeId, Value};

/// Most attributes an estimator's state may have (sklearn's have a few dozen).
const MAX_ATTRIBUTES: usize = 1000;
/// Most tree nodes a model may have in total. Trees shared through the memo are decoded once per
/// use, so this bounds the work as well as the model's size (a file under the reader's 1 GiB
/// cap holds fewer nodes than this).
pub(crate) const MAX_TREE_NODES: usize = 20_000_000;

/// Why a decoded pickle could not become a [`Model`].
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The pickle is a valid estimator we do not convert (the message names it).
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// An attribute is missing or has the wrong type or shape.
    #[error("invalid {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// Turns a decoded pickle into a [`Model`]: one of the estimators [`final_estimator`] lists,
/// or a Pipeline of supported transformers and one of those.
pub fn extract(graph: &Graph) -> Result<Model, ExtractError> {
    let root = graph.root.ok_or_else(|| ExtractError::Invalid {
        path: "pickle".into(),
        reason: "it has no root value".into(),
    })?;
    let object = match Obj::new(graph, root, "model") {
        Ok(object) => object,
        Err(_) => {
            let kind = value(graph, root, "model")
                .map(Value::kind)
                .unwrap_or("value");
            return Err(ExtractError::Unsupported(format!(
                "the pickle holds a {kind}, not a scikit-learn estimator"
            )));
        }
    };
    if object.class_name() == "Pipeline" {
        return pipeline::extract(&object);
    }
    let fitted = final_estimator(&object)?;
    // LightGBM's wrappers are described with their objective, e.g. `LGBMRegressor (poisson)`.
    let kind = match &fitted.estimator {
        Estimator::LightGbm(l) => format!("{} ({})", object.class_name(), l.objective),
        // XGBoost's with theirs and the version, e.g. `XGBRegressor (reg:gamma, XGBoost 3.2.0)`.
        Estimator::XGBoost(b) => format!("{} ({})", object.class_name(), b.about),
        _ => object.class_name().to_owned(),
    };
    Ok(Model {
        kind,
        feature_names: fitted.meta.feature_names,
        n_features: fitted.meta.n_features,
        n_targets: fitted.n_targets,
        sklearn_version: fitted.meta.sklearn_version,
        steps: vec![],
        estimator: fitted.estimator,
        classifier: fitted.classifier,
        accepts_missing: fitted.meta.accepts_missing,
    })
}

/// A final estimator with what it says about its inputs and outputs.
pub(crate) struct Fitted {
    pub estimator: Estimator,
    pub n_targets: usize,
    pub meta: Meta,
    /// How a classifier's `n_targets` scores become its label and probabilities.
    pub classifier: Option<Classifier>,
}

/// The attributes every fitted estimator carries.
pub(crate) struct Meta {
    pub n_features: usize,
    pub feature_names: Option<Vec<String>>,
    pub sklearn_version: String,
    /// Whether sklearn's `predict` accepts NaN in every feature (false unless an extractor
    /// says so).
    pub accepts_missing: bool,
}

/// The linear regressors: `coef_` and `intercept_` make the whole prediction.
const LINEAR_REGRESSORS: &[&str] = &[
    "LinearRegression",
    "Ridge",
    "Lasso",
    "ElasticNet",
    "SGDRegressor",
    "HuberRegressor",
    "BayesianRidge",
    "ARDRegression",
    "LinearSVR",
    "RidgeCV",
    "LassoCV",
    "ElasticNetCV",
    "Lars",
    "LassoLars",
];

/// Extracts a supported final (non-Pipeline) estimator: the [`LINEAR_REGRESSORS`],
/// DecisionTree, RandomForest, ExtraTrees and GradientBoosting regressors and classifiers,
/// and LogisticRegression.
pub(crate) fn final_estimator(object: &Obj<'_>) -> Result<Fitted, ExtractError> {
    match object.class_name() {
        name if LINEAR_REGRESSORS.contains(&name) => linear::extract(object),
        "LogisticRegression" => logistic::extract(object),
        "DecisionTreeRegressor" => trees::decision_tree(object),
        "RandomForestRegressor" => trees::forest(object, "DecisionTreeRegressor"),
        "ExtraTreesRegressor" => trees::forest(object, "ExtraTreeRegressor"),
        "DecisionTreeClassifier" => trees::decision_tree_classifier(object),
        "RandomForestClassifier" => trees::forest_classifier(object, "DecisionTreeClassifier"),
        "ExtraTreesClassifier" => trees::forest_classifier(object, "ExtraTreeClassifier"),
        "GradientBoostingRegressor" => boosting::extract(object),
        "HistGradientBoostingRegressor" | "HistGradientBoostingClassifier" => {
            hist_gradient_boosting::extract(object)
        }
        "GradientBoostingClassifier" => boosting::classifier(object),
        "LGBMRegressor" | "LGBMClassifier" => lightgbm::extract(object),
        "XGBRegressor" | "XGBClassifier" | "XGBRFRegressor" | "XGBRFClassifier" => {
            xgboost::extract(object)
        }
        other => Err(ExtractError::Unsupported(format!(
            "{other} ({}) is not a supported estimator",
            object.class
        ))),
    }
}

// === helpers over the graph ===

pub(crate) fn value<'g>(
    graph: &'g Graph,
    id: NodeId,
    path: &str,
) -> Result<&'g Value, ExtractError> {
    graph.nodes.get(id.0).ok_or_else(|| ExtractError::Invalid {
        path: path.to_owned(),
        reason: "dangling reference".into(),
    })
}

/// An estimator instance in the graph: its class and its `__dict__`, with a path for errors.
pub(crate) struct Obj<'g> {
    pub graph: &'g Graph,
    pub class: &'g Global,
    state: Vec<(&'g str, NodeId)>,
    pub path: String,
}

impl<'g> Obj<'g> {
    /// Wraps the object at `id`, whose BUILD state must be a dict with string keys.
    pub fn new(graph: &'g Graph, id: NodeId, path: &str) -> Result<Self, ExtractError> {
        let invalid = |reason: String| ExtractError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let Value::Object { class, state, .. } = value(graph, id, path)? else {
            let kind = value(graph, id, path)?.kind();
            return Err(invalid(format!("expected an estimator, found a {kind}")));
        };
        let mut entries = Vec::new();
        if let Some(state) = state {
            let Value::Dict(items) = value(graph, *state, path)? else {
                return Err(invalid(format!("{class} state is not a dict")));
            };
            if items.len() > MAX_ATTRIBUTES {
                return Err(invalid(format!(
                    "{class} state has {} attributes",
                    items.len()
                )));
            }
            for (key, val) in items {
                if let Value::Str(key) = value(graph, *key, path)? {
                    entries.push((key.as_str(), *val));
                }
            }
        }
        Ok(Self {
            graph,
            class,
            state: entries,
            path: path.to_owned(),
        })
    }

    pub fn class_name(&self) -> &'g str {
        &self.class.name
    }

    pub fn invalid(&self, attr: &str, reason: impl Into<String>) -> ExtractError {
        ExtractError::Invalid {
            path: format!("{}.{attr}", self.path),
            reason: reason.into(),
        }
    }

    /// The attribute `name`, if present.
    pub fn get(&self, name: &str) -> Option<&'g Value> {
        let id = self.get_id(name)?;
        self.graph.nodes.get(id.0)
    }

    pub fn get_id(&self, name: &str) -> Option<NodeId> {
        self.state.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    pub fn require(&self, name: &str) -> Result<&'g Value, ExtractError> {
        self.get(name)
            .ok_or_else(|| self.invalid(name, format!("{} has no {name}", self.class_name())))
    }

    pub fn array(&self, name: &str) -> Result<&'g NdArray, ExtractError> {
        match self.require(name)? {
            Value::NdArray(a) => Ok(a),
            other => Err(self.invalid(
                name,
                format!("expected an ndarray, found a {}", other.kind()),
            )),
        }
    }

    /// A float attribute: Python float/int or a numpy scalar.
    pub fn float(&self, name: &str) -> Result<f64, ExtractError> {
        let v = self.require(name)?;
        as_f64(v)
            .ok_or_else(|| self.invalid(name, format!("expected a number, found a {}", v.kind())))
    }

    /// A non-negative integer attribute: Python int or a numpy integer scalar.
    pub fn usize(&self, name: &str) -> Result<usize, ExtractError> {
        let v = self.require(name)?;
        let n = match v {
            Value::Int(i) => usize::try_from(*i).ok(),
            Value::NdArray(a) if a.shape.is_empty() => a
                .to_i64()
                .and_then(|v| v.first().and_then(|&x| usize::try_from(x).ok())),
            _ => None,
        };
        n.ok_or_else(|| self.invalid(name, "expected a non-negative integer"))
    }

    pub fn str(&self, name: &str) -> Option<&'g str> {
        match self.get(name)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool, ExtractError> {
        match self.require(name)? {
            Value::Bool(b) => Ok(*b),
            Value::Int(i) => Ok(*i != 0),
            _ => Err(self.invalid(name, "expected a bool")),
        }
    }

    /// The attributes every fitted estimator carries; `derived_features` is the input width
    /// implied by the fitted parameters, checked against `n_features_in_`.
    pub fn meta(&self, derived_features: usize) -> Result<Meta, ExtractError> {
        let n_features = match self.get("n_features_in_") {
            Some(_) => self.usize("n_features_in_")?,
            None => derived_features,
        };
        if n_features != derived_features {
            return Err(self.invalid(
                "n_features_in_",
                format!(
                    "is {n_features} but the fitted parameters use {derived_features} features"
                ),
            ));
        }
        if n_features == 0 {
            return Err(self.invalid("n_features_in_", "the model has no input features"));
        }
        let feature_names = match self.get("feature_names_in_") {
            None | Some(Value::None) => None,
            Some(Value::NdArray(a)) => {
                let names: Option<Vec<String>> = a
                    .objects
                    .iter()
                    .map(|id| match self.graph.nodes.get(id.0) {
                        Some(Value::Str(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                let names = names
                    .filter(|n| a.dtype.kind == 'O' && n.len() == n_features)
                    .ok_or_else(|| {
                        self.invalid(
                            "feature_names_in_",
                            format!("expected {n_features} strings"),
                        )
                    })?;
                Some(names)
            }
            Some(other) => {
                return Err(self.invalid(
                    "feature_names_in_",
                    format!("expected an ndarray, found a {}", other.kind()),
                ));
            }
        };
        Ok(Meta {
            n_features,
            feature_names,
            sklearn_version: self.str("_sklearn_version").unwrap_or_default().to_owned(),
            accepts_missing: false,
        })
    }
}

/// A number from a Python int/float/bool or a numeric numpy scalar.
pub(crate) fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::NdArray(a) if a.shape.is_empty() => a.to_f64()?.first().copied(),
        _ => None,
    }
}

/// Whether `value` is a float NaN (Python float or numpy scalar).
pub(crate) fn is_nan(value: &Value) -> bool {
    as_f64(value).is_some_and(f64::is_nan) && !matches!(value, Value::Int(_) | Value::Bool(_))
}

/// Elements of a float64 array, refusing other dtypes with a message naming `what`.
pub(crate) fn f64_values(
    object: &Obj<'_>,
    attr: &str,
    array: &NdArray,
) -> Result<Vec<f64>, ExtractError> {
    if array.dtype.kind != 'f' {
        return Err(object.invalid(
            attr,
            format!(
                "expected a float array, found dtype kind '{}'",
                array.dtype.kind
            ),
        ));
    }
    array
        .to_f64()
        .ok_or_else(|| object.invalid(attr, "array data does not match its dtype"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_estimator_roots_are_refused() {
        let graph = Graph {
            nodes: vec![Value::List(vec![])],
            root: Some(NodeId(0)),
        };
        let err = extract(&graph).unwrap_err().to_string();
        assert_eq!(
            err,
            "unsupported model: the pickle holds a list, not a scikit-learn estimator"
        );
        let empty = Graph::default();
        assert!(extract(&empty).is_err());
    }

    #[test]
    fn allow_listed_helpers_are_not_models() {
        let graph = Graph {
            nodes: vec![Value::Object {
                class: Global {
                    module: "sklearn.dummy".into(),
                    name: "DummyRegressor".into(),
                },
                args: vec![],
                state: None,
            }],
            root: Some(NodeId(0)),
        };
        let err = extract(&graph).unwrap_err().to_string();
        assert!(
            err.contains("DummyRegressor (sklearn.dummy.DummyRegressor) is not a supported"),
            "{err}"
        );
    }
}
