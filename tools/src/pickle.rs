//! Safe pickle and joblib reading: an opcode interpreter that never imports or runs anything.
//!
//! A file is detected by its magic bytes ([`container`]), decompressed under a size cap, and
//! interpreted opcode by opcode ([`machine`]), which also reads joblib's inline arrays where
//! joblib writes them. Only the exact `(module, name)` globals of [`allowlist`] may be
//! referenced; numpy arrays and dtypes are rebuilt into inert values ([`numpy`]) in the
//! machine's `heap`. The result is a [`Graph`] of [`Value`]s whose shape was checked for
//! cycles and depth ([`check`]). Every input-derived size is bounded by [`Limits`].
//!
//! Layout, each layer importing only the ones below it (no module imports this root):
//!
//! - this root: [`read_file`] and [`read_bytes`], joining `container`, `machine` and `check`;
//! - `machine`: the opcode table and loop, the input, each stream's stack and memo, joblib's
//!   inline arrays; it owns a `Heap` and calls `allowlist` and `numpy`;
//! - `numpy`: dtype/array/scalar reconstructors, working on a `&mut Heap` only;
//! - `heap`: the value arena, the byte budget, and the file and offset errors name;
//! - `container` (magic bytes, decompression; uses `limits`, `error`) and `check` (graph
//!   shape; uses `value`): beside the machine, used only by this root;
//! - at the bottom, importing nothing here: `value`, `limits`, `error`, `allowlist`.

pub mod allowlist;
mod check;
mod container;
mod error;
mod heap;
mod limits;
mod machine;
mod numpy;
pub mod value;

use std::path::Path;

pub use error::PickleError;
pub use limits::Limits;
pub use value::{Dtype, Field, Global, Graph, NdArray, NodeId, Value};

/// Reads a pickle or joblib file into an inert [`Graph`].
pub fn read_file(path: &Path, limits: &Limits) -> Result<Graph, PickleError> {
    let file = path.display().to_string();
    let bytes = container::read_capped(path, limits.max_bytes).map_err(|e| match e {
        container::ReadError::Io(error) => PickleError::Io {
            file: file.clone(),
            error,
        },
        container::ReadError::TooLarge => PickleError::Limit {
            file: file.clone(),
            offset: limits.max_bytes,
            what: format!("file is larger than {} bytes", limits.max_bytes),
        },
    })?;
    let source = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or(file);
    read_bytes(&bytes, &source, limits)
}

/// Reads the bytes of a pickle or joblib file; `source` names it in errors.
pub fn read_bytes(bytes: &[u8], source: &str, limits: &Limits) -> Result<Graph, PickleError> {
    let stream = container::open(bytes, source, limits)?;
    let file = match stream.compression {
        Some(method) => format!("{source} ({method}-decompressed)"),
        None => source.to_owned(),
    };
    let (mut graph, root) = machine::run_top(&stream.data, &file, limits)?;
    let offset = stream.data.len() as u64;
    check::acyclic_and_shallow(&graph, root, limits.max_depth).map_err(|e| match e {
        check::ShapeError::Cycle => PickleError::Malformed {
            file: file.clone(),
            offset,
            reason: "the object graph contains a cycle".into(),
        },
        check::ShapeError::TooDeep => PickleError::Limit {
            file: file.clone(),
            offset,
            what: format!("object graph nesting deeper than {}", limits.max_depth),
        },
    })?;
    graph.root = Some(root);
    Ok(graph)
}
