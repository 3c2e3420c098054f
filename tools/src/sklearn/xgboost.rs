//! XGBoost's scikit-learn wrappers (`XGBRegressor`, `XGBClassifier`, `XGBRFRegressor`,
//! `XGBRFClassifier`): the pickled `_Booster`'s model bytes (its `handle`, a bytearray of
//! `XGBoosterSerializeToBuffer`) are read by [`crate::xgboost`], and `predict`'s choices are
//! taken from the wrapper: the trees up to `best_iteration` (the Booster's own attribute in
//! XGBoost 1.x pickles, the model's `best_iteration` attribute since 2.0), `missing` (NaN
//! only), the classes.

use super::{ExtractError, Fitted, Meta, Obj, as_f64, is_nan};
use crate::pickle::Value;
use crate::xgboost::{self, XgbError};

/// Extracts one of the wrappers.
pub(crate) fn extract(object: &Obj<'_>) -> Result<Fitted, ExtractError> {
    let name = object.class_name();
    let classifier = matches!(name, "XGBClassifier" | "XGBRFClassifier");
    match object.get("missing") {
        None | Some(Value::None) => {}
        Some(v) if is_nan(v) => {}
        Some(v) => {
            let shown = as_f64(v).map_or_else(|| v.kind().to_owned(), |f| f.to_string());
            return Err(ExtractError::Unsupported(format!(
                "{name} with missing={shown} (only NaN marks a missing value)"
            )));
        }
    }
    match object.get("objective") {
        None | Some(Value::None) | Some(Value::Str(_)) => {}
        Some(other) => {
            return Err(ExtractError::Unsupported(format!(
                "{name} with a custom objective (a {})",
                other.kind()
            )));
        }
    }
    let booster_id = object
        .get_id("_Booster")
        .ok_or_else(|| object.invalid("_Booster", format!("{name} is not fitted (no _Booster)")))?;
    let booster_obj = Obj::new(
        object.graph,
        booster_id,
        &format!("{}._Booster", object.path),
    )?;
    if booster_obj.class.to_string() != "xgboost.core.Booster" {
        return Err(booster_obj.invalid(
            "",
            format!("a {}, not an xgboost.core.Booster", booster_obj.class),
        ));
    }
    let bytes = match booster_obj.require("handle")? {
        Value::Bytes(b) => b,
        other => {
            return Err(booster_obj.invalid(
                "handle",
                format!("expected the model's bytes, found a {}", other.kind()),
            ));
        }
    };
    let wrap = |e: XgbError| ExtractError::Invalid {
        path: format!("{}._Booster.handle", object.path),
        reason: e.to_string(),
    };
    let booster =
        xgboost::model::booster(&xgboost::decode(bytes).map_err(wrap)?).map_err(|e| match e {
            XgbError::Unsupported(what) => ExtractError::Unsupported(format!("{name}: {what}")),
            other => wrap(other),
        })?;
    // XGBModel._get_iteration_range: (0, best_iteration + 1) when best_iteration is defined.
    let best = match booster_obj.get("best_iteration") {
        Some(_) => Some(booster_obj.usize("best_iteration")?),
        None if booster.version[0] >= 2 => xgboost::best_iteration(&booster).map_err(wrap)?,
        None => None,
    };
    if classifier {
        let n_classes = object.usize("n_classes_")?;
        let expected = if booster.n_groups == 1 {
            2
        } else {
            booster.n_groups
        };
        if n_classes != expected {
            return Err(object.invalid(
                "n_classes_",
                format!(
                    "is {n_classes}, the booster has {} output groups",
                    booster.n_groups
                ),
            ));
        }
        if let Some(Value::NdArray(classes)) = object.get("classes_") {
            let labels = classes.to_f64().unwrap_or_default();
            let ordinal =
                labels.len() == n_classes && labels.iter().enumerate().all(|(i, &c)| c == i as f64);
            if !ordinal {
                return Err(object.invalid("classes_", format!("expected 0 … {}", n_classes - 1)));
            }
        }
    }
    let names = (!booster.feature_names.is_empty()).then(|| booster.feature_names.clone());
    let model =
        xgboost::model(&booster, best.map(|b| b + 1), classifier, names.clone()).map_err(|e| {
            match e {
                XgbError::Unsupported(what) => ExtractError::Unsupported(format!("{name}: {what}")),
                other => wrap(other),
            }
        })?;
    Ok(Fitted {
        estimator: model.estimator,
        n_targets: model.n_targets,
        meta: Meta {
            n_features: model.n_features,
            feature_names: names,
            sklearn_version: String::new(),
            accepts_missing: true,
        },
        classifier: model.classifier,
    })
}
