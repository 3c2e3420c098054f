//! Fitted sklearn trees (`tree_`), DecisionTree and the forests (regressors and classifiers).
//!
//! Nodes are decoded by field name and offset from the pickled record dtype, so both the
//! 56-byte (sklearn 1.2) and the 64-byte (>= 1.3, with `missing_go_to_left`) layouts work.
//! A classifier's tree holds per node the (weighted) class counts, or fractions since sklearn
//! 1.4; its leaves become class probabilities here as sklearn's `predict_proba` computes them
//! (`value / value.sum()`), and a forest averages them over its trees.

use super::{ExtractError, Fitted, MAX_TREE_NODES, Obj, classes, f64_values};
use crate::estimator::{
    Aggregate, Classifier, Estimator, LabelRule, Probabilities, Tree, TreeEnsemble,
};
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
    decode(estimator, n_features, budget, None)
}

/// Decodes `tree_` as [`decode_tree`]; with `n_classes`, the tree is a single-output
/// classifier's (values `[n, 1, n_classes]`, one value per class and node).
fn decode(
    estimator: &Obj<'_>,
    n_features: usize,
    budget: &mut usize,
    n_classes: Option<usize>,
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
    let (n_outputs, width) = match (values.shape.as_slice(), n_classes) {
        ([count, outputs, 1], None) if *count == n && *outputs > 0 => (*outputs, *outputs),
        ([count, 1, classes], Some(expected)) if *count == n && *classes == expected => {
            (1, expected)
        }
        (shape, None) => {
            return Err(tree.invalid(
                "values",
                format!("shape {shape:?} is not [{n}, n_outputs, 1] (a regression tree)"),
            ));
        }
        (shape, Some(classes)) => {
            return Err(tree.invalid(
                "values",
                format!("shape {shape:?} is not [{n}, 1, {classes}] (a single-output classifier)"),
            ));
        }
    };
    let flat = f64_values(&tree, "values", values)?;
    let values: Vec<Vec<f64>> = flat.chunks_exact(width).map(<[f64]>::to_vec).collect();

    // Structural checks, so routing always terminates and indexes stay in range: children
    // come after their parent (as sklearn builds them), leaves have no children.
    let rows = left.iter().zip(&right).zip(&feature).zip(&threshold);
    for (i, (((&l, &r), &f), &t)) in rows.enumerate() {
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

/// Whether sklearn's `predict` of this single tree accepts NaN: trees that record
/// `missing_go_to_left` (sklearn >= 1.3) and were grown by the best splitter (a random
/// splitter's trees refuse NaN in sklearn 1.3-1.5).
fn single_tree_accepts_missing(object: &Obj<'_>, tree: &Tree) -> bool {
    tree.missing_go_to_left.is_some() && object.str("splitter").unwrap_or("best") == "best"
}

/// A single DecisionTreeRegressor.
pub fn decision_tree(object: &Obj<'_>) -> Result<Fitted, ExtractError> {
    let n_features = tree_features(object)?;
    let mut budget = MAX_TREE_NODES;
    let decoded = decode_tree(object, n_features, &mut budget)?;
    let mut meta = object.meta(n_features)?;
    meta.accepts_missing = single_tree_accepts_missing(object, &decoded.tree);
    Ok(Fitted {
        classifier: None,
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
    let trees = forest_trees(object, member, n_features, None)?;
    let n_targets = trees.first().map_or(1, |t| t.values[0].len());
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
        classifier: None,
    })
}

/// A single DecisionTreeClassifier: its leaves' class probabilities.
pub fn decision_tree_classifier(object: &Obj<'_>) -> Result<Fitted, ExtractError> {
    let n_features = tree_features(object)?;
    let classes = classifier_classes(object)?;
    let mut budget = MAX_TREE_NODES;
    let mut decoded = decode(object, n_features, &mut budget, Some(classes.len()))?;
    normalise_leaves(&mut decoded.tree);
    let mut meta = object.meta(n_features)?;
    meta.accepts_missing = single_tree_accepts_missing(object, &decoded.tree);
    Ok(tree_classifier(vec![decoded.tree], classes, meta))
}

/// RandomForestClassifier / ExtraTreesClassifier: the mean over `estimators_` (each a
/// `member`) of each tree's class probabilities.
pub fn forest_classifier(object: &Obj<'_>, member: &str) -> Result<Fitted, ExtractError> {
    let n_features = tree_features(object)?;
    let classes = classifier_classes(object)?;
    let mut trees = forest_trees(object, member, n_features, Some(classes.len()))?;
    trees.iter_mut().for_each(normalise_leaves);
    let meta = object.meta(n_features)?;
    Ok(tree_classifier(trees, classes, meta))
}

/// The classes of a single-output tree classifier.
fn classifier_classes(
    object: &Obj<'_>,
) -> Result<Vec<onnx_model::contract::ClassLabel>, ExtractError> {
    if object.get("n_outputs_").is_some() && object.usize("n_outputs_")? != 1 {
        return Err(ExtractError::Unsupported(format!(
            "{} with several outputs (multi-output classification)",
            object.class_name()
        )));
    }
    classes::classes(object)
}

/// Trees whose leaves hold class probabilities, averaged; the label is the first most
/// probable class (`classes_[argmax(predict_proba)]`).
fn tree_classifier(
    trees: Vec<Tree>,
    classes: Vec<onnx_model::contract::ClassLabel>,
    meta: super::Meta,
) -> Fitted {
    let n_classes = classes.len();
    Fitted {
        estimator: Estimator::Trees(TreeEnsemble {
            trees,
            aggregate: Aggregate::Average,
            leaf_scale: 1.0,
            base: vec![0.0; n_classes],
        }),
        n_targets: n_classes,
        meta,
        classifier: Some(Classifier {
            classes,
            probabilities: Probabilities::Scores,
            label: LabelRule::ArgmaxProbabilities,
        }),
    }
}

/// sklearn's `predict_proba` of one tree: each node's values divided by their sum (a sum of
/// zero divides by one), summed in class order as numpy does for a handful of classes.
fn normalise_leaves(tree: &mut Tree) {
    for values in &mut tree.values {
        let sum: f64 = values.iter().sum();
        let normaliser = if sum == 0.0 { 1.0 } else { sum };
        values.iter_mut().for_each(|v| *v /= normaliser);
    }
}

/// The decoded trees of a forest's `estimators_`, each a `member`.
fn forest_trees(
    object: &Obj<'_>,
    member: &str,
    n_features: usize,
    n_classes: Option<usize>,
) -> Result<Vec<Tree>, ExtractError> {
    let members = match object.require("estimators_")? {
        Value::List(items) => items,
        other => {
            return Err(object.invalid(
                "estimators_",
                format!("expected a list, found a {}", other.kind()),
            ));
        }
    };
    if members.is_empty() {
        return Err(object.invalid("estimators_", "the forest has no trees"));
    }
    let mut budget = MAX_TREE_NODES;
    let mut trees = Vec::with_capacity(members.len());
    let mut n_targets: Option<usize> = None;
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
        let decoded = decode(&estimator, n_features, &mut budget, n_classes)?;
        if *n_targets.get_or_insert(decoded.n_outputs) != decoded.n_outputs {
            return Err(estimator.invalid("tree_", "trees disagree on the number of outputs"));
        }
        trees.push(decoded.tree);
    }
    Ok(trees)
}

#[cfg(test)]
mod tests {
    use super::super::extract;
    use crate::estimator::Estimator;
    use crate::pickle::{Dtype, Field, Global, Graph, NdArray, NodeId, Value};

    fn dtype(kind: char, itemsize: usize) -> Dtype {
        Dtype {
            kind,
            itemsize,
            fields: vec![],
        }
    }

    /// A DecisionTreeRegressor graph over 2 features with the given (left, right, feature,
    /// threshold, missing_go_to_left) rows and one value per node.
    fn tree_graph(rows: &[(i64, i64, i64, f64, u8)]) -> Graph {
        let fields = [
            ("left_child", dtype('i', 8), 0),
            ("right_child", dtype('i', 8), 8),
            ("feature", dtype('i', 8), 16),
            ("threshold", dtype('f', 8), 24),
            ("missing_go_to_left", dtype('u', 1), 32),
        ];
        let mut data = Vec::new();
        for &(l, r, f, t, m) in rows {
            data.extend(l.to_le_bytes());
            data.extend(r.to_le_bytes());
            data.extend(f.to_le_bytes());
            data.extend(t.to_le_bytes());
            data.push(m);
            data.extend([0; 7]);
        }
        let n = rows.len();
        let record = Dtype {
            kind: 'V',
            itemsize: 40,
            fields: fields
                .into_iter()
                .map(|(name, dtype, offset)| Field {
                    name: name.into(),
                    dtype,
                    offset,
                })
                .collect(),
        };
        let values: Vec<u8> = (0..n).flat_map(|i| (i as f64).to_le_bytes()).collect();
        let mut nodes = vec![
            Value::NdArray(NdArray {
                dtype: record,
                shape: vec![n],
                data,
                objects: vec![],
            }),
            Value::NdArray(NdArray {
                dtype: dtype('f', 8),
                shape: vec![n, 1, 1],
                data: values,
                objects: vec![],
            }),
            Value::Str("nodes".into()),
            Value::Str("values".into()),
            Value::Dict(vec![(NodeId(2), NodeId(0)), (NodeId(3), NodeId(1))]),
        ];
        let object = |name: &str, state: usize| Value::Object {
            class: Global {
                module: "sklearn.test".into(),
                name: name.into(),
            },
            args: vec![],
            state: Some(NodeId(state)),
        };
        nodes.push(object("Tree", 4)); // 5
        nodes.push(Value::Str("tree_".into())); // 6
        nodes.push(Value::Str("n_features_in_".into())); // 7
        nodes.push(Value::Int(2)); // 8
        nodes.push(Value::Dict(vec![
            (NodeId(6), NodeId(5)),
            (NodeId(7), NodeId(8)),
        ])); // 9
        nodes.push(object("DecisionTreeRegressor", 9)); // 10
        Graph {
            nodes,
            root: Some(NodeId(10)),
        }
    }

    #[test]
    fn nodes_decode_by_field_name() {
        let model = extract(&tree_graph(&[
            (1, 2, 1, 0.5, 1),
            (-1, -1, -2, -2.0, 0),
            (-1, -1, -2, -2.0, 0),
        ]))
        .unwrap();
        let Estimator::Trees(ensemble) = model.estimator else {
            panic!("not trees")
        };
        let tree = &ensemble.trees[0];
        assert_eq!(tree.left, vec![1, -1, -1]);
        assert_eq!(tree.feature, vec![1, -2, -2]);
        assert_eq!(tree.threshold[0], 0.5);
        assert_eq!(tree.missing_go_to_left, Some(vec![true, false, false]));
        assert_eq!(tree.values, vec![vec![0.0], vec![1.0], vec![2.0]]);
    }

    #[test]
    fn inconsistent_nodes_are_refused() {
        let bad = [
            // a child pointing back at its parent (a routing loop)
            vec![(1, 2, 0, 0.5, 0), (0, 2, 0, 0.5, 0), (-1, -1, -2, -2.0, 0)],
            // a child out of range
            vec![(1, 9, 0, 0.5, 0), (-1, -1, -2, -2.0, 0)],
            // a feature the model does not have
            vec![
                (1, 2, 7, 0.5, 0),
                (-1, -1, -2, -2.0, 0),
                (-1, -1, -2, -2.0, 0),
            ],
            // a NaN threshold
            vec![
                (1, 2, 0, f64::NAN, 0),
                (-1, -1, -2, -2.0, 0),
                (-1, -1, -2, -2.0, 0),
            ],
            // half a leaf
            vec![(-1, 1, 0, 0.5, 0), (-1, -1, -2, -2.0, 0)],
        ];
        for rows in bad {
            let err = extract(&tree_graph(&rows)).unwrap_err().to_string();
            assert!(err.contains("is inconsistent"), "{err}");
        }
    }
}
