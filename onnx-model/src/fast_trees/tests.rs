//! The compiled kernel against the operator as ONNX states it, walked row by row from the
//! attributes themselves; its refusals; its threads.

use super::compile::*;
use super::ensemble::*;
use proptest::prelude::*;

/// The operator as ONNX states it, walked one row and one tree at a time from the
/// attributes themselves.
fn reference(a: &Attributes, row: &[f64]) -> Vec<f64> {
    let sets = member_sets(a).unwrap();
    let mut out = vec![0.0; a.n_targets as usize];
    for &root in &a.tree_roots {
        let mut i = root as usize;
        loop {
            let x = row[a.nodes_featureids[i] as usize];
            let t = a.nodes_splits[i];
            let mut goes_true = match a.nodes_modes[i] {
                BRANCH_LEQ => x <= t,
                BRANCH_LT => x < t,
                BRANCH_GTE => x >= t,
                BRANCH_GT => x > t,
                BRANCH_EQ => x == t,
                BRANCH_NEQ => x != t,
                BRANCH_MEMBER => sets[i].as_ref().unwrap().contains(&x),
                other => panic!("mode {other}"),
            };
            if a.nodes_missing_value_tracks_true.get(i) == Some(&1) && x.is_nan() {
                goes_true = true;
            }
            let (id, leaf) = if goes_true {
                (a.nodes_truenodeids[i], a.nodes_trueleafs[i])
            } else {
                (a.nodes_falsenodeids[i], a.nodes_falseleafs[i])
            };
            if leaf == 1 {
                out[a.leaf_targetids[id as usize] as usize] += a.leaf_weights[id as usize];
                break;
            }
            i = id as usize;
        }
    }
    if a.aggregate_function == AVERAGE {
        for v in &mut out {
            *v /= a.tree_roots.len() as f64;
        }
    }
    out
}

/// A small deterministic generator, seeded by proptest.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
    fn pick(&mut self, values: &[f64]) -> f64 {
        values[self.below(values.len())]
    }
}

/// Split values and inputs share these, so that ties, signed zeros and NaN all occur.
const VALUES: [f64; 9] = [-2.0, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0, f64::INFINITY, 7.25];

/// A random ensemble of `trees` trees over `features` features.
fn random_ensemble(rng: &mut Rng, trees: usize, features: usize, targets: usize) -> Attributes {
    let mut a = Attributes {
        n_targets: targets as i64,
        aggregate_function: if rng.below(4) == 0 { AVERAGE } else { SUM },
        ..Attributes::default()
    };
    // A third of the ensembles only compare (every tree walked in lanes); in the others, half
    // the trees only compare, half use every mode.
    let only_compare = rng.below(3) == 0;
    for _ in 0..trees {
        let depth = 1 + rng.below(8);
        let modes = if only_compare || rng.below(2) == 0 {
            4
        } else {
            7
        };
        a.tree_roots.push(a.nodes_featureids.len() as i64);
        grow(rng, &mut a, depth, features, targets, modes);
    }
    a
}

