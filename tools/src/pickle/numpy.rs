//! Rebuilds numpy dtypes, arrays and scalars from their pickled reduce/build state.
//!
//! Data is checked against the declared shape with checked arithmetic, byte-swapped to
//! little-endian and reordered to C order, so an [`NdArray`] is always `prod(shape) * itemsize`
//! little-endian bytes in C order (or `prod(shape)` object ids).

use super::error::PickleError;
use super::heap::Heap;
use super::value::{Dtype, Field, Global, NdArray, NodeId, Value};

/// Largest itemsize accepted in a dtype string (tree nodes are 64 bytes).
const MAX_ITEMSIZE: usize = 1 << 16;
/// Most fields in a record dtype (tree nodes have 8).
const MAX_FIELDS: usize = 256;

fn arg(heap: &Heap<'_>, args: &[NodeId], index: usize, what: &str) -> Result<NodeId, PickleError> {
    args.get(index)
        .copied()
        .ok_or_else(|| heap.malformed(format!("{what}: missing argument {index}")))
}

fn int_arg(heap: &Heap<'_>, id: NodeId, what: &str) -> Result<i128, PickleError> {
    match heap.node(id)? {
        Value::Int(v) => Ok(*v),
        Value::Bool(b) => Ok(i128::from(*b)),
        other => Err(heap.malformed(format!("{what} is a {}, not an int", other.kind()))),
    }
}

/// The Dtype stored at `id` (a BUILT `numpy.dtype`).
fn dtype_at(heap: &mut Heap<'_>, id: NodeId, what: &str) -> Result<Dtype, PickleError> {
    let fields = match heap.node(id)? {
        Value::Dtype(d) => d.fields.len(),
        _ => 0,
    };
    heap.charge(fields.saturating_mul(std::mem::size_of::<Field>()))?;
    match heap.node(id)? {
        Value::Dtype(d) => Ok(d.clone()),
        other => Err(heap.malformed(format!("{what} is a {}, not a dtype", other.kind()))),
    }
}

/// A tuple of non-negative ints, as an array shape.
fn shape_at(heap: &Heap<'_>, id: NodeId) -> Result<Vec<usize>, PickleError> {
    let Value::Tuple(items) = heap.node(id)? else {
        return Err(heap.malformed("array shape is not a tuple"));
    };
    if items.len() > 32 {
        return Err(heap.malformed(format!("array with {} dimensions", items.len())));
    }
    items
        .iter()
        .map(|&d| {
            let v = int_arg(heap, d, "array dimension")?;
            usize::try_from(v).map_err(|_| heap.malformed(format!("array dimension {v}")))
        })
        .collect()
}

/// Parses a dtype string such as `f8`, `<i4`, `b1`, `O8`, `V64` or `U7`.
pub fn parse_typestr(text: &str) -> Result<Dtype, String> {
    let body = text.trim_start_matches(['<', '>', '|', '=']);
    let mut chars = body.chars();
    let kind = chars.next().ok_or("empty dtype string")?;
    let digits = chars.as_str();
    let count: usize = digits
        .parse()
        .map_err(|_| format!("unsupported dtype {text:?}"))?;
    let itemsize = match kind {
        'f' if matches!(count, 4 | 8) => count,
        'i' | 'u' if matches!(count, 1 | 2 | 4 | 8) => count,
        'b' if count == 1 => 1,
        'O' if matches!(count, 4 | 8) => count,
        'V' | 'S' => count,
        'U' => count.checked_mul(4).ok_or("dtype size overflow")?,
        _ => return Err(format!("unsupported dtype {text:?}")),
    };
    if itemsize > MAX_ITEMSIZE {
        return Err(format!(
            "dtype {text:?} is larger than {MAX_ITEMSIZE} bytes"
        ));
    }
    Ok(Dtype {
        kind,
        itemsize,
        fields: Vec::new(),
    })
}

/// `numpy.dtype(typestr, align, copy)`.
pub fn dtype_new(heap: &mut Heap<'_>, args: &[NodeId]) -> Result<Value, PickleError> {
    let id = arg(heap, args, 0, "numpy.dtype")?;
    let Value::Str(text) = heap.node(id)? else {
        return Err(heap.malformed("numpy.dtype argument is not a string"));
    };
    let dtype = parse_typestr(text).map_err(|e| heap.malformed(e))?;
    Ok(Value::Dtype(dtype))
}

