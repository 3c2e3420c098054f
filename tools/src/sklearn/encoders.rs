//! OneHotEncoder and OrdinalEncoder as [`Encoding`]s: `categories_` (strings, with None/NaN as
//! the missing category `""`, or numbers with NaN), `handle_unknown`, OneHotEncoder's `drop`
//! and infrequent categories (`min_frequency` / `max_categories`), OrdinalEncoder's
//! `unknown_value` and `encoded_missing_value`. Anything else is refused naming the option.

use super::{ExtractError, Meta, Obj, as_f64, is_nan};
use crate::estimator::{Categories, Encoding, EncodingOutput, OneHotColumn};
use crate::pickle::{NodeId, Value};

/// OneHotEncoder / OrdinalEncoder: one [`Encoding`] per column, the encoder's [`Meta`], and
/// whether it reads strings.
pub fn encoder(object: &Obj<'_>) -> Result<(Vec<Encoding>, Meta, bool), ExtractError> {
    let unsupported = |what: String| {
        ExtractError::Unsupported(format!("{}: {} {what}", object.path, object.class_name()))
    };
    let Value::List(ids) = object.require("categories_")? else {
        return Err(object.invalid("categories_", "expected a list of arrays"));
    };
    let mut all = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        all.push(categories(object, *id, i)?);
    }
    let strings = all.iter().all(|c| matches!(c, Categories::Strings(_)));
    if !strings && all.iter().any(|c| matches!(c, Categories::Strings(_))) {
        return Err(unsupported("mixing string and numeric columns".into()));
    }
    let meta = object.meta(all.len())?;
    let handle_unknown = object.str("handle_unknown").unwrap_or("error");
    let infrequent =
        object.get("_infrequent_enabled").is_some() && object.bool("_infrequent_enabled")?;
    let mut encodings = Vec::new();
    if object.class_name() == "OrdinalEncoder" {
        if infrequent {
            return Err(unsupported(
                "with infrequent categories (min_frequency / max_categories)".into(),
            ));
        }
        let unknown = match handle_unknown {
            "error" => f64::NAN,
            "use_encoded_value" => object.float("unknown_value")?,
            other => return Err(unsupported(format!("handle_unknown={other:?}"))),
        };
        let missing_features = missing_indices(object)?;
        let missing_value = match object.get("encoded_missing_value") {
            Some(_) => object.float("encoded_missing_value")?,
            None => f64::NAN,
        };
        for (i, categories) in all.into_iter().enumerate() {
            let missing = missing_features.contains(&i).then_some(missing_value);
            encodings.push(Encoding {
                categories,
                refuse_unknown: handle_unknown == "error",
                output: EncodingOutput::Ordinal { unknown, missing },
            });
        }
    } else {
        if !matches!(handle_unknown, "error" | "ignore" | "infrequent_if_exist") {
            return Err(unsupported(format!("handle_unknown={handle_unknown:?}")));
        }
        let infrequent_indices = match infrequent {
            true => optional_index_arrays(object, "_infrequent_indices", all.len())?,
            false => vec![None; all.len()],
        };
        let drop_attr = if object.get("_drop_idx_after_grouping").is_some() {
            "_drop_idx_after_grouping"
        } else {
            "drop_idx_"
        };
        let drops = drop_indices(object, drop_attr, all.len())?;
        for (i, categories) in all.into_iter().enumerate() {
            let rare = infrequent_indices[i].clone().unwrap_or_default();
            let mut columns: Vec<OneHotColumn> = (0..categories.len())
                .filter(|c| !rare.contains(c))
                .map(|c| OneHotColumn {
                    categories: vec![c],
                    unknown: false,
                })
                .collect();
            if !rare.is_empty() {
                columns.push(OneHotColumn {
                    categories: rare,
                    unknown: handle_unknown == "infrequent_if_exist",
                });
            }
            if let Some(d) = drops[i] {
                if d >= columns.len() {
                    return Err(object.invalid(drop_attr, "an index out of range"));
                }
                columns.remove(d);
            }
            encodings.push(Encoding {
                categories,
                refuse_unknown: handle_unknown == "error",
                output: EncodingOutput::OneHot(columns),
            });
        }
    }
    Ok((encodings, meta, strings))
}