/// Appends a node and its subtree; returns the node's index.
fn grow(
    rng: &mut Rng,
    a: &mut Attributes,
    depth: usize,
    features: usize,
    targets: usize,
    modes: usize,
) -> i64 {
    let i = a.nodes_featureids.len();
    // Modes 0..4 are the comparisons.
    let mode = rng.below(modes) as u8;
    a.nodes_featureids.push(rng.below(features) as i64);
    a.nodes_splits.push(rng.pick(&VALUES));
    a.nodes_modes.push(mode);
    a.nodes_missing_value_tracks_true.push(rng.below(2) as i64);
    if mode == BRANCH_MEMBER {
        if !a.membership_values.is_empty() {
            a.membership_values.push(f64::NAN);
        }
        for _ in 0..1 + rng.below(3) {
            let v = rng.pick(&VALUES);
            a.membership_values.push(v);
        }
    }
    for list in [
        &mut a.nodes_truenodeids,
        &mut a.nodes_trueleafs,
        &mut a.nodes_falsenodeids,
        &mut a.nodes_falseleafs,
    ] {
        list.push(0);
    }
    for on_true in [true, false] {
        let (id, leaf) = if depth <= 1 || rng.below(3) == 0 {
            a.leaf_targetids.push(rng.below(targets) as i64);
            a.leaf_weights
                .push(rng.pick(&VALUES[..7]) + rng.below(1000) as f64 * 1e-3);
            (a.leaf_weights.len() as i64 - 1, 1)
        } else {
            (grow(rng, a, depth - 1, features, targets, modes), 0)
        };
        if on_true {
            a.nodes_truenodeids[i] = id;
            a.nodes_trueleafs[i] = leaf;
        } else {
            a.nodes_falsenodeids[i] = id;
            a.nodes_falseleafs[i] = leaf;
        }
    }
    i as i64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Every mode, NaN routing, ties, AVERAGE and several targets; row counts around
    /// the lane and block sizes: the compiled ensemble gives the reference's bits.
    #[test]
    fn compiled_equals_the_operator_walked_row_by_row(
        seed in 1u64..u64::MAX,
        // 8 small trees in a row make a chunk, walked together for blocks of few rows.
        trees in 1usize..24,
        // Up to 64 features read, small trees are kept in fixed arrays; 70 is beyond.
        features in prop::sample::select(vec![1usize, 2, 3, 5, 70]),
        extra_columns in 0usize..3,
        targets in 1usize..4,
        rows in prop::sample::select(vec![1usize, 3, 5, 7, 8, 9, 16, 63, 64, 65, 69, 130]),
    ) {
        let mut rng = Rng(seed);
        let a = random_ensemble(&mut rng, trees, features, targets);
        let e = Ensemble::compile(&a).unwrap();
        let mut pool = VALUES.to_vec();
        pool.extend([f64::NAN, f64::NEG_INFINITY, 0.75]);
        // Columns the trees do not read may follow.
        let columns = features + extra_columns;
        let x: Vec<f64> = (0..rows * columns).map(|_| rng.pick(&pool)).collect();
        let mut out = vec![f64::NAN; rows * targets];
        e.evaluate(&x, rows, columns, &mut out).unwrap();
        for r in 0..rows {
            let want = reference(&a, &x[r * columns..(r + 1) * columns]);
            let got = &out[r * targets..(r + 1) * targets];
            let same = want.iter().zip(got).all(|(w, g)| w.to_bits() == g.to_bits());
            prop_assert!(same, "row {}: {:?} != {:?}", r, got, want);
        }
    }
}

#[test]
fn random_ensembles_use_every_walk() {
    let mut walks = [0; 3];
    let mut small_chunks = 0;
    for seed in 1..40 {
        for features in [3, 70] {
            let e = Ensemble::compile(&random_ensemble(&mut Rng(seed), 20, features, 2)).unwrap();
            small_chunks += e
                .chunks
                .iter()
                .filter(|c| matches!(c, Chunk::Small { .. }))
                .count();
            for tree in &e.trees {
                walks[match tree.walk {
                    Walk::Small(_) => 0,
                    Walk::Lanes => 1,
                    Walk::Rows => 2,
                }] += 1;
            }
        }
    }
    assert!(walks.iter().all(|&n| n > 20), "{walks:?}");
    assert!(small_chunks > 10, "{small_chunks} chunks of small trees");
}

#[test]
fn several_threads_give_the_bits_of_one() {
    assert!(Helpers::new(1).is_none(), "one thread needs no helpers");
    for (seed, rows) in [(7, 1000), (8, 513), (9, 257), (10, 3000)] {
        let mut rng = Rng(seed);
        let a = random_ensemble(&mut rng, 20, 4, 3);
        let e = Ensemble::compile(&a).unwrap();
        let mut pool = VALUES.to_vec();
        pool.push(f64::NAN);
        let x: Vec<f64> = (0..rows * 4).map(|_| rng.pick(&pool)).collect();
        let mut one = vec![0.0; rows * 3];
        e.evaluate(&x, rows, 4, &mut one).unwrap();
        for threads in [2, 3, 8] {
            let helpers = Helpers::new(threads).unwrap();
            let mut many = vec![f64::NAN; rows * 3];
            e.evaluate_on(Some(&helpers), &x, rows, 4, &mut many)
                .unwrap();
            let same = one
                .iter()
                .zip(&many)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{rows} rows on {threads} threads");
        }
    }
}

