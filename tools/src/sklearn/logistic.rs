//! LogisticRegression: the decision function `x @ coef_.T + intercept_` (read like the linear
//! regressors) and how this pickle's sklearn turns it into probabilities.

use super::{ExtractError, Fitted, Obj, classes, linear};
use crate::estimator::{Classifier, LabelRule, Probabilities};

/// How the decision scores become probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// `expit` per class, normalised (binary: `[1 - p, p]`).
    OneVsRest,
    /// `softmax` (binary: over `[-d, d]`).
    Multinomial,
}

/// Extracts a binary, multinomial or one-vs-rest LogisticRegression.
pub fn extract(object: &Obj<'_>) -> Result<Fitted, ExtractError> {
    let classes = classes::classes(object)?;
    let mut fitted = linear::extract(object)?;
    let n_classes = classes.len();
    let binary = n_classes == 2;
    let expected = if binary { 1 } else { n_classes };
    if fitted.n_targets != expected {
        return Err(object.invalid(
            "coef_",
            format!(
                "has {} rows for {n_classes} classes (expected {expected})",
                fitted.n_targets
            ),
        ));
    }
    let probabilities = match (scheme(object, n_classes)?, binary) {
        (Scheme::OneVsRest, true) => Probabilities::BinaryExpit,
        (Scheme::Multinomial, true) => Probabilities::BinarySoftmax,
        (Scheme::OneVsRest, false) => Probabilities::OneVsRest,
        (Scheme::Multinomial, false) => Probabilities::Softmax,
    };
    // LinearClassifierMixin.predict: `scores > 0` for one column, else the first largest.
    let label = if binary {
        LabelRule::Positive
    } else {
        LabelRule::ArgmaxScores
    };
    fitted.classifier = Some(Classifier {
        classes,
        probabilities,
        label,
    });
    Ok(fitted)
}

/// `predict_proba`'s choice, as each sklearn version makes it: with a `multi_class`
/// attribute (sklearn <= 1.7), `ovr`/`warn` and `multinomial` say it; `auto` (or
/// `deprecated`) means one-vs-rest for two classes and the liblinear solver (and
/// newton-cholesky before sklearn 1.5), multinomial otherwise. Without the attribute
/// (sklearn >= 1.8) two classes use `expit` and more use `softmax`.
fn scheme(object: &Obj<'_>, n_classes: usize) -> Result<Scheme, ExtractError> {
    let Some(multi_class) = object.get("multi_class") else {
        return Ok(match n_classes {
            2 => Scheme::OneVsRest,
            _ => Scheme::Multinomial,
        });
    };
    let Some(multi_class) = object.str("multi_class") else {
        return Err(object.invalid(
            "multi_class",
            format!("expected a string, found a {}", multi_class.kind()),
        ));
    };
    let solver = object.str("solver").unwrap_or("lbfgs");
    match multi_class {
        "ovr" | "warn" => Ok(Scheme::OneVsRest),
        "multinomial" => Ok(Scheme::Multinomial),
        "auto" | "deprecated" if n_classes <= 2 || solver == "liblinear" => Ok(Scheme::OneVsRest),
        "auto" | "deprecated" if solver == "newton-cholesky" => {
            let version = object.str("_sklearn_version").unwrap_or_default();
            if before_1_5(version) {
                Ok(Scheme::OneVsRest)
            } else {
                Err(ExtractError::Unsupported(format!(
                    "LogisticRegression(solver=\"newton-cholesky\") on {n_classes} classes from \
                     scikit-learn {version:?} (its one-vs-rest or multinomial choice is not known \
                     here); refit with multi_class set explicitly or another solver"
                )))
            }
        }
        "auto" | "deprecated" => Ok(Scheme::Multinomial),
        other => Err(ExtractError::Unsupported(format!(
            "LogisticRegression with multi_class={other:?}"
        ))),
    }
}

/// Whether a `_sklearn_version` such as `1.4.2` is older than 1.5.
fn before_1_5(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) < (1, 5),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::before_1_5;

    #[test]
    fn versions_compare_numerically() {
        assert!(before_1_5("1.2.2"));
        assert!(before_1_5("1.4.2"));
        assert!(before_1_5("0.24.1"));
        assert!(!before_1_5("1.5.0"));
        assert!(!before_1_5("1.10.0"));
        assert!(!before_1_5(""));
    }
}
