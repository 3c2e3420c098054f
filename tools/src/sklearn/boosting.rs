//! GradientBoostingRegressor: `init_` constant plus `learning_rate` times each stage's tree.

use super::trees::decode_tree;
use super::{ExtractError, Fitted, MAX_TREE_NODES, Obj, f64_values};
use crate::estimator::{Aggregate, Estimator, TreeEnsemble};
use crate::pickle::Value;

/// Losses whose link is the identity and whose trees predict raw values directly.
const LOSSES: &[&str] = &["squared_error", "absolute_error"];

/// Extracts a GradientBoostingRegressor with loss squared_error/absolute_error.
pub fn extract(object: &Obj<'_>) -> Result<Fitted, ExtractError> {
    let loss = object.str("loss").unwrap_or("squared_error");
    if !LOSSES.contains(&loss) {
        return Err(ExtractError::Unsupported(format!(
            "GradientBoostingRegressor with loss={loss:?} (supported: {})",
            LOSSES.join(", ")
        )));
    }
    let init_id = object
        .get_id("init_")
        .ok_or_else(|| object.invalid("init_", "the model is not fitted (no init_)"))?;
    let base = match object.require("init_")? {
        Value::Str(s) if s == "zero" => 0.0,
        Value::Object { .. } => {
            let init = Obj::new(object.graph, init_id, &format!("{}.init_", object.path))?;
            if init.class_name() != "DummyRegressor" {
                return Err(ExtractError::Unsupported(format!(
                    "GradientBoostingRegressor with a custom init estimator {}",
                    init.class
                )));
            }
            let constant = f64_values(&init, "constant_", init.array("constant_")?)?;
            match constant.as_slice() {
                [c] => *c,
                other => {
                    return Err(init.invalid(
                        "constant_",
                        format!("expected 1 value, found {}", other.len()),
                    ));
                }
            }
        }
        other => {
            return Err(object.invalid(
                "init_",
                format!(
                    "expected 'zero' or a DummyRegressor, found a {}",
                    other.kind()
                ),
            ));
        }
    };
    let learning_rate = object.float("learning_rate")?;
    if !learning_rate.is_finite() {
        return Err(object.invalid("learning_rate", "is not finite"));
    }
    let n_features = match object.get("n_features_in_") {
        Some(_) => object.usize("n_features_in_")?,
        None => object.usize("n_features_")?,
    };
    let stages = object.array("estimators_")?;
    let (n_stages, per_stage) = match stages.shape.as_slice() {
        [s, k] if stages.dtype.kind == 'O' && stages.objects.len() == s * k => (*s, *k),
        shape => {
            return Err(object.invalid(
                "estimators_",
                format!("expected an object array (n_stages, 1), found shape {shape:?}"),
            ));
        }
    };
    if per_stage != 1 || n_stages == 0 {
        return Err(object.invalid(
            "estimators_",
            format!("shape [{n_stages}, {per_stage}] is not a fitted regressor"),
        ));
    }
    let mut budget = MAX_TREE_NODES;
    let mut trees = Vec::with_capacity(n_stages);
    for (i, id) in stages.objects.iter().enumerate() {
        let stage = Obj::new(
            object.graph,
            *id,
            &format!("{}.estimators_[{i}, 0]", object.path),
        )?;
        if stage.class_name() != "DecisionTreeRegressor" {
            return Err(ExtractError::Unsupported(format!(
                "GradientBoostingRegressor stage {i} is a {}",
                stage.class
            )));
        }
        let decoded = decode_tree(&stage, n_features, &mut budget)?;
        if decoded.n_outputs != 1 {
            return Err(stage.invalid("tree_", "a boosting stage must have one output"));
        }
        trees.push(decoded.tree);
    }
    let meta = object.meta(n_features)?;
    Ok(Fitted {
        estimator: Estimator::Trees(TreeEnsemble {
            trees,
            aggregate: Aggregate::Sum,
            leaf_scale: learning_rate,
            base: vec![base],
        }),
        n_targets: 1,
        meta,
    })
}
