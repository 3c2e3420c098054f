//! Fitted sklearn trees (`tree_`), DecisionTreeRegressor and the forests.
//!
//! Nodes are decoded by field name and offset from the pickled record dtype, so both the
//! 56-byte (sklearn 1.2) and the 64-byte (>= 1.3, with `missing_go_to_left`) layouts work.

use super::{ExtractError, Fitted, MAX_TREE_NODES, Obj, describe, f64_values};
use crate::estimator::{Aggregate, Estimator, Tree, TreeEnsemble};
use crate::pickle::Value;

/// TREE_LEAF in sklearn: the child index of a leaf.
const LEAF: i64 = -1;

/// A decoded tree and its output count.
pub struct DecodedTree {
    pub tree: Tree,
    pub n_outputs: usize,
}

/// Decodes the `tree_` of a fitted DecisionTreeRegressor/ExtraTreeRegressor; `budget` is the
/// number of tree nodes the whole model may still have.
pub fn decode_tree(
    estimator: &Obj<'_>,
    n_features: usize,
    budget: &mut usize,
) -> Result<DecodedTree, ExtractError> {
    let id = estimator
        .get_id("tree_")
        .ok_or_else(|| estimator.invalid("tree_", "the tree is not fitted (no tree_)"))?;
    let tree = Obj::new(estimator.graph, id, &format!("{}.tree_", estimator.path))?;
    if tree.class_name() != "Tree" {
        return Err(tree.invalid("", format!("expected a sklearn Tree, found {}", tree.class)));
    }
    let nodes = tree.array("nodes")?;
    let n = nodes.shape.first().copied().unwrap_or(0);
    if nodes.shape.len() != 1 || n == 0 || nodes.dtype.fields.is_empty() {
        return Err(tree.invalid("nodes", "expected a non-empty 1-D record array"));
    }
    *budget = budget.checked_sub(n).ok_or_else(|| {
        ExtractError::Unsupported(format!(
            "models with more than {MAX_TREE_NODES} tree nodes in total"
        ))
    })?;
    let int_field = |name: &str| {
        nodes
            .field_i64(name)
            .filter(|v| v.len() == n)
            .ok_or_else(|| tree.invalid("nodes", format!("no integer field {name:?}")))
    };
    let left = int_field("left_child")?;
    let right = int_field("right_child")?;
    let feature = int_field("feature")?;
    let threshold = nodes
        .field_f64("threshold")
        .filter(|v| v.len() == n)
        .ok_or_else(|| tree.invalid("nodes", "no float field \"threshold\""))?;
    let missing_go_to_left = match nodes
        .dtype
        .fields
        .iter()
        .any(|f| f.name == "missing_go_to_left")
    {
        true => Some(
            int_field("missing_go_to_left")?
                .into_iter()
                .map(|v| v != 0)
                .collect(),
        ),
        false => None,
    };

    let values = tree.array("values")?;
    let n_outputs = match values.shape.as_slice() {
        [count, outputs, 1] if *count == n && *outputs > 0 => *outputs,
        shape => {
            return Err(tree.invalid(
                "values",
                format!("shape {shape:?} is not [{n}, n_outputs, 1] (a regression tree)"),
            ));
        }
    };
    let flat = f64_values(&tree, "values", values)?;
    let values: Vec<Vec<f64>> = flat.chunks_exact(n_outputs).map(<[f64]>::to_vec).collect();

    // Structural checks, so routing always terminates and indexes stay in range: children
    // come after their parent (as sklearn builds them), leaves have no children.
    for i in 0..n {
        let (l, r, f, t) = (left[i], right[i], feature[i], threshold[i]);
        let is_leaf = l == LEAF;
        let ok = if is_leaf {
            r == LEAF
        } else {
            let child_ok = |c: i64| usize::try_from(c).is_ok_and(|c| c > i && c < n);
            child_ok(l)
                && child_ok(r)
                && usize::try_from(f).is_ok_and(|f| f < n_features)
                && !t.is_nan()
        };
        if !ok {
            return Err(tree.invalid(
                "nodes",
                format!(
                    "node {i} is inconsistent (left {l}, right {r}, feature {f}, threshold {t})"
                ),
            ));
        }
    }
    Ok(DecodedTree {
        tree: Tree {
            left,
            right,
            feature,
            threshold,
            missing_go_to_left,
            values,
        },
        n_outputs,
    })
}

/// The input width a tree estimator was fit with.
fn tree_features(estimator: &Obj<'_>) -> Result<usize, ExtractError> {
    if estimator.get("n_features_in_").is_some() {
        return estimator.usize("n_features_in_");
    }
    estimator.usize("n_features_")
}

/// A single DecisionTreeRegressor.
pub fn decision_tree(object: &Obj<'_>) -> Result<Fitted, ExtractError> {
    let n_features = tree_features(object)?;
    let mut budget = MAX_TREE_NODES;
    let decoded = decode_tree(object, n_features, &mut budget)?;
    let meta = object.meta(n_features)?;
    Ok(Fitted {
        n_targets: decoded.n_outputs,
        estimator: Estimator::Trees(TreeEnsemble {
            trees: vec![decoded.tree],
            aggregate: Aggregate::Average,
            leaf_scale: 1.0,
            base: vec![0.0; decoded.n_outputs],
        }),
        meta,
    })
}

/// RandomForestRegressor / ExtraTreesRegressor: the mean of `estimators_`, each a `member`.
pub fn forest(object: &Obj<'_>, member: &str) -> Result<Fitted, ExtractError> {
    let n_features = tree_features(object)?;
    let members = match object.require("estimators_")? {
        Value::List(items) => items,
        other => {
            return Err(object.invalid(
                "estimators_",
                format!("expected a list, found a {}", describe(other)),
            ));
        }
    };
    if members.is_empty() {
        return Err(object.invalid("estimators_", "the forest has no trees"));
    }
    let mut budget = MAX_TREE_NODES;
    let mut trees = Vec::with_capacity(members.len());
    let mut n_targets = None;
    for (i, id) in members.iter().enumerate() {
        let estimator = Obj::new(
            object.graph,
            *id,
            &format!("{}.estimators_[{i}]", object.path),
        )?;
        if estimator.class_name() != member {
            return Err(ExtractError::Unsupported(format!(
                "{} member {i} is a {}, expected {member}",
                object.class_name(),
                estimator.class
            )));
        }
        let decoded = decode_tree(&estimator, n_features, &mut budget)?;
        if *n_targets.get_or_insert(decoded.n_outputs) != decoded.n_outputs {
            return Err(estimator.invalid("tree_", "trees disagree on the number of outputs"));
        }
        trees.push(decoded.tree);
    }
    let n_targets = n_targets.unwrap_or(1);
    let meta = object.meta(n_features)?;
    Ok(Fitted {
        estimator: Estimator::Trees(TreeEnsemble {
            trees,
            aggregate: Aggregate::Average,
            leaf_scale: 1.0,
            base: vec![0.0; n_targets],
        }),
        n_targets,
        meta,
    })
}
