//! A bounded parser for LightGBM's text model format (`Booster.save_model`,
//! `model_to_string`; format versions v3 and v4).
//!
//! The layout, as `GBDT::SaveModelToString` writes it and `GBDT::LoadModelFromString` /
//! `Tree::Tree(const char*)` read it: a `tree` line, header `key=value` lines up to the first
//! `Tree=0` line, then per tree a `Tree=i` line and its `key=value` lines up to a blank line,
//! then `end of trees` and the feature importances, `parameters:` … `end of parameters` and
//! `pandas_categorical:…`. Every count is checked against the text actually present (an
//! array's length against `num_leaves`, `num_cat` and `cat_boundaries`), lines and totals are
//! capped ([`MAX_LINE`], [`MAX_TREES`], [`MAX_LEAVES`], [`MAX_FEATURES`], [`MAX_TOTAL_LEAVES`],
//! [`MAX_CATEGORY_WORDS`], [`MAX_CATEGORIES`]), and nothing is allocated before the bytes it describes were seen.
//! Every error names the key and the tree.

/// Most bytes of one line (a 131072-leaf tree's `leaf_value` line takes about 3 MB).
pub const MAX_LINE: usize = 64 << 20;
/// Most trees a model may have.
pub const MAX_TREES: usize = 100_000;
/// Most leaves of one tree (LightGBM's own `num_leaves` limit is 131072).
pub const MAX_LEAVES: usize = 131_072;
/// Most input features (`max_feature_idx + 1`).
pub const MAX_FEATURES: usize = 1_000_000;
/// Most classes (`num_class`).
pub const MAX_CLASSES: usize = 10_000;
/// Most leaves over all trees.
pub const MAX_TOTAL_LEAVES: usize = 20_000_000;
/// Most 32-bit words of categorical bitsets over all trees.
pub const MAX_CATEGORY_WORDS: usize = 1_000_000;
/// Most categories (set bits) in all categorical splits together.
pub const MAX_CATEGORIES: usize = 2_000_000;
/// Most `key=value` lines of one tree (LightGBM writes about 20).
const MAX_TREE_KEYS: usize = 64;

/// `decision_type` bits (`include/LightGBM/tree.h`).
const CATEGORICAL_MASK: i8 = 1;
const DEFAULT_LEFT_MASK: i8 = 2;

/// A parsed model: the header and the trees, as written (nothing applied yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Booster {
    /// `version=` (`v3`, `v4`).
    pub version: String,
    pub num_class: usize,
    /// Trees per boosting iteration (`num_class` for multiclass, else 1).
    pub num_tree_per_iteration: usize,
    /// `max_feature_idx + 1`.
    pub n_features: usize,
    /// `objective=` as written, e.g. `binary sigmoid:1` (`None` without an objective line).
    pub objective: Option<String>,
    pub feature_names: Vec<String>,
    /// `average_output` (random-forest boosting).
    pub average_output: bool,
    /// `[linear_tree: 1]` in the parameters or `is_linear=1` on a tree.
    pub linear_tree: bool,
    /// `pandas_categorical:` as written (`None` when absent or `null`).
    pub pandas_categorical: Option<String>,
    pub trees: Vec<Tree>,
}

/// One tree, as written. A single-leaf tree has no internal nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    pub num_leaves: usize,
    pub num_cat: usize,
    /// Per internal node (`num_leaves - 1` of them).
    pub split_feature: Vec<usize>,
    pub threshold: Vec<f64>,
    pub decision_type: Vec<i8>,
    /// A child `c >= 0` is internal node `c`; `c < 0` is leaf `!c`.
    pub left_child: Vec<i32>,
    pub right_child: Vec<i32>,
    pub leaf_value: Vec<f64>,
    /// `num_cat + 1` offsets into `cat_threshold`.
    pub cat_boundaries: Vec<usize>,
    pub cat_threshold: Vec<u32>,
}

/// Where a node sends a missing value (`missing_type` in `decision_type` bits 2-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingType {
    /// NaN is read as 0.0.
    None,
    /// 0 (|x| <= 1e-35) and NaN go to the default side.
    Zero,
    /// NaN goes to the default side.
    NaN,
}