/// One tree: `x0 <= 1` (NaN to true) → leaf 0 (target 0, 10.0), else leaf 1 (target 1, 20.0).
fn stump() -> Attributes {
    Attributes {
        n_targets: 2,
        aggregate_function: SUM,
        tree_roots: vec![0],
        nodes_featureids: vec![0],
        nodes_splits: vec![1.0],
        nodes_modes: vec![BRANCH_LEQ],
        nodes_truenodeids: vec![0],
        nodes_trueleafs: vec![1],
        nodes_falsenodeids: vec![1],
        nodes_falseleafs: vec![1],
        nodes_missing_value_tracks_true: vec![1],
        leaf_targetids: vec![0, 1],
        leaf_weights: vec![10.0, 20.0],
        ..Attributes::default()
    }
}

#[test]
fn a_stump_routes_values_ties_and_nan() {
    let e = Ensemble::compile(&stump()).unwrap();
    let x = [0.5, 1.0, 1.5, f64::NAN];
    let mut out = vec![0.0; 8];
    e.evaluate(&x, 4, 1, &mut out).unwrap();
    assert_eq!(out, [10.0, 0.0, 10.0, 0.0, 0.0, 20.0, 10.0, 0.0]);
}

fn refused(a: &Attributes) -> String {
    Ensemble::compile(a).unwrap_err().0
}

#[test]
fn malformed_or_other_ensembles_are_refused_by_name() {
    let mut a = stump();
    a.post_transform = 2;
    assert!(refused(&a).contains("post_transform 2"), "{}", refused(&a));
    let mut a = stump();
    a.aggregate_function = 3;
    assert!(refused(&a).contains("aggregate_function 3"));
    let mut a = stump();
    a.nodes_splits.push(0.0);
    assert!(refused(&a).contains("nodes_splits has 2 values for 1 nodes"));
    let mut a = stump();
    a.nodes_falsenodeids[0] = 2;
    assert!(refused(&a).contains("nodes_falsenodeids 2 is out of range 0..2"));
    let mut a = stump();
    a.leaf_targetids[1] = 2;
    assert!(refused(&a).contains("leaf_targetids value 2 is out of range 0..2"));
    let mut a = stump();
    a.tree_roots = vec![-1];
    assert!(refused(&a).contains("tree_roots -1"));
    let mut a = stump();
    a.nodes_modes[0] = 7;
    assert!(refused(&a).contains("mode 7"));
    let mut a = stump();
    a.nodes_trueleafs[0] = 2;
    assert!(refused(&a).contains("leaf flag 2"));
    let mut a = stump();
    a.tree_roots.clear();
    assert!(refused(&a).contains("no trees"));
    let mut a = stump();
    a.nodes_modes[0] = BRANCH_MEMBER;
    assert!(refused(&a).contains("no set for BRANCH_MEMBER node 0"));
}

#[test]
fn a_cycle_is_refused_not_walked() {
    let mut a = stump();
    a.nodes_falsenodeids[0] = 0;
    a.nodes_falseleafs[0] = 0;
    assert!(refused(&a).contains("unfold") || refused(&a).contains("deeper"));
}

#[test]
fn shared_nodes_that_would_unfold_exponentially_are_refused() {
    // 40 nodes, each with both branches on the next: 2^40 paths.
    let n = 40;
    let mut a = Attributes {
        n_targets: 1,
        aggregate_function: SUM,
        tree_roots: vec![0],
        leaf_targetids: vec![0],
        leaf_weights: vec![1.0],
        ..Attributes::default()
    };
    for i in 0..n {
        let (next, leaf) = if i + 1 == n { (0, 1) } else { (i + 1, 0) };
        a.nodes_featureids.push(0);
        a.nodes_splits.push(0.0);
        a.nodes_modes.push(BRANCH_LEQ);
        a.nodes_truenodeids.push(next);
        a.nodes_trueleafs.push(leaf);
        a.nodes_falsenodeids.push(next);
        a.nodes_falseleafs.push(leaf);
    }
    assert!(
        refused(&a).contains("unfold to more than"),
        "{}",
        refused(&a)
    );
}

