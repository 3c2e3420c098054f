//! The linear regressors (LinearRegression, Ridge, Lasso, ElasticNet, SGDRegressor,
//! HuberRegressor, BayesianRidge, ARDRegression, LinearSVR, RidgeCV, LassoCV, ElasticNetCV,
//! Lars, LassoLars): `coef_` and `intercept_`.
//!
//! A model fitted on float32 data has float32 `coef_`/`intercept_`; sklearn's `predict` on
//! float64 rows then computes in float64 with those values widened, which is what the ONNX
//! graph does with them (float32 to float64 is exact).

use super::{ExtractError, Fitted, Obj, as_f64, f64_values};
use crate::estimator::{Estimator, Linear};
use crate::pickle::Value;

/// Extracts `y = x @ coef_.T + intercept_`, for one or several targets.
pub fn extract(object: &Obj<'_>) -> Result<Fitted, ExtractError> {
    let coef = object.array("coef_")?;
    let flat = f64_values(object, "coef_", coef)?;
    let (n_targets, n_features) = match coef.shape.as_slice() {
        [f] => (1, *f),
        [t, f] => (*t, *f),
        shape => return Err(object.invalid("coef_", format!("unexpected shape {shape:?}"))),
    };
    if n_targets == 0 || n_features == 0 {
        return Err(object.invalid("coef_", format!("empty shape {:?}", coef.shape)));
    }
    let coef_rows: Vec<Vec<f64>> = flat.chunks_exact(n_features).map(<[f64]>::to_vec).collect();
    let intercept = match object.require("intercept_")? {
        Value::NdArray(a) if !a.shape.is_empty() => f64_values(object, "intercept_", a)?,
        scalar => {
            let v = as_f64(scalar).ok_or_else(|| {
                object.invalid(
                    "intercept_",
                    format!("expected a number or array, found a {}", scalar.kind()),
                )
            })?;
            vec![v; n_targets]
        }
    };
    if intercept.len() != n_targets {
        return Err(object.invalid(
            "intercept_",
            format!("has {} values for {n_targets} targets", intercept.len()),
        ));
    }
    let meta = object.meta(n_features)?;
    Ok(Fitted {
        estimator: Estimator::Linear(Linear {
            coef: coef_rows,
            intercept,
        }),
        n_targets,
        meta,
        classifier: None,
    })
}
