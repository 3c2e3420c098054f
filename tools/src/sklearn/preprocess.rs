//! The supported transformers, as [`Step`]s: StandardScaler, MinMaxScaler (with `clip`),
//! RobustScaler, MaxAbsScaler, SimpleImputer (NaN, numeric columns, `add_indicator`),
//! ColumnTransformer (columns by index, name or mask; `remainder` drop or passthrough),
//! OneHotEncoder and OrdinalEncoder (numeric or string columns, read by [`super::encoders`]),
//! SimpleImputer on string columns, and nested Pipelines of these. Anything else is refused naming the class or the
//! option. String columns are only read by a ColumnTransformer's parts.

use super::encoders::encoder;
use super::{ExtractError, Meta, Obj, as_f64, f64_values, is_nan};
use crate::estimator::{ArithOp, ColumnPart, Imputer, Step};
use crate::pickle::{NodeId, Value};

/// Most transformers a ColumnTransformer may list.
const MAX_TRANSFORMERS: usize = 256;
/// Most columns a ColumnTransformer part may select.
const MAX_COLUMNS: usize = 100_000;

/// Most steps (passthrough included) a Pipeline may list.
const MAX_STEPS: usize = 16;

/// The estimators of a Pipeline's `steps`, skipping `'passthrough'`/None steps.
pub fn pipeline_steps<'g>(pipeline: &Obj<'g>) -> Result<Vec<Obj<'g>>, ExtractError> {
    let graph = pipeline.graph;
    let Value::List(items) = pipeline.require("steps")? else {
        return Err(pipeline.invalid("steps", "expected a list"));
    };
    if items.len() > MAX_STEPS {
        return Err(ExtractError::Unsupported(format!(
            "Pipeline with {} steps",
            items.len()
        )));
    }
    let mut steps = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}.steps[{i}]", pipeline.path);
        let Some(Value::Tuple(pair)) = graph.nodes.get(item.0) else {
            return Err(ExtractError::Invalid {
                path,
                reason: "expected a (name, estimator) tuple".into(),
            });
        };
        let (Some(name), Some(estimator)) = (pair.first(), pair.get(1)) else {
            return Err(ExtractError::Invalid {
                path,
                reason: "expected a (name, estimator) tuple".into(),
            });
        };
        let name = match graph.nodes.get(name.0) {
            Some(Value::Str(s)) => s.as_str(),
            _ => "?",
        };
        match graph.nodes.get(estimator.0) {
            Some(Value::None) => continue,
            Some(Value::Str(s)) if s == "passthrough" => continue,
            Some(Value::Object { .. }) => steps.push(Obj::new(
                graph,
                *estimator,
                &format!("{}.steps[{name:?}]", pipeline.path),
            )?),
            Some(other) => {
                return Err(ExtractError::Unsupported(format!(
                    "Pipeline step {name:?} is a {}",
                    other.kind()
                )));
            }
            None => {
                return Err(ExtractError::Invalid {
                    path,
                    reason: "dangling reference".into(),
                });
            }
        }
    }
    Ok(steps)
}

/// Whether `name` is a transformer this module converts.
pub fn is_transformer(name: &str) -> bool {
    matches!(
        name,
        "StandardScaler"
            | "MinMaxScaler"
            | "RobustScaler"
            | "MaxAbsScaler"
            | "SimpleImputer"
            | "ColumnTransformer"
            | "FunctionTransformer"
            | "OneHotEncoder"
            | "OrdinalEncoder"
            | "Pipeline"
    )
}

/// A fitted transformer: its steps and what it says about its input.
pub struct Transform {
    pub steps: Vec<Step>,
    pub meta: Meta,
    /// Whether it reads string columns (an encoder of strings, an imputer of strings).
    pub strings_in: bool,
    /// Whether it outputs string columns (an imputer of strings).
    pub strings_out: bool,
}

impl Transform {
    fn numeric(steps: Vec<Step>, meta: Meta) -> Transform {
        Transform {
            steps,
            meta,
            strings_in: false,
            strings_out: false,
        }
    }
}

