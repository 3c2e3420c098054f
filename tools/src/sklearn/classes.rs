//! A classifier's `classes_`: integers, strings or booleans, typed as sklearn has them.

use onnx_model::contract::ClassLabel;

use super::{ExtractError, Obj};
use crate::pickle::Value;

/// Most classes a classifier may have.
const MAX_CLASSES: usize = 10_000;

/// Reads `classes_`: an integer, bool, unicode (`<U…`) or object (strings, integers or
/// booleans) array of at least two distinct labels of one type. Float labels are refused.
pub fn classes(object: &Obj<'_>) -> Result<Vec<ClassLabel>, ExtractError> {
    classes_at(object, "classes_")
}

/// Reads the classes kept in attribute `attr` (LightGBM's wrapper keeps them in `_classes`),
/// as [`classes`] does.
pub fn classes_at(object: &Obj<'_>, attr: &str) -> Result<Vec<ClassLabel>, ExtractError> {
    let array = object.array(attr)?;
    let invalid = |reason: String| object.invalid(attr, reason);
    let n = match array.shape.as_slice() {
        [n] => *n,
        shape => {
            return Err(invalid(format!(
                "expected a 1-D array, found shape {shape:?}"
            )));
        }
    };
    if n > MAX_CLASSES {
        return Err(ExtractError::Unsupported(format!(
            "{} with {n} classes (at most {MAX_CLASSES})",
            object.class_name()
        )));
    }
    let labels: Vec<ClassLabel> = match array.dtype.kind {
        'b' => array
            .to_i64()
            .ok_or_else(|| invalid("bool data does not match its dtype".into()))?
            .into_iter()
            .map(|v| ClassLabel::Bool(v != 0))
            .collect(),
        'i' | 'u' => array
            .to_i64()
            .ok_or_else(|| invalid("integer data does not match its dtype".into()))?
            .into_iter()
            .map(ClassLabel::Int)
            .collect(),
        'U' => unicode(&array.data, array.dtype.itemsize, n)
            .ok_or_else(|| invalid("unicode data is not valid UTF-32".into()))?
            .into_iter()
            .map(ClassLabel::Str)
            .collect(),
        'O' => array
            .objects
            .iter()
            .map(|id| match object.graph.nodes.get(id.0) {
                Some(Value::Str(s)) => Ok(ClassLabel::Str(s.clone())),
                Some(Value::Bool(b)) => Ok(ClassLabel::Bool(*b)),
                Some(Value::Int(i)) => i64::try_from(*i)
                    .map(ClassLabel::Int)
                    .map_err(|_| invalid(format!("label {i} does not fit in 64 bits"))),
                Some(other) => Err(ExtractError::Unsupported(format!(
                    "{} with a class label that is a {} (labels must be integers, strings or booleans)",
                    object.class_name(),
                    other.kind()
                ))),
                None => Err(invalid("dangling reference".into())),
            })
            .collect::<Result<_, _>>()?,
        'f' => {
            return Err(ExtractError::Unsupported(format!(
                "{} with float class labels (fit it with integer, string or boolean labels)",
                object.class_name()
            )));
        }
        kind => return Err(invalid(format!("unexpected dtype kind '{kind}'"))),
    };
    if labels.len() != n {
        return Err(invalid(format!(
            "holds {} labels for shape [{n}]",
            labels.len()
        )));
    }
    if labels.len() < 2 {
        return Err(ExtractError::Unsupported(format!(
            "{} fitted on a single class",
            object.class_name()
        )));
    }
    let first = std::mem::discriminant(&labels[0]);
    if labels.iter().any(|l| std::mem::discriminant(l) != first) {
        return Err(ExtractError::Unsupported(format!(
            "{} whose class labels mix types",
            object.class_name()
        )));
    }
    if labels
        .iter()
        .enumerate()
        .any(|(i, l)| labels[..i].contains(l))
    {
        return Err(invalid("repeats a label".into()));
    }
    Ok(labels)
}

/// numpy `<U{k}` elements: `k` UTF-32LE code points each, padded with NULs.
fn unicode(data: &[u8], itemsize: usize, n: usize) -> Option<Vec<String>> {
    if itemsize == 0 || !itemsize.is_multiple_of(4) || data.len() != itemsize * n {
        return None;
    }
    data.chunks_exact(itemsize)
        .map(|cell| {
            cell.chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .take_while(|&c| c != 0)
                .map(char::from_u32)
                .collect::<Option<String>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::unicode;

    #[test]
    fn unicode_cells_drop_their_padding() {
        let mut data = Vec::new();
        for text in ["ab", "é", ""] {
            let mut cell: Vec<u32> = text.chars().map(|c| c as u32).collect();
            cell.resize(3, 0);
            data.extend(cell.iter().flat_map(|c| c.to_le_bytes()));
        }
        assert_eq!(unicode(&data, 12, 3).unwrap(), ["ab", "é", ""]);
        assert!(unicode(&data, 12, 2).is_none());
        assert!(unicode(&[0xFF, 0xFF, 0xFF, 0xFF], 4, 1).is_none());
    }
}