/// BUILD on a dtype: `(version, byteorder, subarray, names, fields, elsize, alignment, flags
/// [, metadata])`.
pub fn dtype_build(heap: &mut Heap<'_>, target: NodeId, state: NodeId) -> Result<(), PickleError> {
    let Value::Tuple(items) = heap.node(state)? else {
        return Err(heap.malformed("dtype state is not a tuple"));
    };
    let items = items.clone();
    let [_version, order, subarray, names, fields, elsize, ..] = items.as_slice() else {
        return Err(heap.malformed(format!("dtype state has {} items", items.len())));
    };
    let Value::Dtype(mut dtype) = heap.node(target)?.clone() else {
        return Err(heap.malformed("BUILD target is not a dtype"));
    };
    let big_endian = match heap.node(*order)? {
        Value::Str(s) if s == ">" => true,
        Value::Str(s) if matches!(s.as_str(), "<" | "|" | "=") => false,
        _ => return Err(heap.malformed("dtype byte order is not one of < > | =")),
    };
    if !matches!(heap.node(*subarray)?, Value::None) {
        return Err(heap.malformed("sub-array dtypes are not supported"));
    }
    let elsize = int_arg(heap, *elsize, "dtype elsize")?;
    if elsize > 0 && matches!(dtype.kind, 'V' | 'U' | 'S') {
        dtype.itemsize = usize::try_from(elsize)
            .ok()
            .filter(|&s| s <= MAX_ITEMSIZE)
            .ok_or_else(|| heap.malformed(format!("dtype elsize {elsize}")))?;
    }
    if let Value::Tuple(names) = heap.node(*names)? {
        let names = names.clone();
        dtype.fields = record_fields(heap, &names, *fields, dtype.itemsize)?;
    }
    if big_endian && !dtype.fields.is_empty() {
        return Err(heap.malformed("big-endian record dtypes are not supported"));
    }
    heap.set_big_endian(target, big_endian);
    heap.replace(target, Value::Dtype(dtype))
}

fn record_fields(
    heap: &mut Heap<'_>,
    names: &[NodeId],
    fields: NodeId,
    itemsize: usize,
) -> Result<Vec<Field>, PickleError> {
    if names.len() > MAX_FIELDS {
        return Err(heap.malformed(format!("record dtype with {} fields", names.len())));
    }
    let mut out = Vec::with_capacity(names.len());
    for &name in names {
        let Value::Str(name) = heap.node(name)? else {
            return Err(heap.malformed("record field name is not a string"));
        };
        let name = name.clone();
        let entry = heap
            .dict_get(fields, &name)
            .ok_or_else(|| heap.malformed(format!("record field {name:?} has no entry")))?;
        let Value::Tuple(parts) = heap.node(entry)? else {
            return Err(heap.malformed(format!("record field {name:?} is not a tuple")));
        };
        let (Some(&dtype_id), Some(&offset_id)) = (parts.first(), parts.get(1)) else {
            return Err(heap.malformed(format!("record field {name:?} lacks dtype/offset")));
        };
        let dtype = dtype_at(heap, dtype_id, "record field dtype")?;
        if heap.is_big_endian(dtype_id) {
            return Err(heap.malformed("big-endian record fields are not supported"));
        }
        if !matches!(dtype.kind, 'f' | 'i' | 'u' | 'b') || !dtype.fields.is_empty() {
            return Err(heap.malformed(format!("record field {name:?} is not numeric")));
        }
        let offset = int_arg(heap, offset_id, "record field offset")?;
        let offset = usize::try_from(offset)
            .ok()
            .filter(|&o| {
                o.checked_add(dtype.itemsize)
                    .is_some_and(|end| end <= itemsize)
            })
            .ok_or_else(|| heap.malformed(format!("record field {name:?} offset {offset}")))?;
        out.push(Field {
            name,
            dtype,
            offset,
        });
    }
    Ok(out)
}

/// `_reconstruct(numpy.ndarray, (0,), b'b')`: an empty array that BUILD fills.
pub fn reconstruct(heap: &mut Heap<'_>, args: &[NodeId]) -> Result<Value, PickleError> {
    let subtype = arg(heap, args, 0, "_reconstruct")?;
    match heap.node(subtype)? {
        Value::Global(g) if g.module == "numpy" && g.name == "ndarray" => {}
        Value::Global(g) => {
            return Err(heap.malformed(format!("_reconstruct of {g}: only numpy.ndarray")));
        }
        other => {
            return Err(heap.malformed(format!("_reconstruct of a {}", other.kind())));
        }
    }
    Ok(Value::Object {
        class: Global {
            module: "numpy".into(),
            name: "ndarray".into(),
        },
        args: Vec::new(),
        state: None,
    })
}

