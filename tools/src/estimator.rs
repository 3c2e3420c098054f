//! Typed scikit-learn models, as extracted from a pickle and before they become ONNX.
//!
//! This is the boundary between the two halves of `convert-models`: `sklearn` turns a decoded
//! pickle [`crate::pickle::Graph`] into a [`Model`], and `onnx` turns a [`Model`] into an ONNX
//! graph. Everything here is plain data in float64.

/// A whole model: preprocessing steps (from a Pipeline) followed by one final estimator.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Human-readable estimator description, e.g. `RandomForestRegressor` or
    /// `Pipeline(StandardScaler, Ridge)`; recorded in the ONNX metadata.
    pub kind: String,
    /// Column names the model was fit with (`feature_names_in_`), if it was fit on a DataFrame.
    pub feature_names: Option<Vec<String>>,
    /// The model's input width (before preprocessing).
    pub n_features: usize,
    pub n_targets: usize,
    /// `_sklearn_version` from the pickle (empty if absent).
    pub sklearn_version: String,
    /// Preprocessing applied in order before the estimator (a Pipeline's transform steps).
    pub steps: Vec<Step>,
    pub estimator: Estimator,
    /// For a classifier: how the estimator's `n_targets` outputs (its scores, or the class
    /// probabilities) become sklearn's `predict` and `predict_proba`; `None` for a regressor.
    pub classifier: Option<Classifier>,
    /// Whether the final estimator accepts NaN (a missing value) in every one of its input
    /// columns; with [`Model::steps`] this decides which features are nullable
    /// ([`Model::nullable`]).
    pub accepts_missing: bool,
}

impl Model {
    /// Per input column: whether it is a string feature (read by a string part of the
    /// model's first step, a ColumnTransformer).
    pub fn string_columns(&self) -> Vec<bool> {
        let mut strings = vec![false; self.n_features];
        if let Some(Step::Columns(parts)) = self.steps.first() {
            for part in parts.iter().filter(|p| p.strings) {
                for &j in &part.columns {
                    if let Some(s) = strings.get_mut(j) {
                        *s = true;
                    }
                }
            }
        }
        strings
    }

    /// Per input column: the categories an encoder that refuses unknown values reads there
    /// directly (or after an imputer), without the missing category; `None` if any value is
    /// accepted.
    pub fn refused_outside(&self) -> Vec<Option<Categories>> {
        let mut out = vec![None; self.n_features];
        if let Some(Step::Columns(parts)) = self.steps.first() {
            for part in parts {
                let encoder = part.steps.iter().find_map(|s| match s {
                    Step::Encode(e) => Some(e),
                    _ => None,
                });
                let only_fill = part.steps.iter().all(|s| match s {
                    Step::Encode(_) | Step::FillStrings(_) => true,
                    Step::Impute(i) => i.indicator.is_empty() && i.keep.len() == i.statistics.len(),
                    _ => false,
                });
                let Some(encodings) = encoder.filter(|_| only_fill) else {
                    continue;
                };
                for (&j, e) in part.columns.iter().zip(encodings) {
                    if e.refuse_unknown && out.get(j).is_some() {
                        out[j] = Some(match &e.categories {
                            Categories::Numbers(c) => Categories::Numbers(
                                c.iter().copied().filter(|v| !v.is_nan()).collect(),
                            ),
                            Categories::Strings(c) => Categories::Strings(
                                c.iter().filter(|v| !v.is_empty()).cloned().collect(),
                            ),
                        });
                    }
                }
            }
        }
        out
    }

    /// Per input column: whether the model accepts a missing value (NaN) there, i.e. an imputer
    /// replaces it before anything that refuses NaN, or the final estimator accepts NaN.
    pub fn nullable(&self) -> Vec<bool> {
        let width = steps_width(&self.steps, self.n_features).unwrap_or(0);
        chain_nullable(
            &self.steps,
            self.n_features,
            vec![self.accepts_missing; width],
        )
    }
}

/// The width after `steps` applied to `width` columns, or `None` if a step does not fit.
pub fn steps_width(steps: &[Step], width: usize) -> Option<usize> {
    steps.iter().try_fold(width, |w, step| step.width(w))
}

/// Input-column nullability of a chain of steps whose output columns accept NaN per `out`.
fn chain_nullable(steps: &[Step], width: usize, out: Vec<bool>) -> Vec<bool> {
    let Some((last, before)) = steps.split_last() else {
        return out;
    };
    let last_in = steps_width(before, width).unwrap_or(0);
    let accepted = last.nullable(last_in, &out);
    chain_nullable(before, width, accepted)
}

