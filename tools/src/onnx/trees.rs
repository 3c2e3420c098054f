//! Tree ensembles as `ai.onnx.ml` opset-5 `TreeEnsemble` nodes in double.
//!
//! sklearn compares `(double)(float)x <= threshold`, so the input first goes through
//! `Cast(FLOAT) → Cast(DOUBLE)` and the float64 thresholds are kept as they are. NaN follows
//! `missing_go_to_left` (sklearn ≥ 1.3) through `nodes_missing_value_tracks_true`. One
//! `TreeEnsemble` is emitted per target (their `[N, 1]` outputs are concatenated): a v5 leaf
//! carries a single target, and `AVERAGE` divides by the number of trees in the node.

use super::graph::{GraphBuilder, attr_int, attr_ints, attr_tensor, tensor_f64, tensor_u8};
use crate::error::ConvertError;
use crate::estimator::{Aggregate, Tree, TreeEnsemble};

const ML_DOMAIN: &str = super::ML_DOMAIN;
/// `nodes_modes` value for `x <= split`.
const BRANCH_LEQ: u8 = 0;
/// `aggregate_function` values.
const AVERAGE: i64 = 0;
const SUM: i64 = 1;

/// The per-target-independent part of the `TreeEnsemble` attributes.
#[derive(Debug, Default)]
struct Structure {
    tree_roots: Vec<i64>,
    featureids: Vec<i64>,
    splits: Vec<f64>,
    truenodeids: Vec<i64>,
    trueleafs: Vec<i64>,
    falsenodeids: Vec<i64>,
    falseleafs: Vec<i64>,
    missing_tracks_true: Vec<i64>,
    /// `(tree, sklearn node)` of every leaf, in `leaf_*` order.
    leaves: Vec<(usize, usize)>,
}

/// Appends the ensemble to the graph, writing `[N, n_targets]` to `output`.
pub fn ensemble(
    g: &mut GraphBuilder,
    x: &str,
    ensemble: &TreeEnsemble,
    n_features: usize,
    n_targets: usize,
    output: &str,
) -> Result<(), ConvertError> {
    if ensemble.trees.is_empty() {
        return Err(invalid("the ensemble has no trees".into()));
    }
    if ensemble.base.len() != n_targets {
        return Err(invalid(format!(
            "base has {} values, expected {n_targets}",
            ensemble.base.len()
        )));
    }
    if !ensemble.leaf_scale.is_finite() {
        return Err(invalid("leaf scale (learning rate) is not finite".into()));
    }
    let mut structure = Structure::default();
    for (t, tree) in ensemble.trees.iter().enumerate() {
        add_tree(&mut structure, t, tree, n_features, n_targets)?;
    }

    let rounded = g.round_to_float32(x);
    let aggregate = match ensemble.aggregate {
        Aggregate::Average => AVERAGE,
        Aggregate::Sum => SUM,
    };
    let has_base = ensemble.base.iter().any(|b| *b != 0.0);
    // With one target and no base the ensemble writes the graph output itself.
    let direct = n_targets == 1 && !has_base;
    let mut per_target = Vec::with_capacity(n_targets);
    for target in 0..n_targets {
        let weights: Vec<f64> = structure
            .leaves
            .iter()
            .map(|&(t, node)| ensemble.trees[t].values[node][target] * ensemble.leaf_scale)
            .collect();
        let name = if direct {
            output.to_string()
        } else {
            g.fresh("trees")
        };
        let attributes = attributes(&structure, weights, aggregate);
        g.node_into("TreeEnsemble", ML_DOMAIN, &[&rounded], attributes, &name);
        per_target.push(name);
    }
    if direct {
        return Ok(());
    }
    let per_target: Vec<&str> = per_target.iter().map(String::as_str).collect();
    let joined = match per_target.as_slice() {
        [single] => single.to_string(),
        many if has_base => g.node("Concat", "", many, vec![attr_int("axis", 1)]),
        many => {
            g.node_into("Concat", "", many, vec![attr_int("axis", 1)], output);
            return Ok(());
        }
    };
    let base = g.constant_f64("base", &[n_targets], &ensemble.base);
    g.node_into("Add", "", &[&joined, &base], vec![], output);
    Ok(())
}

