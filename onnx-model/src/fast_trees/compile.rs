//! Checking one `ai.onnx.ml` opset-5 `TreeEnsemble`'s attributes and laying its trees out
//! for [`super::ensemble`].
//!
//! [`Attributes`] are the node's attributes as ONNX states them; [`Ensemble::compile`] checks
//! them (every index in range, every tree a finite tree; shared nodes that would unfold
//! without bound and cycles are refused) and lays each tree out flat, depth first: a node's
//! `next[0]` is the node right after it, a leaf's `next` is itself.
//!
//! A tree whose nodes all compare with `<=`, `<`, `>=` or `>` is normalised to one test,
//! `x <= split` (`x < s` is `x <= s.next_down()` for every number x; `>` and `>=` are the
//! negations, with their branches swapped); a node whose NaN takes the branch reads the copy
//! of its feature where NaN is -inf. Such a tree of at most 128 flat nodes over the first 64
//! features is also kept as a `SmallTree`. Trees with `==`, `!=` or set membership keep
//! each node's own rule and are walked row by row.

use std::fmt;

use super::ensemble::{
    Ensemble, LANES, Node, SMALL_FEATURES, SMALL_NODES, SmallTree, TRUE_IF_EQUAL, TRUE_IF_GREATER,
    TRUE_IF_LESS, TRUE_IF_MEMBER, TRUE_IF_NAN, Tree, Walk,
};

/// `nodes_modes` values (ONNX `TreeEnsemble`, opset 5).
pub(super) const BRANCH_LEQ: u8 = 0;
pub(super) const BRANCH_LT: u8 = 1;
pub(super) const BRANCH_GTE: u8 = 2;
pub(super) const BRANCH_GT: u8 = 3;
pub(super) const BRANCH_EQ: u8 = 4;
pub(super) const BRANCH_NEQ: u8 = 5;
pub(super) const BRANCH_MEMBER: u8 = 6;
/// `aggregate_function` values this kernel computes.
pub const AVERAGE: i64 = 0;
pub const SUM: i64 = 1;

/// Most flat nodes per attribute node: a forest has one flat node per node and one per leaf
/// branch (at most 2 per node), but a node reached from two parents is copied, and a hostile
/// graph of shared nodes could otherwise unfold exponentially.
const FLAT_NODES_PER_NODE: usize = 3;
/// Deepest tree walked (a longer chain is refused, not walked).
const MAX_DEPTH: usize = 4096;
/// Most features a node may read: `Node::lane_feature` is `(2 * feature + 1) * LANES` at
/// most, in 16 bits.
pub const MAX_FEATURES: usize = u16::MAX as usize / (2 * LANES);

/// The attributes of one `TreeEnsemble` node that decide its result (hit rates do not).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    pub n_targets: i64,
    pub aggregate_function: i64,
    pub post_transform: i64,
    pub tree_roots: Vec<i64>,
    pub nodes_featureids: Vec<i64>,
    pub nodes_splits: Vec<f64>,
    pub nodes_modes: Vec<u8>,
    pub nodes_truenodeids: Vec<i64>,
    pub nodes_trueleafs: Vec<i64>,
    pub nodes_falsenodeids: Vec<i64>,
    pub nodes_falseleafs: Vec<i64>,
    /// Empty when the attribute is absent (no node sends NaN to its true branch).
    pub nodes_missing_value_tracks_true: Vec<i64>,
    /// The sets of the `BRANCH_MEMBER` nodes in node order, separated by NaN.
    pub membership_values: Vec<f64>,
    pub leaf_targetids: Vec<i64>,
    pub leaf_weights: Vec<f64>,
}

/// Why an ensemble is not one this kernel computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

