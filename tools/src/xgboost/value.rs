//! The small value tree both XGBoost encodings (JSON and UBJSON) are read into, and the
//! limits every reader applies.
//!
//! Numbers keep what their encoding says exactly: a JSON number with a fraction or an exponent
//! is parsed from its text straight to `f32` and to `f64` (each correctly rounded, never `f64`
//! then `f32`, which would round twice); UBJSON's typed arrays stay compact typed vectors, so
//! their memory is the bytes the file holds.

/// Deepest nesting of arrays and objects accepted (an XGBoost model nests about 6 deep).
pub const MAX_DEPTH: usize = 64;
/// Most values (numbers, strings, containers; typed UBJSON arrays count one per element) a
/// model may hold: about 3 million tree nodes of a JSON model, 1.1 GB of values at most.
pub const MAX_VALUES: usize = 32_000_000;

/// One decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// A JSON number with a fraction or exponent, or a UBJSON float: its value correctly
    /// rounded to each width.
    Float {
        f32: f32,
        f64: f64,
    },
    Str(String),
    Array(Vec<Value>),
    /// A UBJSON array of one integer type (`$i`, `$U`, `$I`, `$l`, `$L`).
    Ints(Vec<i64>),
    /// A UBJSON array of `$d` (float32).
    F32s(Vec<f32>),
    /// A UBJSON array of `$D` (float64).
    F64s(Vec<f64>),
    /// Keys in file order.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// A short name for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "integer",
            Value::Float { .. } => "number",
            Value::Str(_) => "string",
            Value::Array(_) | Value::Ints(_) | Value::F32s(_) | Value::F64s(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// The value under `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The number of elements of an array (of any representation).
    pub fn array_len(&self) -> Option<usize> {
        match self {
            Value::Array(v) => Some(v.len()),
            Value::Ints(v) => Some(v.len()),
            Value::F32s(v) => Some(v.len()),
            Value::F64s(v) => Some(v.len()),
            _ => None,
        }
    }
}

/// Why bytes could not be decoded into a [`Value`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{format} at byte {offset}: {reason}")]
pub struct DecodeError {
    /// `JSON` or `UBJSON`.
    pub format: &'static str,
    pub offset: usize,
    pub reason: String,
}