impl Tree {
    /// Whether internal node `i` is a categorical split. LightGBM reads the categorical bit
    /// only in trees with categorical splits (`num_cat > 0`).
    pub fn is_categorical(&self, i: usize) -> bool {
        self.num_cat > 0 && self.decision_type[i] & CATEGORICAL_MASK != 0
    }

    pub fn default_left(&self, i: usize) -> bool {
        self.decision_type[i] & DEFAULT_LEFT_MASK != 0
    }

    pub fn missing_type(&self, i: usize) -> MissingType {
        match (self.decision_type[i] >> 2) & 3 {
            1 => MissingType::Zero,
            2 => MissingType::NaN,
            _ => MissingType::None, // 3 is refused by the parser
        }
    }

    /// The categories of categorical node `i`'s bitset: left iff `(int)x` is one of them.
    pub fn categories(&self, i: usize) -> Vec<u32> {
        let index = self.threshold[i] as usize; // checked by the parser
        let words = &self.cat_threshold[self.cat_boundaries[index]..self.cat_boundaries[index + 1]];
        let mut out = Vec::new();
        for (w, word) in words.iter().enumerate() {
            for bit in 0..32 {
                if word >> bit & 1 == 1 {
                    out.push(w as u32 * 32 + bit);
                }
            }
        }
        out
    }
}

/// Why a text model was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("LightGBM model text, {place}: {reason}")]
pub struct TextError {
    /// Where: `header`, `tree 3`, `tree 3, key leaf_value`, `line 12`.
    pub place: String,
    pub reason: String,
}

fn error(place: impl Into<String>, reason: impl Into<String>) -> TextError {
    TextError {
        place: place.into(),
        reason: reason.into(),
    }
}

/// Whether `bytes` start like a LightGBM text model (`tree` then `version=v…`).
pub fn looks_like(bytes: &[u8]) -> bool {
    let rest = bytes
        .strip_prefix(b"tree\r\n")
        .or_else(|| bytes.strip_prefix(b"tree\n"));
    rest.is_some_and(|r| r.starts_with(b"version=v"))
}

/// Lines of the text with their 1-based numbers (`\n` or `\r\n` endings).
struct Lines<'a> {
    text: &'a str,
    number: usize,
}

impl<'a> Lines<'a> {
    /// The next line (without its ending), or `None` at the end.
    fn next(&mut self) -> Result<Option<&'a str>, TextError> {
        if self.text.is_empty() {
            return Ok(None);
        }
        self.number += 1;
        let (line, rest) = match self.text.find('\n') {
            Some(i) => (&self.text[..i], &self.text[i + 1..]),
            None => (self.text, ""),
        };
        if line.len() > MAX_LINE {
            return Err(error(
                format!("line {}", self.number),
                format!("is longer than {MAX_LINE} bytes"),
            ));
        }
        self.text = rest;
        Ok(Some(line.strip_suffix('\r').unwrap_or(line)))
    }
}

