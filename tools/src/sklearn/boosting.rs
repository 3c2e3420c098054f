//! GradientBoosting: `init_` constant plus `learning_rate` times each stage's tree(s).
//!
//! A regressor has one tree per stage. A classifier has one per stage on two classes (the
//! log-odds of `classes_[1]`) and one per class and stage otherwise (each class's raw score);
//! [`classifier`] turns `init_`'s class priors into the raw scores sklearn starts from.

use super::trees::decode_tree;
use super::{ExtractError, Fitted, MAX_TREE_NODES, Obj, classes, f64_values};
use crate::estimator::{
    Aggregate, Classifier, Estimator, LabelRule, Probabilities, Tree, TreeEnsemble,
};
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
    let n_features = boosting_features(object)?;
    let trees = stage_trees(object, n_features, 1)?;
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
        classifier: None,
    })
}

fn boosting_features(object: &Obj<'_>) -> Result<usize, ExtractError> {
    match object.get("n_features_in_") {
        Some(_) => object.usize("n_features_in_"),
        None => object.usize("n_features_"),
    }
}

/// The trees of `estimators_` (`[n_stages, per_stage]` DecisionTreeRegressors), stage by
/// stage; tree `(stage, k)` gets `per_stage` values per node, its own in column `k` and zeros
/// elsewhere, so that summing every tree per column sums each column's own trees.
fn stage_trees(
    object: &Obj<'_>,
    n_features: usize,
    per_stage: usize,
) -> Result<Vec<Tree>, ExtractError> {
    let class = object.class_name();
    let stages = object.array("estimators_")?;
    let (n_stages, found) = match stages.shape.as_slice() {
        [s, k] if stages.dtype.kind == 'O' && stages.objects.len() == s * k => (*s, *k),
        shape => {
            return Err(object.invalid(
                "estimators_",
                format!("expected an object array (n_stages, {per_stage}), found shape {shape:?}"),
            ));
        }
    };
    if found != per_stage || n_stages == 0 {
        return Err(object.invalid(
            "estimators_",
            format!("shape [{n_stages}, {found}] is not a fitted {class} ({per_stage} per stage)"),
        ));
    }
    let mut budget = MAX_TREE_NODES;
    let mut trees = Vec::with_capacity(n_stages * per_stage);
    for (i, id) in stages.objects.iter().enumerate() {
        let (stage, k) = (i / per_stage, i % per_stage);
        let path = format!("{}.estimators_[{stage}, {k}]", object.path);
        let tree = Obj::new(object.graph, *id, &path)?;
        if tree.class_name() != "DecisionTreeRegressor" {
            return Err(ExtractError::Unsupported(format!(
                "{class} stage {stage} is a {}",
                tree.class
            )));
        }
        let mut decoded = decode_tree(&tree, n_features, &mut budget)?;
        if decoded.n_outputs != 1 {
            return Err(tree.invalid("tree_", "a boosting stage must have one output"));
        }
        if per_stage > 1 {
            for values in &mut decoded.tree.values {
                let mut row = vec![0.0; per_stage];
                row[k] = values[0];
                *values = row;
            }
        }
        trees.push(decoded.tree);
    }
    Ok(trees)
}

/// float32's machine epsilon, with which sklearn clips the prior probabilities.
const F32_EPS: f64 = f32::EPSILON as f64;

