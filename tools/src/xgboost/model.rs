//! The typed XGBoost model read from a decoded model document (`{"learner": …, "version": …}`),
//! checked and bounded, and the ensemble it predicts with.
//!
//! Only `gbtree` boosters with numeric splits and one output per group are read; `gblinear`,
//! `dart`, categorical splits, vector leaves (multi-target trees) and objectives whose
//! prediction is not listed in [`Objective`] are refused with a message naming them.

use super::XgbError;
use super::value::Value;
use crate::estimator::{XgbNode, XgbTree};

/// Most trees a model may have.
pub const MAX_TREES: usize = 1_000_000;
/// Most tree nodes a model may have in total.
pub const MAX_NODES: usize = 20_000_000;
/// Most input features a model may have.
pub const MAX_FEATURES: usize = 1_000_000;
/// Most classes (output groups) a model may have.
pub const MAX_CLASSES: usize = 10_000;

/// The objectives whose prediction is converted, by how XGBoost's `predict` transforms the
/// margin and how `base_score` becomes the starting margin (`ProbToMargin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// reg:squarederror, reg:squaredlogerror, reg:absoluteerror, reg:pseudohubererror,
    /// reg:quantileerror (one quantile), binary:logitraw: the margin itself.
    Identity,
    /// count:poisson, reg:tweedie, reg:gamma: `expf(margin)`, base margin `logf(base_score)`.
    Exp,
    /// binary:logistic, reg:logistic: `1 / (1 + expf(min(-margin, 88.7)))`, base margin
    /// `-logf(1 / b - 1)` with `b` clamped to `[1e-6, 1 - 1e-6]`.
    Logistic,
    /// multi:softprob: softmax over the classes' margins.
    Softprob,
    /// multi:softmax: the first largest margin's class.
    Softmax,
}

impl Objective {
    fn parse(name: &str) -> Result<Objective, XgbError> {
        Ok(match name {
            "reg:squarederror"
            | "reg:linear"
            | "reg:squaredlogerror"
            | "reg:absoluteerror"
            | "reg:pseudohubererror"
            | "reg:quantileerror"
            | "binary:logitraw" => Objective::Identity,
            "count:poisson" | "reg:tweedie" | "reg:gamma" => Objective::Exp,
            "binary:logistic" | "reg:logistic" => Objective::Logistic,
            "multi:softprob" => Objective::Softprob,
            "multi:softmax" => Objective::Softmax,
            other => {
                return Err(XgbError::Unsupported(format!(
                    "objective {other} (supported: squared, squared log, absolute, pseudo-Huber \
                     and quantile error, poisson, tweedie, gamma, logistic, logitraw, softprob, \
                     softmax)"
                )));
            }
        })
    }

    /// XGBoost's `ProbToMargin` in float32.
    pub fn base_margin(self, base_score: f32) -> f32 {
        match self {
            Objective::Exp => base_score.ln(),
            Objective::Logistic => {
                let b = base_score.clamp(1e-6, 1.0 - 1e-6);
                -(1.0f32 / b - 1.0f32).ln()
            }
            _ => base_score,
        }
    }
}

/// An XGBoost gbtree model as its document describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Booster {
    /// `version` (major, minor, patch) of the XGBoost that wrote it.
    pub version: [i64; 3],
    pub objective_name: String,
    pub objective: Objective,
    /// `base_score` as stored (before `ProbToMargin`): one value, or one per group.
    pub base_score: Vec<f32>,
    /// Output groups: `num_class`, or 1.
    pub n_groups: usize,
    pub n_features: usize,
    pub trees: Vec<XgbTree>,
    /// The output group of each tree.
    pub tree_group: Vec<usize>,
    /// Tree index where each boosting iteration starts, and the tree count last.
    pub iteration_starts: Vec<usize>,
    pub feature_names: Vec<String>,
    /// `attributes` (string values), e.g. `best_iteration`, `scikit_learn`.
    pub attributes: Vec<(String, String)>,
}

impl Booster {
    /// The number of boosting iterations.
    pub fn iterations(&self) -> usize {
        self.iteration_starts.len() - 1
    }

    /// The attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The trees of the first `iterations` iterations (all when `None` or past the end, as
    /// XGBoost clips an iteration range) as `(group, tree)`, in XGBoost's summation order.
    pub fn trees_until(
        &self,
        iterations: Option<usize>,
    ) -> impl Iterator<Item = (usize, &XgbTree)> {
        let end = iterations.filter(|&n| n > 0).map_or(self.trees.len(), |n| {
            self.iteration_starts[n.min(self.iterations())]
        });
        self.tree_group.iter().copied().zip(&self.trees).take(end)
    }

