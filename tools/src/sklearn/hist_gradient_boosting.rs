//! HistGradientBoostingRegressor / HistGradientBoostingClassifier: `_baseline_prediction`
//! plus, per iteration, one `TreePredictor` per raw score (`_predictors`).
//!
//! Each predictor's `nodes` is a record array (`PREDICTOR_RECORD_DTYPE`, decoded by field
//! name: its integer widths differ between versions); categorical splits keep their left
//! categories in `raw_left_cat_bitsets` (256-bit sets of `uint32` words), and the categories
//! seen in training come from the bin mapper (`_bin_mapper.bin_thresholds_`). Categorical
//! features are read only without a `_preprocessor` (sklearn < 1.4, or numeric-coded
//! categories passed as indices or a mask); newer pickles with categories carry an
//! OrdinalEncoder pipeline the reader does not accept.

use super::{ExtractError, Fitted, MAX_TREE_NODES, Meta, Obj, as_f64, f64_values};
use crate::estimator::{
    Classifier, Estimator, HistGradientBoosting, HistNode, HistOutput, HistTest, HistTree,
    LabelRule, Probabilities,
};
use crate::pickle::{NdArray, NodeId, Value};

/// Words per category bitset (`BITSET_DTYPE_C` is `uint32[8]`: 256 categories).
const BITSET_WORDS: usize = 8;

/// Extracts a fitted HistGradientBoostingRegressor or HistGradientBoostingClassifier.
pub fn extract(object: &Obj<'_>) -> Result<Fitted, ExtractError> {
    let classifier = object.class_name() == "HistGradientBoostingClassifier";
    if !matches!(object.get("_preprocessor"), None | Some(Value::None)) {
        return Err(ExtractError::Unsupported(format!(
            "{} with a _preprocessor (categorical features encoded by an OrdinalEncoder, \
             sklearn >= 1.4)",
            object.class_name()
        )));
    }
    let n_features = match object.get("n_features_in_") {
        Some(_) => object.usize("n_features_in_")?,
        None => object.usize("_n_features")?,
    };
    let n_scores = object.usize("n_trees_per_iteration_")?;
    let (output, classifier) = output(object, classifier, n_scores)?;

    let baseline_value = object.require("_baseline_prediction")?;
    let baseline = match baseline_value {
        Value::NdArray(a) if a.shape.iter().product::<usize>() == n_scores => {
            f64_values(object, "_baseline_prediction", a)?
        }
        other => match as_f64(other) {
            Some(b) if n_scores == 1 => vec![b],
            _ => {
                return Err(object.invalid(
                    "_baseline_prediction",
                    format!("expected {n_scores} numbers"),
                ));
            }
        },
    };
    if baseline.iter().any(|b| !b.is_finite()) {
        return Err(object.invalid("_baseline_prediction", "is not finite"));
    }

    let known = known_categories(object, n_features)?;
    let categorical: Vec<bool> = known.iter().map(Option::is_some).collect();
    let iterations = list(object, object.require("_predictors")?, "_predictors")?;
    if iterations.is_empty() {
        return Err(object.invalid("_predictors", "the model has no trees"));
    }
    let mut budget = MAX_TREE_NODES;
    let mut trees = Vec::with_capacity(iterations.len() * n_scores);
    for (i, id) in iterations.iter().enumerate() {
        let path = format!("_predictors[{i}]");
        let per_score = list(object, value_of(object, *id)?, &path)?;
        if per_score.len() != n_scores {
            return Err(object.invalid(
                &path,
                format!("has {} trees, expected {n_scores}", per_score.len()),
            ));
        }
        for (class, id) in per_score.iter().enumerate() {
            let predictor = Obj::new(
                object.graph,
                *id,
                &format!("{}.{path}[{class}]", object.path),
            )?;
            if predictor.class_name() != "TreePredictor" {
                return Err(predictor.invalid(
                    "",
                    format!("expected a TreePredictor, found {}", predictor.class),
                ));
            }
            let nodes = decode_predictor(&predictor, n_features, &known, &mut budget)?;
            trees.push(HistTree { class, nodes });
        }
    }
    let mut meta: Meta = object.meta(n_features)?;
    // sklearn routes NaN in every feature, also in features that had none in training.
    meta.accepts_missing = true;
    Ok(Fitted {
        estimator: Estimator::Hist(HistGradientBoosting {
            trees,
            baseline,
            categorical,
            output,
        }),
        n_targets: n_scores,
        meta,
        classifier,
    })
}

