//! Preprocessing steps (scalers, SimpleImputer, ColumnTransformer) as ONNX nodes, in double.
//!
//! Each mirrors sklearn's `transform`: the scalers one `Sub`/`Div`/`Mul`/`Add` per operation in
//! sklearn's order, `clip` as `Clip`, the imputer as `Where(IsNaN(x), statistics, x)` with its
//! missing indicator `Cast(IsNaN(x))`, and ColumnTransformer as `Gather` on columns and
//! `Concat` of the parts in order; string columns (read from the second input by the model's
//! first step, a ColumnTransformer) imputed with `Where(Equal(x, ""), fill, x)`; the encoders
//! on numbers as `Equal` against their categories (`IsNaN` for a missing numeric category),
//! cast to double, then exact 0/1 `MatMul`s (OneHotEncoder's columns, OrdinalEncoder's index)
//! and `Where` for unknown and missing values; on strings as a lookup: `ai.onnx.ml`
//! `LabelEncoder` maps each value to its category's index (an unknown value to one past the
//! last), and `Gather` takes that row of a table of the encoder's outputs (one row per
//! category, then the unknown value's row), which copies the very values the `MatMul`s would
//! compute at a fraction of their cost. A string imputer right before string encoders is
//! folded into their lookups (`""` looks up the fill value's row), and a ColumnTransformer
//! part that reads every column of an input in order reads the input itself: string tensors
//! are then never copied inside the graph.

use super::ML_DOMAIN;
use super::graph::{GraphBuilder, attr_int, attr_ints, attr_strings};
use super::proto::tensor_proto::DataType;
use crate::error::ConvertError;
use crate::estimator::{ArithOp, Categories, ColumnPart, Encoding, EncodingOutput, Imputer, Step};

/// The model's inputs as its first step sees them.
pub struct Inputs<'a> {
    /// The double input (the numeric features in feature order).
    pub numbers: &'a str,
    /// The string input (the string features in feature order), if the model has one.
    pub strings: Option<&'a str>,
    /// Per feature: whether it is a string.
    pub string_columns: &'a [bool],
}

/// Appends a model's steps reading `inputs` (`width` features); returns the result and its
/// width. Only a first-step ColumnTransformer may read string features.
pub fn model_steps(
    g: &mut GraphBuilder,
    inputs: &Inputs<'_>,
    all: &[Step],
    width: usize,
) -> Result<(String, usize), ConvertError> {
    let has_strings = inputs.string_columns.contains(&true);
    match all.split_first() {
        Some((Step::Columns(parts), rest)) => {
            let out_width = all[0].width(width).ok_or_else(|| misfit(width))?;
            let x = columns(g, inputs, parts)?;
            steps(g, &x, rest, out_width)
        }
        _ if has_strings => Err(ConvertError::InvalidModel(
            "string features outside a ColumnTransformer".into(),
        )),
        _ => steps(g, inputs.numbers, all, width),
    }
}

fn misfit(width: usize) -> ConvertError {
    ConvertError::InvalidModel(format!(
        "a preprocessing step does not fit its {width} input columns"
    ))
}

/// Appends `steps` applied to `x` (`width` columns); returns the result and its width.
pub fn steps(
    g: &mut GraphBuilder,
    x: &str,
    steps: &[Step],
    width: usize,
) -> Result<(String, usize), ConvertError> {
    let mut value = (x.to_string(), width);
    let mut i = 0;
    while i < steps.len() {
        // A string imputer right before string encoders is folded into their lookups: the
        // missing value `""` looks up the fill value's row (no string copies in between).
        if let (Step::FillStrings(fill), Some(Step::Encode(encodings))) =
            (&steps[i], steps.get(i + 1))
            && fill.len() == value.1
            && encodings.len() == value.1
            && encodings
                .iter()
                .all(|e| matches!(e.categories, Categories::Strings(_)))
        {
            value = encode_all(g, &value.0, encodings, Some(fill))?;
            i += 2;
            continue;
        }
        value = self::step(g, &value.0, &steps[i], value.1)?;
        i += 1;
    }
    Ok(value)
}