/// Extracts the transformer `object`; `out` is the width the next step takes, if known (the
/// scalers' parameters are checked against it).
pub fn transformer(object: &Obj<'_>, out: Option<usize>) -> Result<Transform, ExtractError> {
    match object.class_name() {
        "StandardScaler" => scaler(object, out, ["with_mean", "mean_", "with_std", "scale_"]),
        "RobustScaler" => scaler(
            object,
            out,
            ["with_centering", "center_", "with_scaling", "scale_"],
        ),
        "MaxAbsScaler" => {
            let scale = column(object, "scale_", out)?;
            let meta = object.meta(scale.len())?;
            let steps = vec![arith(ArithOp::Div, scale)];
            Ok(Transform::numeric(steps, meta))
        }
        "MinMaxScaler" => min_max(object, out),
        "SimpleImputer" => imputer(object),
        "ColumnTransformer" => column_transformer(object),
        "FunctionTransformer" => identity(object),
        "Pipeline" => {
            let steps = pipeline_steps(object)?;
            let Some(first) = steps.first() else {
                return Err(ExtractError::Unsupported(format!(
                    "{}: a Pipeline without steps",
                    object.path
                )));
            };
            let mut out: Option<Transform> = None;
            let mut width = 0;
            for step in &steps {
                let t = transformer(step, None)?;
                let step_width = crate::estimator::steps_width(&t.steps, t.meta.n_features)
                    .ok_or_else(|| step.invalid("", "its parameters do not fit its input"))?;
                match &mut out {
                    None => out = Some(t),
                    Some(chain) => {
                        if t.meta.n_features != width {
                            return Err(step.invalid(
                                "n_features_in_",
                                format!(
                                    "is {} but the previous step gives {width}",
                                    t.meta.n_features
                                ),
                            ));
                        }
                        if t.strings_in != chain.strings_out {
                            return Err(ExtractError::Unsupported(format!(
                                "{}: a step that reads {} after one that gives {}",
                                step.path,
                                kind_name(t.strings_in),
                                kind_name(chain.strings_out)
                            )));
                        }
                        chain.strings_out = t.strings_out;
                        chain.steps.extend(t.steps);
                    }
                }
                width = step_width;
            }
            out.ok_or_else(|| first.invalid("", "no transformer"))
        }
        "OneHotEncoder" | "OrdinalEncoder" => {
            let (encodings, meta, strings) = encoder(object)?;
            Ok(Transform {
                steps: vec![Step::Encode(encodings)],
                meta,
                strings_in: strings,
                strings_out: false,
            })
        }
        other => Err(ExtractError::Unsupported(format!(
            "{other} ({}) is not a supported transformer",
            object.class
        ))),
    }
}

fn arith(op: ArithOp, values: Vec<f64>) -> Step {
    Step::Arith { op, values }
}

/// A finite float64 array attribute, of `width` values if given.
fn column(object: &Obj<'_>, attr: &str, width: Option<usize>) -> Result<Vec<f64>, ExtractError> {
    let values = f64_values(object, attr, object.array(attr)?)?;
    if let Some(width) = width
        && values.len() != width
    {
        return Err(object.invalid(
            attr,
            format!("has {} values for {width} features", values.len()),
        ));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(object.invalid(attr, "contains a non-finite value"));
    }
    Ok(values)
}

/// `x - center` if `center_flag`, then `x / scale` if `scale_flag` (StandardScaler,
/// RobustScaler).
fn scaler(
    object: &Obj<'_>,
    out: Option<usize>,
    [center_flag, center, scale_flag, scale]: [&str; 4],
) -> Result<Transform, ExtractError> {
    let width = match out {
        Some(width) => width,
        None => object.usize("n_features_in_")?,
    };
    let mut steps = Vec::new();
    if object.bool(center_flag)? {
        steps.push(arith(ArithOp::Sub, column(object, center, Some(width))?));
    }
    if object.bool(scale_flag)? {
        let scale = column(object, scale, Some(width))?;
        if scale.contains(&0.0) {
            return Err(object.invalid(scale_flag, "contains a zero"));
        }
        steps.push(arith(ArithOp::Div, scale));
    }
    Ok(Transform::numeric(steps, object.meta(width)?))
}