    /// The starting margin of each group.
    pub fn base_margins(&self) -> Vec<f32> {
        (0..self.n_groups)
            .map(|g| {
                let b = if self.base_score.len() == 1 {
                    self.base_score[0]
                } else {
                    self.base_score[g]
                };
                self.objective.base_margin(b)
            })
            .collect()
    }
}

/// Reads a model document: `{"learner": …, "version": …}` (a saved model) or a memory
/// snapshot `{"Config": …, "Model": {"learner": …}}` (a pickle's booster).
pub fn booster(doc: &Value) -> Result<Booster, XgbError> {
    let doc = match doc.get("Model") {
        Some(model) if doc.get("Config").is_some() => model,
        _ => doc,
    };
    let learner = field(doc, "learner", "model")?;
    let version = match doc.get("version") {
        Some(v) => {
            let v = ints(v, "version")?;
            match v[..] {
                [a, b, c] => [a, b, c],
                _ => return Err(invalid("version", "expected 3 numbers")),
            }
        }
        None => return Err(invalid("version", "missing")),
    };
    let gb = field(learner, "gradient_booster", "learner")?;
    let gb_name = string(
        field(gb, "name", "gradient_booster")?,
        "gradient_booster.name",
    )?;
    if gb_name != "gbtree" {
        return Err(XgbError::Unsupported(format!(
            "booster {gb_name} (only gbtree is supported)"
        )));
    }
    let objective_doc = field(learner, "objective", "learner")?;
    let objective_name = string(field(objective_doc, "name", "objective")?, "objective.name")?;
    let objective = Objective::parse(objective_name)?;

    let param = field(learner, "learner_model_param", "learner")?;
    let num_class = numeric_string(param, "num_class", 0..=MAX_CLASSES)?;
    let n_features = numeric_string(param, "num_feature", 1..=MAX_FEATURES)?;
    let num_target = match param.get("num_target") {
        Some(_) => numeric_string(param, "num_target", 1..=MAX_CLASSES)?,
        None => 1,
    };
    if num_target != 1 {
        return Err(XgbError::Unsupported(format!(
            "a model with {num_target} targets (one is supported)"
        )));
    }
    let n_groups = num_class.max(1);
    let multiclass = matches!(objective, Objective::Softprob | Objective::Softmax);
    if multiclass != (num_class > 1) {
        return Err(invalid(
            "learner_model_param.num_class",
            format!("{num_class} classes with objective {objective_name}"),
        ));
    }
    let base_score = base_score(param)?;
    if !(base_score.len() == 1 || base_score.len() == n_groups)
        || base_score.iter().any(|b| !b.is_finite())
    {
        return Err(invalid(
            "learner_model_param.base_score",
            format!("{base_score:?} for {n_groups} output groups"),
        ));
    }

    let model = field(gb, "model", "gradient_booster")?;
    let tree_param = field(model, "gbtree_model_param", "gradient_booster.model")?;
    let num_trees = numeric_string(tree_param, "num_trees", 0..=MAX_TREES)?;
    let num_parallel_tree = match tree_param.get("num_parallel_tree") {
        Some(_) => numeric_string(tree_param, "num_parallel_tree", 1..=MAX_TREES)?,
        None => 1,
    };
    let trees_doc = field(model, "trees", "gradient_booster.model")?;
    let Value::Array(tree_docs) = trees_doc else {
        return Err(invalid(
            "trees",
            format!("expected an array, found {}", trees_doc.kind()),
        ));
    };
    if tree_docs.len() != num_trees {
        return Err(invalid(
            "trees",
            format!(
                "{} trees, gbtree_model_param.num_trees says {num_trees}",
                tree_docs.len()
            ),
        ));
    }
    let tree_info = ints(
        field(model, "tree_info", "gradient_booster.model")?,
        "tree_info",
    )?;
    if tree_info.len() != num_trees {
        return Err(invalid(
            "tree_info",
            format!("{} entries for {num_trees} trees", tree_info.len()),
        ));
    }
    let tree_group = tree_info
        .iter()
        .map(|&g| usize::try_from(g).ok().filter(|&g| g < n_groups))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| invalid("tree_info", format!("a group outside 0..{n_groups}")))?;
    let iteration_starts = match model.get("iteration_indptr") {
        Some(v) => {
            let starts = ints(v, "iteration_indptr")?;
            let starts: Option<Vec<usize>> =
                starts.iter().map(|&s| usize::try_from(s).ok()).collect();
            let starts = starts.unwrap_or_default();
            let ok = starts.first() == Some(&0)
                && starts.last() == Some(&num_trees)
                && starts.windows(2).all(|w| w[0] <= w[1]);
            if !ok {
                return Err(invalid(
                    "iteration_indptr",
                    "not 0 … num_trees, non-decreasing",
                ));
            }
            starts
        }
        None => {
            let layer = num_parallel_tree * n_groups;
            if num_trees % layer != 0 {
                return Err(invalid(
                    "trees",
                    format!("{num_trees} trees are not whole iterations of {layer}"),
                ));
            }
            (0..=num_trees / layer).map(|i| i * layer).collect()
        }
    };

    let mut nodes = 0usize;
    let mut trees = Vec::with_capacity(tree_docs.len());
    for (t, doc) in tree_docs.iter().enumerate() {
        let tree = tree(doc, t, n_features)?;
        nodes += tree.nodes.len();
        if nodes > MAX_NODES {
            return Err(invalid(
                "trees",
                format!("more than {MAX_NODES} nodes in total"),
            ));
        }
        trees.push(tree);
    }

    let feature_names = match learner.get("feature_names") {
        None => vec![],
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| string(n, "feature_names").map(str::to_owned))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(invalid("feature_names", format!("a {}", other.kind()))),
    };
    if !(feature_names.is_empty() || feature_names.len() == n_features) {
        return Err(invalid(
            "feature_names",
            format!("{} names for {n_features} features", feature_names.len()),
        ));
    }
    if let Some(types) = learner.get("feature_types").and_then(|t| match t {
        Value::Array(items) => Some(items),
        _ => None,
    }) && types.iter().any(|t| matches!(t, Value::Str(s) if s == "c"))
    {
        return Err(XgbError::Unsupported(
            "categorical features (feature_types \"c\"); only numeric features are supported"
                .into(),
        ));
    }
    let attributes = match learner.get("attributes") {
        None => vec![],
        Some(Value::Object(entries)) => entries
            .iter()
            .map(|(k, v)| Ok((k.clone(), string(v, "attributes")?.to_owned())))
            .collect::<Result<_, XgbError>>()?,
        Some(other) => return Err(invalid("attributes", format!("a {}", other.kind()))),
    };
    Ok(Booster {
        version,
        objective_name: objective_name.to_owned(),
        objective,
        base_score,
        n_groups,
        n_features,
        trees,
        tree_group,
        iteration_starts,
        feature_names,
        attributes,
    })
}