fn step(
    g: &mut GraphBuilder,
    x: &str,
    step: &Step,
    width: usize,
) -> Result<(String, usize), ConvertError> {
    let out_width = step.width(width).ok_or_else(|| misfit(width))?;
    let value = match step {
        Step::Arith { op, values } => {
            if values.iter().any(|v| !v.is_finite())
                || (*op == ArithOp::Div && values.contains(&0.0))
            {
                return Err(ConvertError::InvalidModel(
                    "a scaler has a zero or non-finite value".into(),
                ));
            }
            // (The StandardScaler's stems of earlier versions, so its graphs stay the same.)
            let (op, stem) = match op {
                ArithOp::Sub => ("Sub", "scaler_mean"),
                ArithOp::Div => ("Div", "scaler_scale"),
                ArithOp::Mul => ("Mul", "scaler_mul"),
                ArithOp::Add => ("Add", "scaler_add"),
            };
            let values = g.constant_f64(stem, &[width], values);
            g.node(op, "", &[x, &values], vec![])
        }
        Step::Clip { min, max } => {
            let min = g.constant_f64("clip_min", &[], &[*min]);
            let max = g.constant_f64("clip_max", &[], &[*max]);
            g.node("Clip", "", &[x, &min, &max], vec![])
        }
        Step::Impute(imputer) => impute(g, x, imputer, width),
        Step::Columns(parts) => {
            let numbers = vec![false; width];
            let inputs = Inputs {
                numbers: x,
                strings: None,
                string_columns: &numbers,
            };
            columns(g, &inputs, parts)?
        }
        Step::FillStrings(fill) => {
            let empty = g.constant_str("empty", &[], &[String::new()]);
            let missing = g.node("Equal", "", &[x, &empty], vec![]);
            let fill = g.constant_str("fill", &[width], fill);
            g.node("Where", "", &[&missing, &fill, x], vec![])
        }
        Step::Encode(encodings) => encode_all(g, x, encodings, None)?.0,
    };
    Ok((value, out_width))
}

/// The encoders of an `Encode` step, one per column of `x`, their outputs concatenated;
/// `fill` (string columns only): the values a string imputer before them puts in place of
/// `""`, folded into the lookups. Returns the result and its width.
fn encode_all(
    g: &mut GraphBuilder,
    x: &str,
    encodings: &[Encoding],
    fill: Option<&[String]>,
) -> Result<(String, usize), ConvertError> {
    let mut outputs = Vec::new();
    let mut width = 0;
    for (j, encoding) in encodings.iter().enumerate() {
        let column = if encodings.len() == 1 {
            x.to_string()
        } else {
            gather(g, x, &[j])
        };
        let missing = encoding.categories.missing();
        let out = match (&encoding.categories, fill) {
            (Categories::Strings(categories), fill) => {
                let fill = fill.map(|f| f[j].as_str());
                encode_strings(g, &column, categories, &encoding.output, missing, fill)?
            }
            (Categories::Numbers(_), None) => encode(g, &column, encoding)?,
            (Categories::Numbers(_), Some(_)) => {
                return Err(ConvertError::InvalidModel(
                    "a string imputer before a numeric encoder".into(),
                ));
            }
        };
        width += encoding.width();
        outputs.push(out);
    }
    if let [only] = outputs.as_slice() {
        return Ok((only.clone(), width));
    }
    let inputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    Ok((
        g.node("Concat", "", &inputs, vec![attr_int("axis", 1)]),
        width,
    ))
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
    let flags = g.cast(&flags, DataType::Double);
    g.node("Concat", "", &[&filled, &flags], vec![attr_int("axis", 1)])
}

fn columns(
    g: &mut GraphBuilder,
    inputs: &Inputs<'_>,
    parts: &[ColumnPart],
) -> Result<String, ConvertError> {
    let mut outputs = Vec::new();
    for part in parts {
        // A feature's position within its own input (numbers or strings).
        let mut positions = Vec::new();
        for &j in &part.columns {
            let is_string = inputs.string_columns.get(j) == Some(&true);
            if is_string != part.strings {
                return Err(ConvertError::InvalidModel(format!(
                    "feature {j} is read both as a string and as a number"
                )));
            }
            let before = inputs.string_columns[..j]
                .iter()
                .filter(|s| **s == is_string)
                .count();
            positions.push(before);
        }
        let source = match (part.strings, inputs.strings) {
            (false, _) => inputs.numbers,
            (true, Some(strings)) => strings,
            (true, None) => {
                return Err(ConvertError::InvalidModel(
                    "string features but no string input".into(),
                ));
            }
        };
        // Every column of its input, in order: the input itself (no copy).
        let all = inputs
            .string_columns
            .iter()
            .filter(|s| **s == part.strings)
            .count();
        let identity = positions.len() == all && positions.iter().enumerate().all(|(i, p)| i == *p);
        let selected = if identity {
            source.to_string()
        } else {
            gather(g, source, &positions)
        };
        let (value, _) = steps(g, &selected, &part.steps, part.columns.len())?;
        outputs.push(value);
    }
    let inputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    Ok(g.node("Concat", "", &inputs, vec![attr_int("axis", 1)]))
}