/// Parses a LightGBM text model.
pub fn parse(bytes: &[u8]) -> Result<Booster, TextError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        error(
            "file",
            format!("is not UTF-8 text (at byte {})", e.valid_up_to()),
        )
    })?;
    if !looks_like(bytes) {
        return Err(error(
            "line 1",
            "a LightGBM text model starts with the lines `tree` and `version=v…`",
        ));
    }
    let mut lines = Lines { text, number: 0 };
    lines.next()?; // "tree"

    // Header: key=value lines up to the first Tree= line.
    let mut header: Vec<(&str, &str)> = Vec::new();
    let first_tree = loop {
        let Some(line) = lines.next()? else {
            break None;
        };
        if line.starts_with("Tree=") {
            break Some(line);
        }
        if line.is_empty() {
            continue;
        }
        if line == "end of trees" {
            return Err(error(
                format!("line {}", lines.number),
                "the model has no trees",
            ));
        }
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        if value.contains('=') && key != "feature_names" && key != "monotone_constraints" {
            return Err(error(
                format!("line {}", lines.number),
                format!("`{}` has more than one `=`", prefix(line)),
            ));
        }
        if header.iter().any(|(k, _)| *k == key) {
            return Err(error(
                "header",
                format!("repeats the key `{}`", prefix(key)),
            ));
        }
        if header.len() >= 1000 {
            return Err(error("header", "has more than 1000 keys"));
        }
        header.push((key, value));
    };
    let get = |key: &str| header.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let require = |key: &str| {
        get(key).ok_or_else(|| error("header", format!("has no `{key}` (not a complete model)")))
    };
    let version = require("version")?.to_string();
    if version != "v3" && version != "v4" {
        return Err(error(
            "header",
            format!(
                "version `{}` is not supported (v3 and v4 are)",
                prefix(&version)
            ),
        ));
    }
    let num_class = count("header, key num_class", require("num_class")?, MAX_CLASSES)?;
    let num_tree_per_iteration = match get("num_tree_per_iteration") {
        Some(v) => count("header, key num_tree_per_iteration", v, MAX_CLASSES)?,
        None => num_class,
    };
    if num_class == 0 || num_tree_per_iteration == 0 {
        return Err(error(
            "header",
            "num_class and num_tree_per_iteration must be at least 1",
        ));
    }
    require("label_index")?;
    let max_feature_idx = integer("header, key max_feature_idx", require("max_feature_idx")?)?;
    let n_features = usize::try_from(max_feature_idx)
        .ok()
        .and_then(|m| m.checked_add(1))
        .filter(|&n| n <= MAX_FEATURES)
        .ok_or_else(|| {
            error(
                "header, key max_feature_idx",
                format!("{max_feature_idx} is outside 0..{MAX_FEATURES}"),
            )
        })?;
    let feature_names: Vec<String> = tokens(require("feature_names")?, ' ')
        .map(str::to_string)
        .take(n_features + 1)
        .collect();
    if feature_names.len() != n_features {
        return Err(error(
            "header, key feature_names",
            format!(
                "has {}{} names for {n_features} features",
                feature_names.len(),
                if feature_names.len() > n_features {
                    "+"
                } else {
                    ""
                }
            ),
        ));
    }
    let n_infos = tokens(require("feature_infos")?, ' ')
        .take(n_features + 1)
        .count();
    if n_infos != n_features {
        return Err(error(
            "header, key feature_infos",
            format!("has {n_infos} entries for {n_features} features"),
        ));
    }
    let tree_sizes = match get("tree_sizes") {
        Some(v) => Some(
            tokens(v, ' ')
                .take(MAX_TREES + 1)
                .map(|t| count("header, key tree_sizes", t, usize::MAX))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    if tree_sizes.as_ref().is_some_and(|s| s.len() > MAX_TREES) {
        return Err(error(
            "header, key tree_sizes",
            format!("lists more than {MAX_TREES} trees"),
        ));
    }

    // Trees.
    let mut trees = Vec::new();
    let mut budget = Budget {
        leaves: MAX_TOTAL_LEAVES,
        words: MAX_CATEGORY_WORDS,
        categories: MAX_CATEGORIES,
    };
    let mut linear_tree = false;
    let mut next = first_tree;
    while let Some(line) = next {
        let t = trees.len();
        if line != format!("Tree={t}") {
            return Err(error(
                format!("line {}", lines.number),
                format!("expected `Tree={t}`, found `{}`", prefix(line)),
            ));
        }
        if t >= MAX_TREES {
            return Err(error(
                format!("tree {t}"),
                format!("the model has more than {MAX_TREES} trees"),
            ));
        }
        let (tree, linear) = parse_tree(&mut lines, t, n_features, &mut budget)?;
        linear_tree |= linear;
        trees.push(tree);
        // The tree's block ends with an empty line; what follows is the next tree or the end.
        next = loop {
            match lines.next()? {
                Some("") => continue,
                Some("end of trees") => break None,
                Some(l) if l.starts_with("Tree=") => break Some(l),
                Some(l) => {
                    return Err(error(
                        format!("line {}", lines.number),
                        format!("expected `Tree=` or `end of trees`, found `{}`", prefix(l)),
                    ));
                }
                None => {
                    return Err(error(
                        format!("tree {t}"),
                        "the file ends before `end of trees` (truncated?)",
                    ));
                }
            }
        };
        if tree_sizes.as_ref().is_some_and(|sizes| sizes.len() <= t) {
            return Err(error(
                "header, key tree_sizes",
                "lists fewer trees than the file has",
            ));
        }
    }
    if trees.is_empty() {
        return Err(error("file", "the model has no trees"));
    }
    if let Some(sizes) = &tree_sizes
        && sizes.len() != trees.len()
    {
        return Err(error(
            "header, key tree_sizes",
            format!("lists {} trees, the file has {}", sizes.len(), trees.len()),
        ));
    }
    if !trees.len().is_multiple_of(num_tree_per_iteration) {
        return Err(error(
            "file",
            format!(
                "{} trees are not whole iterations of {num_tree_per_iteration}",
                trees.len()
            ),
        ));
    }

    // The tail: parameters and pandas_categorical.
    let mut pandas_categorical = None;
    let mut in_parameters = false;
    while let Some(line) = lines.next()? {
        match line {
            "parameters:" => in_parameters = true,
            "end of parameters" => in_parameters = false,
            l if in_parameters && l.starts_with("[linear_tree: ") => {
                linear_tree |= l != "[linear_tree: 0]";
            }
            l if l.starts_with("pandas_categorical:") => {
                let value = l["pandas_categorical:".len()..].trim();
                if !matches!(value, "null" | "" | "[]") {
                    pandas_categorical = Some(value.to_string());
                }
            }
            _ => {}
        }
    }

    Ok(Booster {
        version,
        num_class,
        num_tree_per_iteration,
        n_features,
        objective: get("objective").map(str::to_string),
        feature_names,
        average_output: get("average_output").is_some(),
        linear_tree,
        pandas_categorical,
        trees,
    })
}

/// What is left of the totals over all trees.
struct Budget {
    leaves: usize,
    words: usize,
    categories: usize,
}

/// Reads one tree's `key=value` lines (up to a blank line) and checks them.
fn parse_tree(
    lines: &mut Lines<'_>,
    t: usize,
    n_features: usize,
    budget: &mut Budget,
) -> Result<(Tree, bool), TextError> {
    let place = format!("tree {t}");
    let mut keys: Vec<(&str, &str)> = Vec::new();
    loop {
        let Some(line) = lines.next()? else {
            return Err(error(&place, "the file ends inside the tree (truncated?)"));
        };
        if line.is_empty() {
            break;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(error(
                format!("{place}, line {}", lines.number),
                format!("expected `key=value`, found `{}`", prefix(line)),
            ));
        };
        if keys.iter().any(|(k, _)| *k == key) {
            return Err(error(&place, format!("repeats the key `{}`", prefix(key))));
        }
        if keys.len() >= MAX_TREE_KEYS {
            return Err(error(&place, format!("has more than {MAX_TREE_KEYS} keys")));
        }
        keys.push((key, value));
    }
    let get = |key: &str| keys.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let at = |key: &str| format!("{place}, key {key}");
    let require = |key: &str| get(key).ok_or_else(|| error(&place, format!("has no `{key}`")));

    let num_leaves = count(&at("num_leaves"), require("num_leaves")?, MAX_LEAVES)?;
    if num_leaves == 0 {
        return Err(error(at("num_leaves"), "is 0"));
    }
    budget.leaves = budget.leaves.checked_sub(num_leaves).ok_or_else(|| {
        error(
            &place,
            format!("the trees have more than {MAX_TOTAL_LEAVES} leaves in all"),
        )
    })?;
    let num_cat = count(&at("num_cat"), require("num_cat")?, MAX_LEAVES)?;
    let linear = match get("is_linear") {
        Some(v) => integer(&at("is_linear"), v)? != 0,
        None => false,
    };
    let leaf_value = floats(&at("leaf_value"), require("leaf_value")?, num_leaves)?;
    if let Some(v) = leaf_value.iter().find(|v| !v.is_finite()) {
        return Err(error(at("leaf_value"), format!("holds {v}")));
    }
    let n = num_leaves - 1;
    let mut tree = Tree {
        num_leaves,
        num_cat,
        split_feature: Vec::new(),
        threshold: Vec::new(),
        decision_type: Vec::new(),
        left_child: Vec::new(),
        right_child: Vec::new(),
        leaf_value,
        cat_boundaries: Vec::new(),
        cat_threshold: Vec::new(),
    };
    if n == 0 {
        return Ok((tree, linear));
    }
    let ints = |key: &str, min: i64, max: i64| -> Result<Vec<i64>, TextError> {
        let values = integers(&at(key), require(key)?, n)?;
        match values.iter().find(|&&v| v < min || v > max) {
            Some(v) => Err(error(at(key), format!("holds {v}, outside {min}..={max}"))),
            None => Ok(values),
        }
    };
    let last_feature = n_features as i64 - 1;
    tree.split_feature = ints("split_feature", 0, last_feature)?
        .into_iter()
        .map(|v| v as usize)
        .collect();
    tree.threshold = floats(&at("threshold"), require("threshold")?, n)?;
    tree.decision_type = match get("decision_type") {
        Some(v) => integers(&at("decision_type"), v, n)?
            .into_iter()
            .map(|d| {
                i8::try_from(d)
                    .ok()
                    .filter(|d| (0..12).contains(d) && (d >> 2) & 3 != 3)
                    .ok_or_else(|| error(at("decision_type"), format!("holds {d}")))
            })
            .collect::<Result<_, _>>()?,
        None => vec![0; n],
    };
    let node_or_leaf = (-(num_leaves as i64), n as i64 - 1);
    tree.left_child = ints("left_child", node_or_leaf.0, node_or_leaf.1)?
        .into_iter()
        .map(|v| v as i32)
        .collect();
    tree.right_child = ints("right_child", node_or_leaf.0, node_or_leaf.1)?
        .into_iter()
        .map(|v| v as i32)
        .collect();
    check_shape(&tree).map_err(|reason| error(&place, reason))?;

    if num_cat > 0 {
        let bounds = integers(
            &at("cat_boundaries"),
            require("cat_boundaries")?,
            num_cat + 1,
        )?;
        let words = bounds.last().copied().unwrap_or(0);
        let sorted = bounds.first() == Some(&0) && bounds.windows(2).all(|w| w[0] <= w[1]);
        if !sorted {
            return Err(error(
                at("cat_boundaries"),
                "must rise from 0 (offsets into cat_threshold)",
            ));
        }
        let words = usize::try_from(words).unwrap_or(usize::MAX);
        budget.words = budget.words.checked_sub(words).ok_or_else(|| {
            error(
                at("cat_boundaries"),
                format!("the category bitsets exceed {MAX_CATEGORY_WORDS} words in all"),
            )
        })?;
        tree.cat_boundaries = bounds.into_iter().map(|b| b as usize).collect();
        tree.cat_threshold = integers(&at("cat_threshold"), require("cat_threshold")?, words)?
            .into_iter()
            .map(|w| {
                u32::try_from(w)
                    .map_err(|_| error(at("cat_threshold"), format!("holds {w}, not a u32")))
            })
            .collect::<Result<_, _>>()?;
        let set: usize = tree
            .cat_threshold
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum();
        budget.categories = budget.categories.checked_sub(set).ok_or_else(|| {
            error(
                at("cat_threshold"),
                format!("the category bitsets hold more than {MAX_CATEGORIES} categories in all"),
            )
        })?;
    }
    for i in 0..n {
        if tree.is_categorical(i) {
            let index = tree.threshold[i];
            if !(index >= 0.0 && index < num_cat as f64) {
                return Err(error(
                    at("threshold"),
                    format!("categorical node {i} names bitset {index} of {num_cat}"),
                ));
            }
        } else if tree.threshold[i].is_nan() {
            return Err(error(
                at("threshold"),
                format!("node {i} has a NaN threshold"),
            ));
        }
    }
    Ok((tree, linear))
}

/// Every internal node but the root is the child of an earlier node exactly once, and every
/// leaf is reached exactly once (LightGBM numbers a node after its parent).
fn check_shape(tree: &Tree) -> Result<(), String> {
    let n = tree.num_leaves - 1;
    let mut node_parents = vec![0u8; n];
    let mut leaf_parents = vec![0u8; tree.num_leaves];
    for (i, (&l, &r)) in tree.left_child.iter().zip(&tree.right_child).enumerate() {
        for c in [l, r] {
            if c >= 0 {
                let c = c as usize;
                if c <= i {
                    return Err(format!("node {i} has child node {c}, not after it"));
                }
                node_parents[c] = node_parents[c].saturating_add(1);
            } else {
                let leaf = !c as usize;
                leaf_parents[leaf] = leaf_parents[leaf].saturating_add(1);
            }
        }
    }
    if let Some(c) = (1..n).find(|&c| node_parents[c] != 1) {
        return Err(format!(
            "node {c} is the child of {} nodes",
            node_parents[c]
        ));
    }
    if let Some(leaf) = (0..tree.num_leaves).find(|&l| leaf_parents[l] != 1) {
        return Err(format!(
            "leaf {leaf} is the child of {} nodes",
            leaf_parents[leaf]
        ));
    }
    Ok(())
}

/// Non-empty tokens between `delimiter`s (LightGBM's `Common::Split`).
fn tokens(value: &str, delimiter: char) -> impl Iterator<Item = &str> {
    value.split(delimiter).filter(|t| !t.is_empty())
}

/// The first 40 characters of `text`, for messages.
fn prefix(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

fn integer(place: &str, text: &str) -> Result<i64, TextError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| error(place, format!("`{}` is not an integer", prefix(text))))
}

