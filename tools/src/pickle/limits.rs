//! The caps on what one input may make the reader allocate or traverse.

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