/// One encoder column (`[N, 1]`) as its output columns.
fn encode(g: &mut GraphBuilder, x: &str, encoding: &Encoding) -> Result<String, ConvertError> {
    let k = encoding.categories.len();
    let missing = encoding.categories.missing();
    if let Categories::Strings(categories) = &encoding.categories {
        return encode_strings(g, x, categories, &encoding.output, missing, None);
    }
    // `is_missing`: [N, 1] bool, whether x is the missing value (NaN or "").
    let (equal, is_missing) = match &encoding.categories {
        Categories::Numbers(c) => {
            let categories = g.constant_f64("categories", &[k], c);
            let equal = g.node("Equal", "", &[x, &categories], vec![]);
            (equal, g.node("IsNaN", "", &[x], vec![]))
        }
        Categories::Strings(c) => {
            let categories = g.constant_str("categories", &[k], c);
            let equal = g.node("Equal", "", &[x, &categories], vec![]);
            let empty = g.constant_str("empty", &[], &[String::new()]);
            (equal, g.node("Equal", "", &[x, &empty], vec![]))
        }
    };
    let mut matches = g.cast(&equal, DataType::Double);
    if let (Categories::Numbers(_), Some(m)) = (&encoding.categories, missing) {
        // NaN never equals NaN: the missing category matches through IsNaN.
        let mut at = vec![0.0; k];
        at[m] = 1.0;
        let at = g.constant_f64("missing_at", &[k], &at);
        let nan = g.cast(&is_missing, DataType::Double);
        let nan = g.node("Mul", "", &[&nan, &at], vec![]);
        matches = g.node("Add", "", &[&matches, &nan], vec![]);
    }
    let ones = g.constant_f64("ones", &[k, 1], &vec![1.0; k]);
    let known = g.node("MatMul", "", &[&matches, &ones], vec![]);
    let zero = g.constant_f64("zero", &[], &[0.0]);
    let unknown = g.node("Equal", "", &[&known, &zero], vec![]);
    match &encoding.output {
        EncodingOutput::OneHot(columns) => {
            let o = columns.len();
            let mut weights = vec![0.0; k * o];
            for (c, column) in columns.iter().enumerate() {
                for &i in &column.categories {
                    if i >= k {
                        return Err(ConvertError::InvalidModel(format!(
                            "a one-hot column reads category {i} of {k}"
                        )));
                    }
                    weights[i * o + c] = 1.0;
                }
            }
            let weights = g.constant_f64("onehot", &[k, o], &weights);
            let out = g.node("MatMul", "", &[&matches, &weights], vec![]);
            if !columns.iter().any(|c| c.unknown) {
                return Ok(out);
            }
            let flags: Vec<f64> = columns
                .iter()
                .map(|c| f64::from(u8::from(c.unknown)))
                .collect();
            let flags = g.constant_f64("unknown_to", &[o], &flags);
            let unknown = g.cast(&unknown, DataType::Double);
            let extra = g.node("Mul", "", &[&unknown, &flags], vec![]);
            Ok(g.node("Add", "", &[&out, &extra], vec![]))
        }
        EncodingOutput::Ordinal {
            unknown: unknown_value,
            missing: missing_value,
        } => {
            let index: Vec<f64> = (0..k)
                .map(|i| if Some(i) == missing { 0.0 } else { i as f64 })
                .collect();
            let index = g.constant_f64("ordinal", &[k, 1], &index);
            let mut out = g.node("MatMul", "", &[&matches, &index], vec![]);
            let value = g.constant_f64("unknown_value", &[], &[*unknown_value]);
            out = g.node("Where", "", &[&unknown, &value, &out], vec![]);
            if let (Some(_), Some(v)) = (missing, missing_value) {
                let value = g.constant_f64("missing_value", &[], &[*v]);
                out = g.node("Where", "", &[&is_missing, &value, &out], vec![]);
            }
            Ok(out)
        }
    }
}