impl Ensemble {
    /// Checks `a` and lays its trees out flat; refuses what this kernel does not compute
    /// (a post transform, MIN or MAX) and anything malformed, naming it.
    pub fn compile(a: &Attributes) -> Result<Ensemble, Unsupported> {
        let no = |reason: String| Err(Unsupported(reason));
        if a.post_transform != 0 {
            return no(format!("post_transform {} (only NONE)", a.post_transform));
        }
        let average = match a.aggregate_function {
            SUM => false,
            AVERAGE => true,
            other => return no(format!("aggregate_function {other} (only SUM and AVERAGE)")),
        };
        // Leaves keep their target in 32 bits.
        let n_targets = match usize::try_from(a.n_targets) {
            Ok(n) if n > 0 && n <= u32::MAX as usize => n,
            _ => return no(format!("n_targets {}", a.n_targets)),
        };
        let n = a.nodes_featureids.len();
        let lengths = [
            ("nodes_splits", a.nodes_splits.len()),
            ("nodes_modes", a.nodes_modes.len()),
            ("nodes_truenodeids", a.nodes_truenodeids.len()),
            ("nodes_trueleafs", a.nodes_trueleafs.len()),
            ("nodes_falsenodeids", a.nodes_falsenodeids.len()),
            ("nodes_falseleafs", a.nodes_falseleafs.len()),
        ];
        for (name, len) in lengths {
            if len != n {
                return no(format!("{name} has {len} values for {n} nodes"));
            }
        }
        if !a.nodes_missing_value_tracks_true.is_empty()
            && a.nodes_missing_value_tracks_true.len() != n
        {
            return no(format!(
                "nodes_missing_value_tracks_true has {} values for {n} nodes",
                a.nodes_missing_value_tracks_true.len()
            ));
        }
        if a.leaf_targetids.len() != a.leaf_weights.len() {
            return no(format!(
                "leaf_targetids has {} values, leaf_weights {}",
                a.leaf_targetids.len(),
                a.leaf_weights.len()
            ));
        }
        if a.tree_roots.is_empty() {
            return no("no trees".into());
        }
        let mut builder = Builder {
            a,
            max_flat_nodes: (FLAT_NODES_PER_NODE * n + a.tree_roots.len()).min(u32::MAX as usize),
            sets_by_node: member_sets(a)?,
            e: Ensemble {
                nodes: Vec::new(),
                leaf_target: Vec::new(),
                leaf_weight: Vec::new(),
                sets: Vec::new(),
                trees: Vec::with_capacity(a.tree_roots.len()),
                small: Vec::new(),
                chunks: Vec::new(),
                n_targets,
                n_features_read: 0,
                average,
            },
        };
        for &root in &a.tree_roots {
            let root = index(root, n, "tree_roots")?;
            let tree = builder.tree(root)?;
            builder.e.trees.push(tree);
        }
        let mut e = builder.e;
        if e.n_features_read <= SMALL_FEATURES {
            for t in 0..e.trees.len() {
                let tree = &e.trees[t];
                let range = tree.root as usize..tree.end as usize;
                if tree.walk == Walk::Lanes && range.len() <= SMALL_NODES {
                    let small = SmallTree::new(&e, range, tree.depth);
                    e.trees[t].walk = Walk::Small(e.small.len());
                    e.small.push(small);
                }
            }
        }
        e.chunks = super::ensemble::chunks(&e.trees, &e.small);
        Ok(e)
    }
}

/// The set of each `BRANCH_MEMBER` node, by the node's index in the attributes.
pub(super) fn member_sets(a: &Attributes) -> Result<Vec<Option<Vec<f64>>>, Unsupported> {
    let mut sets = vec![None; a.nodes_modes.len()];
    // An empty list would split into one empty set.
    let values = &a.membership_values;
    let mut groups = (!values.is_empty())
        .then(|| values.split(|v| v.is_nan()))
        .into_iter()
        .flatten();
    for (i, &mode) in a.nodes_modes.iter().enumerate() {
        if mode == BRANCH_MEMBER {
            match groups.next() {
                Some(set) => sets[i] = Some(set.to_vec()),
                None => {
                    return Err(Unsupported(format!(
                        "membership_values has no set for BRANCH_MEMBER node {i}"
                    )));
                }
            }
        }
    }
    Ok(sets)
}

