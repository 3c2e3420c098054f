//! A compiled `ai.onnx.ml` `TreeEnsemble` ([`Ensemble`], laid out by [`super::compile`]) and
//! its evaluation.
//!
//! [`Ensemble::evaluate`] walks [`LANES`] rows through one tree at a time, step by step in
//! lockstep, each step choosing the next node by an index rather than a branch: the rows'
//! walks are independent, so the processor overlaps them instead of waiting on one
//! mispredicted branch after another, which is what a walk per row costs (ONNX Runtime's
//! kernel). Every walk takes the tree's depth in steps; one that reached its leaf stays there.
//! Rows are copied, 64 at a time, into groups of [`LANES`] with each feature twice, as it is
//! and with NaN as -inf (`interleave`), and a node reads the copy it needs. A
//! `SmallTree`'s arrays have fixed sizes, so its indices need no bounds check. Blocks of a
//! few rows (a small call, or a large call's last rows) walk each row through [`LANES`] small
//! trees at a time instead (`Chunk`), so that lanes do not walk padding. Trees with `==`,
//! `!=` or set membership are walked row by row.
//!
//! The result is the operator's, bit for bit: each row's leaf weights are added to its target
//! in tree order starting from 0.0 (as ONNX Runtime's own kernel does on one thread), `AVERAGE`
//! divides the sum by the number of trees. [`Ensemble::evaluate_on`] shares the rows of a
//! large call among threads.

use std::fmt;
use std::sync::Mutex;

/// Threads that help [`Ensemble::evaluate_on`] with calls of many rows: started once, they
/// wait between calls (starting a thread per call cost about 60 microseconds here).
#[derive(Debug)]
pub struct Helpers {
    pool: rayon::ThreadPool,
    /// The calling thread and the helpers.
    threads: usize,
}

impl Helpers {
    /// `threads - 1` helpers (the caller is the other thread); `None` for one thread, or
    /// when the system starts no more threads.
    pub fn new(threads: usize) -> Option<Helpers> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.checked_sub(1).filter(|&n| n > 0)?)
            .thread_name(|i| format!("tree-helper-{i}"))
            .build()
            .ok()?;
        Some(Helpers { pool, threads })
    }
}

/// Fewest rows worth a thread of their own in [`Ensemble::evaluate_on`] (starting one costs
/// tens of microseconds; 256 rows of 100 trees take about half a millisecond).
pub const MIN_ROWS_PER_THREAD: usize = 256;
/// Blocks of fewer rows are walked one row at a time through [`LANES`] trees in lockstep
/// (`Chunk::Small`), not [`LANES`] rows through one tree: those lanes would walk padding.
/// Lanes of trees walk the deepest of the [`LANES`] trees, so from about 6 rows, lanes of rows
/// are as fast (LightGBM's uneven trees; in process, `examples/tree_kernel_speed`).
const TREES_IN_LANES_BELOW: usize = 6;
/// A tree outside a `Chunk::Small` is walked row by row in blocks of fewer rows than this
/// (lanes of rows would mostly walk padding).
const ROW_BY_ROW_BELOW: usize = 4;
/// Rows walked through a tree together.
pub const LANES: usize = 8;
/// Rows whose scores are accumulated tree after tree before the next rows start: their
/// features stay in the first-level cache while every tree passes over them.
const BLOCK: usize = 64;
/// Bits of [`Node::rule`] (the node's own rule, for trees walked row by row): the branch is
/// taken when `x < split`, `x == split`, `x > split`, x is NaN, or x is in the node's set.
pub(super) const TRUE_IF_LESS: u8 = 1;
pub(super) const TRUE_IF_EQUAL: u8 = 2;
pub(super) const TRUE_IF_GREATER: u8 = 4;
pub(super) const TRUE_IF_NAN: u8 = 8;
pub(super) const TRUE_IF_MEMBER: u8 = 16;
/// The rule of a leaf: every relation takes the branch, which is the leaf itself. No mode
/// has this rule.
pub(super) const LEAF: u8 = TRUE_IF_LESS | TRUE_IF_EQUAL | TRUE_IF_GREATER | TRUE_IF_NAN;

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
pub(super) struct Node {
    /// In a normalised tree the test is `x <= split`, else the node's `rule`.
    pub(super) split: f64,
    pub(super) next: [u32; 2],
    /// Where lane 0's value of the feature sits in a group of interleaved rows (see
    /// [`interleave`]): `(2 * feature + copy) * LANES`, where copy 1 has NaN as -inf (for a
    /// node of a normalised tree whose NaN takes the branch: -inf <= any split but NaN) and
    /// copy 0 keeps NaN (which is <= nothing).
    pub(super) lane_feature: u16,
    pub(super) rule: u8,
}