/// BUILD on a `_reconstruct`ed array: `(version, shape, dtype, is_fortran, data)`.
pub fn reconstruct_build(heap: &mut Heap<'_>, state: NodeId) -> Result<NdArray, PickleError> {
    let Value::Tuple(items) = heap.node(state)? else {
        return Err(heap.malformed("ndarray state is not a tuple"));
    };
    let (shape, dtype_id, fortran, data) = match items.as_slice() {
        [_version, shape, dtype, fortran, data] => (*shape, *dtype, *fortran, *data),
        [shape, dtype, fortran, data] => (*shape, *dtype, *fortran, *data),
        other => return Err(heap.malformed(format!("ndarray state has {} items", other.len()))),
    };
    let shape = shape_at(heap, shape)?;
    let dtype = dtype_at(heap, dtype_id, "ndarray dtype")?;
    let fortran = int_arg(heap, fortran, "ndarray is_fortran")? != 0;
    if dtype.kind == 'O' {
        let len = match heap.node(data)? {
            Value::List(objects) => objects.len(),
            _ => return Err(heap.malformed("object array data is not a list")),
        };
        heap.charge(len.saturating_mul(std::mem::size_of::<NodeId>()))?;
        let Value::List(objects) = heap.node(data)? else {
            return Err(heap.malformed("object array data is not a list"));
        };
        let objects = objects.clone();
        return object_array(heap, dtype, shape, objects, fortran);
    }
    heap.charge(byte_size(heap, &dtype, &shape)?)?;
    let bytes = match heap.node(data)? {
        Value::Bytes(b) => b,
        other => {
            return Err(heap.malformed(format!("ndarray data is a {}", other.kind())));
        }
    };
    let big_endian = heap.is_big_endian(dtype_id);
    make_array(heap, dtype, shape, bytes, fortran, big_endian)
}

/// An object array from its elements listed in memory order.
fn object_array(
    heap: &mut Heap<'_>,
    dtype: Dtype,
    shape: Vec<usize>,
    objects: Vec<NodeId>,
    fortran: bool,
) -> Result<NdArray, PickleError> {
    let count = element_count(heap, &shape)?;
    heap.charge(count.saturating_mul(std::mem::size_of::<NodeId>()))?;
    if objects.len() != count {
        return Err(heap.malformed(format!(
            "object array has {} elements, shape {shape:?} needs {count}",
            objects.len()
        )));
    }
    let objects = if fortran {
        to_c_order(&objects, &shape)
    } else {
        objects
    };
    Ok(NdArray {
        dtype,
        shape,
        data: Vec::new(),
        objects,
    })
}

/// `prod(shape)`, refusing overflow and element counts beyond the length limit.
fn element_count(heap: &Heap<'_>, shape: &[usize]) -> Result<usize, PickleError> {
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&c| c as u64 <= heap.limits().max_length);
    count.ok_or_else(|| {
        heap.limit(format!(
            "array shape {shape:?} has more than {} elements",
            heap.limits().max_length
        ))
    })
}

/// Bytes an array of `shape` and `dtype` occupies, with checked arithmetic.
pub fn byte_size(heap: &Heap<'_>, dtype: &Dtype, shape: &[usize]) -> Result<usize, PickleError> {
    let count = element_count(heap, shape)?;
    count
        .checked_mul(dtype.itemsize)
        .filter(|&n| n as u64 <= heap.limits().max_length)
        .ok_or_else(|| {
            heap.limit(format!(
                "array of shape {shape:?} and itemsize {} exceeds the limit of {} bytes",
                dtype.itemsize,
                heap.limits().max_length
            ))
        })
}

/// A numeric array from raw bytes in the given order and byte order.
pub fn make_array(
    heap: &Heap<'_>,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: &[u8],
    fortran: bool,
    big_endian: bool,
) -> Result<NdArray, PickleError> {
    if dtype.kind == 'O' {
        return Err(heap.malformed("object array given as raw bytes"));
    }
    let size = byte_size(heap, &dtype, &shape)?;
    if bytes.len() != size {
        return Err(heap.malformed(format!(
            "array data has {} bytes, shape {shape:?} x {} needs {size}",
            bytes.len(),
            dtype.itemsize
        )));
    }
    let mut data = bytes.to_vec();
    if big_endian {
        let unit = if dtype.kind == 'U' { 4 } else { dtype.itemsize };
        if unit > 1 {
            data.chunks_exact_mut(unit).for_each(<[u8]>::reverse);
        }
    }
    if fortran && shape.len() > 1 && dtype.itemsize > 0 {
        let elements: Vec<&[u8]> = data.chunks_exact(dtype.itemsize).collect();
        data = to_c_order(&elements, &shape).concat();
    }
    Ok(NdArray {
        dtype,
        shape,
        data,
        objects: Vec::new(),
    })
}

