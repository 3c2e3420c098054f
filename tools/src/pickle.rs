//! Safe pickle and joblib reading: an opcode interpreter that never imports or runs anything.
//!
//! A file is detected by its magic bytes ([`container`]), decompressed under a size cap, and
//! interpreted opcode by opcode ([`machine`]). Only the exact `(module, name)` globals of
//! [`allowlist`] may be referenced; numpy arrays and dtypes are rebuilt into inert values
//! ([`numpy`]) and joblib's inline arrays are read where joblib writes them ([`joblib`]). The
//! result is a [`Graph`] of [`Value`]s whose shape was checked for cycles and depth ([`check`]).
//! Every input-derived size is bounded by [`Limits`].

pub mod allowlist;
mod check;
mod container;
mod joblib;
mod machine;
mod numpy;
pub mod value;

use std::path::Path;

pub use value::{Dtype, Field, Global, Graph, NdArray, NodeId, Value};

/// Caps on everything an input can make the reader allocate or traverse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest file, largest decompressed pickle stream, and most bytes copied into arrays and
    /// argument lists in total (memo reuse can repeat copies), each in bytes.
    pub max_bytes: u64,
    /// Largest single declared length (bytes/str payloads, FRAME, array data), in bytes.
    pub max_length: u64,
    /// Most values in the decoded graph (all nested streams together).
    pub max_nodes: usize,
    /// Most memo entries per pickle stream.
    pub max_memo: usize,
    /// Deepest value stack and most open MARKs.
    pub max_stack: usize,
    /// Deepest nesting of the decoded graph (containers inside containers).
    pub max_depth: usize,
}

impl Default for Limits {
    /// Limits that fit any scikit-learn regressor we support with room to spare (a 500-tree
    /// forest is well under them) while keeping a hostile file to a few GiB of memory at most.
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            max_length: 1 << 30,
            max_nodes: 4_000_000,
            max_memo: 1_000_000,
            max_stack: 100_000,
            max_depth: 200,
        }
    }
}

/// Why a file could not be read. Every variant names the file (`file`); those found inside the
/// pickle stream carry the byte offset of the offending opcode (in the decompressed stream for
/// compressed joblib files, whose `file` then says which compressor).
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    /// The file could not be read from disk.
    #[error("cannot read {file}: {error}")]
    Io {
        file: String,
        #[source]
        error: std::io::Error,
    },
    /// A GLOBAL/STACK_GLOBAL named a `(module, name)` outside the allow-list.
    #[error("refused global {global} at byte {offset} of {file}: not on the allow-list")]
    RefusedGlobal {
        file: String,
        offset: u64,
        global: String,
    },
    /// An opcode that can run code or is outside protocols 2-5 (INST, OBJ, PERSID, EXT, ...).
    #[error("refused opcode {opcode} at byte {offset} of {file}: {reason}")]
    RefusedOpcode {
        file: String,
        offset: u64,
        opcode: String,
        reason: &'static str,
    },
    /// A [`Limits`] cap was reached (the message names the cap and its value).
    #[error("limit exceeded at byte {offset} of {file}: {what}")]
    Limit {
        file: String,
        offset: u64,
        what: String,
    },
    /// The stream is truncated or inconsistent (stack underflow, missing MARK, bad memo index,
    /// wrong argument types, a cycle, trailing data, ...).
    #[error("malformed pickle at byte {offset} of {file}: {reason}")]
    Malformed {
        file: String,
        offset: u64,
        reason: String,
    },
    /// Not a container/protocol we read (protocol 0/1, joblib < 0.10, unknown or corrupt
    /// compression).
    #[error("unsupported file {file}: {reason}")]
    Unsupported { file: String, reason: String },
}

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
    let mut graph = Graph::default();
    let root = machine::run_top(&stream.data, &file, limits, &mut graph)?;
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