/// A string encoder column (`[N, 1]`) as a table lookup: row `i` of the table is the output
/// for category `i` (the missing category `""` included, when it is one), row `k` the output
/// for a value outside the categories. With `fill` (a string imputer folded in), `""` looks
/// up the row of the fill value instead.
fn encode_strings(
    g: &mut GraphBuilder,
    x: &str,
    categories: &[String],
    output: &EncodingOutput,
    missing: Option<usize>,
    fill: Option<&str>,
) -> Result<String, ConvertError> {
    let k = categories.len();
    let (width, table) = match output {
        EncodingOutput::OneHot(columns) => {
            let o = columns.len();
            let mut table = vec![0.0; (k + 1) * o];
            for (c, column) in columns.iter().enumerate() {
                for &i in &column.categories {
                    if i >= k {
                        return Err(ConvertError::InvalidModel(format!(
                            "a one-hot column reads category {i} of {k}"
                        )));
                    }
                    table[i * o + c] = 1.0;
                }
                if column.unknown {
                    table[k * o + c] = 1.0;
                }
            }
            (o, table)
        }
        EncodingOutput::Ordinal {
            unknown,
            missing: missing_value,
        } => {
            let mut table: Vec<f64> = (0..k).map(|i| i as f64).collect();
            if let Some(m) = missing {
                table[m] = missing_value.unwrap_or(0.0);
            }
            table.push(*unknown);
            (1, table)
        }
    };
    let mut keys: Vec<String> = Vec::with_capacity(k + 1);
    let mut index: Vec<i64> = Vec::with_capacity(k + 1);
    for (i, category) in categories.iter().enumerate() {
        if fill.is_none() || !category.is_empty() {
            keys.push(category.clone());
            index.push(i as i64);
        }
    }
    if let Some(fill) = fill {
        keys.push(String::new());
        index.push(categories.iter().position(|c| c == fill).unwrap_or(k) as i64);
    }
    let index = g.node(
        "LabelEncoder",
        ML_DOMAIN,
        &[x],
        vec![
            attr_strings("keys_strings", &keys),
            attr_ints("values_int64s", index),
            attr_int("default_int64", k as i64),
        ],
    );
    let flat = g.constant_i64("flat", &[1], &[-1]);
    let index = g.node("Reshape", "", &[&index, &flat], vec![]);
    let table = g.constant_f64("encoding", &[k + 1, width], &table);
    Ok(g.node("Gather", "", &[&table, &index], vec![attr_int("axis", 0)]))
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
    use crate::estimator::{
        ArithOp, Categories, ColumnPart, Encoding, EncodingOutput, Estimator, Imputer, Linear,
        OneHotColumn, Step,
    };

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
                strings: false,
                steps: vec![Step::Arith {
                    op: ArithOp::Mul,
                    values: vec![10.0, 100.0],
                }],
            },
            ColumnPart {
                columns: vec![3],
                strings: false,
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

    fn onehot(categories: Vec<usize>, unknown: bool) -> OneHotColumn {
        OneHotColumn {
            categories,
            unknown,
        }
    }

    #[test]
    fn one_hot_groups_drops_and_sends_unknown_values_to_the_infrequent_column() {
        // Categories 1, 2, 3, NaN; 1 is dropped, {3, NaN} infrequent (and unknown values).
        let encoding = Encoding {
            categories: Categories::Numbers(vec![1.0, 2.0, 3.0, f64::NAN]),
            refuse_unknown: false,
            output: EncodingOutput::OneHot(vec![onehot(vec![1], false), onehot(vec![2, 3], true)]),
        };
        let m = identity(vec![Step::Encode(vec![encoding])], 1, 2);
        let got = predict(
            &m,
            &[vec![1.0], vec![2.0], vec![3.0], vec![f64::NAN], vec![7.5]],
        );
        let want = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]];
        for (row, want) in got.rows().into_iter().zip(want) {
            assert_eq!(row.to_vec(), want);
        }
        assert_eq!(m.nullable(), [true]);
    }

    #[test]
    fn ordinal_encodes_unknown_and_missing_values() {
        let encoding = Encoding {
            categories: Categories::Numbers(vec![-4.0, 0.5, f64::NAN]),
            refuse_unknown: false,
            output: EncodingOutput::Ordinal {
                unknown: f64::NAN,
                missing: Some(-2.0),
            },
        };
        let refusing = Encoding {
            categories: Categories::Numbers(vec![10.0, 20.0]),
            refuse_unknown: true,
            output: EncodingOutput::Ordinal {
                unknown: f64::NAN,
                missing: None,
            },
        };
        let m = identity(vec![Step::Encode(vec![encoding, refusing])], 2, 2);
        let got = predict(
            &m,
            &[
                vec![0.5, 20.0],
                vec![-4.0, 10.0],
                vec![f64::NAN, 10.0],
                vec![3.0, 20.0],
            ],
        );
        assert_eq!(got.column(0).to_vec()[..3], [1.0, 0.0, -2.0]);
        assert!(got[[3, 0]].is_nan());
        // (The identity layer spreads row 3's NaN to its other column.)
        assert_eq!(got.column(1).to_vec()[..3], [1.0, 0.0, 0.0]);
        // A refusing encoder without a missing category does not accept NaN.
        assert_eq!(m.nullable(), [true, false]);
    }

    /// Converts `m` (string features only) and predicts `rows` through ONNX Runtime.
    fn predict_strings(m: &crate::estimator::Model, rows: &[[&str; 2]]) -> ndarray::Array2<f64> {
        let source = crate::onnx::Source {
            file_name: "test.pkl".into(),
            sha256: "00".repeat(32),
        };
        let bytes = crate::onnx::encode(m, &source).expect("the model converts");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.onnx");
        std::fs::write(&path, bytes).unwrap();
        let env = onnx_model::runtime::environment(None).expect("ONNX Runtime loads");
        let loaded = onnx_model::Model::load(env, "test", &path).expect("ORT loads it");
        let strings: Vec<String> = rows.iter().flatten().map(|s| s.to_string()).collect();
        let numbers = ndarray::Array2::zeros((rows.len(), 0));
        loaded
            .predict_mixed(numbers.view(), &strings)
            .expect("ORT runs it")
    }

    #[test]
    fn string_lookups_fold_in_the_imputer_and_keep_unknown_and_missing_rows() {
        let party = Encoding {
            categories: Categories::Strings(vec!["a".into(), "b".into()]),
            refuse_unknown: false,
            output: EncodingOutput::OneHot(vec![onehot(vec![0], false), onehot(vec![1], true)]),
        };
        let level = Encoding {
            categories: Categories::Strings(vec!["x".into(), String::new()]),
            refuse_unknown: false,
            output: EncodingOutput::Ordinal {
                unknown: -1.0,
                missing: Some(7.0),
            },
        };
        let rows = [["a", "x"], ["b", ""], ["", "y"], ["q", "x"]];
        let part = |steps| {
            Step::Columns(vec![ColumnPart {
                columns: vec![0, 1],
                strings: true,
                steps,
            }])
        };
        // The encoders alone: "" is the missing category of the second column (7), "q" and
        // "" are unknown to the first (its unknown column).
        let plain = identity(
            vec![part(vec![Step::Encode(vec![party.clone(), level.clone()])])],
            2,
            3,
        );
        let got = predict_strings(&plain, &rows);
        let want = [
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 7.0],
            [0.0, 1.0, -1.0],
            [0.0, 1.0, 0.0],
        ];
        for (row, want) in got.rows().into_iter().zip(want) {
            assert_eq!(row.to_vec(), want);
        }
        // An imputer before them, folded in: "" becomes "b" in the first column and "zz"
        // (unknown) in the second.
        let filled = identity(
            vec![part(vec![
                Step::FillStrings(vec!["b".into(), "zz".into()]),
                Step::Encode(vec![party, level]),
            ])],
            2,
            3,
        );
        let got = predict_strings(&filled, &rows);
        let want = [
            [1.0, 0.0, 0.0],
            [0.0, 1.0, -1.0],
            [0.0, 1.0, -1.0],
            [0.0, 1.0, 0.0],
        ];
        for (row, want) in got.rows().into_iter().zip(want) {
            assert_eq!(row.to_vec(), want);
        }
    }
}
