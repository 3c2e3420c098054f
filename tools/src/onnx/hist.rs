//! HistGradientBoosting as one `ai.onnx.ml` opset-5 `TreeEnsemble` in double, plus its output
//! head.
//!
//! sklearn routes a row (`_predict_one_from_raw_data`) in float64, without float32 rounding:
//! - NaN goes to `missing_go_to_left`'s side;
//! - a numeric split sends `x <= num_threshold` left;
//! - a categorical split reads the category `(uint8)x`: left if it is in the split's left
//!   bitset, right if it is another category seen in training, and to the missing side if it
//!   is negative or unknown.
//!
//! Categorical columns go through `Floor` first (the cast truncates; negatives never match a
//! category either way), and each categorical split becomes one `BRANCH_MEMBER` node whose
//! set is chosen so that "not a member" is the missing side: the left categories when missing
//! values go right, the other known categories (routed right) when they go left. NaN never
//! matches a set and takes the false branch, which is then the missing side too.
//!
//! Category codes of 256 and more are unknown here; sklearn's `uint8` cast of such a value is
//! undefined behaviour in C, so no exact answer exists for them.
//!
//! The ensemble writes the raw scores `[N, K]` (each tree's leaves target its class), then
//! `Add` the baseline; a regressor's link (`Exp` for the poisson and gamma losses) follows,
//! and a classifier's scores go to the head every classifier shares.

use super::ML_DOMAIN;
use super::ensemble::{BRANCH_GT, BRANCH_LEQ, BRANCH_MEMBER, Structure};
use super::graph::GraphBuilder;
use super::proto::TensorProto;
use super::proto::tensor_proto::DataType;
use crate::error::ConvertError;
use crate::estimator::{HistGradientBoosting, HistNode, HistOutput, HistTest, HistTree};

/// Appends the ensemble and its link to `g`, writing the regressor's predictions or the
/// classifier's raw scores `[N, n_targets]` to `out` (the classifier's head follows, as for
/// every classifier: [`super::classifier`]).
pub(super) fn ensemble(
    g: &mut GraphBuilder,
    x: &str,
    hist: &HistGradientBoosting,
    n_features: usize,
    out: &str,
) -> Result<(), ConvertError> {
    let raw = raw_scores(g, x, hist, n_features)?;
    let exp = matches!(hist.output, HistOutput::Regression { exp: true });
    let op = if exp { "Exp" } else { "Identity" };
    g.node_into(op, "", &[&raw], vec![], out);
    Ok(())
}

/// Appends the ensemble and returns the name of its raw scores `[N, K]` (baseline added).
pub fn raw_scores(
    g: &mut GraphBuilder,
    x: &str,
    hist: &HistGradientBoosting,
    n_features: usize,
) -> Result<String, ConvertError> {
    let n_scores = hist.baseline.len();
    if hist.trees.is_empty() || n_scores == 0 {
        return Err(invalid("the ensemble has no trees or no baseline".into()));
    }
    if hist.categorical.len() != n_features {
        return Err(invalid(format!(
            "{} categorical flags for {n_features} features",
            hist.categorical.len()
        )));
    }
    let mut s = Structure::default();
    for (t, tree) in hist.trees.iter().enumerate() {
        if tree.class >= n_scores {
            return Err(invalid(format!(
                "tree {t} adds to raw score {} of {n_scores}",
                tree.class
            )));
        }
        add_tree(&mut s, t, tree, hist, n_features)?;
    }
    let input = if hist.categorical.iter().any(|&c| c) {
        let floored = g.node("Floor", "", &[x], vec![]);
        let mask = g.fresh("categorical");
        g.initializers.push(TensorProto {
            name: Some(mask.clone()),
            dims: vec![n_features as i64],
            data_type: Some(DataType::Bool as i32),
            raw_data: Some(hist.categorical.iter().map(|&c| u8::from(c)).collect()),
            ..Default::default()
        });
        g.node("Where", "", &[&mask, &floored, x], vec![])
    } else {
        x.to_string()
    };
    let trees = g.node("TreeEnsemble", ML_DOMAIN, &[&input], s.attributes(n_scores));
    let baseline = g.constant_f64("baseline", &[n_scores], &hist.baseline);
    Ok(g.node("Add", "", &[&trees, &baseline], vec![]))
}

