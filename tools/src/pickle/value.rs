//! The inert object graph the safe reader produces.
//!
//! Nothing here can run code: a pickle's objects become [`Value`]s in an arena ([`Graph`]) and
//! refer to each other by [`NodeId`], so memo reuse shares nodes instead of copying them
//! (BUILD/SETITEMS/APPENDS mutate the shared node, as Python does). numpy arrays are decoded
//! into [`NdArray`] with their bytes normalised to little-endian.

use std::fmt;

/// Index of a value in its [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// An allow-listed `(module, name)` global.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Global {
    pub module: String,
    pub name: String,
}

impl fmt::Display for Global {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// One decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i128),
    /// An int wider than 128 bits (at most `MAX_LONG_BYTES` in the pickle), kept opaque: no
    /// model parameter is one (numpy's PCG64 random state is).
    BigInt,
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<NodeId>),
    List(Vec<NodeId>),
    /// Insertion-ordered; keys are whatever the pickle used (normally `Str`).
    Dict(Vec<(NodeId, NodeId)>),
    Set(Vec<NodeId>),
    /// A reference to an allow-listed class or function, not yet called.
    Global(Global),
    /// An instance made by NEWOBJ/REDUCE on an allow-listed class, with its BUILD state
    /// (normally a `Dict`, the instance `__dict__`).
    Object {
        class: Global,
        args: Vec<NodeId>,
        state: Option<NodeId>,
    },
    /// A numpy dtype (`numpy.dtype` REDUCE + BUILD).
    Dtype(Dtype),
    /// A numpy array or numpy scalar (`shape` empty for scalars).
    NdArray(NdArray),
}

impl Value {
    /// A short name for the value's type, for errors ("int", "dict", "ndarray", ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::BigInt => "int (wider than 128 bits)",
            Self::Float(_) => "float",
            Self::Str(_) => "str",
            Self::Bytes(_) => "bytes",
            Self::Tuple(_) => "tuple",
            Self::List(_) => "list",
            Self::Dict(_) => "dict",
            Self::Set(_) => "set",
            Self::Global(_) => "global",
            Self::Object { .. } => "object",
            Self::Dtype(_) => "dtype",
            Self::NdArray(_) => "ndarray",
        }
    }
}

/// A numpy dtype, as far as the reader needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dtype {
    /// numpy kind character: `f` float, `i` signed int, `u` unsigned int, `b` bool,
    /// `O` object, `V` void/record, `U` unicode.
    pub kind: char,
    /// Bytes per element.
    pub itemsize: usize,
    /// Record fields for `V` dtypes (tree nodes), in declaration order.
    pub fields: Vec<Field>,
}

/// One field of a record dtype.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub dtype: Dtype,
    pub offset: usize,
}

/// A decoded numpy array. For non-object dtypes `data` holds `prod(shape) * itemsize` bytes in
/// C order, little-endian; object arrays hold their elements in `objects` (C order).
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
    pub objects: Vec<NodeId>,
}

impl NdArray {
    /// Number of elements (1 for a scalar).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as `f64`, for float, integer and bool dtypes; `None` otherwise.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        numeric_column(&self.dtype, &self.data, self.dtype.itemsize, 0)
    }

    /// The values of record field `name` (tree nodes), as `f64`, one per element.
    pub fn field_f64(&self, name: &str) -> Option<Vec<f64>> {
        let field = self.dtype.fields.iter().find(|f| f.name == name)?;
        numeric_column(&field.dtype, &self.data, self.dtype.itemsize, field.offset)
    }

    /// The values of record field `name` as `i64` (child indices, feature ids).
    pub fn field_i64(&self, name: &str) -> Option<Vec<i64>> {
        let field = self.dtype.fields.iter().find(|f| f.name == name)?;
        integer_column(&field.dtype, &self.data, self.dtype.itemsize, field.offset)
    }

    /// The elements as `i64`, for integer and bool dtypes.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        integer_column(&self.dtype, &self.data, self.dtype.itemsize, 0)
    }
}

fn element_bytes(data: &[u8], stride: usize, offset: usize, size: usize) -> Option<Vec<&[u8]>> {
    let inside = offset.checked_add(size).is_some_and(|end| end <= stride);
    if stride == 0 || !inside || !data.len().is_multiple_of(stride) {
        return None;
    }
    Some(
        data.chunks_exact(stride)
            .map(|row| &row[offset..offset + size])
            .collect(),
    )
}

fn numeric_column(dtype: &Dtype, data: &[u8], stride: usize, offset: usize) -> Option<Vec<f64>> {
    let cells = element_bytes(data, stride, offset, dtype.itemsize)?;
    let convert: fn(&[u8]) -> f64 = match (dtype.kind, dtype.itemsize) {
        ('f', 8) => |b| f64::from_le_bytes(b.try_into().unwrap_or_default()),
        ('f', 4) => |b| f32::from_le_bytes(b.try_into().unwrap_or_default()) as f64,
        ('i' | 'u' | 'b', _) => {
            return integer_column(dtype, data, stride, offset)
                .map(|v| v.into_iter().map(|x| x as f64).collect());
        }
        _ => return None,
    };
    Some(cells.into_iter().map(convert).collect())
}

fn integer_column(dtype: &Dtype, data: &[u8], stride: usize, offset: usize) -> Option<Vec<i64>> {
    let size = dtype.itemsize;
    if !matches!(size, 1 | 2 | 4 | 8) || !matches!(dtype.kind, 'i' | 'u' | 'b') {
        return None;
    }
    let cells = element_bytes(data, stride, offset, size)?;
    let signed = dtype.kind == 'i';
    cells
        .into_iter()
        .map(|b| {
            let mut buf = [0u8; 8];
            buf[..size].copy_from_slice(b);
            let negative = signed && b[size - 1] & 0x80 != 0;
            if negative {
                buf[size..].fill(0xFF);
            }
            let v = i64::from_le_bytes(buf);
            // u64 values above i64::MAX do not occur in sklearn state; refuse rather than wrap.
            (signed || size < 8 || v >= 0).then_some(v)
        })
        .collect()
}

/// The arena of values a pickle decoded into, with its root.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub nodes: Vec<Value>,
    pub root: Option<NodeId>,
}

impl Graph {
    pub fn get(&self, id: NodeId) -> &Value {
        &self.nodes[id.0]
    }

    pub fn root(&self) -> Option<&Value> {
        self.root.map(|id| self.get(id))
    }

    /// For a `Dict`, the value stored under the string key `key`.
    pub fn dict_get(&self, dict: NodeId, key: &str) -> Option<NodeId> {
        match self.get(dict) {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| matches!(self.get(*k), Value::Str(s) if s == key))
                .map(|(_, v)| *v),
            _ => None,
        }
    }

    /// For an `Object`, the attribute `key` of its state dict (the instance `__dict__`).
    pub fn attr(&self, object: NodeId, key: &str) -> Option<NodeId> {
        match self.get(object) {
            Value::Object {
                state: Some(state), ..
            } => self.dict_get(*state, key),
            _ => None,
        }
    }
}
