//! A LightGBM booster as one `ai.onnx.ml` opset-5 `TreeEnsemble` in double, plus its link.
//!
//! LightGBM (`Tree::NumericalDecision`, `Tree::CategoricalDecision`, and the C API's row
//! reader, which drops `|x| <= kZeroThreshold`) routes a row like this:
//! - every value with `|x| <= 1e-35f` is read as 0 (NaN stays NaN);
//! - a numeric node with `missing_type` None reads NaN as 0 and sends `x <= threshold` left;
//!   with Zero, 0 and NaN go to the default side; with NaN, NaN does;
//! - a categorical node sends NaN and negative `(int)x` right, and `(int)x` left iff its bit
//!   is set in the node's bitset.
//!
//! The graph prepares one variant of the input per rule in use, side by side, and each node
//! reads its feature in its rule's variant: `z` = the input with tiny values zeroed;
//! None: `z` with NaN → 0; NaN: `z`; Zero: `z` with 0 → NaN (so "missing" is always NaN,
//! which `nodes_missing_value_tracks_true` sends to the default side); categorical: `z`
//! truncated toward zero as C does (`Floor` for positives, `Ceil` for negatives, `+ 0.0` so
//! that `-0.0` is 0), tested with `BRANCH_MEMBER` (true = left; NaN is never a member). A value
//! too large for C's `int` is never a member either, as on x86 where the cast gives `INT_MIN`.
//!
//! Each tree's leaves target raw score `tree index % n_scores`; the sum starts at 0 as
//! LightGBM's does. Then the link: identity, `Exp`, `Sigmoid(scale * raw)`, or for a
//! classifier the scores `scale * raw` for the shared head ([`super::classifier`]).

use super::ML_DOMAIN;
use super::ensemble::{BRANCH_GT, BRANCH_LEQ, BRANCH_MEMBER, Structure};
use super::graph::{GraphBuilder, attr_int};
use crate::error::ConvertError;
use crate::estimator::{
    LightGbm, LightGbmChild, LightGbmMissing, LightGbmOutput, LightGbmTest, LightGbmTree,
};

/// LightGBM's `kZeroThreshold` (`1e-35f`, a float widened to double).
pub const ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;
/// Most category values in all `BRANCH_MEMBER` sets together.
const MAX_MEMBERS: usize = 4_000_000;

/// The input variants, in the order they are concatenated when used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    NanAsZero,
    Raw,
    ZeroAsNan,
    Truncated,
}

const VARIANTS: [Variant; 4] = [
    Variant::NanAsZero,
    Variant::Raw,
    Variant::ZeroAsNan,
    Variant::Truncated,
];

/// Appends the ensemble and its link to `g`, writing a regressor's predictions or a
/// classifier's scores `[N, n_scores]` to `out`.
pub(super) fn ensemble(
    g: &mut GraphBuilder,
    x: &str,
    lgb: &LightGbm,
    n_features: usize,
    out: &str,
) -> Result<(), ConvertError> {
    if lgb.trees.is_empty() || lgb.n_scores == 0 {
        return Err(invalid("the booster has no trees".into()));
    }
    let used = used_variants(lgb);
    let column = |variant: Variant, feature: usize| {
        let slot = used.iter().position(|&v| v == variant).unwrap_or(0);
        slot * n_features + feature
    };
    let mut s = Structure::default();
    for (t, tree) in lgb.trees.iter().enumerate() {
        add_tree(&mut s, t, tree, t % lgb.n_scores, n_features, &column)?;
    }
    if s.membership.len() > MAX_MEMBERS {
        return Err(invalid(format!(
            "the categorical splits list more than {MAX_MEMBERS} categories in all"
        )));
    }

    let input = variants(g, x, &used);
    let raw = g.node(
        "TreeEnsemble",
        ML_DOMAIN,
        &[&input],
        s.attributes(lgb.n_scores),
    );
    let scaled = |g: &mut GraphBuilder, scale: f64| {
        if scale == 1.0 {
            raw.clone()
        } else {
            let factor = g.constant_f64("sigmoid", &[1], &[scale]);
            g.node("Mul", "", &[&raw, &factor], vec![])
        }
    };
    match lgb.output {
        LightGbmOutput::Identity => g.node_into("Identity", "", &[&raw], vec![], out),
        LightGbmOutput::Exp => g.node_into("Exp", "", &[&raw], vec![], out),
        LightGbmOutput::Sigmoid { scale } => {
            let scores = scaled(g, scale);
            g.node_into("Sigmoid", "", &[&scores], vec![], out);
        }
        LightGbmOutput::Scores { scale } => {
            let scores = scaled(g, scale);
            g.node_into("Identity", "", &[&scores], vec![], out);
        }
    }
    Ok(())
}