fn attributes(
    s: &Structure,
    weights: Vec<f64>,
    aggregate: i64,
) -> Vec<super::proto::AttributeProto> {
    let n_leaves = weights.len();
    vec![
        attr_int("n_targets", 1),
        attr_int("aggregate_function", aggregate),
        attr_int("post_transform", 0),
        attr_ints("tree_roots", s.tree_roots.clone()),
        attr_ints("nodes_featureids", s.featureids.clone()),
        attr_tensor("nodes_splits", tensor_f64(&[s.splits.len()], &s.splits)),
        attr_tensor(
            "nodes_modes",
            tensor_u8(&vec![BRANCH_LEQ; s.featureids.len()]),
        ),
        attr_ints("nodes_truenodeids", s.truenodeids.clone()),
        attr_ints("nodes_trueleafs", s.trueleafs.clone()),
        attr_ints("nodes_falsenodeids", s.falsenodeids.clone()),
        attr_ints("nodes_falseleafs", s.falseleafs.clone()),
        attr_ints(
            "nodes_missing_value_tracks_true",
            s.missing_tracks_true.clone(),
        ),
        attr_ints("leaf_targetids", vec![0; n_leaves]),
        attr_tensor("leaf_weights", tensor_f64(&[n_leaves], &weights)),
    ]
}

/// Validates one sklearn tree and appends its interior nodes and leaves to `s`.
fn add_tree(
    s: &mut Structure,
    t: usize,
    tree: &Tree,
    n_features: usize,
    n_targets: usize,
) -> Result<(), ConvertError> {
    let n = tree.left.len();
    let fail = |reason: String| invalid(format!("tree {t}: {reason}"));
    if n == 0 {
        return Err(fail("has no nodes".into()));
    }
    let lengths = [
        ("right", tree.right.len()),
        ("feature", tree.feature.len()),
        ("threshold", tree.threshold.len()),
        ("value", tree.values.len()),
    ];
    for (what, len) in lengths {
        if len != n {
            return Err(fail(format!("{what} has {len} entries, left has {n}")));
        }
    }
    if let Some(missing) = &tree.missing_go_to_left
        && missing.len() != n
    {
        return Err(fail(format!(
            "missing_go_to_left has {} entries, left has {n}",
            missing.len()
        )));
    }

    // sklearn index → position among this ensemble's interior nodes or leaves.
    #[derive(Clone, Copy)]
    enum Slot {
        Interior(i64),
        Leaf(i64),
    }
    let mut slots = Vec::with_capacity(n);
    let mut interior = s.featureids.len() as i64;
    let mut leaf = s.leaves.len() as i64;
    for i in 0..n {
        let (l, r) = (tree.left[i], tree.right[i]);
        if l == -1 && r == -1 {
            if tree.values[i].len() != n_targets {
                return Err(fail(format!(
                    "leaf {i} has {} values, expected {n_targets}",
                    tree.values[i].len()
                )));
            }
            slots.push(Slot::Leaf(leaf));
            leaf += 1;
        } else {
            // sklearn numbers children after their parent; requiring it rules out cycles.
            let child_ok = |c: i64| c > i as i64 && (c as usize) < n;
            if !child_ok(l) || !child_ok(r) {
                return Err(fail(format!("node {i} has invalid children {l}, {r}")));
            }
            let feature = tree.feature[i];
            if feature < 0 || feature as usize >= n_features {
                return Err(fail(format!(
                    "node {i} splits on feature {feature}, the model has {n_features}"
                )));
            }
            if tree.threshold[i].is_nan() {
                return Err(fail(format!("node {i} has a NaN threshold")));
            }
            slots.push(Slot::Interior(interior));
            interior += 1;
        }
    }

    let target = |slot: Slot| match slot {
        Slot::Interior(id) => (id, 0),
        Slot::Leaf(id) => (id, 1),
    };
    match slots[0] {
        Slot::Leaf(_) if n > 1 => {
            return Err(fail(format!(
                "the root is a leaf but the tree has {n} nodes"
            )));
        }
        Slot::Leaf(id) => {
            // A single-leaf tree: one split whose both branches reach the leaf.
            s.tree_roots.push(s.featureids.len() as i64);
            s.featureids.push(0);
            s.splits.push(0.0);
            s.truenodeids.push(id);
            s.trueleafs.push(1);
            s.falsenodeids.push(id);
            s.falseleafs.push(1);
            s.missing_tracks_true.push(0);
        }
        Slot::Interior(id) => s.tree_roots.push(id),
    }
    for (i, slot) in slots.iter().enumerate() {
        match slot {
            Slot::Leaf(_) => s.leaves.push((t, i)),
            Slot::Interior(_) => {
                let (true_id, true_leaf) = target(slots[tree.left[i] as usize]);
                let (false_id, false_leaf) = target(slots[tree.right[i] as usize]);
                s.featureids.push(tree.feature[i]);
                s.splits.push(tree.threshold[i]);
                s.truenodeids.push(true_id);
                s.trueleafs.push(true_leaf);
                s.falsenodeids.push(false_id);
                s.falseleafs.push(false_leaf);
                let goes_left = tree.missing_go_to_left.as_ref().is_some_and(|m| m[i]);
                s.missing_tracks_true.push(i64::from(goes_left));
            }
        }
    }
    Ok(())
}

