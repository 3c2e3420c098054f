//! One `ai.onnx.ml` opset-5 `TreeEnsemble` in double, checked and laid out for evaluation.
//!
//! [`Attributes`] are the node's attributes as ONNX states them; [`Ensemble::compile`] checks
//! them (every index in range, every tree a finite tree) and lays each tree out flat, depth
//! first: a node's `next[0]` is the node right after it, a leaf's `next` is itself.
//! [`Ensemble::evaluate`] walks [`LANES`] rows through one tree at a time, step by step in
//! lockstep, each step choosing the next node by an index rather than a branch: the rows'
//! walks are independent, so the processor overlaps them instead of waiting on one
//! mispredicted branch after another, which is what a walk per row costs (ONNX Runtime's
//! kernel). Every walk takes the tree's depth in steps; one that reached its leaf stays there.
//!
//! For that, a tree whose nodes all compare with `<=`, `<`, `>=` or `>` is normalised to one
//! test, `x <= split` (`x < s` is `x <= s.next_down()` for every number x; `>` and `>=` are
//! the negations, with their branches swapped). NaN, which is `<=` nothing, reads -inf
//! instead at a node whose NaN takes the branch: rows are copied, 64 at a time, into groups of
//! [`LANES`] with each feature twice, as it is and with NaN as -inf, and a node reads the copy
//! it needs. Trees of at most 128 flat nodes over the first 64 features are kept in arrays of
//! fixed size ([`SmallTree`]), whose indices need no bounds check. Trees with `==`, `!=` or
//! set membership are walked row by row with each node's own rule.
//!
//! The result is the operator's, bit for bit: each row's leaf weights are added to its target
//! in tree order starting from 0.0 (as ONNX Runtime's own kernel does on one thread), `AVERAGE`
//! divides the sum by the number of trees. [`Ensemble::evaluate_on`] shares the rows of a
//! large call among threads.

use std::fmt;

/// `nodes_modes` values (ONNX `TreeEnsemble`, opset 5).
const BRANCH_LEQ: u8 = 0;
const BRANCH_LT: u8 = 1;
const BRANCH_GTE: u8 = 2;
const BRANCH_GT: u8 = 3;
const BRANCH_EQ: u8 = 4;
const BRANCH_NEQ: u8 = 5;
const BRANCH_MEMBER: u8 = 6;
/// `aggregate_function` values this kernel computes.
pub const AVERAGE: i64 = 0;
pub const SUM: i64 = 1;

/// Fewest rows worth a thread of their own in [`Ensemble::evaluate_on`] (starting one costs
/// tens of microseconds; 256 rows of 100 trees take about half a millisecond).
pub const MIN_ROWS_PER_THREAD: usize = 256;
/// Calls with fewer rows are walked row by row: lanes would walk padding (a single row costs
/// about twice ONNX Runtime's time in lanes, and half of it row by row).
const ROW_BY_ROW_BELOW: usize = 4;
/// Rows walked through a tree together.
pub const LANES: usize = 8;
/// Rows whose scores are accumulated tree after tree before the next rows start: their
/// features stay in the first-level cache while every tree passes over them.
const BLOCK: usize = 64;
/// Most flat nodes per attribute node: a forest has one flat node per node and one per leaf
/// branch (at most 2 per node), but a node reached from two parents is copied, and a hostile
/// graph of shared nodes could otherwise unfold exponentially.
const FLAT_NODES_PER_NODE: usize = 3;
/// Deepest tree walked (a longer chain is refused, not walked).
const MAX_DEPTH: usize = 4096;
/// Most features a node may read: [`Node::lane_feature`] is `(2 * feature + 1) * LANES` at
/// most, in 16 bits.
pub const MAX_FEATURES: usize = u16::MAX as usize / (2 * LANES);

/// Bits of [`Node::rule`] (the node's own rule, for trees walked row by row): the branch is
/// taken when `x < split`, `x == split`, `x > split`, x is NaN, or x is in the node's set.
const TRUE_IF_LESS: u8 = 1;
const TRUE_IF_EQUAL: u8 = 2;
const TRUE_IF_GREATER: u8 = 4;
const TRUE_IF_NAN: u8 = 8;
const TRUE_IF_MEMBER: u8 = 16;
/// The rule of a leaf: every relation takes the branch, which is the leaf itself. No mode
/// has this rule.
const LEAF: u8 = TRUE_IF_LESS | TRUE_IF_EQUAL | TRUE_IF_GREATER | TRUE_IF_NAN;

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