/// Validates one tree and appends its interior nodes and leaves to `s`.
fn add_tree(
    s: &mut Structure,
    t: usize,
    tree: &HistTree,
    hist: &HistGradientBoosting,
    n_features: usize,
) -> Result<(), ConvertError> {
    let n = tree.nodes.len();
    let fail = |reason: String| invalid(format!("tree {t}: {reason}"));
    if n == 0 {
        return Err(fail("has no nodes".into()));
    }
    // sklearn index → (id among this ensemble's interior nodes or leaves, is_leaf).
    let mut slots = Vec::with_capacity(n);
    let (mut interior, mut leaf) = (s.featureids.len() as i64, s.leaf_weights.len() as i64);
    for (i, node) in tree.nodes.iter().enumerate() {
        match node {
            HistNode::Leaf(_) => {
                slots.push((leaf, 1));
                leaf += 1;
            }
            HistNode::Split {
                feature,
                left,
                right,
                test,
                ..
            } => {
                // Children after their parent (as sklearn numbers them) rules out cycles.
                if !(i < *left && *left < n && i < *right && *right < n) {
                    return Err(fail(format!(
                        "node {i} has invalid children {left}, {right}"
                    )));
                }
                if *feature >= n_features {
                    return Err(fail(format!(
                        "node {i} splits on feature {feature}, the model has {n_features}"
                    )));
                }
                let categorical = matches!(test, HistTest::Categorical { .. });
                if categorical != hist.categorical[*feature] {
                    return Err(fail(format!(
                        "node {i}: feature {feature} is not categorical the way its split is"
                    )));
                }
                if matches!(test, HistTest::Numeric(t) if t.is_nan()) {
                    return Err(fail(format!("node {i} has a NaN threshold")));
                }
                slots.push((interior, 0));
                interior += 1;
            }
        }
    }
    match (&tree.nodes[0], slots[0]) {
        (HistNode::Leaf(_), _) if n > 1 => {
            return Err(fail(format!(
                "the root is a leaf but the tree has {n} nodes"
            )));
        }
        (HistNode::Leaf(_), target) => {
            // A single-leaf tree: one split whose both branches reach the leaf.
            s.tree_roots.push(s.featureids.len() as i64);
            s.push(0, BRANCH_LEQ, 0.0, target, target, false);
        }
        (_, (id, _)) => s.tree_roots.push(id),
    }
    for node in &tree.nodes {
        match node {
            HistNode::Leaf(value) => {
                s.leaf_targets.push(tree.class as i64);
                s.leaf_weights.push(*value);
            }
            HistNode::Split {
                feature,
                missing_go_to_left,
                left,
                right,
                test,
            } => {
                let (l, r) = (slots[*left], slots[*right]);
                match test {
                    HistTest::Numeric(threshold) => {
                        s.push(*feature, BRANCH_LEQ, *threshold, l, r, *missing_go_to_left);
                    }
                    HistTest::Categorical { left: set, known } => {
                        // "Not in the set" (NaN included) must be the missing side.
                        let (set, on_true, on_false) = if *missing_go_to_left {
                            let others: Vec<u8> =
                                known.iter().filter(|c| !set.contains(c)).copied().collect();
                            (others, r, l)
                        } else {
                            (set.clone(), l, r)
                        };
                        if set.is_empty() {
                            // Nothing takes the true branch: `x > +inf` never holds.
                            s.push(*feature, BRANCH_GT, f64::INFINITY, on_true, on_false, false);
                        } else {
                            s.push(*feature, BRANCH_MEMBER, 0.0, on_true, on_false, false);
                            s.push_set(&set.iter().map(|&c| f64::from(c)).collect::<Vec<_>>());
                        }
                    }
                }
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
    use crate::estimator::{
        Estimator, HistGradientBoosting, HistNode, HistOutput, HistTest, HistTree,
    };

    /// sklearn's `_predict_one_from_raw_data`, written out.
    fn leaf_value(tree: &HistTree, x: &[f64]) -> f64 {
        let mut i = 0;
        loop {
            let (feature, missing_left, left, right, test) = match &tree.nodes[i] {
                HistNode::Leaf(v) => return *v,
                HistNode::Split {
                    feature,
                    missing_go_to_left,
                    left,
                    right,
                    test,
                } => (*feature, *missing_go_to_left, *left, *right, test),
            };
            let v = x[feature];
            let missing = if missing_left { left } else { right };
            i = if v.is_nan() {
                missing
            } else {
                match test {
                    HistTest::Numeric(t) => {
                        if v <= *t {
                            left
                        } else {
                            right
                        }
                    }
                    HistTest::Categorical { .. } if v < 0.0 => missing,
                    HistTest::Categorical { left: set, known } => {
                        let c = v as u8; // v < 256 in these tests
                        if set.contains(&c) {
                            left
                        } else if known.contains(&c) {
                            right
                        } else {
                            missing
                        }
                    }
                }
            };
        }
    }

    fn reference(h: &HistGradientBoosting, x: &[f64]) -> Vec<f64> {
        let mut raw = h.baseline.clone();
        for tree in &h.trees {
            raw[tree.class] += leaf_value(tree, x);
        }
        raw
    }

    fn split(feature: usize, missing: bool, left: usize, right: usize, test: HistTest) -> HistNode {
        HistNode::Split {
            feature,
            missing_go_to_left: missing,
            left,
            right,
            test,
        }
    }

    fn categories(left: &[u8], known: &[u8]) -> HistTest {
        HistTest::Categorical {
            left: left.to_vec(),
            known: known.to_vec(),
        }
    }

    /// Feature 0 numeric, feature 1 categorical (known 1, 2, 3, 5, 200).
    fn ensemble() -> HistGradientBoosting {
        let known = [1, 2, 3, 5, 200];
        let trees = vec![
            // x0 <= 0.5 (NaN left) ? (x1 in {2, 5}, missing right) : 3
            HistTree {
                class: 0,
                nodes: vec![
                    split(0, true, 1, 4, HistTest::Numeric(0.5)),
                    split(1, false, 2, 3, categories(&[2, 5], &known)),
                    HistNode::Leaf(1.0),
                    HistNode::Leaf(2.0),
                    HistNode::Leaf(3.0),
                ],
            },
            // x1 in {1, 200} (missing and unknown left) ? (x0 <= -1 NaN right) : 30
            HistTree {
                class: 0,
                nodes: vec![
                    split(1, true, 1, 4, categories(&[1, 200], &known)),
                    split(0, false, 2, 3, HistTest::Numeric(-1.0)),
                    HistNode::Leaf(10.0),
                    HistNode::Leaf(20.0),
                    HistNode::Leaf(30.0),
                ],
            },
            // every known category left, missing left: all rows reach 0.25
            HistTree {
                class: 0,
                nodes: vec![
                    split(1, true, 1, 2, categories(&known, &known)),
                    HistNode::Leaf(0.25),
                    HistNode::Leaf(-100.0),
                ],
            },
            // a single leaf
            HistTree {
                class: 0,
                nodes: vec![HistNode::Leaf(0.125)],
            },
        ];
        HistGradientBoosting {
            trees,
            baseline: vec![0.5],
            categorical: vec![false, true],
            output: HistOutput::Regression { exp: false },
        }
    }

    fn rows() -> Vec<Vec<f64>> {
        let mut rows = Vec::new();
        for x0 in [-2.0, -1.0, 0.0, 0.5, 0.5 + 1e-15, 3.0, f64::NAN] {
            for x1 in [
                1.0,
                1.5,
                2.0,
                2.999,
                3.0,
                4.0,
                5.0,
                200.0,
                200.7,
                0.0,
                -0.0,
                -0.5,
                -3.0,
                255.0,
                f64::NAN,
            ] {
                rows.push(vec![x0, x1]);
            }
        }
        rows
    }

    #[test]
    fn routes_nan_numbers_and_categories_like_sklearn() {
        let h = ensemble();
        let rows = rows();
        let got = predict(&model(Estimator::Hist(h.clone()), 2, 1), &rows);
        let expected: Vec<Vec<f64>> = rows.iter().map(|x| reference(&h, x)).collect();
        assert_close(&got, &expected);
        // Spot checks: (0, 2) is in tree 0's left set (1) and a known right category in tree 1 (30);
        // the unknown category 4 goes right in tree 0 (missing right) and left in tree 1 (x0 = 0
        // > -1: 20). Both then add 0.25 + 0.125 + 0.5.
        assert_eq!(got[[2 * 15 + 2, 0]], 1.0 + 30.0 + 0.875);
        assert_eq!(got[[2 * 15 + 5, 0]], 2.0 + 20.0 + 0.875);
    }

    #[test]
    fn log_link_regressors_exponentiate() {
        let mut h = ensemble();
        h.output = HistOutput::Regression { exp: true };
        h.baseline = vec![-30.0];
        let rows = rows();
        let got = predict(&model(Estimator::Hist(h.clone()), 2, 1), &rows);
        let expected: Vec<Vec<f64>> = rows
            .iter()
            .map(|x| vec![reference(&h, x)[0].exp()])
            .collect();
        assert_close(&got, &expected);
    }

    #[test]
    fn broken_trees_are_refused() {
        let source = super::super::Source {
            file_name: "m.pkl".into(),
            sha256: String::new(),
        };
        let check = |h: HistGradientBoosting, needle: &str| {
            let err = super::super::build(&model(Estimator::Hist(h), 2, 1), &source).unwrap_err();
            assert!(matches!(err, ConvertError::InvalidModel(_)), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        };
        let mut cycle = ensemble();
        cycle.trees[0].nodes[1] = split(1, false, 0, 3, categories(&[2], &[2]));
        check(cycle, "node 1 has invalid children 0, 3");
        let mut numeric_on_categorical = ensemble();
        numeric_on_categorical.trees[0].nodes[1] = split(1, false, 2, 3, HistTest::Numeric(1.0));
        check(
            numeric_on_categorical,
            "not categorical the way its split is",
        );
        let mut class = ensemble();
        class.trees[1].class = 1;
        check(class, "tree 1 adds to raw score 1 of 1");
        let mut feature = ensemble();
        feature.trees[0].nodes[0] = split(2, true, 1, 4, HistTest::Numeric(0.5));
        check(feature, "node 0 splits on feature 2, the model has 2");
    }
}