fn index(value: i64, len: usize, what: &str) -> Result<usize, Unsupported> {
    usize::try_from(value)
        .ok()
        .filter(|&i| i < len)
        .ok_or_else(|| Unsupported(format!("{what} {value} is out of range 0..{len}")))
}

/// The largest number below `s` (NaN for -inf, where nothing is below), so that
/// `x < s` is `x <= below(s)` for every number x.
fn below(s: f64) -> f64 {
    if s == f64::NEG_INFINITY {
        f64::NAN
    } else {
        s.next_down()
    }
}

/// A mode as `x <= split'` on one branch: `(split', whether the branch is the false one)`;
/// `None` for modes that are not a comparison with the split, and where `split'` would be
/// NaN (a NaN split, `< -inf`, `>= -inf`), which -inf for NaN cannot route.
fn normalise(mode: u8, split: f64) -> Option<(f64, bool)> {
    let (split, swap) = match mode {
        BRANCH_LEQ => (split, false),
        BRANCH_LT => (below(split), false),
        BRANCH_GT => (split, true),
        BRANCH_GTE => (below(split), true),
        _ => return None,
    };
    (!split.is_nan()).then_some((split, swap))
}

/// Lays the trees out flat, one at a time.
struct Builder<'a> {
    a: &'a Attributes,
    max_flat_nodes: usize,
    sets_by_node: Vec<Option<Vec<f64>>>,
    e: Ensemble,
}

/// A branch of an attribute node: another node or a leaf.
#[derive(Clone, Copy)]
enum Branch {
    Node(usize),
    Leaf(usize),
}