/// One preprocessing step, computed in float64 as sklearn's `transform` does.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Per column `x = x <op> values[j]` (the scalers, one operation each, in sklearn's order;
    /// NaN passes through).
    Arith { op: ArithOp, values: Vec<f64> },
    /// `np.clip(x, min, max)` (MinMaxScaler with `clip=True`; NaN passes through).
    Clip { min: f64, max: f64 },
    /// SimpleImputer on NaN.
    Impute(Imputer),
    /// ColumnTransformer: each part reads some columns; the outputs are concatenated in order.
    Columns(Vec<ColumnPart>),
    /// SimpleImputer on string columns: a missing value (`""`) in column `j` becomes `fill[j]`
    /// (strings in, strings out).
    FillStrings(Vec<String>),
    /// OneHotEncoder / OrdinalEncoder: one [`Encoding`] per input column, their outputs
    /// concatenated in column order.
    Encode(Vec<Encoding>),
}

/// How an encoder turns one column into numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    pub categories: Categories,
    /// Whether a value outside `categories` is refused (`handle_unknown='error'`): the graph
    /// then never sees one (the feature's metadata lists the categories).
    pub refuse_unknown: bool,
    pub output: EncodingOutput,
}

/// sklearn's `categories_` of one column, the missing category (if seen in training) as NaN
/// (numbers) or `""` (strings).
#[derive(Debug, Clone, PartialEq)]
pub enum Categories {
    Numbers(Vec<f64>),
    Strings(Vec<String>),
}

impl Categories {
    pub fn len(&self) -> usize {
        match self {
            Categories::Numbers(c) => c.len(),
            Categories::Strings(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index of the missing category (NaN or `""`), if any.
    pub fn missing(&self) -> Option<usize> {
        match self {
            Categories::Numbers(c) => c.iter().position(|v| v.is_nan()),
            Categories::Strings(c) => c.iter().position(String::is_empty),
        }
    }
}

/// What an [`Encoding`] outputs.
#[derive(Debug, Clone, PartialEq)]
pub enum EncodingOutput {
    /// OneHotEncoder: one 0/1 column per entry (after `drop` and infrequent grouping).
    OneHot(Vec<OneHotColumn>),
    /// OrdinalEncoder: the category's index; `unknown` for a value outside the categories;
    /// `missing` (if set) for the missing category.
    Ordinal { unknown: f64, missing: Option<f64> },
}

/// One output column of a OneHotEncoder: 1 iff the value is one of `categories` (indices into
/// [`Categories`]) or, if `unknown`, outside all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct OneHotColumn {
    pub categories: Vec<usize>,
    pub unknown: bool,
}

impl Encoding {
    pub fn width(&self) -> usize {
        match &self.output {
            EncodingOutput::OneHot(columns) => columns.len(),
            EncodingOutput::Ordinal { .. } => 1,
        }
    }
}

/// The arithmetic of a [`Step::Arith`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Sub,
    Div,
    Mul,
    Add,
}

/// SimpleImputer (`missing_values=NaN`): NaN in column `j` becomes `statistics[j]`; the output
/// is the columns `keep` (sklearn drops the columns whose statistic is NaN), then one 0/1
/// column per `indicator` input column (MissingIndicator's `features_`, from `add_indicator`).
#[derive(Debug, Clone, PartialEq)]
pub struct Imputer {
    pub statistics: Vec<f64>,
    pub keep: Vec<usize>,
    pub indicator: Vec<usize>,
}

/// One transformer of a ColumnTransformer (or its `remainder='passthrough'`): `steps` applied
/// to the input columns `columns`, in that order (no steps: passthrough). `strings`: the
/// columns are string features (only in the model's first step), which `steps` encode.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnPart {
    pub columns: Vec<usize>,
    pub strings: bool,
    pub steps: Vec<Step>,
}

