//! Preprocessing steps (scalers, SimpleImputer, ColumnTransformer) as ONNX nodes, in double.
//!
//! Each mirrors sklearn's `transform`: the scalers one `Sub`/`Div`/`Mul`/`Add` per operation in
//! sklearn's order, `clip` as `Clip`, the imputer as `Where(IsNaN(x), statistics, x)` with its
//! missing indicator `Cast(IsNaN(x))`, and ColumnTransformer as `Gather` on columns and
//! `Concat` of the parts in order.

use super::graph::{GraphBuilder, attr_int};
use super::proto::tensor_proto::DataType;
use crate::error::ConvertError;
use crate::estimator::{ArithOp, ColumnPart, Imputer, Step};

/// Appends `steps` applied to `x` (`width` columns); returns the result and its width.
pub fn steps(
    g: &mut GraphBuilder,
    x: &str,
    steps: &[Step],
    width: usize,
) -> Result<(String, usize), ConvertError> {
    let mut value = (x.to_string(), width);
    for step in steps {
        value = self::step(g, &value.0, step, value.1)?;
    }
    Ok(value)
}

fn step(
    g: &mut GraphBuilder,
    x: &str,
    step: &Step,
    width: usize,
) -> Result<(String, usize), ConvertError> {
    let out_width = step.width(width).ok_or_else(|| {
        ConvertError::InvalidModel(format!(
            "a preprocessing step does not fit its {width} input columns"
        ))
    })?;
    let value = match step {
        Step::Arith { op, values } => {
            if values.iter().any(|v| !v.is_finite())
                || (*op == ArithOp::Div && values.contains(&0.0))
            {
                return Err(ConvertError::InvalidModel(
                    "a scaler has a zero or non-finite value".into(),
                ));
            }
            let op = match op {
                ArithOp::Sub => "Sub",
                ArithOp::Div => "Div",
                ArithOp::Mul => "Mul",
                ArithOp::Add => "Add",
            };
            let values = g.constant_f64("scaler", &[width], values);
            g.node(op, "", &[x, &values], vec![])
        }
        Step::Clip { min, max } => {
            let min = g.constant_f64("clip_min", &[], &[*min]);
            let max = g.constant_f64("clip_max", &[], &[*max]);
            g.node("Clip", "", &[x, &min, &max], vec![])
        }
        Step::Impute(imputer) => impute(g, x, imputer, width),
        Step::Columns(parts) => columns(g, x, parts)?,
    };
    Ok((value, out_width))
}

fn impute(g: &mut GraphBuilder, x: &str, imputer: &Imputer, width: usize) -> String {
    let missing = g.node("IsNaN", "", &[x], vec![]);
    let statistics = g.constant_f64("statistics", &[width], &imputer.statistics);
    let mut filled = g.node("Where", "", &[&missing, &statistics, x], vec![]);
    if imputer.keep.len() != width {
        filled = gather(g, &filled, &imputer.keep);
    }
    if imputer.indicator.is_empty() {
        return filled;
    }
    let flags = gather(g, &missing, &imputer.indicator);
    let flags = g.node(
        "Cast",
        "",
        &[&flags],
        vec![attr_int("to", DataType::Double as i64)],
    );
    g.node("Concat", "", &[&filled, &flags], vec![attr_int("axis", 1)])
}

fn columns(g: &mut GraphBuilder, x: &str, parts: &[ColumnPart]) -> Result<String, ConvertError> {
    let mut outputs = Vec::new();
    for part in parts {
        let selected = gather(g, x, &part.columns);
        let (value, _) = steps(g, &selected, &part.steps, part.columns.len())?;
        outputs.push(value);
    }
    let inputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    Ok(g.node("Concat", "", &inputs, vec![attr_int("axis", 1)]))
}

/// The columns `indices` of `x`, in that order.
fn gather(g: &mut GraphBuilder, x: &str, indices: &[usize]) -> String {
    let indices: Vec<i64> = indices.iter().map(|&j| j as i64).collect();
    let indices = g.constant_i64("columns", &[indices.len()], &indices);
    g.node("Gather", "", &[x, &indices], vec![attr_int("axis", 1)])
}

#[cfg(test)]
mod tests {
    use super::super::testing::{model, predict};
    use crate::estimator::{ArithOp, ColumnPart, Estimator, Imputer, Linear, Step};

    /// A model that outputs its transformed columns (identity weights) after `steps`.
    fn identity(steps: Vec<Step>, n_in: usize, n_out: usize) -> crate::estimator::Model {
        let coef = (0..n_out)
            .map(|t| (0..n_out).map(|f| f64::from(u8::from(t == f))).collect())
            .collect();
        let mut m = model(
            Estimator::Linear(Linear {
                coef,
                intercept: vec![0.0; n_out],
            }),
            n_in,
            n_out,
        );
        m.steps = steps;
        m
    }

    #[test]
    fn clip_keeps_nan_and_bounds_the_rest() {
        let m = identity(
            vec![Step::Clip {
                min: -1.0,
                max: 2.0,
            }],
            1,
            1,
        );
        let got = predict(&m, &[vec![f64::NAN], vec![-5.0], vec![0.5], vec![9.0]]);
        assert!(got[[0, 0]].is_nan());
        assert_eq!(got.column(0).to_vec()[1..], [-1.0, 0.5, 2.0]);
        assert_eq!(m.nullable(), [false]);
    }

    #[test]
    fn imputer_drops_empty_columns_and_appends_indicators() {
        let imputer = Imputer {
            statistics: vec![1.5, 0.0, -2.0],
            keep: vec![0, 2],
            indicator: vec![0, 1],
        };
        let m = identity(vec![Step::Impute(imputer)], 3, 4);
        let got = predict(
            &m,
            &[vec![f64::NAN, 7.0, f64::NAN], vec![3.0, f64::NAN, 4.0]],
        );
        assert_eq!(got.row(0).to_vec(), [1.5, -2.0, 1.0, 0.0]);
        assert_eq!(got.row(1).to_vec(), [3.0, 4.0, 0.0, 1.0]);
        assert_eq!(m.nullable(), [true, true, true]);
    }

    #[test]
    fn columns_concatenate_parts_in_order() {
        let parts = vec![
            ColumnPart {
                columns: vec![2, 0],
                steps: vec![Step::Arith {
                    op: ArithOp::Mul,
                    values: vec![10.0, 100.0],
                }],
            },
            ColumnPart {
                columns: vec![3],
                steps: vec![Step::Impute(Imputer {
                    statistics: vec![-1.0],
                    keep: vec![0],
                    indicator: vec![],
                })],
            },
        ];
        let m = identity(vec![Step::Columns(parts)], 4, 3);
        let got = predict(&m, &[vec![1.0, 2.0, 3.0, f64::NAN]]);
        assert_eq!(got.row(0).to_vec(), [30.0, 100.0, -1.0]);
        // Column 1 is dropped (anything goes), column 3 imputed, 0 and 2 scaled only.
        assert_eq!(m.nullable(), [false, true, false, true]);
    }
}
