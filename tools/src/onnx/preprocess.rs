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
