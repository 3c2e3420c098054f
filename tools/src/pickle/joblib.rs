//! joblib's inline arrays: the raw data that follows a `NumpyArrayWrapper` BUILD.
//!
//! joblib writes each ndarray as a `NumpyArrayWrapper` whose BUILD state describes the array,
//! then writes the array outside any opcode: a complete nested pickle stream for object arrays,
//! otherwise an optional alignment padding and `prod(shape) * itemsize` raw bytes. The nested
//! stream goes through the same machine, allow-list and limits as the outer one.

use super::error::PickleError;
use super::machine::Machine;
use super::numpy;
use super::value::{NdArray, NodeId, Value};

/// Largest alignment padding joblib writes (it aligns to 16 bytes).
const MAX_PADDING: u8 = 16;

/// Reads the array that follows a wrapper whose BUILD state is `state`.
pub fn read_inline(m: &mut Machine<'_>, state: NodeId) -> Result<NdArray, PickleError> {
    if !matches!(m.node(state)?, Value::Dict(_)) {
        return Err(m.malformed("NumpyArrayWrapper state is not a dict"));
    }
    let key = |m: &Machine<'_>, name: &str| {
        m.graph
            .dict_get(state, name)
            .ok_or_else(|| m.malformed(format!("NumpyArrayWrapper state lacks {name:?}")))
    };
    match m.node(key(m, "subclass")?)? {
        Value::Global(g) if g.module == "numpy" && g.name == "ndarray" => {}
        other => {
            return Err(m.malformed(format!(
                "NumpyArrayWrapper subclass is a {}, only numpy.ndarray is allowed",
                other.kind()
            )));
        }
    }
    let dtype_id = key(m, "dtype")?;
    let Value::Dtype(dtype) = m.node(dtype_id)?.clone() else {
        return Err(m.malformed("NumpyArrayWrapper dtype is not a dtype"));
    };
    let shape_id = key(m, "shape")?;
    let shape = numpy::shape_at(m, shape_id)?;
    let fortran = match m.node(key(m, "order")?)? {
        Value::Str(s) if s == "C" => false,
        Value::Str(s) if s == "F" => true,
        _ => return Err(m.malformed("NumpyArrayWrapper order is not 'C' or 'F'")),
    };

    if dtype.kind == 'O' {
        // A whole pickle stream of the array itself, with its own memo and stack.
        let root = m.run_nested()?;
        m.set_op_start();
        let Value::NdArray(array) = m.node(root)? else {
            return Err(m.malformed("nested object-array stream did not yield an ndarray"));
        };
        if array.shape != shape {
            return Err(m.malformed(format!(
                "nested object array has shape {:?}, wrapper says {shape:?}",
                array.shape
            )));
        }
        let array = array.clone();
        m.charge(
            array
                .objects
                .len()
                .saturating_mul(std::mem::size_of::<NodeId>()),
        )?;
        return Ok(array);
    }

    let size = numpy::byte_size(m, &dtype, &shape)?;
    let aligned = m
        .graph
        .dict_get(state, "numpy_array_alignment_bytes")
        .is_some_and(|id| !matches!(m.graph.nodes.get(id.0), Some(Value::None)));
    if aligned {
        let [padding] = <[u8; 1]>::try_from(m.take(1, "joblib array padding length")?)
            .map_err(|_| m.malformed("joblib array padding length"))?;
        if padding > MAX_PADDING {
            return Err(m.malformed(format!("joblib array padding of {padding} bytes")));
        }
        m.take(padding.into(), "joblib array padding")?;
    }
    m.charge(size)?;
    let bytes = m.take_declared(size as u64, "joblib inline array")?;
    let big_endian = m.big_endian.contains(&dtype_id);
    numpy::make_array(m, dtype, shape, bytes, fortran, big_endian)
}