impl Step {
    /// The output width for `width` input columns, or `None` if the step does not fit them.
    pub fn width(&self, width: usize) -> Option<usize> {
        match self {
            Step::Arith { values, .. } => (values.len() == width).then_some(width),
            Step::Clip { .. } => Some(width),
            Step::Impute(imputer) => {
                let fits = imputer.statistics.len() == width
                    && imputer
                        .keep
                        .iter()
                        .chain(&imputer.indicator)
                        .all(|&j| j < width);
                fits.then_some(imputer.keep.len() + imputer.indicator.len())
            }
            Step::FillStrings(fill) => (fill.len() == width).then_some(width),
            Step::Encode(encodings) => {
                (encodings.len() == width).then(|| encodings.iter().map(Encoding::width).sum())
            }
            Step::Columns(parts) => parts.iter().try_fold(0, |total, part| {
                if part.columns.iter().any(|&j| j >= width) {
                    return None;
                }
                Some(total + steps_width(&part.steps, part.columns.len())?)
            }),
        }
    }

    /// Which of the `width` input columns accept NaN, given which output columns do.
    fn nullable(&self, width: usize, out: &[bool]) -> Vec<bool> {
        match self {
            Step::Arith { .. } | Step::Clip { .. } => out.to_vec(),
            Step::Impute(_) | Step::FillStrings(_) => vec![true; width],
            Step::Encode(encodings) => encodings
                .iter()
                .map(|e| e.categories.missing().is_some() || !e.refuse_unknown)
                .collect(),
            Step::Columns(parts) => {
                // A column no part reads is ignored, so anything is accepted there.
                let mut accepted = vec![true; width];
                let mut offset = 0;
                for part in parts {
                    let n_out = steps_width(&part.steps, part.columns.len()).unwrap_or(0);
                    let part_out = out.get(offset..offset + n_out).unwrap_or(&[]).to_vec();
                    offset += n_out;
                    let part_in = chain_nullable(&part.steps, part.columns.len(), part_out);
                    for (&j, ok) in part.columns.iter().zip(part_in) {
                        if let Some(a) = accepted.get_mut(j) {
                            *a &= ok;
                        }
                    }
                }
                accepted
            }
        }
    }
}

/// What makes a model a classifier: its classes and how its scores become probabilities
/// and a label.
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    /// sklearn's `classes_`, in order (the label output is an index into them).
    pub classes: Vec<onnx_model::contract::ClassLabel>,
    pub probabilities: Probabilities,
    pub label: LabelRule,
}

/// From the estimator's scores `d` (`[N, K]`) to `predict_proba` (`[N, n_classes]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probabilities {
    /// The scores are the probabilities (tree leaves normalised per tree, then averaged).
    Scores,
    /// `K = 1`: `p1 = expit(d)`, `p0 = 1 - p1` (binary logistic regression and boosting).
    BinaryExpit,
    /// `K = 1`: `softmax([-d, d])` (LogisticRegression multinomial on two classes).
    BinarySoftmax,
    /// `K = n_classes`: `softmax(d)` (multinomial logistic regression and boosting).
    Softmax,
    /// `K = n_classes`: `expit(d)` normalised to sum 1 (one-vs-rest logistic regression).
    OneVsRest,
    /// `K = n_classes`: `expit(d)` per class, not normalised (LightGBM's `multiclassova`).
    Sigmoids,
}

/// How sklearn's `predict` picks the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelRule {
    /// The first largest probability (trees, forests; boosting before sklearn 1.4).
    ArgmaxProbabilities,
    /// The first largest score (`K = n_classes`).
    ArgmaxScores,
    /// `K = 1`: class 1 iff `d > 0` (linear classifiers).
    Positive,
    /// `K = 1`: class 1 iff `d >= 0` (GradientBoostingClassifier since sklearn 1.4).
    NonNegative,
    /// The estimator writes the label itself (XGBoost's float32 head).
    Given,
}

/// The final estimator.
#[derive(Debug, Clone, PartialEq)]
pub enum Estimator {
    Linear(Linear),
    Trees(TreeEnsemble),
    /// HistGradientBoostingRegressor / HistGradientBoostingClassifier.
    Hist(HistGradientBoosting),
    /// A LightGBM booster (a native text model, or inside LGBMRegressor / LGBMClassifier).
    LightGbm(LightGbm),
    /// An XGBoost tree booster (its sklearn wrappers or a native model file), in float32.
    XGBoost(XGBoost),
}

/// `y = x @ coef.T + intercept` (the linear regressors; LogisticRegression's decision
/// function).
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// `[n_targets][n_features]`.
    pub coef: Vec<Vec<f64>>,
    /// `[n_targets]`.
    pub intercept: Vec<f64>,
}