/// `x * scale_ + min_`, then `np.clip(x, *feature_range)` if `clip`.
fn min_max(object: &Obj<'_>, out: Option<usize>) -> Result<Transform, ExtractError> {
    let scale = column(object, "scale_", out)?;
    let min = column(object, "min_", Some(scale.len()))?;
    let meta = object.meta(scale.len())?;
    let mut steps = vec![arith(ArithOp::Mul, scale), arith(ArithOp::Add, min)];
    // `clip` exists since sklearn 0.24.
    if object.get("clip").is_some() && object.bool("clip")? {
        let range: Option<Vec<f64>> = match object.require("feature_range")? {
            Value::Tuple(items) | Value::List(items) => items
                .iter()
                .map(|id| object.graph.nodes.get(id.0).and_then(as_f64))
                .collect(),
            _ => None,
        };
        let (low, high) = match range.as_deref() {
            Some(&[low, high]) if low.is_finite() && high.is_finite() && low < high => (low, high),
            _ => return Err(object.invalid("feature_range", "expected a (min, max) pair")),
        };
        steps.push(Step::Clip {
            min: low,
            max: high,
        });
    }
    Ok(Transform::numeric(steps, meta))
}

fn imputer(object: &Obj<'_>) -> Result<Transform, ExtractError> {
    if !object.get("missing_values").is_some_and(is_nan) {
        return Err(ExtractError::Unsupported(format!(
            "{}: SimpleImputer with missing_values other than NaN",
            object.path
        )));
    }
    let array = object.array("statistics_")?;
    let statistics = if array.dtype.kind == 'O' {
        // strategy='constant' keeps its fill value as Python objects (numbers on numeric
        // columns).
        let numbers: Option<Vec<f64>> = array
            .objects
            .iter()
            .map(|id| match object.graph.nodes.get(id.0)? {
                Value::Str(_) => None,
                other => as_f64(other),
            })
            .collect();
        match numbers {
            Some(numbers) => numbers,
            None => return string_imputer(object, array),
        }
    } else {
        f64_values(object, "statistics_", array)?
    };
    let width = statistics.len();
    let meta = object.meta(width)?;
    let keep_empty =
        object.get("keep_empty_features").is_some() && object.bool("keep_empty_features")?;
    if statistics
        .iter()
        .any(|s| s.is_infinite() || (keep_empty && s.is_nan()))
    {
        return Err(object.invalid("statistics_", "contains a non-finite value"));
    }
    let keep: Vec<usize> = (0..width).filter(|&j| !statistics[j].is_nan()).collect();
    let indicator = match object.get("indicator_") {
        None | Some(Value::None) => vec![],
        Some(_) => {
            let id = object.get_id("indicator_").expect("present");
            let indicator = Obj::new(object.graph, id, &format!("{}.indicator_", object.path))?;
            if indicator.class_name() != "MissingIndicator" {
                return Err(indicator.invalid("", "expected a MissingIndicator"));
            }
            let features = indicator.array("features_")?;
            let features = features
                .to_i64()
                .filter(|_| features.dtype.kind == 'i')
                .ok_or_else(|| indicator.invalid("features_", "expected integers"))?;
            features
                .iter()
                .map(|&j| usize::try_from(j).ok().filter(|&j| j < width))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| indicator.invalid("features_", "a column out of range"))?
        }
    };
    // Never NaN after imputation: keep dropped columns out of the statistics' NaN.
    let statistics = statistics
        .iter()
        .map(|s| if s.is_nan() { 0.0 } else { *s })
        .collect();
    let step = Step::Impute(Imputer {
        statistics,
        keep,
        indicator,
    });
    Ok(Transform::numeric(vec![step], meta))
}

