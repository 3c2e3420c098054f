//! Why a file could not be read, with where in it.

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
    /// A [`Limits`](super::limits::Limits) cap was reached (the message names the cap and its value).
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