/// The variants the trees read, in [`VARIANTS`] order.
fn used_variants(lgb: &LightGbm) -> Vec<Variant> {
    let mut used = [false; 4];
    for node in lgb.trees.iter().flat_map(|t| &t.nodes) {
        used[variant_of(&node.test) as usize] = true;
    }
    let mut out: Vec<Variant> = VARIANTS.into_iter().filter(|v| used[*v as usize]).collect();
    if out.is_empty() {
        out.push(Variant::Raw); // only single-leaf trees
    }
    out
}

fn variant_of(test: &LightGbmTest) -> Variant {
    match test {
        LightGbmTest::Numeric { missing, .. } => match missing {
            LightGbmMissing::None => Variant::NanAsZero,
            LightGbmMissing::NaN => Variant::Raw,
            LightGbmMissing::Zero => Variant::ZeroAsNan,
        },
        LightGbmTest::Categorical { .. } => Variant::Truncated,
    }
}

/// Appends the input variants and returns the name of their concatenation `[N, k * F]`.
fn variants(g: &mut GraphBuilder, x: &str, used: &[Variant]) -> String {
    let zero = g.constant_f64("zero", &[1], &[0.0]);
    let tiny = g.constant_f64("zero_threshold", &[1], &[ZERO_THRESHOLD]);
    let magnitude = g.node("Abs", "", &[x], vec![]);
    let is_tiny = g.node("LessOrEqual", "", &[&magnitude, &tiny], vec![]);
    let z = g.node("Where", "", &[&is_tiny, &zero, x], vec![]);
    let parts: Vec<String> = used
        .iter()
        .map(|variant| match variant {
            Variant::Raw => z.clone(),
            Variant::NanAsZero => {
                let nan = g.node("IsNaN", "", &[&z], vec![]);
                g.node("Where", "", &[&nan, &zero, &z], vec![])
            }
            Variant::ZeroAsNan => {
                let nan = g.constant_f64("nan", &[1], &[f64::NAN]);
                let is_zero = g.node("Equal", "", &[&z, &zero], vec![]);
                g.node("Where", "", &[&is_zero, &nan, &z], vec![])
            }
            Variant::Truncated => {
                let negative = g.node("Less", "", &[&z, &zero], vec![]);
                let up = g.node("Ceil", "", &[&z], vec![]);
                let down = g.node("Floor", "", &[&z], vec![]);
                let truncated = g.node("Where", "", &[&negative, &up, &down], vec![]);
                g.node("Add", "", &[&truncated, &zero], vec![])
            }
        })
        .collect();
    if parts.len() == 1 {
        return parts[0].clone();
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    g.node("Concat", "", &refs, vec![attr_int("axis", 1)])
}

/// Validates one tree and appends its nodes and leaves to `s`.
fn add_tree(
    s: &mut Structure,
    t: usize,
    tree: &LightGbmTree,
    target: usize,
    n_features: usize,
    column: &dyn Fn(Variant, usize) -> usize,
) -> Result<(), ConvertError> {
    let fail = |reason: String| invalid(format!("tree {t}: {reason}"));
    let n = tree.nodes.len();
    if tree.leaves.len() != n + 1 {
        return Err(fail(format!(
            "{} leaves for {n} internal nodes",
            tree.leaves.len()
        )));
    }
    let (node_base, leaf_base) = (s.featureids.len() as i64, s.leaf_weights.len() as i64);
    let slot = |c: LightGbmChild| match c {
        LightGbmChild::Node(i) => (node_base + i as i64, 0),
        LightGbmChild::Leaf(l) => (leaf_base + l as i64, 1),
    };
    s.tree_roots.push(node_base);
    if n == 0 {
        // A single leaf: one split whose both branches reach it.
        let leaf = slot(LightGbmChild::Leaf(0));
        s.push(0, BRANCH_LEQ, 0.0, leaf, leaf, false);
    }
    for (i, node) in tree.nodes.iter().enumerate() {
        for child in [node.left, node.right] {
            let fits = match child {
                LightGbmChild::Node(c) => i < c && c < n,
                LightGbmChild::Leaf(l) => l <= n,
            };
            if !fits {
                return Err(fail(format!("node {i} has an invalid child {child:?}")));
            }
        }
        if node.feature >= n_features {
            return Err(fail(format!(
                "node {i} splits on feature {}, the model has {n_features}",
                node.feature
            )));
        }
        let (left, right) = (slot(node.left), slot(node.right));
        let feature = column(variant_of(&node.test), node.feature);
        match &node.test {
            LightGbmTest::Numeric {
                threshold,
                missing,
                default_left,
            } => {
                if threshold.is_nan() {
                    return Err(fail(format!("node {i} has a NaN threshold")));
                }
                let missing_left = *default_left && *missing != LightGbmMissing::None;
                s.push(feature, BRANCH_LEQ, *threshold, left, right, missing_left);
            }
            LightGbmTest::Categorical { categories } if categories.is_empty() => {
                // Nothing goes left: `x > +inf` never holds.
                s.push(feature, BRANCH_GT, f64::INFINITY, left, right, false);
            }
            LightGbmTest::Categorical { categories } => {
                s.push(feature, BRANCH_MEMBER, 0.0, left, right, false);
                let set: Vec<f64> = categories.iter().map(|&c| f64::from(c)).collect();
                s.push_set(&set);
            }
        }
    }
    for &value in &tree.leaves {
        s.leaf_targets.push(target as i64);
        s.leaf_weights.push(value);
    }
    Ok(())
}

fn invalid(reason: String) -> ConvertError {
    ConvertError::InvalidModel(reason)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_close, model, predict};
    use super::ZERO_THRESHOLD;
    use crate::estimator::{
        Estimator, LightGbm, LightGbmChild, LightGbmMissing, LightGbmNode, LightGbmOutput,
        LightGbmTest, LightGbmTree,
    };

    /// LightGBM's `Tree::GetLeaf` after its row reader, written out from `tree.h`.
    fn leaf_value(tree: &LightGbmTree, row: &[f64]) -> f64 {
        let mut node = 0;
        loop {
            let Some(n) = tree.nodes.get(node) else {
                return tree.leaves[0];
            };
            let raw = row[n.feature];
            let mut x = if raw.abs() <= ZERO_THRESHOLD {
                0.0
            } else {
                raw
            };
            let left = match &n.test {
                LightGbmTest::Numeric {
                    threshold,
                    missing,
                    default_left,
                } => {
                    if x.is_nan() && *missing != LightGbmMissing::NaN {
                        x = 0.0;
                    }
                    let is_missing = match missing {
                        LightGbmMissing::Zero => x.abs() <= ZERO_THRESHOLD,
                        LightGbmMissing::NaN => x.is_nan(),
                        LightGbmMissing::None => false,
                    };
                    if is_missing {
                        *default_left
                    } else {
                        x <= *threshold
                    }
                }
                LightGbmTest::Categorical { categories } => {
                    // C's cast: truncation; out of int range gives INT_MIN on x86.
                    let c = if !(-2147483648.0..2147483648.0).contains(&x) {
                        i32::MIN
                    } else {
                        x as i32
                    };
                    c >= 0 && categories.contains(&(c as u32))
                }
            };
            let child = if left { n.left } else { n.right };
            match child {
                LightGbmChild::Node(i) => node = i,
                LightGbmChild::Leaf(l) => return tree.leaves[l],
            }
        }
    }

    fn numeric(
        feature: usize,
        threshold: f64,
        missing: LightGbmMissing,
        left: bool,
    ) -> LightGbmTest {
        let _ = feature;
        LightGbmTest::Numeric {
            threshold,
            missing,
            default_left: left,
        }
    }

    fn node(
        feature: usize,
        left: LightGbmChild,
        right: LightGbmChild,
        test: LightGbmTest,
    ) -> LightGbmNode {
        LightGbmNode {
            feature,
            left,
            right,
            test,
        }
    }

    /// One tree per rule, each splitting feature 0 or 1 at an edge value.
    fn booster() -> LightGbm {
        use LightGbmChild::{Leaf, Node};
        let mut trees = Vec::new();
        for (i, missing) in [
            LightGbmMissing::None,
            LightGbmMissing::Zero,
            LightGbmMissing::NaN,
        ]
        .into_iter()
        .enumerate()
        {
            for default_left in [false, true] {
                for threshold in [-ZERO_THRESHOLD, 0.0, ZERO_THRESHOLD, 1.5] {
                    let scale = (trees.len() + 1) as f64;
                    trees.push(LightGbmTree {
                        nodes: vec![
                            node(
                                i % 2,
                                Node(1),
                                Leaf(2),
                                numeric(i % 2, threshold, missing, default_left),
                            ),
                            node(
                                1,
                                Leaf(0),
                                Leaf(1),
                                numeric(1, -0.5, missing, !default_left),
                            ),
                        ],
                        leaves: vec![scale, 10.0 * scale, 100.0 * scale],
                    });
                }
            }
        }
        trees.push(LightGbmTree {
            nodes: vec![node(
                0,
                Leaf(0),
                Leaf(1),
                LightGbmTest::Categorical {
                    categories: vec![0, 2, 33],
                },
            )],
            leaves: vec![1000.0, 2000.0],
        });
        trees.push(LightGbmTree {
            nodes: vec![node(
                1,
                Leaf(0),
                Leaf(1),
                LightGbmTest::Categorical { categories: vec![] },
            )],
            leaves: vec![-1.0, -2.0],
        });
        trees.push(LightGbmTree {
            nodes: vec![],
            leaves: vec![0.125],
        });
        LightGbm {
            objective: "regression".into(),
            trees,
            n_scores: 1,
            output: LightGbmOutput::Identity,
        }
    }

    fn rows() -> Vec<Vec<f64>> {
        let values = [
            f64::NAN,
            0.0,
            -0.0,
            1e-36,
            -1e-36,
            ZERO_THRESHOLD,
            -ZERO_THRESHOLD,
            2e-35,
            -2e-35,
            -0.5,
            -0.7,
            -1.0,
            0.5,
            1.5,
            2.0,
            2.9,
            33.2,
            34.0,
            3e9,
            -3e9,
        ];
        let mut rows = Vec::new();
        for a in values {
            for b in values {
                rows.push(vec![a, b]);
            }
        }
        rows
    }

    #[test]
    fn routes_every_missing_rule_and_category_like_lightgbm() {
        let b = booster();
        let rows = rows();
        let got = predict(&model(Estimator::LightGbm(b.clone()), 2, 1), &rows);
        let expected: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| vec![b.trees.iter().map(|t| leaf_value(t, r)).sum::<f64>()])
            .collect();
        assert_close(&got, &expected);
    }

    #[test]
    fn links_apply_after_the_sum() {
        let mut b = booster();
        for tree in &mut b.trees {
            for v in &mut tree.leaves {
                *v *= 1e-3;
            }
        }
        let rows = rows();
        let raw: Vec<f64> = rows
            .iter()
            .map(|r| b.trees.iter().map(|t| leaf_value(t, r)).sum::<f64>())
            .collect();
        for (output, link) in [
            (LightGbmOutput::Exp, (|x: f64| x.exp()) as fn(f64) -> f64),
            (LightGbmOutput::Sigmoid { scale: 0.5 }, |x: f64| {
                1.0 / (1.0 + (-0.5 * x).exp())
            }),
        ] {
            b.output = output;
            let got = predict(&model(Estimator::LightGbm(b.clone()), 2, 1), &rows);
            let expected: Vec<Vec<f64>> = raw.iter().map(|&x| vec![link(x)]).collect();
            assert_close(&got, &expected);
        }
    }
}