/// How the trees of an ensemble combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Mean of the trees' leaf values (DecisionTree, RandomForest, ExtraTrees).
    Average,
    /// Sum of the trees' leaf values times `leaf_scale` (GradientBoosting).
    Sum,
}

/// DecisionTree / RandomForest / ExtraTrees / GradientBoosting.
///
/// `y = base + aggregate(leaf values) * leaf_scale`, per target. Inputs are rounded to float32
/// before thresholds are compared, as sklearn does.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeEnsemble {
    pub trees: Vec<Tree>,
    pub aggregate: Aggregate,
    /// Multiplies every leaf value (the learning rate for GradientBoosting, 1.0 otherwise).
    pub leaf_scale: f64,
    /// Added to every prediction (GradientBoosting's init constant; zeros otherwise), `[n_targets]`.
    pub base: Vec<f64>,
}

/// One fitted sklearn tree (`tree_`), node-indexed as in sklearn.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    /// Child indices; `-1` at leaves (TREE_LEAF).
    pub left: Vec<i64>,
    pub right: Vec<i64>,
    /// Feature index per node (`-2` at leaves).
    pub feature: Vec<i64>,
    /// float64 split threshold per node: go left iff `(double)(float)x <= threshold`.
    pub threshold: Vec<f64>,
    /// Where NaN goes per node (sklearn >= 1.3); `None` for older trees (NaN goes right there,
    /// since `NaN <= t` is false).
    pub missing_go_to_left: Option<Vec<bool>>,
    /// Leaf (and node) values, `[node_count][n_targets]`.
    pub values: Vec<Vec<f64>>,
}

// === HistGradientBoosting ===

/// A fitted HistGradientBoostingRegressor or HistGradientBoostingClassifier.
///
/// Raw scores `raw[k] = baseline[k] + Σ value of the leaf each tree of class k reaches`,
/// compared in float64 as sklearn does (no float32 rounding); then the [`HistOutput`] turns
/// them into predictions.
#[derive(Debug, Clone, PartialEq)]
pub struct HistGradientBoosting {
    /// Every tree of every iteration, in sklearn's order (iteration-major, then class).
    pub trees: Vec<HistTree>,
    /// `_baseline_prediction`, one per raw score (`n_trees_per_iteration_`).
    pub baseline: Vec<f64>,
    /// Per input feature: whether sklearn reads it as a category code (`is_categorical_`).
    pub categorical: Vec<bool>,
    pub output: HistOutput,
}

/// What the raw scores become.
#[derive(Debug, Clone, PartialEq)]
pub enum HistOutput {
    /// A regressor: the identity link (squared/absolute error, quantile) or `exp` (the log
    /// link of the poisson and gamma losses); one raw score.
    Regression { exp: bool },
    /// A classifier: the raw scores, one (binary) or one per class, which
    /// [`Model::classifier`] turns into probabilities and a label.
    Classification,
}

/// One HistGradientBoosting tree (a `TreePredictor`), contributing to raw score `class`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistTree {
    pub class: usize,
    /// sklearn's node order: node 0 is the root, children come after their parent.
    pub nodes: Vec<HistNode>,
}

/// One node of a [`HistTree`].
#[derive(Debug, Clone, PartialEq)]
pub enum HistNode {
    /// A leaf and its value (the learning rate is already applied by sklearn).
    Leaf(f64),
    Split {
        feature: usize,
        /// Where NaN goes (and, on categorical splits, negative and unknown categories).
        missing_go_to_left: bool,
        left: usize,
        right: usize,
        test: HistTest,
    },
}

/// How a split node decides between its children.
#[derive(Debug, Clone, PartialEq)]
pub enum HistTest {
    /// Left iff `x <= threshold` (float64).
    Numeric(f64),
    /// Left iff the category `(uint8)x` is in `left`; otherwise right iff it is one of
    /// `known` (the categories seen in training), else as missing.
    Categorical { left: Vec<u8>, known: Vec<u8> },
}

// === LightGBM ===

/// A LightGBM booster as its C++ `GBDT::Predict` computes it, in float64.
///
/// Raw score `k` is `0.0 + Σ` (in tree order) of the leaf reached in each tree `i` with
/// `i % n_scores == k`; the [`LightGbmOutput`] then applies the objective's link. Before the
/// trees, LightGBM reads `|x| <= kZeroThreshold` (1e-35f) as 0.
#[derive(Debug, Clone, PartialEq)]
pub struct LightGbm {
    /// The objective's name as the model records it (`poisson`, `multiclassova`, ...).
    pub objective: String,
    /// The trees used for prediction (after `best_iteration`), iteration-major.
    pub trees: Vec<LightGbmTree>,
    /// Raw scores per row (`num_tree_per_iteration`).
    pub n_scores: usize,
    pub output: LightGbmOutput,
}

