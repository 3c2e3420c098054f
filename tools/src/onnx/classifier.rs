//! A classifier's outputs from its scores: `probabilities` (sklearn's `predict_proba`) and
//! `label` (the index of sklearn's `predict` into the classes), in double.
//!
//! The scores `d` (`[N, K]`) are what the estimator part of the graph computes: class
//! probabilities for tree classifiers, the decision function for LogisticRegression, the raw
//! boosting scores for GradientBoostingClassifier. sklearn's arithmetic is mirrored:
//! `expit` is `Sigmoid`, `[1 - p, p]` is `Sub` + `Concat`, `softmax` is `Softmax` over the
//! classes, one-vs-rest divides `expit(d)` by its row sum (LightGBM's multiclassova keeps `expit(d)`); labels are `ArgMax` (the first
//! largest, as numpy's `argmax`) or `d > 0` / `d >= 0` for one-column scores.

use onnx_model::contract::{LABEL_NAME, PROBABILITIES_NAME};

use super::graph::{GraphBuilder, attr_int};
use super::proto::tensor_proto::DataType;
use crate::error::ConvertError;
use crate::estimator::{Classifier, LabelRule, Probabilities};

/// The name the estimator part should write its scores to: the probabilities output itself
/// when the scores are the probabilities, otherwise a fresh value.
pub fn scores_name(g: &mut GraphBuilder, classifier: &Classifier) -> String {
    match classifier.probabilities {
        Probabilities::Scores => PROBABILITIES_NAME.to_string(),
        _ => g.fresh("scores"),
    }
}

/// Appends the `probabilities` and `label` outputs computed from `scores` (`[N, n_scores]`).
pub fn outputs(
    g: &mut GraphBuilder,
    scores: &str,
    classifier: &Classifier,
    n_scores: usize,
) -> Result<(), ConvertError> {
    let n_classes = classifier.classes.len();
    let one_column = matches!(
        classifier.probabilities,
        Probabilities::BinaryExpit | Probabilities::BinarySoftmax
    );
    let expected = if one_column { 1 } else { n_classes };
    if n_classes < 2 || n_scores != expected || (one_column && n_classes != 2) {
        return Err(ConvertError::InvalidModel(format!(
            "{n_scores} scores for {n_classes} classes with {:?}",
            classifier.probabilities
        )));
    }
    let axis = || attr_int("axis", 1);
    match classifier.probabilities {
        Probabilities::Scores => {} // the scores were written to the output
        Probabilities::BinaryExpit => {
            let p1 = g.node("Sigmoid", "", &[scores], vec![]);
            let one = g.constant_f64("one", &[1], &[1.0]);
            let p0 = g.node("Sub", "", &[&one, &p1], vec![]);
            g.node_into("Concat", "", &[&p0, &p1], vec![axis()], PROBABILITIES_NAME);
        }
        Probabilities::BinarySoftmax => {
            let negated = g.node("Neg", "", &[scores], vec![]);
            let both = g.node("Concat", "", &[&negated, scores], vec![axis()]);
            g.node_into("Softmax", "", &[&both], vec![axis()], PROBABILITIES_NAME);
        }
        Probabilities::Softmax => {
            g.node_into("Softmax", "", &[scores], vec![axis()], PROBABILITIES_NAME);
        }
        Probabilities::Sigmoids => {
            g.node_into("Sigmoid", "", &[scores], vec![], PROBABILITIES_NAME);
        }
        Probabilities::OneVsRest => {
            let p = g.node("Sigmoid", "", &[scores], vec![]);
            let axes = g.constant_i64("axes", &[1], &[1]);
            let sum = g.node("ReduceSum", "", &[&p, &axes], vec![attr_int("keepdims", 1)]);
            g.node_into("Div", "", &[&p, &sum], vec![], PROBABILITIES_NAME);
        }
    }
    let argmax = |g: &mut GraphBuilder, of: &str| {
        let attributes = vec![axis(), attr_int("keepdims", 0)];
        g.node_into("ArgMax", "", &[of], attributes, LABEL_NAME);
    };
    match classifier.label {
        LabelRule::ArgmaxProbabilities => argmax(g, PROBABILITIES_NAME),
        LabelRule::ArgmaxScores if !one_column => argmax(g, scores),
        LabelRule::Positive | LabelRule::NonNegative if one_column => {
            let op = match classifier.label {
                LabelRule::Positive => "Greater",
                _ => "GreaterOrEqual",
            };
            let zero = g.constant_f64("zero", &[1], &[0.0]);
            let positive = g.node(op, "", &[scores, &zero], vec![]);
            let index = g.cast(&positive, DataType::Int64);
            let axes = g.constant_i64("axes", &[1], &[1]);
            g.node_into("Squeeze", "", &[&index, &axes], vec![], LABEL_NAME);
        }
        LabelRule::Given => {}
        rule => {
            return Err(ConvertError::InvalidModel(format!(
                "label rule {rule:?} does not fit {n_scores} score columns"
            )));
        }
    }
    Ok(())
}
