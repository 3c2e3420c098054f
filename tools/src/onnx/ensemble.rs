//! The attributes of one `ai.onnx.ml` opset-5 `TreeEnsemble` in double (SUM of leaf weights,
//! no post transform), built tree by tree: shared by the ensembles that route NaN and test
//! set membership themselves ([`super::hist`], [`super::lightgbm`]), and [`super::xgboost`].

use super::graph::{attr_int, attr_ints, attr_tensor, tensor_f64, tensor_u8};
use super::proto::AttributeProto;

/// `nodes_modes` values.
pub const BRANCH_LEQ: u8 = 0;
pub const BRANCH_LT: u8 = 1;
pub const BRANCH_GT: u8 = 3;
pub const BRANCH_MEMBER: u8 = 6;
/// `aggregate_function` SUM.
const SUM: i64 = 1;

/// The `TreeEnsemble` attributes, built tree by tree.
#[derive(Debug, Default)]
pub struct Structure {
    pub tree_roots: Vec<i64>,
    pub featureids: Vec<i64>,
    pub modes: Vec<u8>,
    pub splits: Vec<f64>,
    pub truenodeids: Vec<i64>,
    pub trueleafs: Vec<i64>,
    pub falsenodeids: Vec<i64>,
    pub falseleafs: Vec<i64>,
    pub missing_tracks_true: Vec<i64>,
    /// The sets of the `BRANCH_MEMBER` nodes in node order, NaN between two sets.
    pub membership: Vec<f64>,
    pub leaf_targets: Vec<i64>,
    pub leaf_weights: Vec<f64>,
}

impl Structure {
    pub fn attributes(&self, n_scores: usize) -> Vec<AttributeProto> {
        let mut attributes = vec![
            attr_int("n_targets", n_scores as i64),
            attr_int("aggregate_function", SUM),
            attr_int("post_transform", 0),
            attr_ints("tree_roots", self.tree_roots.clone()),
            attr_ints("nodes_featureids", self.featureids.clone()),
            attr_tensor(
                "nodes_splits",
                tensor_f64(&[self.splits.len()], &self.splits),
            ),
            attr_tensor("nodes_modes", tensor_u8(&self.modes)),
            attr_ints("nodes_truenodeids", self.truenodeids.clone()),
            attr_ints("nodes_trueleafs", self.trueleafs.clone()),
            attr_ints("nodes_falsenodeids", self.falsenodeids.clone()),
            attr_ints("nodes_falseleafs", self.falseleafs.clone()),
            attr_ints(
                "nodes_missing_value_tracks_true",
                self.missing_tracks_true.clone(),
            ),
            attr_ints("leaf_targetids", self.leaf_targets.clone()),
            attr_tensor(
                "leaf_weights",
                tensor_f64(&[self.leaf_weights.len()], &self.leaf_weights),
            ),
        ];
        if self.modes.contains(&BRANCH_MEMBER) {
            attributes.push(attr_tensor(
                "membership_values",
                tensor_f64(&[self.membership.len()], &self.membership),
            ));
        }
        attributes
    }

    /// Appends one interior node; `(id, is_leaf)` for each branch.
    pub fn push(
        &mut self,
        feature: usize,
        mode: u8,
        split: f64,
        on_true: (i64, i64),
        on_false: (i64, i64),
        missing_true: bool,
    ) {
        self.featureids.push(feature as i64);
        self.modes.push(mode);
        self.splits.push(split);
        self.truenodeids.push(on_true.0);
        self.trueleafs.push(on_true.1);
        self.falsenodeids.push(on_false.0);
        self.falseleafs.push(on_false.1);
        self.missing_tracks_true.push(i64::from(missing_true));
    }

    pub fn push_set(&mut self, set: &[f64]) {
        if !self.membership.is_empty() {
            self.membership.push(f64::NAN);
        }
        self.membership.extend_from_slice(set);
    }
}