/// One column's `categories_`: strings (None / NaN as the missing category `""`, last) or
/// numbers (NaN last).
fn categories(object: &Obj<'_>, id: NodeId, i: usize) -> Result<Categories, ExtractError> {
    let attr = format!("categories_[{i}]");
    let Some(Value::NdArray(array)) = object.graph.nodes.get(id.0) else {
        return Err(object.invalid(&attr, "expected an array"));
    };
    let categories = if array.dtype.kind == 'O' {
        let mut strings = Vec::new();
        for id in &array.objects {
            match object.graph.nodes.get(id.0) {
                Some(Value::Str(s)) if s.is_empty() => {
                    return Err(ExtractError::Unsupported(format!(
                        "{}: column {i} has the empty string as a category (it stands for a missing value)",
                        object.path
                    )));
                }
                Some(Value::Str(s)) => strings.push(s.clone()),
                Some(v) if matches!(v, Value::None) || is_nan(v) => strings.push(String::new()),
                _ => {
                    return Err(ExtractError::Unsupported(format!(
                        "{}: column {i} has categories that are neither strings nor numbers",
                        object.path
                    )));
                }
            }
        }
        Categories::Strings(strings)
    } else {
        let values = match array.dtype.kind {
            'f' => array.to_f64(),
            'i' | 'u' => array
                .to_i64()
                .map(|v| v.iter().map(|&x| x as f64).collect()),
            _ => None,
        };
        Categories::Numbers(
            values.ok_or_else(|| object.invalid(&attr, "expected numbers or strings"))?,
        )
    };
    if categories.is_empty() {
        return Err(object.invalid(&attr, "no categories"));
    }
    if categories
        .missing()
        .is_some_and(|m| m + 1 != categories.len())
    {
        return Err(object.invalid(&attr, "the missing category is not last"));
    }
    Ok(categories)
}

/// OrdinalEncoder's `_missing_indices` keys (the columns whose missing category is encoded as
/// `encoded_missing_value`).
fn missing_indices(object: &Obj<'_>) -> Result<Vec<usize>, ExtractError> {
    match object.get("_missing_indices") {
        None => Ok(vec![]),
        Some(Value::Dict(items)) => items
            .iter()
            .map(|(k, _)| match object.graph.nodes.get(k.0) {
                Some(v) => as_f64(v).filter(|x| *x >= 0.0).map(|x| x as usize),
                None => None,
            })
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| object.invalid("_missing_indices", "expected column indices")),
        Some(_) => Err(object.invalid("_missing_indices", "expected a dict")),
    }
}

/// A list of `n` entries, each None or an integer array (`_infrequent_indices`).
fn optional_index_arrays(
    object: &Obj<'_>,
    attr: &str,
    n: usize,
) -> Result<Vec<Option<Vec<usize>>>, ExtractError> {
    let Value::List(ids) = object.require(attr)? else {
        return Err(object.invalid(attr, "expected a list"));
    };
    if ids.len() != n {
        return Err(object.invalid(attr, format!("{} entries for {n} columns", ids.len())));
    }
    ids.iter()
        .map(|id| match object.graph.nodes.get(id.0) {
            Some(Value::None) => Ok(None),
            Some(Value::NdArray(a)) if matches!(a.dtype.kind, 'i' | 'u') => a
                .to_i64()
                .and_then(|v| v.iter().map(|&x| usize::try_from(x).ok()).collect())
                .map(Some)
                .ok_or_else(|| object.invalid(attr, "bad indices")),
            _ => Err(object.invalid(attr, "expected None or an index array")),
        })
        .collect()
}

/// OneHotEncoder's dropped column per input column (`drop_idx_`: None, or an array of
/// indices, object-typed with None entries when some columns drop nothing).
fn drop_indices(
    object: &Obj<'_>,
    attr: &str,
    n: usize,
) -> Result<Vec<Option<usize>>, ExtractError> {
    let array = match object.get(attr) {
        None | Some(Value::None) => return Ok(vec![None; n]),
        Some(Value::NdArray(a)) => a,
        Some(_) => return Err(object.invalid(attr, "expected an array")),
    };
    let drops: Option<Vec<Option<usize>>> = match array.dtype.kind {
        'i' | 'u' => array.to_i64().and_then(|v| {
            v.iter()
                .map(|&x| usize::try_from(x).ok().map(Some))
                .collect()
        }),
        'O' => array
            .objects
            .iter()
            .map(|id| match object.graph.nodes.get(id.0) {
                Some(Value::None) => Some(None),
                Some(v) => as_f64(v).filter(|x| *x >= 0.0).map(|x| Some(x as usize)),
                None => None,
            })
            .collect(),
        _ => None,
    };
    drops
        .filter(|d| d.len() == n)
        .ok_or_else(|| object.invalid(attr, format!("expected {n} indices")))
}