#[test]
fn an_input_narrower_than_the_trees_or_a_wrong_shape_is_an_error() {
    let mut a = stump();
    a.nodes_featureids[0] = 3;
    let e = Ensemble::compile(&a).unwrap();
    let mut out = vec![0.0; 2];
    assert_eq!(
        e.evaluate(&[1.0, 2.0], 1, 2, &mut out),
        Err(EvaluateError::TooFewColumns {
            columns: 2,
            needed: 4
        })
    );
    let e = Ensemble::compile(&stump()).unwrap();
    assert!(matches!(
        e.evaluate(&[1.0, 2.0], 1, 1, &mut out),
        Err(EvaluateError::Shape(_))
    ));
    assert!(matches!(
        e.evaluate(&[1.0], 1, 1, &mut [0.0]),
        Err(EvaluateError::Shape(_))
    ));
    e.evaluate(&[], 0, 1, &mut []).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    /// Attributes as a hostile file could hold them: forests, in half the cases with one in
    /// about 7 values broken (an index negative, past the end or pointing back, making cycles
    /// and shared nodes; a leaf flag of 2; a target out of range), lists of the wrong length,
    /// modes that do not exist: compiling never panics, and what compiles evaluates without
    /// panicking, on inputs narrower than the trees too.
    #[test]
    fn arbitrary_attributes_are_compiled_or_refused_never_a_panic(
        seed in 1u64..u64::MAX,
        n in 1usize..40,
        leaves in 1usize..40,
        roots in 1usize..6,
        wrong_length in 0usize..12,
    ) {
        let mut rng = Rng(seed);
        let mut a = Attributes {
            n_targets: 1 + rng.below(3) as i64,
            aggregate_function: rng.below(2) as i64,
            ..Attributes::default()
        };
        // Half the cases are well-formed forests (where nodes may still be shared).
        let rate = if rng.below(2) == 0 { usize::MAX } else { 20 };
        let broken = |rng: &mut Rng, value: i64| -> i64 {
            match rng.below(rate) {
                0 => -1 - rng.below(3) as i64,
                1 => value + 40,
                2 => value / 2,
                _ => value,
            }
        };
        for _ in 0..roots {
            let root = rng.below(n) as i64;
            a.tree_roots.push(broken(&mut rng, root));
        }
        for i in 0..n {
            let feature = rng.below(4) as i64;
            a.nodes_featureids.push(broken(&mut rng, feature));
            for on_true in [true, false] {
                let (id, leaf) = if i + 1 < n && rng.below(2) == 0 {
                    ((i + 1 + rng.below(n - i - 1)) as i64, 0)
                } else {
                    (rng.below(leaves) as i64, 1)
                };
                let (id, leaf) = (broken(&mut rng, id), broken(&mut rng, leaf).clamp(-1, 2));
                if on_true {
                    a.nodes_truenodeids.push(id);
                    a.nodes_trueleafs.push(leaf);
                } else {
                    a.nodes_falsenodeids.push(id);
                    a.nodes_falseleafs.push(leaf);
                }
            }
            a.nodes_missing_value_tracks_true.push(rng.below(2) as i64);
            a.nodes_splits.push(rng.pick(&VALUES));
            // Now and then a mode that does not exist.
            let modes = if rng.below(rate) == 0 { 9 } else { 7 };
            a.nodes_modes.push(rng.below(modes) as u8);
        }
        // A set per BRANCH_MEMBER node (one short, now and then).
        let sets = a.nodes_modes.iter().filter(|&&m| m == 6).count();
        for i in 0..sets.saturating_sub(usize::from(rng.below(rate) == 0)) {
            if i > 0 {
                a.membership_values.push(f64::NAN);
            }
            a.membership_values.push(rng.pick(&VALUES));
        }
        for _ in 0..leaves {
            a.leaf_weights.push(rng.pick(&VALUES));
            let target = rng.below(a.n_targets as usize) as i64;
            a.leaf_targetids.push(broken(&mut rng, target));
        }
        match wrong_length {
            1 => { a.nodes_splits.pop(); }
            2 => { a.nodes_modes.push(0); }
            3 => { a.leaf_weights.push(1.0); }
            4 => { a.nodes_missing_value_tracks_true.pop(); }
            5 => { a.post_transform = 2; }
            _ => {}
        }
        if let Ok(e) = Ensemble::compile(&a) {
            let helpers = Helpers::new(2).unwrap();
            for (rows, columns) in [(1, 4), (9, 4), (600, 4), (3, 2), (8, 1)] {
                let x: Vec<f64> = (0..rows * columns).map(|_| rng.pick(&VALUES)).collect();
                let mut out = vec![0.0; rows * e.n_targets()];
                let result = e.evaluate_on(Some(&helpers), &x, rows, columns, &mut out);
                let narrow = matches!(result, Err(EvaluateError::TooFewColumns { .. }));
                prop_assert!(result.is_ok() || narrow, "{result:?}");
            }
        }
    }
}