/// The output from the fitted loss (`_loss`, sklearn >= 1.1), checked against the number of
/// raw scores and, for classifiers, `classes_`; a classifier's probabilities come from its raw
/// scores as the loss's link says (expit for two classes, softmax for more) and its label is
/// the first largest probability (`np.argmax(self.predict_proba(X))`, as sklearn predicts).
fn output(
    object: &Obj<'_>,
    classifier: bool,
    n_scores: usize,
) -> Result<(HistOutput, Option<Classifier>), ExtractError> {
    let loss_id = object
        .get_id("_loss")
        .ok_or_else(|| object.invalid("_loss", "the model is not fitted (no _loss)"))?;
    let loss = Obj::new(object.graph, loss_id, &format!("{}._loss", object.path))?;
    let unsupported =
        || ExtractError::Unsupported(format!("{} with loss {}", object.class_name(), loss.class));
    if !classifier {
        let exp = match loss.class_name() {
            "HalfSquaredError" | "AbsoluteError" | "PinballLoss" => false,
            "HalfPoissonLoss" | "HalfGammaLoss" => true,
            _ => return Err(unsupported()),
        };
        if n_scores != 1 {
            return Err(object.invalid("n_trees_per_iteration_", "a regressor has 1"));
        }
        return Ok((HistOutput::Regression { exp }, None));
    }
    let classes = super::classes::classes(object)?;
    let expected_scores = match loss.class_name() {
        "HalfBinomialLoss" if classes.len() == 2 => 1,
        "HalfMultinomialLoss" if classes.len() > 2 => classes.len(),
        _ => return Err(unsupported()),
    };
    if n_scores != expected_scores {
        return Err(object.invalid(
            "n_trees_per_iteration_",
            format!(
                "is {n_scores}, expected {expected_scores} for {} classes",
                classes.len()
            ),
        ));
    }
    let probabilities = if n_scores == 1 {
        Probabilities::BinaryExpit
    } else {
        Probabilities::Softmax
    };
    let classifier = Classifier {
        classes,
        probabilities,
        label: LabelRule::ArgmaxProbabilities,
    };
    Ok((HistOutput::Classification, Some(classifier)))
}

/// Per feature, the categories seen in training (`None` for numeric features), from the bin
/// mapper: `is_categorical_` and, for those features, `bin_thresholds_` (the raw category
/// values, which sklearn casts to `uint8` for its known-category bitsets).
fn known_categories(
    object: &Obj<'_>,
    n_features: usize,
) -> Result<Vec<Option<Vec<u8>>>, ExtractError> {
    let id = object
        .get_id("_bin_mapper")
        .ok_or_else(|| object.invalid("_bin_mapper", "the model is not fitted"))?;
    let mapper = Obj::new(object.graph, id, &format!("{}._bin_mapper", object.path))?;
    if mapper.class_name() != "_BinMapper" {
        return Err(mapper.invalid("", format!("expected a _BinMapper, found {}", mapper.class)));
    }
    let flags = match mapper.get("is_categorical_") {
        None | Some(Value::None) => vec![0; n_features],
        Some(_) => {
            let array = mapper.array("is_categorical_")?;
            array
                .to_i64()
                .filter(|v| v.len() == n_features && array.shape.len() == 1)
                .ok_or_else(|| {
                    mapper.invalid("is_categorical_", format!("expected {n_features} flags"))
                })?
        }
    };
    if flags.iter().all(|&f| f == 0) {
        return Ok(vec![None; n_features]);
    }
    let thresholds = list(
        &mapper,
        mapper.require("bin_thresholds_")?,
        "bin_thresholds_",
    )?;
    if thresholds.len() != n_features {
        return Err(mapper.invalid(
            "bin_thresholds_",
            format!("has {} entries, expected {n_features}", thresholds.len()),
        ));
    }
    let mut known = Vec::with_capacity(n_features);
    for (f, (&flag, id)) in flags.iter().zip(thresholds).enumerate() {
        if flag == 0 {
            known.push(None);
            continue;
        }
        let path = format!("bin_thresholds_[{f}]");
        let Value::NdArray(array) = value_of(&mapper, *id)? else {
            return Err(mapper.invalid(&path, "expected an ndarray"));
        };
        let categories = f64_values(&mapper, &path, array)?;
        let codes: Option<Vec<u8>> = categories
            .iter()
            .map(|&c| (c.fract() == 0.0 && (0.0..256.0).contains(&c)).then_some(c as u8))
            .collect();
        let codes = codes
            .ok_or_else(|| mapper.invalid(&path, "categories must be integers in [0, 255]"))?;
        known.push(Some(codes));
    }
    Ok(known)
}