impl Node {
    pub(super) fn leaf(at: usize) -> Node {
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

/// A node of a `SmallTree`: a normalised node with its tree's own indices, 16 bytes.
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

/// Flat nodes of the largest tree kept in a `SmallTree`, and features its nodes may read.
pub(super) const SMALL_NODES: usize = 128;
pub(super) const SMALL_FEATURES: usize = 64;
/// Values in a group of interleaved rows when every feature read is below [`SMALL_FEATURES`].
const GROUP: usize = 2 * LANES * SMALL_FEATURES;

/// A normalised tree of at most [`SMALL_NODES`] flat nodes, in arrays of fixed size: every
/// index is masked into range, so walking it needs no bounds check (most of a step's cost
/// otherwise).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SmallTree {
    nodes: Box<[SmallNode; SMALL_NODES]>,
    leaf_target: Box<[u32; SMALL_NODES]>,
    leaf_weight: Box<[f64; SMALL_NODES]>,
    depth: u32,
}

impl SmallTree {
    /// The tree of `depth` laid out at `range` of the ensemble's flat nodes (and leaves); at
    /// most [`SMALL_NODES`] of them.
    pub(super) fn new(e: &Ensemble, range: std::ops::Range<usize>, depth: u32) -> SmallTree {
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

    /// The leaves row `k` of `group` reaches in each of `trees` (the deepest of them `depth`
    /// deep): the trees walked in lockstep, as [`SmallTree::walk`] walks rows.
    #[inline(always)]
    fn walk_trees(
        trees: &[SmallTree; LANES],
        depth: u32,
        group: &[f64; GROUP],
        k: usize,
    ) -> [usize; LANES] {
        let k = k % LANES;
        let mut at = [0usize; LANES];
        for _ in 0..depth {
            for (tree, at) in trees.iter().zip(at.iter_mut()) {
                let node = &tree.nodes[*at % SMALL_NODES];
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
pub(super) enum Walk {
    /// `Ensemble::small[i]`, [`LANES`] rows at a time.
    Small(usize),
    /// A normalised tree in `Ensemble::nodes`, [`LANES`] rows at a time.
    Lanes,
    /// Row by row, by each node's own rule.
    Rows,
}

/// Trees taken together when a row is walked through them (blocks of fewer than
/// [`TREES_IN_LANES_BELOW`] rows), in tree order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Chunk {
    /// [`LANES`] consecutive small trees, `Ensemble::small[first..first + LANES]`, walked in
    /// lockstep for one row (their walks are independent, as rows' are through one tree);
    /// `depth` is their deepest.
    Small { first: usize, depth: u32 },
    /// One tree, `Ensemble::trees[t]`, walked by its own [`Walk`].
    Tree(usize),
}

/// Groups `trees` into [`Chunk`]s: every run of [`LANES`] consecutive small trees is one.
pub(super) fn chunks(trees: &[Tree], small: &[SmallTree]) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut t = 0;
    while t < trees.len() {
        let run = trees.get(t..t + LANES).and_then(|run| match run[0].walk {
            Walk::Small(first) => run
                .iter()
                .enumerate()
                .all(|(j, tree)| tree.walk == Walk::Small(first + j))
                .then_some(first),
            _ => None,
        });
        match run {
            Some(first) => {
                let depth = small[first..first + LANES].iter().map(|s| s.depth).max();
                chunks.push(Chunk::Small {
                    first,
                    depth: depth.unwrap_or(0),
                });
                t += LANES;
            }
            None => {
                chunks.push(Chunk::Tree(t));
                t += 1;
            }
        }
    }
    chunks
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Tree {
    pub(super) root: u32,
    /// One past its last flat node.
    pub(super) end: u32,
    /// Interior nodes on the longest path: the steps after which every walk is at a leaf.
    pub(super) depth: u32,
    pub(super) walk: Walk,
}

/// A compiled `TreeEnsemble`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensemble {
    /// Every tree's flat nodes (the small trees' are read from `small`).
    pub(super) nodes: Vec<Node>,
    /// Per flat node: the leaf's target and weight (unused for interior nodes).
    pub(super) leaf_target: Vec<u32>,
    pub(super) leaf_weight: Vec<f64>,
    /// Per flat `BRANCH_MEMBER` node, sorted by node: its set.
    pub(super) sets: Vec<(u32, Vec<f64>)>,
    pub(super) trees: Vec<Tree>,
    pub(super) small: Vec<SmallTree>,
    /// The trees in [`Chunk`]s, for blocks of few rows.
    pub(super) chunks: Vec<Chunk>,
    pub(super) n_targets: usize,
    /// One more than the largest feature any node reads (0 without interior nodes).
    pub(super) n_features_read: usize,
    pub(super) average: bool,
}

impl Ensemble {
    pub fn n_targets(&self) -> usize {
        self.n_targets
    }

    /// [`Ensemble::evaluate`] on this thread and `helpers`, one thread for every
    /// [`MIN_ROWS_PER_THREAD`] rows at most. The threads take the rows in shares of
    /// [`BLOCK`] from one queue until none are left, so a thread the system pauses (the
    /// machine's other work) delays only its share in hand, not half of the call. Every row's
    /// scores are computed as on one thread, so the result is the same.
    pub fn evaluate_on(
        &self,
        helpers: Option<&Helpers>,
        x: &[f64],
        rows: usize,
        columns: usize,
        out: &mut [f64],
    ) -> Result<(), EvaluateError> {
        let threads = helpers
            .map_or(1, |h| h.threads)
            .min(rows / MIN_ROWS_PER_THREAD)
            .max(1);
        let shaped = columns > 0
            && rows.checked_mul(columns) == Some(x.len())
            && rows.checked_mul(self.n_targets) == Some(out.len());
        let Some(helpers) = helpers.filter(|_| threads > 1 && shaped) else {
            // One thread, or a shape `evaluate` reports.
            return self.evaluate(x, rows, columns, out);
        };
        let shares = Mutex::new(
            x.chunks(BLOCK * columns)
                .zip(out.chunks_mut(BLOCK * self.n_targets)),
        );
        let failed = Mutex::new(None);
        let work = || loop {
            let next = shares.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some((x, out)) = next else {
                return;
            };
            if let Err(e) = self.evaluate(x, x.len() / columns, columns, out) {
                *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                return;
            }
        };
        helpers.pool.in_place_scope(|scope| {
            for _ in 1..threads {
                scope.spawn(|_| work());
            }
            work();
        });
        match failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
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
        self.evaluate_in_lanes(x, rows, columns, out);
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
            if block.len < TREES_IN_LANES_BELOW {
                self.walk_block_by_chunks(&block, out);
            } else {
                for tree in &self.trees {
                    self.walk_block(tree, &block, out);
                }
            }
        }
    }

    /// Adds every tree's leaf of each row of `block` (fewer than [`LANES`] rows, one group)
    /// to the row's scores, chunk after chunk.
    fn walk_block_by_chunks(&self, block: &Block<'_>, out: &mut [f64]) {
        for &chunk in &self.chunks {
            match chunk {
                Chunk::Small { first, depth } => {
                    let trees: &[SmallTree; LANES] = self.small[first..first + LANES]
                        .try_into()
                        .expect("a chunk holds LANES trees");
                    let group: &[f64; GROUP] = block.lanes[..GROUP]
                        .try_into()
                        .expect("small trees use GROUP");
                    for k in 0..block.len {
                        let leaves = SmallTree::walk_trees(trees, depth, group, k);
                        let at = out_index(block.first + k, self.n_targets);
                        for (tree, &leaf) in trees.iter().zip(&leaves) {
                            out[at + tree.leaf_target[leaf] as usize] += tree.leaf_weight[leaf];
                        }
                    }
                }
                Chunk::Tree(t) => {
                    let tree = &self.trees[t];
                    if block.len < ROW_BY_ROW_BELOW {
                        for r in 0..block.len {
                            let row = &block.rows[r * block.columns..(r + 1) * block.columns];
                            let leaf = self.walk_row(tree, row);
                            self.add_leaf(out, block.first + r, leaf);
                        }
                    } else {
                        self.walk_block(tree, block, out);
                    }
                }
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
