//! LightGBM's scikit-learn wrappers, `LGBMRegressor` and `LGBMClassifier`: the fitted
//! `_Booster` (a `lightgbm.basic.Booster`) keeps the model text in its state (`handle` in
//! LightGBM 3.x, `_handle` in 4.x), which [`crate::lightgbm`] reads; `best_iteration` on the
//! booster limits the trees as `LGBMModel.predict` → `Booster.predict` does; a classifier's
//! labels are `_classes`.

use super::{ExtractError, Fitted, Obj};
use crate::estimator::{Estimator, LightGbmOutput};
use crate::lightgbm::{self, LightGbmError, Objective};
use crate::pickle::Value;

/// Extracts a fitted LGBMRegressor or LGBMClassifier.
pub fn extract(object: &Obj<'_>) -> Result<Fitted, ExtractError> {
    let name = object.class_name();
    let booster_id = match (object.get_id("_Booster"), object.get("_Booster")) {
        (Some(id), Some(value)) if !matches!(value, Value::None) => id,
        _ => return Err(object.invalid("_Booster", format!("{name} is not fitted"))),
    };
    let booster = Obj::new(
        object.graph,
        booster_id,
        &format!("{}._Booster", object.path),
    )?;
    if booster.class_name() != "Booster" {
        return Err(booster.invalid(
            "",
            format!("expected a lightgbm Booster, found {}", booster.class),
        ));
    }
    let key = ["_handle", "handle"]
        .into_iter()
        .find(|k| booster.get(k).is_some())
        .ok_or_else(|| booster.invalid("_handle", "the Booster keeps no model text"))?;
    let text = match booster.require(key)? {
        Value::Str(text) => text,
        other => {
            return Err(booster.invalid(
                key,
                format!("expected the model text, found a {}", other.kind()),
            ));
        }
    };
    let parsed =
        lightgbm::text::parse(text.as_bytes()).map_err(|e| booster.invalid(key, e.to_string()))?;
    let refuse = |e: LightGbmError| match e {
        LightGbmError::Unsupported(what) => ExtractError::Unsupported(format!("{name}: {what}")),
        LightGbmError::Text(e) => booster.invalid(key, e.to_string()),
    };
    lightgbm::check_supported(&parsed).map_err(refuse)?;
    let objective = Objective::of(&parsed).map_err(refuse)?;
    let best_iteration = match booster.get("best_iteration") {
        None | Some(Value::None) => 0,
        Some(Value::Int(i)) => i64::try_from(*i).unwrap_or(0),
        Some(Value::NdArray(a)) if a.shape.is_empty() && matches!(a.dtype.kind, 'i' | 'u') => {
            a.to_i64().and_then(|v| v.first().copied()).unwrap_or(0)
        }
        Some(other) => {
            return Err(booster.invalid(
                "best_iteration",
                format!("expected an int, found a {}", other.kind()),
            ));
        }
    };
    if let Some(Value::Int(n)) = object.get("_n_features")
        && *n != parsed.n_features as i128
    {
        return Err(object.invalid(
            "_n_features",
            format!("is {n}, the booster has {} features", parsed.n_features),
        ));
    }

    // LGBMClassifier(objective="cross_entropy") answers `[1 - p, p]` as a binary one does.
    let objective = match objective {
        Objective::Regression(LightGbmOutput::Sigmoid { scale }) if name == "LGBMClassifier" => {
            Objective::Binary { scale }
        }
        other => other,
    };
    let classes = match name {
        "LGBMClassifier" => {
            let classes = super::classes::classes_at(object, "_classes")?;
            let expected = lightgbm::n_classes(&objective).ok_or_else(|| {
                ExtractError::Unsupported(format!(
                    "{name} with the regression objective {}",
                    Objective::name(&parsed)
                ))
            })?;
            if classes.len() != expected {
                return Err(object.invalid(
                    "_classes",
                    format!(
                        "has {} classes, the booster's objective {} predicts {expected}",
                        classes.len(),
                        Objective::name(&parsed)
                    ),
                ));
            }
            classes
        }
        _ => {
            if !matches!(objective, Objective::Regression(_)) {
                return Err(ExtractError::Unsupported(format!(
                    "{name} with the classification objective {}",
                    Objective::name(&parsed)
                )));
            }
            vec![]
        }
    };
    let (classifier, output) = lightgbm::head(&objective, classes);
    let ensemble = lightgbm::ensemble(&parsed, best_iteration, output);
    let mut meta = object.meta(parsed.n_features)?;
    // LightGBM's own names (the DataFrame's columns, whitespace replaced), unless automatic.
    meta.feature_names = lightgbm::feature_names(&parsed);
    meta.accepts_missing = true;
    Ok(Fitted {
        n_targets: ensemble.n_scores,
        estimator: Estimator::LightGbm(ensemble),
        meta,
        classifier,
    })
}