/// Why one evaluation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvaluateError {
    /// The input has fewer columns than the trees read.
    TooFewColumns { columns: usize, needed: usize },
    /// `x` or `out` does not hold `rows` rows.
    Shape(String),
}

impl fmt::Display for EvaluateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvaluateError::TooFewColumns { columns, needed } => write!(
                f,
                "the trees read feature {} but the input has {columns} columns",
                needed - 1
            ),
            EvaluateError::Shape(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for EvaluateError {}

/// One flat node: it goes to `next[1]` when its test holds (its "branch"), else to
/// `next[0]`, which is the node right after it for an interior node. A leaf goes to itself.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node {
    /// In a normalised tree the test is `x <= split`, else the node's `rule`.
    split: f64,
    next: [u32; 2],
    /// Where lane 0's value of the feature sits in a group of interleaved rows (see
    /// [`interleave`]): `(2 * feature + copy) * LANES`, where copy 1 has NaN as -inf (for a
    /// node of a normalised tree whose NaN takes the branch: -inf <= any split but NaN) and
    /// copy 0 keeps NaN (which is <= nothing).
    lane_feature: u16,
    rule: u8,
}

impl Node {
    fn leaf(at: usize) -> Node {
        Node {
            split: 0.0,
            next: [at as u32; 2],
            lane_feature: 0,
            rule: LEAF,
        }
    }

    fn feature(&self) -> usize {
        usize::from(self.lane_feature) / (2 * LANES)
    }

    /// The node after this one (in a normalised tree) for the value `v` of its feature (NaN
    /// already replaced where it takes the branch), chosen by an index, not by a branch in
    /// the code: one would be mispredicted at about every other node.
    #[inline(always)]
    fn next(&self, v: f64) -> usize {
        self.next[usize::from(v <= self.split)] as usize
    }

    /// The node after this one (in any tree) by its own rule; `member` tells whether `v` is
    /// in the node's set.
    fn next_by_rule(&self, v: f64, member: impl FnOnce() -> bool) -> usize {
        let r = self.rule;
        let branch = if v.is_nan() {
            r & TRUE_IF_NAN != 0
        } else if r & TRUE_IF_MEMBER != 0 {
            member()
        } else if v < self.split {
            r & TRUE_IF_LESS != 0
        } else if v == self.split {
            r & TRUE_IF_EQUAL != 0
        } else {
            r & TRUE_IF_GREATER != 0
        };
        self.next[usize::from(branch)] as usize
    }
}

/// A node of a [`SmallTree`]: a normalised node with its tree's own indices, 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SmallNode {
    split: f64,
    next: [u16; 2],
    lane_feature: u16,
}

/// Copies `rows` (`columns` wide) into groups of [`LANES`] rows, `width` values per group,
/// so that a group's values of one feature are side by side, twice:
/// `lanes[g][feature][copy][k]` is row `LANES * g + k`'s value, as it is in copy 0 and with
/// NaN as -inf in copy 1. Only the first `features` columns are copied.
fn interleave(rows: &[f64], columns: usize, features: usize, width: usize, lanes: &mut [f64]) {
    for (r, row) in rows.chunks_exact(columns).enumerate() {
        let (g, k) = (r / LANES, r % LANES);
        let group = &mut lanes[g * width..(g + 1) * width];
        for (feature, &v) in row[..features].iter().enumerate() {
            group[2 * feature * LANES + k] = v;
            group[(2 * feature + 1) * LANES + k] = if v.is_nan() { f64::NEG_INFINITY } else { v };
        }
    }
}

/// Flat nodes of the largest tree kept in a [`SmallTree`], and features its nodes may read.
const SMALL_NODES: usize = 128;
const SMALL_FEATURES: usize = 64;
/// Values in a group of interleaved rows when every feature read is below [`SMALL_FEATURES`].
const GROUP: usize = 2 * LANES * SMALL_FEATURES;

