//! Pipeline: an optional StandardScaler followed by one supported final estimator.

use super::{ExtractError, Obj, describe, f64_values, final_estimator};
use crate::estimator::{Model, StandardScaler};
use crate::pickle::Value;

/// Most steps (passthrough included) a Pipeline may list.
const MAX_STEPS: usize = 16;

/// One non-passthrough step.
struct Step<'g> {
    object: Obj<'g>,
}

/// Extracts `Pipeline([StandardScaler,] estimator)`, skipping `'passthrough'`/None steps.
pub fn extract(pipeline: &Obj<'_>) -> Result<Model, ExtractError> {
    let graph = pipeline.graph;
    let Value::List(items) = pipeline.require("steps")? else {
        return Err(pipeline.invalid("steps", "expected a list"));
    };
    if items.len() > MAX_STEPS {
        return Err(ExtractError::Unsupported(format!(
            "Pipeline with {} steps",
            items.len()
        )));
    }
    let mut steps = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}.steps[{i}]", pipeline.path);
        let Some(Value::Tuple(pair)) = graph.nodes.get(item.0) else {
            return Err(ExtractError::Invalid {
                path,
                reason: "expected a (name, estimator) tuple".into(),
            });
        };
        let (Some(name), Some(estimator)) = (pair.first(), pair.get(1)) else {
            return Err(ExtractError::Invalid {
                path,
                reason: "expected a (name, estimator) tuple".into(),
            });
        };
        let name = match graph.nodes.get(name.0) {
            Some(Value::Str(s)) => s.as_str(),
            _ => "?",
        };
        match graph.nodes.get(estimator.0) {
            Some(Value::None) => continue,
            Some(Value::Str(s)) if s == "passthrough" => continue,
            Some(Value::Object { .. }) => steps.push(Step {
                object: Obj::new(
                    graph,
                    *estimator,
                    &format!("{}.steps[{name:?}]", pipeline.path),
                )?,
            }),
            Some(other) => {
                return Err(ExtractError::Unsupported(format!(
                    "Pipeline step {name:?} is a {}",
                    describe(other)
                )));
            }
            None => {
                return Err(ExtractError::Invalid {
                    path,
                    reason: "dangling reference".into(),
                });
            }
        }
    }
    let names: Vec<&str> = steps.iter().map(|s| s.object.class_name()).collect();
    let kind = format!("Pipeline({})", names.join(", "));
    let (scaler_step, last) = match steps.as_slice() {
        [last] => (None, last),
        [first, last] if first.object.class_name() == "StandardScaler" => (Some(first), last),
        _ => {
            return Err(ExtractError::Unsupported(format!(
                "{kind}: only an optional StandardScaler followed by one supported regressor"
            )));
        }
    };
    if matches!(last.object.class_name(), "Pipeline" | "StandardScaler") {
        return Err(ExtractError::Unsupported(format!(
            "{kind}: the last step must be a supported regressor"
        )));
    }
    let fitted = final_estimator(&last.object)?;
    let (scaler, meta) = match scaler_step {
        Some(step) => {
            let scaler = scaler(&step.object, fitted.meta.n_features)?;
            (Some(scaler), step.object.meta(fitted.meta.n_features)?)
        }
        None => (None, fitted.meta),
    };
    Ok(Model {
        kind,
        feature_names: meta.feature_names,
        n_features: meta.n_features,
        n_targets: fitted.n_targets,
        sklearn_version: pipeline
            .str("_sklearn_version")
            .map(str::to_owned)
            .unwrap_or(meta.sklearn_version),
        scaler,
        estimator: fitted.estimator,
    })
}

/// A fitted StandardScaler of `n_features` columns.
fn scaler(object: &Obj<'_>, n_features: usize) -> Result<StandardScaler, ExtractError> {
    let column = |attr: &str| -> Result<Vec<f64>, ExtractError> {
        let values = f64_values(object, attr, object.array(attr)?)?;
        if values.len() != n_features {
            return Err(object.invalid(
                attr,
                format!("has {} values for {n_features} features", values.len()),
            ));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(object.invalid(attr, "contains a non-finite value"));
        }
        Ok(values)
    };
    let mean = match object.bool("with_mean")? {
        true => Some(column("mean_")?),
        false => None,
    };
    let scale = match object.bool("with_std")? {
        true => {
            let scale = column("scale_")?;
            if scale.contains(&0.0) {
                return Err(object.invalid("scale_", "contains a zero"));
            }
            Some(scale)
        }
        false => None,
    };
    Ok(StandardScaler { mean, scale })
}