/// One tree: its nodes reachable from the root (node 0), checked to form a tree.
fn tree(doc: &Value, t: usize, n_features: usize) -> Result<XgbTree, XgbError> {
    let at = |name: &str| format!("trees[{t}].{name}");
    let get = |name: &str| doc.get(name).ok_or_else(|| invalid(&at(name), "missing"));
    if let Some(size) = doc
        .get("tree_param")
        .and_then(|p| p.get("size_leaf_vector"))
    {
        let size = string(size, &at("tree_param.size_leaf_vector"))?;
        if !(size == "0" || size == "1") {
            return Err(XgbError::Unsupported(format!(
                "vector leaves (size_leaf_vector {size}): multi-target trees"
            )));
        }
    }
    let left = ints(get("left_children")?, &at("left_children"))?;
    let right = ints(get("right_children")?, &at("right_children"))?;
    let index = ints(get("split_indices")?, &at("split_indices"))?;
    let cond = f32s(get("split_conditions")?, &at("split_conditions"))?;
    let default_left = ints(get("default_left")?, &at("default_left"))?;
    let n = left.len();
    if n == 0 {
        return Err(invalid(&at("left_children"), "the tree has no nodes"));
    }
    for (name, len) in [
        ("right_children", right.len()),
        ("split_indices", index.len()),
        ("split_conditions", cond.len()),
        ("default_left", default_left.len()),
    ] {
        if len != n {
            return Err(invalid(&at(name), format!("{len} entries for {n} nodes")));
        }
    }
    if let Some(types) = doc.get("split_type") {
        let types = ints(types, &at("split_type"))?;
        if types.iter().any(|&s| s != 0) {
            return Err(XgbError::Unsupported(format!(
                "categorical splits (tree {t}); only numeric splits are supported"
            )));
        }
    }
    if doc
        .get("categories_nodes")
        .and_then(Value::array_len)
        .unwrap_or(0)
        > 0
    {
        return Err(XgbError::Unsupported(format!(
            "categorical splits (tree {t}); only numeric splits are supported"
        )));
    }
    // Walk from the root: every reachable node once (no cycles, no sharing).
    let mut order = Vec::new();
    let mut renumber = vec![usize::MAX; n];
    let mut stack = vec![0usize];
    while let Some(i) = stack.pop() {
        if renumber[i] != usize::MAX {
            return Err(invalid(
                &at("left_children"),
                format!("node {i} is reached twice"),
            ));
        }
        renumber[i] = order.len();
        order.push(i);
        if left[i] != -1 {
            for child in [right[i], left[i]] {
                let c = usize::try_from(child)
                    .ok()
                    .filter(|&c| c < n)
                    .ok_or_else(|| {
                        invalid(&at("left_children"), format!("node {i} has child {child}"))
                    })?;
                stack.push(c);
            }
        } else if right[i] != -1 {
            return Err(invalid(
                &at("right_children"),
                format!("leaf {i} has a right child"),
            ));
        }
    }
    let mut nodes = Vec::with_capacity(order.len());
    for &i in &order {
        nodes.push(if left[i] == -1 {
            XgbNode::Leaf(cond[i])
        } else {
            let feature = usize::try_from(index[i])
                .ok()
                .filter(|&f| f < n_features)
                .ok_or_else(|| {
                    invalid(
                        &at("split_indices"),
                        format!(
                            "node {i} splits on feature {}, the model has {n_features}",
                            index[i]
                        ),
                    )
                })?;
            if cond[i].is_nan() {
                return Err(invalid(&at("split_conditions"), format!("node {i} is NaN")));
            }
            XgbNode::Split {
                feature,
                threshold: cond[i],
                default_left: default_left[i] != 0,
                left: renumber[left[i] as usize],
                right: renumber[right[i] as usize],
            }
        });
    }
    Ok(XgbTree { nodes })
}