fn invalid(reason: String) -> ConvertError {
    ConvertError::InvalidModel(reason)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_close, model, predict};
    use crate::error::ConvertError;
    use crate::estimator::{Aggregate, Estimator, Tree, TreeEnsemble};

    const LEAF: i64 = -1;

    /// sklearn's routing: `(double)(float)x <= t`, NaN per `missing_go_to_left` (right if None).
    fn leaf_of(tree: &Tree, x: &[f64]) -> usize {
        let mut i = 0;
        while tree.left[i] != LEAF {
            let v = x[tree.feature[i] as usize] as f32 as f64;
            let left = if v.is_nan() {
                tree.missing_go_to_left.as_ref().is_some_and(|m| m[i])
            } else {
                v <= tree.threshold[i]
            };
            i = if left { tree.left[i] } else { tree.right[i] } as usize;
        }
        i
    }

    /// sklearn's ensemble arithmetic: trees summed in order, then averaged or scaled + base.
    fn reference(e: &TreeEnsemble, x: &[f64], target: usize) -> f64 {
        match e.aggregate {
            Aggregate::Average => {
                let sum: f64 = e
                    .trees
                    .iter()
                    .map(|t| t.values[leaf_of(t, x)][target])
                    .sum();
                sum / e.trees.len() as f64
            }
            Aggregate::Sum => e.trees.iter().fold(e.base[target], |acc, t| {
                acc + e.leaf_scale * t.values[leaf_of(t, x)][target]
            }),
        }
    }

    /// x0 <= 0.1 ? (x1 <= -2.5 ? 10 : 20) : 30, NaN per `missing`.
    fn small_tree(missing: Option<Vec<bool>>) -> Tree {
        Tree {
            left: vec![1, 3, LEAF, LEAF, LEAF],
            right: vec![2, 4, LEAF, LEAF, LEAF],
            feature: vec![0, 1, -2, -2, -2],
            threshold: vec![0.1, -2.5, -2.0, -2.0, -2.0],
            missing_go_to_left: missing,
            values: vec![vec![0.0], vec![0.0], vec![30.0], vec![10.0], vec![20.0]],
        }
    }

    fn single(tree: Tree) -> TreeEnsemble {
        TreeEnsemble {
            trees: vec![tree],
            aggregate: Aggregate::Average,
            leaf_scale: 1.0,
            base: vec![0.0],
        }
    }

    fn values(got: &ndarray::Array2<f64>) -> Vec<f64> {
        got.column(0).to_vec()
    }

    #[test]
    fn thresholds_compare_after_float32_rounding() {
        // 0.1 is not a float32: float32(0.1) = 0.10000000149 > 0.1. sklearn rounds x first, so
        // 0.1 - 1e-9 (which rounds up to float32(0.1)) goes right, although it is below 0.1.
        let e = single(small_tree(Some(vec![false; 5])));
        let rows = vec![
            vec![0.1 - 1e-9, -3.0],
            vec![0.1 - 1e-8, -3.0],
            vec![0.1, -3.0],
            vec![0.1 + 1e-9, -3.0],
            vec![0.1f32 as f64, -3.0],
            vec![0.099_999_994_039_535_52, -3.0], // the float32 just below 0.1
            vec![-1.0, -2.5],
            vec![-1.0, -2.5 + 1e-9],
            vec![-1.0, -2.5 - 1e-9],
        ];
        let got = predict(&model(Estimator::Trees(e.clone()), 2, 1), &rows);
        assert_eq!(
            values(&got),
            [30.0, 10.0, 30.0, 30.0, 30.0, 10.0, 10.0, 10.0, 10.0]
        );
        let expected: Vec<f64> = rows.iter().map(|x| reference(&e, x, 0)).collect();
        assert_eq!(values(&got), expected);
    }

    #[test]
    fn nan_routes_like_sklearn_both_ways() {
        let rows = vec![
            vec![f64::NAN, -3.0],
            vec![f64::NAN, 0.0],
            vec![f64::NAN, f64::NAN],
            vec![0.0, f64::NAN],
            vec![5.0, f64::NAN],
        ];
        // Root sends NaN left, its left child sends NaN right.
        let e = single(small_tree(Some(vec![true, false, false, false, false])));
        let got = predict(&model(Estimator::Trees(e.clone()), 2, 1), &rows);
        assert_eq!(values(&got), [10.0, 20.0, 20.0, 20.0, 30.0]);
        let expected: Vec<f64> = rows.iter().map(|x| reference(&e, x, 0)).collect();
        assert_eq!(values(&got), expected);

        // The opposite directions.
        let e = single(small_tree(Some(vec![false, true, false, false, false])));
        let got = predict(&model(Estimator::Trees(e), 2, 1), &rows);
        assert_eq!(values(&got), [30.0, 30.0, 30.0, 10.0, 30.0]);

        // Trees from sklearn < 1.3 have no missing_go_to_left: NaN <= t is false, go right.
        let e = single(small_tree(None));
        let got = predict(&model(Estimator::Trees(e), 2, 1), &rows);
        assert_eq!(values(&got), [30.0, 30.0, 30.0, 20.0, 30.0]);
    }

    fn forest_trees() -> Vec<Tree> {
        let mut a = small_tree(Some(vec![true, false, false, false, false]));
        a.values = vec![vec![0.0], vec![0.0], vec![0.1], vec![0.7], vec![1.3]];
        let mut b = small_tree(None);
        b.threshold = vec![0.3, 1.7, 0.0, 0.0, 0.0];
        b.feature = vec![1, 0, -2, -2, -2];
        b.values = vec![vec![0.0], vec![0.0], vec![2.2], vec![-0.3], vec![1.0 / 3.0]];
        let single_leaf = Tree {
            left: vec![LEAF],
            right: vec![LEAF],
            feature: vec![-2],
            threshold: vec![-2.0],
            missing_go_to_left: Some(vec![false]),
            values: vec![vec![0.2]],
        };
        vec![a, b, single_leaf]
    }

    fn grid() -> Vec<Vec<f64>> {
        let mut rows = Vec::new();
        for x0 in [-1.0, 0.1 - 1e-9, 0.1, 0.2, 1.7, 1.7 + 1e-9, 3.0, f64::NAN] {
            for x1 in [-3.0, -2.5, 0.3 - 1e-9, 0.3, 1.0, f64::NAN] {
                rows.push(vec![x0, x1]);
            }
        }
        rows
    }

    #[test]
    fn forest_averages_its_trees() {
        let e = TreeEnsemble {
            trees: forest_trees(),
            aggregate: Aggregate::Average,
            leaf_scale: 1.0,
            base: vec![0.0],
        };
        let rows = grid();
        let got = predict(&model(Estimator::Trees(e.clone()), 2, 1), &rows);
        let expected: Vec<Vec<f64>> = rows.iter().map(|x| vec![reference(&e, x, 0)]).collect();
        assert_close(&got, &expected);
        // x = (-1, -3): leaves 0.7, -0.3 and the single leaf 0.2.
        assert!((got[[0, 0]] - (0.7 - 0.3 + 0.2) / 3.0).abs() < 1e-15);
    }

    #[test]
    fn boosting_sums_scaled_leaves_and_adds_the_base() {
        let e = TreeEnsemble {
            trees: forest_trees(),
            aggregate: Aggregate::Sum,
            leaf_scale: 0.1,
            base: vec![3.25],
        };
        let rows = grid();
        let got = predict(&model(Estimator::Trees(e.clone()), 2, 1), &rows);
        let expected: Vec<Vec<f64>> = rows.iter().map(|x| vec![reference(&e, x, 0)]).collect();
        assert_close(&got, &expected);
        assert!((got[[0, 0]] - (3.25 + 0.07 - 0.03 + 0.02)).abs() < 1e-14);
    }

    #[test]
    fn multi_target_trees() {
        let mut trees = forest_trees();
        for tree in &mut trees {
            for v in &mut tree.values {
                v.push(-10.0 * v[0] + 1.0);
            }
        }
        let rows = grid();
        for (aggregate, base) in [
            (Aggregate::Average, vec![0.0, 0.0]),
            (Aggregate::Sum, vec![1.0, -2.0]),
        ] {
            let e = TreeEnsemble {
                trees: trees.clone(),
                aggregate,
                leaf_scale: 0.5,
                base,
            };
            let e = if aggregate == Aggregate::Average {
                TreeEnsemble {
                    leaf_scale: 1.0,
                    ..e
                }
            } else {
                e
            };
            let got = predict(&model(Estimator::Trees(e.clone()), 2, 2), &rows);
            assert_eq!(got.dim(), (rows.len(), 2));
            let expected: Vec<Vec<f64>> = rows
                .iter()
                .map(|x| vec![reference(&e, x, 0), reference(&e, x, 1)])
                .collect();
            assert_close(&got, &expected);
        }
    }

    #[test]
    fn broken_trees_are_refused() {
        let source = super::super::Source {
            file_name: "m.pkl".into(),
            sha256: String::new(),
        };
        let check = |tree: Tree, needle: &str| {
            let m = model(Estimator::Trees(single(tree)), 2, 1);
            let err = super::super::build(&m, &source).unwrap_err();
            assert!(matches!(err, ConvertError::InvalidModel(_)), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        };
        let mut cycle = small_tree(None);
        cycle.left[1] = 0;
        check(cycle, "node 1 has invalid children 0, 4");
        let mut feature = small_tree(None);
        feature.feature[0] = 2;
        check(feature, "node 0 splits on feature 2, the model has 2");
        let mut short = small_tree(None);
        short.threshold.pop();
        check(short, "threshold has 4 entries, left has 5");
        let mut nan = small_tree(None);
        nan.threshold[1] = f64::NAN;
        check(nan, "node 1 has a NaN threshold");
    }
}