/// A FunctionTransformer without a function (ColumnTransformer's passthrough) is the identity.
fn identity(object: &Obj<'_>) -> Result<Transform, ExtractError> {
    for attr in ["func", "inverse_func"] {
        if !matches!(object.get(attr), None | Some(Value::None)) {
            return Err(ExtractError::Unsupported(format!(
                "{}: FunctionTransformer with a function ({attr})",
                object.path
            )));
        }
    }
    let width = object.usize("n_features_in_")?;
    Ok(Transform::numeric(vec![], object.meta(width)?))
}

fn column_transformer(object: &Obj<'_>) -> Result<Transform, ExtractError> {
    let width = object.usize("n_features_in_")?;
    let meta = object.meta(width)?;
    if object.get("sparse_output_").is_some() && object.bool("sparse_output_")? {
        return Err(ExtractError::Unsupported(format!(
            "{}: ColumnTransformer with sparse output",
            object.path
        )));
    }
    if !matches!(object.get("transformer_weights"), None | Some(Value::None)) {
        return Err(ExtractError::Unsupported(format!(
            "{}: ColumnTransformer with transformer_weights",
            object.path
        )));
    }
    let Value::List(items) = object.require("transformers_")? else {
        return Err(object.invalid("transformers_", "expected a list"));
    };
    if items.len() > MAX_TRANSFORMERS {
        return Err(object.invalid("transformers_", "too many transformers"));
    }
    let mut parts = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}.transformers_[{i}]", object.path);
        let invalid = |reason: &str| ExtractError::Invalid {
            path: path.clone(),
            reason: reason.into(),
        };
        let Some(Value::Tuple(triple)) = object.graph.nodes.get(item.0) else {
            return Err(invalid("expected a (name, transformer, columns) tuple"));
        };
        let [name, trans, cols] = triple.as_slice() else {
            return Err(invalid("expected a (name, transformer, columns) tuple"));
        };
        let name = match object.graph.nodes.get(name.0) {
            Some(Value::Str(s)) => s.clone(),
            _ => "?".into(),
        };
        let columns = select(object, *cols, width, meta.feature_names.as_deref(), &path)?;
        let steps = match object.graph.nodes.get(trans.0) {
            Some(Value::Str(s)) if s == "drop" => continue,
            Some(Value::Str(s)) if s == "passthrough" => (vec![], false),
            Some(Value::Object { .. }) => {
                let part = Obj::new(object.graph, *trans, &format!("{}[{name:?}]", object.path))?;
                if !is_transformer(part.class_name()) {
                    return Err(ExtractError::Unsupported(format!(
                        "{} ({}) is not a supported transformer (in ColumnTransformer {name:?})",
                        part.class_name(),
                        part.class
                    )));
                }
                let t = transformer(&part, None)?;
                if t.meta.n_features != columns.len() {
                    return Err(part.invalid(
                        "n_features_in_",
                        format!(
                            "is {} for {} selected columns",
                            t.meta.n_features,
                            columns.len()
                        ),
                    ));
                }
                let nested_columns = t.steps.iter().any(|s| matches!(s, Step::Columns(_)));
                if t.strings_out || (t.strings_in && nested_columns) {
                    return Err(ExtractError::Unsupported(format!(
                        "{}: string columns must be encoded by the parts of the model's first ColumnTransformer",
                        part.path
                    )));
                }
                (t.steps, t.strings_in)
            }
            _ => return Err(invalid("expected a transformer, 'drop' or 'passthrough'")),
        };
        let (steps, strings) = steps;
        if columns.is_empty() {
            continue;
        }
        parts.push(ColumnPart {
            columns,
            strings,
            steps,
        });
    }
    let strings_in = parts.iter().any(|p| p.strings);
    let step = Step::Columns(parts);
    if step.width(width).is_none_or(|w| w == 0) {
        return Err(object.invalid("transformers_", "the transformers do not fit the input"));
    }
    Ok(Transform {
        steps: vec![step],
        meta,
        strings_in,
        strings_out: false,
    })
}

