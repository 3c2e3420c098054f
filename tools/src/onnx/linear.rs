//! Linear models as `MatMul` + `Add`, in double, as sklearn computes `x @ coef.T + intercept`.

use super::graph::GraphBuilder;
use crate::error::ConvertError;
use crate::estimator::Linear;

/// Appends `x @ coef.T + intercept` writing `[N, n_targets]` to `output`.
pub fn linear(
    g: &mut GraphBuilder,
    x: &str,
    linear: &Linear,
    n_features: usize,
    n_targets: usize,
    output: &str,
) -> Result<(), ConvertError> {
    check_len("coef_ rows", linear.coef.len(), n_targets)?;
    check_len("intercept_", linear.intercept.len(), n_targets)?;
    // coef is [n_targets][n_features]; MatMul wants its transpose, [n_features, n_targets].
    let mut weights = vec![0.0; n_features * n_targets];
    for (t, row) in linear.coef.iter().enumerate() {
        check_len("coef_ row", row.len(), n_features)?;
        for (f, w) in row.iter().enumerate() {
            weights[f * n_targets + t] = *w;
        }
    }
    let weights = g.constant_f64("coef", &[n_features, n_targets], &weights);
    let intercept = g.constant_f64("intercept", &[n_targets], &linear.intercept);
    let product = g.node("MatMul", "", &[x, &weights], vec![]);
    g.node_into("Add", "", &[&product, &intercept], vec![], output);
    Ok(())
}

fn check_len(what: &str, got: usize, expected: usize) -> Result<(), ConvertError> {
    if got == expected {
        Ok(())
    } else {
        Err(ConvertError::InvalidModel(format!(
            "{what} has length {got}, expected {expected}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_close, model, predict};
    use crate::error::ConvertError;
    use crate::estimator::{ArithOp, Estimator, Linear, Step};

    fn rows() -> Vec<Vec<f64>> {
        vec![
            vec![38_000.5, 5.2, 3.1, 2.9],
            vec![15_123.25, 9.7, -2.4, 0.3],
            vec![0.0, 0.0, 0.0, 0.0],
        ]
    }

    /// sklearn's `x @ coef.T + intercept`, summed left to right.
    fn reference(x: &[f64], coef: &[Vec<f64>], intercept: &[f64]) -> Vec<f64> {
        coef.iter()
            .zip(intercept)
            .map(|(c, b)| x.iter().zip(c).map(|(x, c)| x * c).sum::<f64>() + b)
            .collect()
    }

    #[test]
    fn one_target() {
        let coef = vec![vec![1.25e-4, -0.4, 0.31, 0.22]];
        let intercept = vec![1.7];
        let m = model(
            Estimator::Linear(Linear {
                coef: coef.clone(),
                intercept: intercept.clone(),
            }),
            4,
            1,
        );
        let expected: Vec<_> = rows()
            .iter()
            .map(|x| reference(x, &coef, &intercept))
            .collect();
        let got = predict(&m, &rows());
        assert_eq!(got.dim(), (3, 1));
        assert_close(&got, &expected);
        assert_eq!(got[[2, 0]], 1.7);
    }

    #[test]
    fn two_targets() {
        let coef = vec![vec![1e-4, -0.4, 0.3, 0.2], vec![-2e-5, 0.1, 0.9, -0.7]];
        let intercept = vec![1.5, -3.25];
        let m = model(
            Estimator::Linear(Linear {
                coef: coef.clone(),
                intercept: intercept.clone(),
            }),
            4,
            2,
        );
        let expected: Vec<_> = rows()
            .iter()
            .map(|x| reference(x, &coef, &intercept))
            .collect();
        let got = predict(&m, &rows());
        assert_eq!(got.dim(), (3, 2));
        assert_close(&got, &expected);
        assert_eq!(got.row(2).to_vec(), [1.5, -3.25]);
    }

    #[test]
    fn scaler_then_linear() {
        let mean = vec![25_000.0, 6.0, 3.0, 3.0];
        let scale = vec![7_000.0, 1.5, 3.3, 2.1];
        let coef = vec![vec![0.5, -0.25, 1.5, 0.75]];
        let intercept = vec![3.0];
        let mut m = model(
            Estimator::Linear(Linear {
                coef: coef.clone(),
                intercept: intercept.clone(),
            }),
            4,
            1,
        );
        m.steps = vec![
            Step::Arith {
                op: ArithOp::Sub,
                values: mean.clone(),
            },
            Step::Arith {
                op: ArithOp::Div,
                values: scale.clone(),
            },
        ];
        let expected: Vec<_> = rows()
            .iter()
            .map(|x| {
                let z: Vec<f64> = (0..4).map(|i| (x[i] - mean[i]) / scale[i]).collect();
                reference(&z, &coef, &intercept)
            })
            .collect();
        assert_close(&predict(&m, &rows()), &expected);

        // with_mean=False: only the division.
        m.steps = vec![Step::Arith {
            op: ArithOp::Div,
            values: scale.clone(),
        }];
        let expected: Vec<_> = rows()
            .iter()
            .map(|x| {
                let z: Vec<f64> = (0..4).map(|i| x[i] / scale[i]).collect();
                reference(&z, &coef, &intercept)
            })
            .collect();
        assert_close(&predict(&m, &rows()), &expected);
    }

    #[test]
    fn inconsistent_shapes_are_refused() {
        let m = model(
            Estimator::Linear(Linear {
                coef: vec![vec![1.0, 2.0]],
                intercept: vec![0.0],
            }),
            3,
            1,
        );
        let source = super::super::Source {
            file_name: "m.pkl".into(),
            sha256: String::new(),
        };
        let err = super::super::build(&m, &source).unwrap_err();
        assert!(matches!(err, ConvertError::InvalidModel(_)), "{err}");
        assert!(
            err.to_string()
                .contains("coef_ row has length 2, expected 3"),
            "{err}"
        );
    }
}