/// A normalised tree of at most [`SMALL_NODES`] flat nodes, in arrays of fixed size: every
/// index is masked into range, so walking it needs no bounds check (most of a step's cost
/// otherwise).
#[derive(Debug, Clone, PartialEq)]
struct SmallTree {
    nodes: Box<[SmallNode; SMALL_NODES]>,
    leaf_target: Box<[u32; SMALL_NODES]>,
    leaf_weight: Box<[f64; SMALL_NODES]>,
    depth: u32,
}

impl SmallTree {
    /// The tree of `depth` laid out at `range` of the ensemble's flat nodes (and leaves); at
    /// most [`SMALL_NODES`] of them.
    fn new(e: &Ensemble, range: std::ops::Range<usize>, depth: u32) -> SmallTree {
        let filler = SmallNode {
            split: 0.0,
            next: [0; 2],
            lane_feature: 0,
        };
        let mut t = SmallTree {
            nodes: Box::new([filler; SMALL_NODES]),
            leaf_target: Box::new([0; SMALL_NODES]),
            leaf_weight: Box::new([0.0; SMALL_NODES]),
            depth,
        };
        let first = range.start;
        let local = |i: u32| (i as usize - first) as u16;
        for (i, node) in e.nodes[range].iter().enumerate().take(SMALL_NODES) {
            t.nodes[i] = SmallNode {
                split: node.split,
                next: node.next.map(local),
                lane_feature: node.lane_feature,
            };
            t.leaf_target[i] = e.leaf_target[first + i];
            t.leaf_weight[i] = e.leaf_weight[first + i];
        }
        t
    }

    /// The leaves the [`LANES`] rows of `group` reach: `depth` steps for every row in turn
    /// (a leaf's step stays on it).
    #[inline(always)]
    fn walk(&self, group: &[f64; GROUP]) -> [usize; LANES] {
        let mut at = [0usize; LANES];
        for _ in 0..self.depth {
            for (k, at) in at.iter_mut().enumerate() {
                let node = &self.nodes[*at % SMALL_NODES];
                let v = group[(usize::from(node.lane_feature) + k) % GROUP];
                *at = usize::from(node.next[usize::from(v <= node.split)]);
            }
        }
        at
    }
}

/// Rows of the input being walked through the trees.
struct Block<'a> {
    /// The index of the first row, and the number of rows.
    first: usize,
    len: usize,
    /// The rows as they came, `columns` wide.
    rows: &'a [f64],
    columns: usize,
    /// The rows interleaved, `width` values per group (see [`interleave`]).
    lanes: &'a [f64],
    width: usize,
}

/// How a tree is walked.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Walk {
    /// `Ensemble::small[i]`, [`LANES`] rows at a time.
    Small(usize),
    /// A normalised tree in `Ensemble::nodes`, [`LANES`] rows at a time.
    Lanes,
    /// Row by row, by each node's own rule.
    Rows,
}

#[derive(Debug, Clone, PartialEq)]
struct Tree {
    root: u32,
    /// One past its last flat node.
    end: u32,
    /// Interior nodes on the longest path: the steps after which every walk is at a leaf.
    depth: u32,
    walk: Walk,
}