/// Extracts a GradientBoostingClassifier (loss `log_loss`, or `deviance` before sklearn 1.3).
pub fn classifier(object: &Obj<'_>) -> Result<Fitted, ExtractError> {
    let loss = object.str("loss").unwrap_or("log_loss");
    if !matches!(loss, "log_loss" | "deviance") {
        return Err(ExtractError::Unsupported(format!(
            "GradientBoostingClassifier with loss={loss:?} (supported: log_loss)"
        )));
    }
    let classes = classes::classes(object)?;
    let n_classes = classes.len();
    let binary = n_classes == 2;
    let per_stage = if binary { 1 } else { n_classes };
    // sklearn < 1.4 keeps its loss in `sklearn.ensemble._gb_losses`: the initial multiclass
    // scores are log-priors and a binary label is the larger probability.
    let old_losses = object.get_id("_loss").is_some_and(|id| {
        matches!(object.graph.nodes.get(id.0),
            Some(Value::Object { class, .. }) if class.module == "sklearn.ensemble._gb_losses")
    });
    let base = initial_scores(object, n_classes, old_losses)?;
    let learning_rate = object.float("learning_rate")?;
    if !learning_rate.is_finite() {
        return Err(object.invalid("learning_rate", "is not finite"));
    }
    let n_features = boosting_features(object)?;
    let trees = stage_trees(object, n_features, per_stage)?;
    let meta = object.meta(n_features)?;
    let (probabilities, label) = match (binary, old_losses) {
        (true, true) => (Probabilities::BinaryExpit, LabelRule::ArgmaxProbabilities),
        (true, false) => (Probabilities::BinaryExpit, LabelRule::NonNegative),
        (false, _) => (Probabilities::Softmax, LabelRule::ArgmaxScores),
    };
    Ok(Fitted {
        estimator: Estimator::Trees(TreeEnsemble {
            trees,
            aggregate: Aggregate::Sum,
            leaf_scale: learning_rate,
            base,
        }),
        n_targets: per_stage,
        meta,
        classifier: Some(Classifier {
            classes,
            probabilities,
            label,
        }),
    })
}

/// The raw scores sklearn starts from: zeros for `init='zero'`; otherwise from the class
/// priors `p` of the `DummyClassifier(strategy='prior')` in `init_`, clipped to
/// `[eps, 1 - eps]`: the log-odds of `p[1]` on two classes; on more, `log(p)` (sklearn < 1.4)
/// or `log(p / gmean(p))` (sklearn >= 1.4).
fn initial_scores(
    object: &Obj<'_>,
    n_classes: usize,
    old_losses: bool,
) -> Result<Vec<f64>, ExtractError> {
    let init_id = object
        .get_id("init_")
        .ok_or_else(|| object.invalid("init_", "the model is not fitted (no init_)"))?;
    let per_stage = if n_classes == 2 { 1 } else { n_classes };
    let priors = match object.require("init_")? {
        Value::Str(s) if s == "zero" => return Ok(vec![0.0; per_stage]),
        Value::Object { .. } => {
            let init = Obj::new(object.graph, init_id, &format!("{}.init_", object.path))?;
            let strategy = init.str("strategy").unwrap_or("prior");
            if init.class_name() != "DummyClassifier" || strategy != "prior" {
                return Err(ExtractError::Unsupported(format!(
                    "GradientBoostingClassifier with a custom init estimator {} (strategy {strategy:?})",
                    init.class
                )));
            }
            let priors = f64_values(&init, "class_prior_", init.array("class_prior_")?)?;
            if priors.len() != n_classes || priors.iter().any(|p| !p.is_finite()) {
                return Err(init.invalid(
                    "class_prior_",
                    format!("expected {n_classes} finite priors, found {priors:?}"),
                ));
            }
            priors
        }
        other => {
            return Err(object.invalid(
                "init_",
                format!(
                    "expected 'zero' or a DummyClassifier, found a {}",
                    other.kind()
                ),
            ));
        }
    };
    let clipped: Vec<f64> = priors
        .iter()
        .map(|p| p.clamp(F32_EPS, 1.0 - F32_EPS))
        .collect();
    Ok(match n_classes {
        2 => vec![(clipped[1] / (1.0 - clipped[1])).ln()],
        _ if old_losses => clipped.iter().map(|p| p.ln()).collect(),
        _ => {
            let mean_log = clipped.iter().map(|p| p.ln()).sum::<f64>() / n_classes as f64;
            let gmean = mean_log.exp();
            clipped.iter().map(|p| (p / gmean).ln()).collect()
        }
    })
}
