//! The arena a pickle decodes into, the budget it spends, and where errors point.
//!
//! The machine owns one [`Heap`] per file and moves [`Heap::at`] to each opcode it executes;
//! the numpy reconstructors work on the heap alone. Every value is allocated here (counted
//! against `Limits::max_nodes`), every copy out of existing values is charged here (against
//! `Limits::max_bytes`), and every error made here names the file and the current opcode.

use std::collections::HashSet;

use super::error::PickleError;
use super::limits::Limits;
use super::value::{Graph, NodeId, Value};

pub struct Heap<'a> {
    graph: Graph,
    limits: &'a Limits,
    /// The file named in errors.
    file: &'a str,
    /// Offset of the opcode being executed, named in errors.
    offset: usize,
    /// Bytes copied out of the input into arrays and argument lists so far; memo reuse can
    /// make these copies repeat, so they count against `Limits::max_bytes`.
    materialized: u64,
    /// dtype nodes whose byte order is big-endian (`>`).
    big_endian: HashSet<NodeId>,
}

impl<'a> Heap<'a> {
    pub fn new(file: &'a str, limits: &'a Limits) -> Self {
        Self {
            graph: Graph::default(),
            limits,
            file,
            offset: 0,
            materialized: 0,
            big_endian: HashSet::new(),
        }
    }

    /// The decoded values, without a root.
    pub fn into_graph(self) -> Graph {
        self.graph
    }

    pub fn limits(&self) -> &'a Limits {
        self.limits
    }

    // --- where errors point -------------------------------------------------------------

    /// Points errors at the opcode starting at `offset`.
    pub fn at(&mut self, offset: usize) {
        self.offset = offset;
    }

    pub fn file(&self) -> &'a str {
        self.file
    }

    pub fn offset(&self) -> u64 {
        self.offset as u64
    }

    pub fn malformed(&self, reason: impl Into<String>) -> PickleError {
        malformed(self.file, self.offset, reason.into())
    }

    pub fn limit(&self, what: impl Into<String>) -> PickleError {
        PickleError::Limit {
            file: self.file.to_owned(),
            offset: self.offset(),
            what: what.into(),
        }
    }

    // --- budget -------------------------------------------------------------------------

    /// Counts `bytes` about to be copied out of existing values against the total budget.
    pub fn charge(&mut self, bytes: usize) -> Result<(), PickleError> {
        self.materialized = self.materialized.saturating_add(bytes as u64);
        if self.materialized > self.limits.max_bytes {
            return Err(self.limit(format!(
                "decoded arrays and argument lists exceed {} bytes in total",
                self.limits.max_bytes
            )));
        }
        Ok(())
    }

    // --- values -------------------------------------------------------------------------

    /// Adds a value to the arena.
    pub fn alloc(&mut self, value: Value) -> Result<NodeId, PickleError> {
        if self.graph.nodes.len() >= self.limits.max_nodes {
            return Err(self.limit(format!(
                "more than {} values in the object graph",
                self.limits.max_nodes
            )));
        }
        self.graph.nodes.push(value);
        Ok(NodeId(self.graph.nodes.len() - 1))
    }

    pub fn node(&self, id: NodeId) -> Result<&Value, PickleError> {
        self.graph
            .nodes
            .get(id.0)
            .ok_or_else(|| self.malformed("dangling value reference"))
    }

    pub fn node_mut(&mut self, id: NodeId) -> Result<&mut Value, PickleError> {
        let (file, offset) = (self.file, self.offset);
        self.graph
            .nodes
            .get_mut(id.0)
            .ok_or_else(|| malformed(file, offset, "dangling value reference".into()))
    }

    pub fn replace(&mut self, id: NodeId, value: Value) -> Result<(), PickleError> {
        *self.node_mut(id)? = value;
        Ok(())
    }

    /// For a `Dict`, the value stored under the string key `key`.
    pub fn dict_get(&self, dict: NodeId, key: &str) -> Option<NodeId> {
        self.graph.dict_get(dict, key)
    }

    /// Whether the dtype at `id` was built big-endian.
    pub fn is_big_endian(&self, id: NodeId) -> bool {
        self.big_endian.contains(&id)
    }

    pub fn set_big_endian(&mut self, id: NodeId, big_endian: bool) {
        if big_endian {
            self.big_endian.insert(id);
        } else {
            self.big_endian.remove(&id);
        }
    }
}

fn malformed(file: &str, offset: usize, reason: String) -> PickleError {
    PickleError::Malformed {
        file: file.to_owned(),
        offset: offset as u64,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_errors_name_the_file_and_current_offset() {
        let limits = Limits {
            max_nodes: 1,
            max_bytes: 10,
            ..Limits::default()
        };
        let mut heap = Heap::new("h.pkl", &limits);
        heap.at(7);
        let id = heap.alloc(Value::None).unwrap();
        let err = heap.alloc(Value::None).unwrap_err().to_string();
        assert_eq!(
            err,
            "limit exceeded at byte 7 of h.pkl: more than 1 values in the object graph"
        );
        heap.charge(10).unwrap();
        assert!(heap.charge(1).is_err());
        heap.at(9);
        let err = heap.node_mut(NodeId(5)).unwrap_err().to_string();
        assert_eq!(
            err,
            "malformed pickle at byte 9 of h.pkl: dangling value reference"
        );
        heap.replace(id, Value::Bool(true)).unwrap();
        assert_eq!(heap.into_graph().nodes, vec![Value::Bool(true)]);
    }
}