/// `base_score`: `"5E-1"` (before 3.1) or `"[5E-1,…]"` (a JSON array in a string).
fn base_score(param: &Value) -> Result<Vec<f32>, XgbError> {
    let text = string(
        field(param, "base_score", "learner_model_param")?,
        "base_score",
    )?;
    let parsed = super::json::parse(text.as_bytes())
        .map_err(|e| invalid("learner_model_param.base_score", e.to_string()))?;
    match &parsed {
        Value::Array(items) if !items.is_empty() => f32s(&parsed, "base_score"),
        Value::Array(_) => Err(invalid("learner_model_param.base_score", "empty")),
        v => Ok(vec![number_f32(v).ok_or_else(|| {
            invalid(
                "learner_model_param.base_score",
                format!("{text:?} is not a number"),
            )
        })?]),
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> XgbError {
    XgbError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn field<'v>(v: &'v Value, name: &str, within: &str) -> Result<&'v Value, XgbError> {
    v.get(name)
        .ok_or_else(|| invalid(&format!("{within}.{name}"), "missing"))
}

fn string<'v>(v: &'v Value, path: &str) -> Result<&'v str, XgbError> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(invalid(
            path,
            format!("expected a string, found a {}", other.kind()),
        )),
    }
}

/// An integer stored as a decimal string (XGBoost's parameters), within `range`.
fn numeric_string(
    v: &Value,
    name: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, XgbError> {
    let text = string(v.get(name).ok_or_else(|| invalid(name, "missing"))?, name)?;
    text.parse::<usize>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| invalid(name, format!("{text:?} is not an integer in {range:?}")))
}

fn number_f32(v: &Value) -> Option<f32> {
    match v {
        Value::Float { f32, .. } => Some(*f32),
        // i64 → f32 rounds once, correctly.
        Value::Int(i) => Some(*i as f32),
        _ => None,
    }
}

/// An array of integers (JSON integers or booleans, or a typed UBJSON array).
fn ints(v: &Value, path: &str) -> Result<Vec<i64>, XgbError> {
    match v {
        Value::Ints(items) => Ok(items.clone()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Int(i) => Ok(*i),
                Value::Bool(b) => Ok(i64::from(*b)),
                other => Err(invalid(
                    path,
                    format!("expected integers, found a {}", other.kind()),
                )),
            })
            .collect(),
        other => Err(invalid(
            path,
            format!("expected an array, found a {}", other.kind()),
        )),
    }
}

/// An array of float32 values (JSON numbers or a typed UBJSON float32 array).
fn f32s(v: &Value, path: &str) -> Result<Vec<f32>, XgbError> {
    match v {
        Value::F32s(items) => Ok(items.clone()),
        Value::F64s(items) => Ok(items.iter().map(|&x| x as f32).collect()),
        Value::Ints(items) => Ok(items.iter().map(|&x| x as f32).collect()),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                number_f32(item).ok_or_else(|| {
                    invalid(path, format!("expected numbers, found a {}", item.kind()))
                })
            })
            .collect(),
        other => Err(invalid(
            path,
            format!("expected an array, found a {}", other.kind()),
        )),
    }
}