/// A ColumnTransformer column selection as input indices: a list or array of indices, of
/// names (`feature_names_in_`) or a boolean mask.
fn select(
    object: &Obj<'_>,
    id: NodeId,
    width: usize,
    names: Option<&[String]>,
    path: &str,
) -> Result<Vec<usize>, ExtractError> {
    let invalid = |reason: String| ExtractError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let graph = object.graph;
    let items: Vec<&Value> = match graph.nodes.get(id.0) {
        Some(Value::List(ids)) | Some(Value::Tuple(ids)) => {
            ids.iter().filter_map(|i| graph.nodes.get(i.0)).collect()
        }
        Some(Value::NdArray(a)) if a.shape.len() == 1 && a.dtype.kind == 'O' => a
            .objects
            .iter()
            .filter_map(|i| graph.nodes.get(i.0))
            .collect(),
        Some(Value::NdArray(a)) if a.shape.len() == 1 && a.dtype.kind == 'b' => {
            let mask = a.to_i64().unwrap_or_default();
            if mask.len() != width {
                return Err(invalid(format!(
                    "a mask of {} for {width} columns",
                    mask.len()
                )));
            }
            return Ok((0..width).filter(|&j| mask[j] != 0).collect());
        }
        Some(Value::NdArray(a)) if a.shape.len() == 1 && matches!(a.dtype.kind, 'i' | 'u') => {
            let indices = a
                .to_i64()
                .ok_or_else(|| invalid("bad index array".into()))?;
            return indices
                .iter()
                .map(|&j| index(j as i128, width))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| invalid("a column index out of range".into()));
        }
        Some(other) => {
            return Err(ExtractError::Unsupported(format!(
                "{path}: ColumnTransformer columns given as a {} (only lists of names or indices, or masks)",
                other.kind()
            )));
        }
        None => return Err(invalid("dangling reference".into())),
    };
    if items.len() > MAX_COLUMNS {
        return Err(invalid("too many columns".into()));
    }
    items
        .iter()
        .map(|item| match item {
            Value::Int(j) => index(*j, width),
            Value::Str(s) => names?.iter().position(|n| n == s),
            Value::NdArray(a) if a.shape.is_empty() && matches!(a.dtype.kind, 'i' | 'u') => {
                index(a.to_i64()?.first().copied()? as i128, width)
            }
            _ => None,
        })
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| invalid("a column is not a known name or index".into()))
}

/// A column index, negative from the end as numpy reads it.
fn index(j: i128, width: usize) -> Option<usize> {
    let w = width as i128;
    let j = if j < 0 { j + w } else { j };
    (0..w).contains(&j).then_some(j as usize)
}

fn kind_name(strings: bool) -> &'static str {
    if strings { "strings" } else { "numbers" }
}

/// SimpleImputer on string columns (most_frequent / constant): `""` becomes the statistic.
fn string_imputer(
    object: &Obj<'_>,
    array: &crate::pickle::NdArray,
) -> Result<Transform, ExtractError> {
    let fill: Option<Vec<String>> = array
        .objects
        .iter()
        .map(|id| match object.graph.nodes.get(id.0)? {
            Value::Str(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
        .collect();
    let fill = fill.ok_or_else(|| {
        ExtractError::Unsupported(format!(
            "{}: SimpleImputer statistics_ mixing strings with other values (or an empty string)",
            object.path
        ))
    })?;
    if !matches!(object.get("indicator_"), None | Some(Value::None)) {
        return Err(ExtractError::Unsupported(format!(
            "{}: SimpleImputer add_indicator on string columns",
            object.path
        )));
    }
    let meta = object.meta(fill.len())?;
    Ok(Transform {
        steps: vec![Step::FillStrings(fill)],
        meta,
        strings_in: true,
        strings_out: true,
    })
}