/// Reorders elements stored in Fortran order into C order.
fn to_c_order<T: Clone>(items: &[T], shape: &[usize]) -> Vec<T> {
    let n = items.len();
    let mut out = Vec::with_capacity(n);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..n {
        // Fortran offset: first index varies fastest.
        let mut offset = 0usize;
        let mut stride = 1usize;
        for (i, d) in index.iter().zip(shape) {
            offset += i * stride;
            stride *= d;
        }
        if let Some(item) = items.get(offset) {
            out.push(item.clone());
        }
        // Advance the C-order index: last index varies fastest.
        for (i, d) in index.iter_mut().zip(shape).rev() {
            *i += 1;
            if *i < *d {
                break;
            }
            *i = 0;
        }
    }
    out
}

/// `scalar(dtype, bytes)` (or `scalar(object_dtype, obj)`): a 0-d array.
pub fn scalar(heap: &mut Heap<'_>, args: &[NodeId]) -> Result<Value, PickleError> {
    let dtype_id = arg(heap, args, 0, "numpy scalar")?;
    let data = arg(heap, args, 1, "numpy scalar")?;
    let dtype = dtype_at(heap, dtype_id, "numpy scalar dtype")?;
    if dtype.kind == 'O' {
        return Ok(Value::NdArray(object_array(
            heap,
            dtype,
            Vec::new(),
            vec![data],
            false,
        )?));
    }
    heap.charge(dtype.itemsize)?;
    let Value::Bytes(bytes) = heap.node(data)? else {
        return Err(heap.malformed("numpy scalar data is not bytes"));
    };
    let big_endian = heap.is_big_endian(dtype_id);
    Ok(Value::NdArray(make_array(
        heap,
        dtype,
        Vec::new(),
        bytes,
        false,
        big_endian,
    )?))
}

/// `_frombuffer(buffer, dtype, shape, order)` (protocol 5 contiguous arrays).
pub fn frombuffer(heap: &mut Heap<'_>, args: &[NodeId]) -> Result<Value, PickleError> {
    let buffer = arg(heap, args, 0, "_frombuffer")?;
    let dtype_id = arg(heap, args, 1, "_frombuffer")?;
    let shape = shape_at(heap, arg(heap, args, 2, "_frombuffer")?)?;
    let order = arg(heap, args, 3, "_frombuffer")?;
    let fortran = match heap.node(order)? {
        Value::Str(s) if s == "C" => false,
        Value::Str(s) if s == "F" => true,
        _ => return Err(heap.malformed("_frombuffer order is not 'C' or 'F'")),
    };
    let dtype = dtype_at(heap, dtype_id, "_frombuffer dtype")?;
    heap.charge(byte_size(heap, &dtype, &shape)?)?;
    let Value::Bytes(bytes) = heap.node(buffer)? else {
        return Err(heap.malformed("_frombuffer buffer is not bytes"));
    };
    let big_endian = heap.is_big_endian(dtype_id);
    Ok(Value::NdArray(make_array(
        heap, dtype, shape, bytes, fortran, big_endian,
    )?))
}

/// `_codecs.encode(text, 'latin1')`: how protocol 2 spells `bytes`.
pub fn codecs_encode(heap: &mut Heap<'_>, args: &[NodeId]) -> Result<Value, PickleError> {
    let text = arg(heap, args, 0, "_codecs.encode")?;
    let encoding = arg(heap, args, 1, "_codecs.encode")?;
    match heap.node(encoding)? {
        Value::Str(e) if matches!(e.as_str(), "latin1" | "latin-1") => {}
        _ => return Err(heap.malformed("_codecs.encode with an encoding other than latin1")),
    }
    let len = match heap.node(text)? {
        Value::Str(t) => t.len(),
        _ => 0,
    };
    heap.charge(len)?;
    let Value::Str(text) = heap.node(text)? else {
        return Err(heap.malformed("_codecs.encode of a value that is not a string"));
    };
    let bytes: Option<Vec<u8>> = text.chars().map(|c| u8::try_from(c).ok()).collect();
    let bytes = bytes.ok_or_else(|| heap.malformed("_codecs.encode: character above U+00FF"))?;
    Ok(Value::Bytes(bytes))
}