/// A compiled `TreeEnsemble`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensemble {
    /// Every tree's flat nodes (the small trees' are read from `small`).
    nodes: Vec<Node>,
    /// Per flat node: the leaf's target and weight (unused for interior nodes).
    leaf_target: Vec<u32>,
    leaf_weight: Vec<f64>,
    /// Per flat `BRANCH_MEMBER` node, sorted by node: its set.
    sets: Vec<(u32, Vec<f64>)>,
    trees: Vec<Tree>,
    small: Vec<SmallTree>,
    n_targets: usize,
    /// One more than the largest feature any node reads (0 without interior nodes).
    n_features_read: usize,
    average: bool,
}

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
        Ok(e)
    }

    pub fn n_targets(&self) -> usize {
        self.n_targets
    }

    /// [`Ensemble::evaluate`] on up to `threads` threads (this one and scoped others), each
    /// taking a share of the rows of at least [`MIN_ROWS_PER_THREAD`]. Every row's scores
    /// are computed as on one thread, so the result is the same.
    pub fn evaluate_on(
        &self,
        threads: usize,
        x: &[f64],
        rows: usize,
        columns: usize,
        out: &mut [f64],
    ) -> Result<(), EvaluateError> {
        let threads = threads.min(rows / MIN_ROWS_PER_THREAD).max(1);
        if threads == 1 || columns == 0 || rows.checked_mul(columns) != Some(x.len()) {
            return self.evaluate(x, rows, columns, out);
        }
        if rows.checked_mul(self.n_targets) != Some(out.len()) {
            return self.evaluate(x, rows, columns, out);
        }
        let share = rows.div_ceil(threads);
        let mut parts = x
            .chunks(share * columns)
            .zip(out.chunks_mut(share * self.n_targets));
        let (x0, out0) = parts.next().expect("rows > 0");
        let all_spawned = std::thread::scope(|scope| {
            let mut others = Vec::new();
            for (x, out) in parts {
                let work = move || self.evaluate(x, x.len() / columns, columns, out);
                match std::thread::Builder::new().spawn_scoped(scope, work) {
                    Ok(handle) => others.push(handle),
                    Err(_) => return Ok(false),
                }
            }
            self.evaluate(x0, x0.len() / columns, columns, out0)?;
            for handle in others {
                handle.join().expect("evaluate does not panic")?;
            }
            Ok(true)
        })?;
        if !all_spawned {
            // Out of threads (the system's limit): all rows on this one.
            return self.evaluate(x, rows, columns, out);
        }
        Ok(())
    }

    /// Writes the `[rows, n_targets]` scores of the `[rows, columns]` matrix `x` into `out`.
    pub fn evaluate(
        &self,
        x: &[f64],
        rows: usize,
        columns: usize,
        out: &mut [f64],
    ) -> Result<(), EvaluateError> {
        if columns < self.n_features_read {
            return Err(EvaluateError::TooFewColumns {
                columns,
                needed: self.n_features_read,
            });
        }
        if rows.checked_mul(columns) != Some(x.len()) {
            return Err(EvaluateError::Shape(format!(
                "the input holds {} values, not {rows} rows of {columns}",
                x.len()
            )));
        }
        if rows.checked_mul(self.n_targets) != Some(out.len()) {
            return Err(EvaluateError::Shape(format!(
                "the output holds {} values, not {rows} rows of {}",
                out.len(),
                self.n_targets
            )));
        }
        out.fill(0.0);
        if rows < ROW_BY_ROW_BELOW {
            for (r, row) in x.chunks_exact(columns.max(1)).take(rows).enumerate() {
                for tree in &self.trees {
                    let leaf = self.walk_row(tree, row);
                    self.add_leaf(out, r, leaf);
                }
            }
        } else {
            self.evaluate_in_lanes(x, rows, columns, out);
        }
        if self.average {
            let n_trees = self.trees.len() as f64;
            for v in out.iter_mut() {
                *v /= n_trees;
            }
        }
        Ok(())
    }

    /// [`Ensemble::evaluate`]'s work, [`BLOCK`] rows at a time walked in lanes.
    fn evaluate_in_lanes(&self, x: &[f64], rows: usize, columns: usize, out: &mut [f64]) {
        let width = self.group_width();
        let mut lanes = vec![0.0; rows.min(BLOCK).div_ceil(LANES) * width];
        for start in (0..rows).step_by(BLOCK) {
            let end = (start + BLOCK).min(rows);
            let rows = &x[start * columns..end * columns];
            if columns > 0 {
                interleave(rows, columns, self.n_features_read, width, &mut lanes);
            }
            let block = Block {
                first: start,
                len: end - start,
                rows,
                columns,
                lanes: &lanes,
                width,
            };
            for tree in &self.trees {
                self.walk_block(tree, &block, out);
            }
        }
    }

    /// Values per group of interleaved rows: [`GROUP`], or two per feature read and lane.
    fn group_width(&self) -> usize {
        if self.n_features_read <= SMALL_FEATURES {
            GROUP
        } else {
            2 * LANES * self.n_features_read
        }
    }

    /// Adds `tree`'s leaf of each row of `block` to the row's score.
    fn walk_block(&self, tree: &Tree, block: &Block<'_>, out: &mut [f64]) {
        let (start, rows) = (block.first, block.len);
        let groups = block
            .lanes
            .chunks_exact(block.width)
            .take(rows.div_ceil(LANES));
        match tree.walk {
            Walk::Small(i) => {
                let small = &self.small[i];
                for (g, group) in groups.enumerate() {
                    let group: &[f64; GROUP] = group.try_into().expect("small trees use GROUP");
                    let leaves = small.walk(group);
                    for (k, &leaf) in leaves.iter().enumerate().take(rows - g * LANES) {
                        let at = out_index(start + g * LANES + k, self.n_targets);
                        out[at + small.leaf_target[leaf] as usize] += small.leaf_weight[leaf];
                    }
                }
            }
            Walk::Lanes => {
                for (g, group) in groups.enumerate() {
                    let leaves = self.walk_lanes(tree, group);
                    for (k, &leaf) in leaves.iter().enumerate().take(rows - g * LANES) {
                        self.add_leaf(out, start + g * LANES + k, leaf);
                    }
                }
            }
            Walk::Rows => {
                for (r, row) in block.rows.chunks_exact(block.columns).enumerate() {
                    let leaf = self.walk_row(tree, row);
                    self.add_leaf(out, start + r, leaf);
                }
            }
        }
    }

    /// The leaves that the [`LANES`] interleaved rows of `group` reach in the normalised
    /// `tree`: `tree.depth` steps for every row in turn (a leaf's step stays on it).
    #[inline(always)]
    fn walk_lanes(&self, tree: &Tree, group: &[f64]) -> [usize; LANES] {
        let mut at = [tree.root as usize; LANES];
        for _ in 0..tree.depth {
            for (k, at) in at.iter_mut().enumerate() {
                let node = &self.nodes[*at];
                *at = node.next(group[usize::from(node.lane_feature) + k]);
            }
        }
        at
    }

    /// The leaf `row` reaches in `tree`.
    fn walk_row(&self, tree: &Tree, row: &[f64]) -> usize {
        let mut at = tree.root as usize;
        loop {
            let node = &self.nodes[at];
            if node.rule == LEAF {
                return at;
            }
            let v = row[node.feature()];
            at = if tree.walk != Walk::Rows {
                let nan_as_low = usize::from(node.lane_feature) / LANES % 2 == 1;
                node.next(if nan_as_low && v.is_nan() {
                    f64::NEG_INFINITY
                } else {
                    v
                })
            } else {
                node.next_by_rule(v, || self.is_member(at, v))
            };
        }
    }

    fn is_member(&self, at: usize, v: f64) -> bool {
        match self
            .sets
            .binary_search_by_key(&(at as u32), |(node, _)| *node)
        {
            Ok(i) => self.sets[i].1.contains(&v),
            Err(_) => false,
        }
    }

    #[inline(always)]
    fn add_leaf(&self, out: &mut [f64], row: usize, leaf: usize) {
        out[out_index(row, self.n_targets) + self.leaf_target[leaf] as usize] +=
            self.leaf_weight[leaf];
    }
}