impl Builder<'_> {
    /// Flattens the tree rooted at attribute node `root`, depth first, each node's second
    /// branch (`next[0]`, where it goes when its test fails) right after it.
    fn tree(&mut self, root: usize) -> Result<Tree, Unsupported> {
        let normalised = self.all_comparisons(root)?;
        let first = self.e.nodes.len();
        // (branch, its flat parent if it is the parent's `next[1]`, its depth)
        let mut pending = vec![(Branch::Node(root), None::<usize>, 0usize)];
        let mut depth = 0;
        while let Some((branch, taken_from, d)) = pending.pop() {
            let at = self.e.nodes.len();
            if at >= self.max_flat_nodes {
                return Err(Unsupported(format!(
                    "the trees unfold to more than {} nodes (nodes are shared)",
                    self.max_flat_nodes
                )));
            }
            if let Some(parent) = taken_from {
                self.e.nodes[parent].next[1] = at as u32;
            }
            match branch {
                Branch::Leaf(leaf) => {
                    let target = index(
                        self.a.leaf_targetids[leaf],
                        self.e.n_targets,
                        "leaf_targetids value",
                    )?;
                    self.e.nodes.push(Node::leaf(at));
                    self.e.leaf_target.resize(at + 1, 0);
                    self.e.leaf_weight.resize(at + 1, 0.0);
                    self.e.leaf_target[at] = target as u32;
                    self.e.leaf_weight[at] = self.a.leaf_weights[leaf];
                }
                Branch::Node(i) => {
                    if d >= MAX_DEPTH {
                        return Err(Unsupported(format!(
                            "a tree is deeper than {MAX_DEPTH} (or has a cycle)"
                        )));
                    }
                    depth = depth.max(d + 1);
                    let (node, swap) = self.interior(i, at, normalised)?;
                    self.e.nodes.push(node);
                    let (on_true, on_false) = (self.branch(i, true)?, self.branch(i, false)?);
                    let (taken, next) = if swap {
                        (on_false, on_true)
                    } else {
                        (on_true, on_false)
                    };
                    // Popped in reverse: `next` first, so it lands at `at + 1`.
                    pending.push((taken, Some(at), d + 1));
                    pending.push((next, None, d + 1));
                }
            }
        }
        let n = self.e.nodes.len();
        self.e.leaf_target.resize(n, 0);
        self.e.leaf_weight.resize(n, 0.0);
        Ok(Tree {
            root: first as u32,
            end: n as u32,
            depth: depth as u32,
            walk: if normalised { Walk::Lanes } else { Walk::Rows },
        })
    }

    /// Whether every node reachable from `root` compares with `<=`, `<`, `>=` or `>` in a
    /// way [`normalise`] can rewrite (visits at most `max_flat_nodes` nodes).
    fn all_comparisons(&self, root: usize) -> Result<bool, Unsupported> {
        let a = self.a;
        let mut pending = vec![root];
        let mut visited = 0;
        let mut all = true;
        while let Some(i) = pending.pop() {
            visited += 1;
            if visited > self.max_flat_nodes {
                return Err(Unsupported(format!(
                    "the trees unfold to more than {} nodes (nodes are shared)",
                    self.max_flat_nodes
                )));
            }
            all &= normalise(a.nodes_modes[i], a.nodes_splits[i]).is_some();
            for on_true in [true, false] {
                if let Branch::Node(next) = self.branch(i, on_true)? {
                    pending.push(next);
                }
            }
        }
        Ok(all)
    }

    fn branch(&self, i: usize, on_true: bool) -> Result<Branch, Unsupported> {
        let a = self.a;
        let (ids, leafs, name) = if on_true {
            (
                &a.nodes_truenodeids,
                &a.nodes_trueleafs,
                "nodes_truenodeids",
            )
        } else {
            (
                &a.nodes_falsenodeids,
                &a.nodes_falseleafs,
                "nodes_falsenodeids",
            )
        };
        match leafs[i] {
            0 => Ok(Branch::Node(index(ids[i], a.nodes_featureids.len(), name)?)),
            1 => Ok(Branch::Leaf(index(ids[i], a.leaf_weights.len(), name)?)),
            other => Err(Unsupported(format!(
                "node {i} has leaf flag {other} (0 or 1)"
            ))),
        }
    }

    /// The flat node for attribute node `i`, placed at flat index `at`, and whether its
    /// `next[1]` (where it goes when its test holds) is the false branch.
    fn interior(
        &mut self,
        i: usize,
        at: usize,
        normalised: bool,
    ) -> Result<(Node, bool), Unsupported> {
        let a = self.a;
        let feature = usize::try_from(a.nodes_featureids[i])
            .ok()
            .filter(|&f| f < MAX_FEATURES)
            .ok_or_else(|| {
                Unsupported(format!(
                    "node {i} reads feature {} (at most {} here)",
                    a.nodes_featureids[i],
                    MAX_FEATURES - 1
                ))
            })?;
        self.e.n_features_read = self.e.n_features_read.max(feature + 1);
        let nan_true = a
            .nodes_missing_value_tracks_true
            .get(i)
            .is_some_and(|&t| t != 0);
        let mode = a.nodes_modes[i];
        let mut rule = match mode {
            BRANCH_LEQ => TRUE_IF_LESS | TRUE_IF_EQUAL,
            BRANCH_LT => TRUE_IF_LESS,
            BRANCH_GTE => TRUE_IF_GREATER | TRUE_IF_EQUAL,
            BRANCH_GT => TRUE_IF_GREATER,
            BRANCH_EQ => TRUE_IF_EQUAL,
            // x != split holds for NaN too.
            BRANCH_NEQ => TRUE_IF_LESS | TRUE_IF_GREATER | TRUE_IF_NAN,
            BRANCH_MEMBER => {
                let set = self.sets_by_node[i].clone().unwrap_or_default();
                self.e.sets.push((at as u32, set));
                TRUE_IF_MEMBER
            }
            other => return Err(Unsupported(format!("node {i} has mode {other}"))),
        };
        if nan_true {
            rule |= TRUE_IF_NAN;
        }
        let mut node = Node {
            split: a.nodes_splits[i],
            // The branch is set when it is laid out.
            next: [at as u32 + 1, 0],
            lane_feature: (2 * feature * LANES) as u16,
            rule,
        };
        if !normalised {
            return Ok((node, false));
        }
        let (split, swap) = normalise(mode, node.split).expect("checked by all_comparisons");
        node.split = split;
        if nan_true != swap {
            node.lane_feature += LANES as u16;
        }
        Ok((node, swap))
    }
}