/// Decodes one `TreePredictor`, checking every index so routing terminates in range.
fn decode_predictor(
    predictor: &Obj<'_>,
    n_features: usize,
    known: &[Option<Vec<u8>>],
    budget: &mut usize,
) -> Result<Vec<HistNode>, ExtractError> {
    let nodes = predictor.array("nodes")?;
    let n = nodes.shape.first().copied().unwrap_or(0);
    if nodes.shape.len() != 1 || n == 0 || nodes.dtype.fields.is_empty() {
        return Err(predictor.invalid("nodes", "expected a non-empty 1-D record array"));
    }
    *budget = budget.checked_sub(n).ok_or_else(|| {
        ExtractError::Unsupported(format!(
            "models with more than {MAX_TREE_NODES} tree nodes in total"
        ))
    })?;
    let ints = |name: &str| {
        nodes
            .field_i64(name)
            .filter(|v| v.len() == n)
            .ok_or_else(|| predictor.invalid("nodes", format!("no integer field {name:?}")))
    };
    let floats = |name: &str| {
        nodes
            .field_f64(name)
            .filter(|v| v.len() == n)
            .ok_or_else(|| predictor.invalid("nodes", format!("no float field {name:?}")))
    };
    let value = floats("value")?;
    let threshold = floats("num_threshold")?;
    let feature = ints("feature_idx")?;
    let missing = ints("missing_go_to_left")?;
    let left = ints("left")?;
    let right = ints("right")?;
    let is_leaf = ints("is_leaf")?;
    let is_categorical = ints("is_categorical")?;
    let bitset_idx = ints("bitset_idx")?;
    let bitsets = bitsets(predictor)?;

    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let fail = |reason: String| predictor.invalid("nodes", format!("node {i}: {reason}"));
        if is_leaf[i] != 0 {
            if value[i].is_nan() {
                return Err(fail("a NaN leaf value".into()));
            }
            out.push(HistNode::Leaf(value[i]));
            continue;
        }
        // sklearn numbers children after their parent; requiring it rules out cycles.
        let child = |c: i64| usize::try_from(c).ok().filter(|&c| c > i && c < n);
        let (Some(l), Some(r)) = (child(left[i]), child(right[i])) else {
            return Err(fail(format!("invalid children {}, {}", left[i], right[i])));
        };
        let f = usize::try_from(feature[i])
            .ok()
            .filter(|&f| f < n_features)
            .ok_or_else(|| fail(format!("feature {} out of range", feature[i])))?;
        let test = match (is_categorical[i] != 0, &known[f]) {
            (false, None) if threshold[i].is_nan() => return Err(fail("a NaN threshold".into())),
            (false, None) => HistTest::Numeric(threshold[i]),
            (true, Some(known)) => {
                let words = usize::try_from(bitset_idx[i])
                    .ok()
                    .and_then(|b| bitsets.get(b * BITSET_WORDS..(b + 1) * BITSET_WORDS))
                    .ok_or_else(|| fail(format!("bitset {} out of range", bitset_idx[i])))?;
                HistTest::Categorical {
                    left: members(words),
                    known: known.clone(),
                }
            }
            (true, None) | (false, Some(_)) => {
                return Err(fail(format!(
                    "its split and the bin mapper disagree on whether feature {f} is categorical"
                )));
            }
        };
        out.push(HistNode::Split {
            feature: f,
            missing_go_to_left: missing[i] != 0,
            left: l,
            right: r,
            test,
        });
    }
    Ok(out)
}

/// The words of `raw_left_cat_bitsets` (`[n_categorical_splits, 8]` uint32), row-major.
fn bitsets(predictor: &Obj<'_>) -> Result<Vec<u32>, ExtractError> {
    let attr = "raw_left_cat_bitsets";
    let array: &NdArray = predictor.array(attr)?;
    let shape_ok = matches!(array.shape.as_slice(), [_, BITSET_WORDS]);
    if !shape_ok || array.dtype.kind != 'u' || array.dtype.itemsize != 4 {
        return Err(predictor.invalid(attr, "expected a uint32 array of shape [n, 8]"));
    }
    let words = array
        .to_i64()
        .ok_or_else(|| predictor.invalid(attr, "array data does not match its dtype"))?;
    Ok(words.into_iter().map(|w| w as u32).collect())
}

/// The categories (bit positions) set in one 256-bit bitset.
fn members(words: &[u32]) -> Vec<u8> {
    (0..=255u8)
        .filter(|&c| words[usize::from(c / 32)] >> (c % 32) & 1 == 1)
        .collect()
}

fn value_of<'g>(object: &Obj<'g>, id: NodeId) -> Result<&'g Value, ExtractError> {
    super::value(object.graph, id, &object.path)
}

/// The items of a list (or tuple) attribute value.
fn list<'g>(object: &Obj<'g>, value: &'g Value, attr: &str) -> Result<&'g [NodeId], ExtractError> {
    match value {
        Value::List(items) | Value::Tuple(items) => Ok(items),
        other => Err(object.invalid(attr, format!("expected a list, found a {}", other.kind()))),
    }
}

#[cfg(test)]
mod tests {
    use super::members;

    #[test]
    fn bitset_members_follow_sklearn_bit_order() {
        // sklearn: category c is bit c % 32 of word c / 32.
        let mut words = [0u32; 8];
        words[0] = 0b1010_0001; // 0, 5, 7
        words[1] = 1; // 32
        words[7] = 1 << 31; // 255
        assert_eq!(members(&words), vec![0, 5, 7, 32, 255]);
        assert!(members(&[0; 8]).is_empty());
    }
}