/// Where row `row`'s scores start in the output.
#[inline(always)]
fn out_index(row: usize, n_targets: usize) -> usize {
    row * n_targets
}

/// The set of each `BRANCH_MEMBER` node, by the node's index in the attributes.
fn member_sets(a: &Attributes) -> Result<Vec<Option<Vec<f64>>>, Unsupported> {
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

#[cfg(test)]
mod tests {
    use super::*;
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
        for _ in 0..trees {
            let depth = 1 + rng.below(8);
            // Half the trees only compare (and are walked in lanes), half use every mode.
            let modes = if rng.below(2) == 0 { 4 } else { 7 };
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
            trees in 1usize..12,
            // Up to 64 features read, small trees are kept in fixed arrays; 70 is beyond.
            features in prop::sample::select(vec![1usize, 2, 3, 5, 70]),
            extra_columns in 0usize..3,
            targets in 1usize..4,
            rows in prop::sample::select(vec![1usize, 3, 7, 8, 9, 16, 63, 64, 65, 130]),
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
        for seed in 1..40 {
            for features in [3, 70] {
                let e =
                    Ensemble::compile(&random_ensemble(&mut Rng(seed), 10, features, 2)).unwrap();
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
    }

    #[test]
    fn several_threads_give_the_bits_of_one() {
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
                let mut many = vec![f64::NAN; rows * 3];
                e.evaluate_on(threads, &x, rows, 4, &mut many).unwrap();
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
}