/// What a joblib `NumpyArrayWrapper`'s BUILD state says about the array joblib writes right
/// after it (the machine reads that array from the stream).
pub struct WrappedArray {
    pub dtype: Dtype,
    pub big_endian: bool,
    pub shape: Vec<usize>,
    pub fortran: bool,
    /// Whether a padding length byte and that much padding precede the data.
    pub aligned: bool,
}

/// Reads a `NumpyArrayWrapper` BUILD state: `{subclass, dtype, shape, order, ...}`.
pub fn array_wrapper(heap: &Heap<'_>, state: NodeId) -> Result<WrappedArray, PickleError> {
    if !matches!(heap.node(state)?, Value::Dict(_)) {
        return Err(heap.malformed("NumpyArrayWrapper state is not a dict"));
    }
    let key = |name: &str| {
        heap.dict_get(state, name)
            .ok_or_else(|| heap.malformed(format!("NumpyArrayWrapper state lacks {name:?}")))
    };
    match heap.node(key("subclass")?)? {
        Value::Global(g) if g.module == "numpy" && g.name == "ndarray" => {}
        other => {
            return Err(heap.malformed(format!(
                "NumpyArrayWrapper subclass is a {}, only numpy.ndarray is allowed",
                other.kind()
            )));
        }
    }
    let dtype_id = key("dtype")?;
    let Value::Dtype(dtype) = heap.node(dtype_id)?.clone() else {
        return Err(heap.malformed("NumpyArrayWrapper dtype is not a dtype"));
    };
    let shape = shape_at(heap, key("shape")?)?;
    let fortran = match heap.node(key("order")?)? {
        Value::Str(s) if s == "C" => false,
        Value::Str(s) if s == "F" => true,
        _ => return Err(heap.malformed("NumpyArrayWrapper order is not 'C' or 'F'")),
    };
    let aligned = heap
        .dict_get(state, "numpy_array_alignment_bytes")
        .is_some_and(|id| !matches!(heap.node(id), Ok(Value::None)));
    Ok(WrappedArray {
        dtype,
        big_endian: heap.is_big_endian(dtype_id),
        shape,
        fortran,
        aligned,
    })
}

/// The object array a wrapper's nested pickle stream yielded at `root`, which must have the
/// wrapper's `shape`.
pub fn wrapped_object_array(
    heap: &mut Heap<'_>,
    root: NodeId,
    shape: &[usize],
) -> Result<NdArray, PickleError> {
    let Value::NdArray(array) = heap.node(root)? else {
        return Err(heap.malformed("nested object-array stream did not yield an ndarray"));
    };
    if array.shape != shape {
        return Err(heap.malformed(format!(
            "nested object array has shape {:?}, wrapper says {shape:?}",
            array.shape
        )));
    }
    let array = array.clone();
    heap.charge(
        array
            .objects
            .len()
            .saturating_mul(std::mem::size_of::<NodeId>()),
    )?;
    Ok(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typestrings() {
        assert_eq!(parse_typestr("f8").unwrap().itemsize, 8);
        assert_eq!(parse_typestr("U7").unwrap().itemsize, 28);
        assert_eq!(parse_typestr("V64").unwrap().kind, 'V');
        assert!(parse_typestr("M8").is_err());
        assert!(parse_typestr("f3").is_err());
        assert!(parse_typestr("V99999999999999999999999").is_err());
        assert!(parse_typestr("").is_err());
    }

    #[test]
    fn fortran_to_c() {
        // 2x3 array [[0,1,2],[3,4,5]] stored column-major: 0 3 1 4 2 5.
        let f = [0, 3, 1, 4, 2, 5];
        assert_eq!(to_c_order(&f, &[2, 3]), vec![0, 1, 2, 3, 4, 5]);
        let f3: Vec<usize> = (0..24).collect();
        let c = to_c_order(&f3, &[2, 3, 4]);
        // C element (i, j, k) = F offset i + 2j + 6k.
        let (i, j, k) = (1, 2, 3);
        assert_eq!(c[i * 12 + j * 4 + k], i + 2 * j + 6 * k);
    }
}