fn count(place: &str, text: &str, max: usize) -> Result<usize, TextError> {
    let v = integer(place, text)?;
    usize::try_from(v)
        .ok()
        .filter(|&v| v <= max)
        .ok_or_else(|| error(place, format!("{v} is outside 0..={max}")))
}

/// Exactly `n` space-separated values.
fn values<T>(
    place: &str,
    text: &str,
    n: usize,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, TextError> {
    let mut out = Vec::with_capacity(n.min(text.len() / 2 + 1));
    for token in tokens(text, ' ') {
        if out.len() == n {
            return Err(error(place, format!("has more than {n} values")));
        }
        out.push(
            parse(token)
                .ok_or_else(|| error(place, format!("`{}` is not a number", prefix(token))))?,
        );
    }
    if out.len() != n {
        return Err(error(
            place,
            format!("has {} values, expected {n}", out.len()),
        ));
    }
    Ok(out)
}

fn integers(place: &str, text: &str, n: usize) -> Result<Vec<i64>, TextError> {
    values(place, text, n, |t| t.parse::<i64>().ok())
}

fn floats(place: &str, text: &str, n: usize) -> Result<Vec<f64>, TextError> {
    values(place, text, n, |t| t.parse::<f64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = "tree\nversion=v3\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
max_feature_idx=1\nobjective=regression\nfeature_names=a b\nfeature_infos=none none\n\n\
Tree=0\nnum_leaves=3\nnum_cat=1\nsplit_feature=1 0\nthreshold=0 1.0000000180025095e-35\n\
decision_type=1 6\nleft_child=-1 -2\nright_child=1 -3\nleaf_value=1 2 3\n\
cat_boundaries=0 2\ncat_threshold=5 2147483648\nshrinkage=1\n\n\nend of trees\n";

    #[test]
    fn reads_trees_bitsets_and_decision_bits() {
        let b = parse(MODEL.as_bytes()).unwrap();
        assert_eq!(
            (b.version.as_str(), b.n_features, b.trees.len()),
            ("v3", 2, 1)
        );
        let t = &b.trees[0];
        assert!(t.is_categorical(0) && !t.is_categorical(1));
        assert_eq!(t.categories(0), [0, 2, 63]);
        assert_eq!(t.missing_type(1), MissingType::Zero);
        assert!(t.default_left(1));
        assert_eq!(t.threshold[1], 1e-35_f32 as f64);
        // \r\n line endings read the same.
        let crlf = MODEL.replace('\n', "\r\n");
        assert_eq!(parse(crlf.as_bytes()).unwrap(), b);
        // Without categorical splits in the tree, the categorical bit is not read.
        let numeric = MODEL
            .replace("num_cat=1", "num_cat=0")
            .replace("cat_boundaries=0 2\ncat_threshold=5 2147483648\n", "");
        assert!(!parse(numeric.as_bytes()).unwrap().trees[0].is_categorical(0));
    }

    #[test]
    fn sniffs_only_lightgbm_text() {
        assert!(looks_like(MODEL.as_bytes()));
        assert!(looks_like(b"tree\r\nversion=v4\r\n"));
        assert!(!looks_like(b"{\"learner\": {}}"));
        assert!(!looks_like(b"tree\nnum_class=1\n"));
        assert!(!looks_like(b"\x80\x04tree"));
    }
}