/// What the raw scores become.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LightGbmOutput {
    /// A regressor: identity (regression, regression_l1, huber, fair, quantile, mape).
    Identity,
    /// A regressor: `exp(raw)` (poisson, gamma, tweedie).
    Exp,
    /// A regressor: `1 / (1 + exp(-scale * raw))` (cross_entropy; binary read as a regressor).
    Sigmoid { scale: f64 },
    /// A classifier: the scores `scale * raw` go to the classifier head ([`Model::classifier`]),
    /// which applies the sigmoid (binary, multiclassova) or the softmax (multiclass, scale 1).
    Scores { scale: f64 },
}

/// One LightGBM tree: internal node 0 is the root; without internal nodes it is the single
/// leaf `leaves[0]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LightGbmTree {
    pub nodes: Vec<LightGbmNode>,
    pub leaves: Vec<f64>,
}

/// One internal node of a [`LightGbmTree`].
#[derive(Debug, Clone, PartialEq)]
pub struct LightGbmNode {
    pub feature: usize,
    pub left: LightGbmChild,
    pub right: LightGbmChild,
    pub test: LightGbmTest,
}

/// A child of a [`LightGbmNode`]: another internal node (after its parent) or a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LightGbmChild {
    Node(usize),
    Leaf(usize),
}

/// How a [`LightGbmNode`] decides (`Tree::NumericalDecision` / `Tree::CategoricalDecision`).
#[derive(Debug, Clone, PartialEq)]
pub enum LightGbmTest {
    /// Left iff `x <= threshold`, after the node's missing-value rule: with `None` NaN reads
    /// as 0; with `Zero` NaN and 0 go to the default side; with `NaN` NaN does.
    Numeric {
        threshold: f64,
        missing: LightGbmMissing,
        default_left: bool,
    },
    /// Left iff `(int)x` (C truncation) is one of `categories`; NaN and negatives go right.
    Categorical { categories: Vec<u32> },
}

/// A numeric node's `missing_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LightGbmMissing {
    None,
    Zero,
    NaN,
}

/// An XGBoost tree booster as its `predict` computes, in float32: inputs rounded to float32,
/// `x < threshold` goes left and NaN the `default_left` way, each group's margin summed from
/// its base margin tree by tree in order, then the objective's transform.
#[derive(Debug, Clone, PartialEq)]
pub struct XGBoost {
    /// One per output group (class), in order.
    pub groups: Vec<XgbGroup>,
    pub output: XgbOutput,
    /// The objective and the XGBoost that wrote the model, e.g. `reg:gamma, XGBoost 3.2.0`
    /// (for the model's description).
    pub about: String,
}

/// The trees summed into one output group, starting from `base_margin`.
#[derive(Debug, Clone, PartialEq)]
pub struct XgbGroup {
    pub base_margin: f32,
    pub trees: Vec<XgbTree>,
}

/// One tree; node 0 is the root.
#[derive(Debug, Clone, PartialEq)]
pub struct XgbTree {
    pub nodes: Vec<XgbNode>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum XgbNode {
    Leaf(f32),
    Split {
        feature: usize,
        threshold: f32,
        default_left: bool,
        left: usize,
        right: usize,
    },
}

/// What the model outputs from its float32 margins `[N, groups]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XgbOutput {
    /// A regressor's margin (identity objectives), or the margins themselves (`output_margin`).
    Margin,
    /// A regressor's `expf(margin)` (poisson, tweedie, gamma).
    Exp,
    /// A regressor's sigmoid (reg:logistic).
    Sigmoid,
    /// XGBClassifier, binary:logistic: `p = sigmoid(margin)`, probabilities `[1 - p, p]`,
    /// label `p > 0.5`.
    Binary,
    /// XGBClassifier, multi:softprob: probabilities XGBoost's softmax, label their first
    /// largest.
    Softprob,
    /// XGBClassifier, multi:softmax: label the first largest margin, probabilities scipy's
    /// softmax of the margins (float32).
    Softmax,
}
