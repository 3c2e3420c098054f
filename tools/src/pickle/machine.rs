//! The opcode loop: a pickle virtual machine that builds inert values instead of calling code.
//!
//! The stack and memo hold [`NodeId`]s into the shared [`Graph`], so memo reuse (BINGET) shares
//! a value instead of copying it, and BUILD/SETITEMS/APPENDS mutate the shared node. Callables
//! are only ever allow-listed globals, interpreted by their [`Role`].

use std::collections::{HashMap, HashSet};

use super::allowlist::{self, Role};
use super::error::PickleError;
use super::limits::Limits;
use super::value::{Global, Graph, NodeId, Value};
use super::{joblib, numpy};

/// Longest module or class name accepted by GLOBAL (Python has no such limit, real ones are
/// under 60 bytes).
const MAX_NAME: usize = 256;
/// Most bytes LONG1 may use for an integer (sklearn ints fit in 8; `Value::Int` is 128 bits).
const MAX_LONG_BYTES: usize = 16;

/// Runs the top-level pickle stream in `data` and returns its root value.
pub fn run_top(
    data: &[u8],
    file: &str,
    limits: &Limits,
    graph: &mut Graph,
) -> Result<NodeId, PickleError> {
    let mut machine = Machine {
        data,
        pos: 0,
        op_start: 0,
        file,
        limits,
        graph,
        big_endian: HashSet::new(),
        stream: StreamState::default(),
        nested: false,
        materialized: 0,
    };
    let root = machine.run_stream()?;
    if machine.pos != data.len() {
        return Err(machine.malformed(format!(
            "{} bytes of trailing data after STOP",
            data.len() - machine.pos
        )));
    }
    Ok(root)
}

/// Per-stream state: each pickle stream (and each nested joblib object-array stream) has its
/// own stack, marks and memo.
#[derive(Default)]
struct StreamState {
    stack: Vec<NodeId>,
    marks: Vec<usize>,
    memo: HashMap<u32, NodeId>,
    /// String keys already in each dict, so a repeated key replaces its value as in Python.
    dict_keys: HashMap<NodeId, HashMap<String, usize>>,
}

pub(super) struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed, for errors.
    op_start: usize,
    file: &'a str,
    pub(super) limits: &'a Limits,
    pub(super) graph: &'a mut Graph,
    /// dtype nodes whose byte order is big-endian (`>`).
    pub(super) big_endian: HashSet<NodeId>,
    stream: StreamState,
    /// Whether this is a nested joblib object-array stream (no inline arrays inside those).
    nested: bool,
    /// Bytes copied out of the input into arrays and argument lists so far; memo reuse can
    /// make these copies repeat, so they count against `Limits::max_bytes`.
    materialized: u64,
}

// === impl Machine ===

impl<'a> Machine<'a> {
    // --- errors -------------------------------------------------------------------------

    pub(super) fn malformed(&self, reason: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            file: self.file.to_owned(),
            offset: self.op_start as u64,
            reason: reason.into(),
        }
    }

    pub(super) fn limit(&self, what: impl Into<String>) -> PickleError {
        PickleError::Limit {
            file: self.file.to_owned(),
            offset: self.op_start as u64,
            what: what.into(),
        }
    }

    fn refused_opcode(&self, code: u8, reason: &'static str) -> PickleError {
        let opcode = match opcode_name(code) {
            Some(name) => format!("{name} (0x{code:02x})"),
            None => format!("0x{code:02x}"),
        };
        PickleError::RefusedOpcode {
            file: self.file.to_owned(),
            offset: self.op_start as u64,
            opcode,
            reason,
        }
    }

    // --- input --------------------------------------------------------------------------

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Takes the next `n` bytes, or fails naming `what` if they are not there.
    pub(super) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len());
        let Some(end) = end else {
            return Err(self.malformed(format!(
                "unexpected end of data: {what} needs {n} bytes, {} left",
                self.remaining()
            )));
        };
        let bytes = self.data.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], PickleError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Takes a payload whose length was declared in the input, checking it against the
    /// single-length limit before touching it.
    pub(super) fn take_declared(&mut self, len: u64, what: &str) -> Result<&'a [u8], PickleError> {
        if len > self.limits.max_length {
            return Err(self.limit(format!(
                "{what} length {len} exceeds the limit of {} bytes",
                self.limits.max_length
            )));
        }
        let len = usize::try_from(len).map_err(|_| self.limit(format!("{what} length {len}")))?;
        self.take(len, what)
    }

    fn line(&mut self, what: &str) -> Result<String, PickleError> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let window = rest.get(..MAX_NAME.min(rest.len())).unwrap_or_default();
        let Some(end) = window.iter().position(|&b| b == b'\n') else {
            return Err(self.malformed(format!(
                "{what} is not a newline-terminated name of at most {MAX_NAME} bytes"
            )));
        };
        let bytes = self.take(end + 1, what)?;
        let text = bytes.get(..end).unwrap_or_default();
        String::from_utf8(text.to_vec()).map_err(|_| self.malformed(format!("{what} is not UTF-8")))
    }

    // --- graph and stack ----------------------------------------------------------------

    /// Adds a value to the graph without pushing it.
    pub(super) fn alloc(&mut self, value: Value) -> Result<NodeId, PickleError> {
        if self.graph.nodes.len() >= self.limits.max_nodes {
            return Err(self.limit(format!(
                "more than {} values in the object graph",
                self.limits.max_nodes
            )));
        }
        self.graph.nodes.push(value);
        Ok(NodeId(self.graph.nodes.len() - 1))
    }

    /// Counts `bytes` about to be copied out of existing values against the total budget.
    pub(super) fn charge(&mut self, bytes: usize) -> Result<(), PickleError> {
        self.materialized = self.materialized.saturating_add(bytes as u64);
        if self.materialized > self.limits.max_bytes {
            return Err(self.limit(format!(
                "decoded arrays and argument lists exceed {} bytes in total",
                self.limits.max_bytes
            )));
        }
        Ok(())
    }

    fn push_id(&mut self, id: NodeId) -> Result<(), PickleError> {
        if self.stream.stack.len() >= self.limits.max_stack {
            return Err(self.limit(format!(
                "stack deeper than {} entries",
                self.limits.max_stack
            )));
        }
        self.stream.stack.push(id);
        Ok(())
    }

    fn push(&mut self, value: Value) -> Result<NodeId, PickleError> {
        let id = self.alloc(value)?;
        self.push_id(id)?;
        Ok(id)
    }

    fn mark_base(&self) -> usize {
        self.stream.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<NodeId, PickleError> {
        if self.stream.stack.len() <= self.mark_base() {
            return Err(self.malformed("stack underflow"));
        }
        self.stream
            .stack
            .pop()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn top(&self) -> Result<NodeId, PickleError> {
        if self.stream.stack.len() <= self.mark_base() {
            return Err(self.malformed("stack underflow"));
        }
        self.stream
            .stack
            .last()
            .copied()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<NodeId>, PickleError> {
        let Some(mark) = self.stream.marks.pop() else {
            return Err(self.malformed("no MARK on the stack"));
        };
        if mark > self.stream.stack.len() {
            return Err(self.malformed("MARK above the stack top"));
        }
        Ok(self.stream.stack.split_off(mark))
    }

    pub(super) fn node(&self, id: NodeId) -> Result<&Value, PickleError> {
        self.graph
            .nodes
            .get(id.0)
            .ok_or_else(|| self.malformed("dangling value reference"))
    }

    fn node_mut(&mut self, id: NodeId) -> Result<&mut Value, PickleError> {
        if id.0 >= self.graph.nodes.len() {
            return Err(self.malformed("dangling value reference"));
        }
        self.graph
            .nodes
            .get_mut(id.0)
            .ok_or_else(|| PickleError::Malformed {
                file: String::new(),
                offset: 0,
                reason: "dangling value reference".into(),
            })
    }

    pub(super) fn replace(&mut self, id: NodeId, value: Value) -> Result<(), PickleError> {
        *self.node_mut(id)? = value;
        Ok(())
    }

    fn memo_put(&mut self, index: u32) -> Result<(), PickleError> {
        let top = self.top()?;
        if self.stream.memo.len() >= self.limits.max_memo && !self.stream.memo.contains_key(&index)
        {
            return Err(self.limit(format!("more than {} memo entries", self.limits.max_memo)));
        }
        self.stream.memo.insert(index, top);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<(), PickleError> {
        let Some(&id) = self.stream.memo.get(&index) else {
            return Err(self.malformed(format!("memo index {index} was never stored")));
        };
        self.push_id(id)
    }

    // --- the loop -----------------------------------------------------------------------

    /// Runs one pickle stream from `self.pos` to its STOP with a fresh stack and memo.
    fn run_stream(&mut self) -> Result<NodeId, PickleError> {
        self.op_start = self.pos;
        let [code] = self.take_array::<1>("PROTO")?;
        if code != 0x80 {
            return Err(self.malformed("the stream does not start with PROTO (protocol 0/1)"));
        }
        self.protocol()?;
        loop {
            self.op_start = self.pos;
            let Ok([code]) = self.take_array::<1>("opcode") else {
                return Err(self.malformed("unexpected end of data: no STOP opcode"));
            };
            if code == b'.' {
                let root = self.pop()?;
                if !self.stream.stack.is_empty() || !self.stream.marks.is_empty() {
                    return Err(self.malformed("values left on the stack at STOP"));
                }
                return Ok(root);
            }
            self.step(code)?;
        }
    }

    fn protocol(&mut self) -> Result<(), PickleError> {
        let [version] = self.take_array::<1>("PROTO")?;
        if !(2..=5).contains(&version) {
            return Err(PickleError::Unsupported {
                file: self.file.to_owned(),
                reason: format!("pickle protocol {version} (only 2 to 5 are supported)"),
            });
        }
        Ok(())
    }

    fn step(&mut self, code: u8) -> Result<(), PickleError> {
        match code {
            0x80 => self.protocol()?,
            0x95 => {
                // FRAME: a length prefix for the opcodes that follow; nothing to allocate.
                let len = u64::from_le_bytes(self.take_array::<8>("FRAME")?);
                if len > self.limits.max_length {
                    return Err(self.limit(format!(
                        "FRAME length {len} exceeds the limit of {} bytes",
                        self.limits.max_length
                    )));
                }
                if len > self.remaining() as u64 {
                    return Err(self.malformed(format!(
                        "FRAME length {len} exceeds the {} bytes left",
                        self.remaining()
                    )));
                }
            }
            b'(' => {
                if self.stream.marks.len() >= self.limits.max_stack {
                    return Err(
                        self.limit(format!("more than {} open MARKs", self.limits.max_stack))
                    );
                }
                self.stream.marks.push(self.stream.stack.len());
            }
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = self.top()?;
                self.push_id(top)?;
            }
            // Scalars.
            b'N' => {
                self.push(Value::None)?;
            }
            0x88 => {
                self.push(Value::Bool(true))?;
            }
            0x89 => {
                self.push(Value::Bool(false))?;
            }
            b'K' => {
                let [v] = self.take_array::<1>("BININT1")?;
                self.push(Value::Int(v.into()))?;
            }
            b'M' => {
                let v = u16::from_le_bytes(self.take_array::<2>("BININT2")?);
                self.push(Value::Int(v.into()))?;
            }
            b'J' => {
                let v = i32::from_le_bytes(self.take_array::<4>("BININT")?);
                self.push(Value::Int(v.into()))?;
            }
            0x8a => {
                let [n] = self.take_array::<1>("LONG1")?;
                let n = usize::from(n);
                if n > MAX_LONG_BYTES {
                    return Err(self.limit(format!(
                        "LONG1 integer of {n} bytes exceeds the limit of {MAX_LONG_BYTES}"
                    )));
                }
                let bytes = self.take(n, "LONG1")?;
                self.push(Value::Int(long_from_le(bytes)))?;
            }
            b'G' => {
                let v = f64::from_be_bytes(self.take_array::<8>("BINFLOAT")?);
                self.push(Value::Float(v))?;
            }
            // Strings and bytes.
            0x8c => {
                let [n] = self.take_array::<1>("SHORT_BINUNICODE")?;
                self.push_str(n.into(), "SHORT_BINUNICODE")?;
            }
            b'X' => {
                let n = u32::from_le_bytes(self.take_array::<4>("BINUNICODE")?);
                self.push_str(n.into(), "BINUNICODE")?;
            }
            0x8d => {
                let n = u64::from_le_bytes(self.take_array::<8>("BINUNICODE8")?);
                self.push_str(n, "BINUNICODE8")?;
            }
            b'C' => {
                let [n] = self.take_array::<1>("SHORT_BINBYTES")?;
                self.push_bytes(n.into(), "SHORT_BINBYTES")?;
            }
            b'B' => {
                let n = u32::from_le_bytes(self.take_array::<4>("BINBYTES")?);
                self.push_bytes(n.into(), "BINBYTES")?;
            }
            0x8e => {
                let n = u64::from_le_bytes(self.take_array::<8>("BINBYTES8")?);
                self.push_bytes(n, "BINBYTES8")?;
            }
            0x96 => {
                let n = u64::from_le_bytes(self.take_array::<8>("BYTEARRAY8")?);
                self.push_bytes(n, "BYTEARRAY8")?;
            }
            // Containers.
            b')' => {
                self.push(Value::Tuple(Vec::new()))?;
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push(Value::Tuple(items))?;
            }
            0x85..=0x87 => {
                let n = usize::from(code - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(Value::Tuple(items))?;
            }
            b']' => {
                self.push(Value::List(Vec::new()))?;
            }
            b'a' => {
                let item = self.pop()?;
                self.extend_list(vec![item])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.extend_list(items)?;
            }
            b'}' => {
                self.push(Value::Dict(Vec::new()))?;
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items(vec![key, value])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(items)?;
            }
            0x8f => {
                self.push(Value::Set(Vec::new()))?;
            }
            0x90 => {
                let items = self.pop_mark()?;
                let set = self.top()?;
                match self.node_mut(set)? {
                    Value::Set(existing) => existing.extend(items),
                    _ => return Err(self.malformed("ADDITEMS on a value that is not a set")),
                }
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.push(Value::Set(items))?;
            }
            // Memo.
            0x94 => {
                let index = u32::try_from(self.stream.memo.len())
                    .map_err(|_| self.limit("memo index overflow"))?;
                self.memo_put(index)?;
            }
            b'q' => {
                let [i] = self.take_array::<1>("BINPUT")?;
                self.memo_put(i.into())?;
            }
            b'r' => {
                let i = u32::from_le_bytes(self.take_array::<4>("LONG_BINPUT")?);
                self.memo_put(i)?;
            }
            b'h' => {
                let [i] = self.take_array::<1>("BINGET")?;
                self.memo_get(i.into())?;
            }
            b'j' => {
                let i = u32::from_le_bytes(self.take_array::<4>("LONG_BINGET")?);
                self.memo_get(i)?;
            }
            // Globals and object construction.
            b'c' => {
                let module = self.line("GLOBAL module")?;
                let name = self.line("GLOBAL name")?;
                self.push_global(module, name)?;
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (self.node(module)?, self.node(name)?)
                else {
                    return Err(self.malformed("STACK_GLOBAL needs two strings"));
                };
                let (module, name) = (module.clone(), name.clone());
                self.push_global(module, name)?;
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.reduce(callable, args)?;
            }
            0x81 => {
                let args = self.pop()?;
                let class = self.pop()?;
                self.new_object(class, args, "NEWOBJ")?;
            }
            0x92 => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let class = self.pop()?;
                if !matches!(self.node(kwargs)?, Value::Dict(items) if items.is_empty()) {
                    return Err(self.malformed("NEWOBJ_EX with keyword arguments"));
                }
                self.new_object(class, args, "NEWOBJ_EX")?;
            }
            b'b' => {
                let state = self.pop()?;
                let target = self.top()?;
                self.build(target, state)?;
            }
            // Refused outright.
            b'i' | b'o' => {
                return Err(self.refused_opcode(code, "builds arbitrary objects (not allowed)"));
            }
            b'P' | b'Q' => {
                return Err(self.refused_opcode(code, "persistent ids are not allowed"));
            }
            0x82..=0x84 => {
                return Err(self.refused_opcode(code, "extension registry codes are not allowed"));
            }
            0x97 | 0x98 => {
                return Err(self.refused_opcode(code, "out-of-band buffers are not allowed"));
            }
            0x8b => {
                return Err(self.refused_opcode(code, "integers that large are not allowed"));
            }
            b'I' | b'L' | b'F' | b'S' | b'V' | b'g' | b'p' | b'd' | b'l' | b'T' | b'U' => {
                return Err(self
                    .refused_opcode(code, "protocol 0/1 and Python 2 opcodes are not supported"));
            }
            _ => return Err(self.refused_opcode(code, "unknown opcode")),
        }
        Ok(())
    }

    fn push_str(&mut self, len: u64, what: &str) -> Result<(), PickleError> {
        let bytes = self.take_declared(len, what)?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| self.malformed(format!("{what} is not valid UTF-8")))?;
        self.push(Value::Str(text.to_owned()))?;
        Ok(())
    }

    fn push_bytes(&mut self, len: u64, what: &str) -> Result<(), PickleError> {
        let bytes = self.take_declared(len, what)?;
        self.push(Value::Bytes(bytes.to_vec()))?;
        Ok(())
    }

    fn extend_list(&mut self, items: Vec<NodeId>) -> Result<(), PickleError> {
        let list = self.top()?;
        match self.node_mut(list)? {
            Value::List(existing) => {
                existing.extend(items);
                Ok(())
            }
            _ => Err(self.malformed("APPEND(S) on a value that is not a list")),
        }
    }

    fn set_items(&mut self, items: Vec<NodeId>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("SETITEMS with an odd number of values"));
        }
        let dict = self.top()?;
        if !matches!(self.node(dict)?, Value::Dict(_)) {
            return Err(self.malformed("SETITEM(S) on a value that is not a dict"));
        }
        for pair in items.chunks_exact(2) {
            let (key, value) = match pair {
                [key, value] => (*key, *value),
                _ => continue,
            };
            let key_text = match self.node(key)? {
                Value::Str(s) => Some(s.clone()),
                Value::Int(_) | Value::None | Value::Bool(_) | Value::Tuple(_) => None,
                Value::Float(_) | Value::Bytes(_) => None,
                _ => return Err(self.malformed("dict key of an unhashable type")),
            };
            let index = self.stream.dict_keys.entry(dict).or_default();
            let existing = key_text.as_ref().and_then(|k| index.get(k).copied());
            let Value::Dict(entries) = self.node_mut(dict)? else {
                return Err(self.malformed("SETITEM(S) on a value that is not a dict"));
            };
            match existing.and_then(|i| entries.get_mut(i)) {
                // A repeated key replaces the value, as in Python.
                Some(entry) => entry.1 = value,
                None => {
                    entries.push((key, value));
                    let position = entries.len() - 1;
                    if let Some(k) = key_text {
                        self.stream
                            .dict_keys
                            .entry(dict)
                            .or_default()
                            .insert(k, position);
                    }
                }
            }
        }
        Ok(())
    }

    fn push_global(&mut self, module: String, name: String) -> Result<(), PickleError> {
        if allowlist::lookup(&module, &name).is_none() {
            return Err(PickleError::RefusedGlobal {
                file: self.file.to_owned(),
                offset: self.op_start as u64,
                global: format!("{}.{}", module.escape_debug(), name.escape_debug()),
            });
        }
        self.push(Value::Global(Global { module, name }))?;
        Ok(())
    }

    /// The allow-listed global at `id` and its role.
    fn callable(&self, id: NodeId, opcode: &str) -> Result<(Global, Role), PickleError> {
        match self.node(id)? {
            Value::Global(g) => match allowlist::lookup(&g.module, &g.name) {
                Some(role) => Ok((g.clone(), role)),
                None => Err(self.malformed(format!("{opcode} on a global that is not allowed"))),
            },
            other => Err(self.malformed(format!(
                "{opcode} on a {} instead of an allow-listed global",
                other.kind()
            ))),
        }
    }

    fn tuple_items(&mut self, id: NodeId, what: &str) -> Result<Vec<NodeId>, PickleError> {
        let len = match self.node(id)? {
            Value::Tuple(items) => items.len(),
            _ => 0,
        };
        self.charge(len.saturating_mul(std::mem::size_of::<NodeId>()))?;
        match self.node(id)? {
            Value::Tuple(items) => Ok(items.clone()),
            other => Err(self.malformed(format!(
                "{what} arguments are a {}, not a tuple",
                other.kind()
            ))),
        }
    }

    fn reduce(&mut self, callable: NodeId, args: NodeId) -> Result<(), PickleError> {
        let (global, role) = self.callable(callable, "REDUCE")?;
        let args = self.tuple_items(args, &global.to_string())?;
        let value = match role {
            Role::Reconstruct => numpy::reconstruct(self, &args)?,
            Role::Dtype => numpy::dtype_new(self, &args)?,
            Role::Scalar => numpy::scalar(self, &args)?,
            Role::Frombuffer => numpy::frombuffer(self, &args)?,
            Role::CodecsEncode => numpy::codecs_encode(self, &args)?,
            Role::Estimator | Role::Opaque => Value::Object {
                class: global,
                args,
                state: None,
            },
            Role::NdarrayType | Role::ArrayWrapper => {
                return Err(self.malformed(format!("REDUCE on {global} is not allowed")));
            }
        };
        self.push(value)?;
        Ok(())
    }

    fn new_object(&mut self, class: NodeId, args: NodeId, opcode: &str) -> Result<(), PickleError> {
        let (global, role) = self.callable(class, opcode)?;
        if !matches!(role, Role::Estimator | Role::Opaque | Role::ArrayWrapper) {
            return Err(self.malformed(format!("{opcode} on {global} is not allowed")));
        }
        let args = self.tuple_items(args, opcode)?;
        self.push(Value::Object {
            class: global,
            args,
            state: None,
        })?;
        Ok(())
    }

    fn build(&mut self, target: NodeId, state: NodeId) -> Result<(), PickleError> {
        let class = match self.node(target)? {
            Value::Object {
                class, state: None, ..
            } => class.clone(),
            Value::Object { .. } => {
                return Err(self.malformed("BUILD applied twice to the same object"));
            }
            Value::Dtype(_) => {
                return numpy::dtype_build(self, target, state);
            }
            other => {
                return Err(self.malformed(format!("BUILD on a {}", other.kind())));
            }
        };
        match allowlist::lookup(&class.module, &class.name) {
            Some(Role::NdarrayType) => {
                let array = numpy::reconstruct_build(self, state)?;
                self.replace(target, Value::NdArray(array))
            }
            Some(Role::ArrayWrapper) => {
                if self.nested {
                    return Err(self.malformed(
                        "a joblib NumpyArrayWrapper inside a nested object-array stream",
                    ));
                }
                let array = joblib::read_inline(self, state)?;
                self.replace(target, Value::NdArray(array))
            }
            _ => {
                if let Ok(Value::Object { state: slot, .. }) = self.node_mut(target) {
                    *slot = Some(state);
                }
                Ok(())
            }
        }
    }

    /// Runs a complete nested pickle stream at the current position (joblib object arrays)
    /// with its own stack and memo, sharing the graph and its limits; returns its root.
    pub(super) fn run_nested(&mut self) -> Result<NodeId, PickleError> {
        if self.nested {
            return Err(self.malformed("nested object-array stream inside another one"));
        }
        let outer = std::mem::take(&mut self.stream);
        self.nested = true;
        let result = self.run_stream();
        self.nested = false;
        self.stream = outer;
        result
    }

    pub(super) fn set_op_start(&mut self) {
        self.op_start = self.pos;
    }
}

/// Decodes a little-endian two's-complement integer of at most 16 bytes.
fn long_from_le(bytes: &[u8]) -> i128 {
    let Some(&last) = bytes.last() else {
        return 0;
    };
    let fill = if last & 0x80 != 0 { 0xFF } else { 0x00 };
    let mut buf = [fill; 16];
    for (dst, src) in buf.iter_mut().zip(bytes) {
        *dst = *src;
    }
    i128::from_le_bytes(buf)
}

/// The pickletools name of an opcode, for errors.
pub fn opcode_name(code: u8) -> Option<&'static str> {
    Some(match code {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<(Graph, NodeId), PickleError> {
        let mut graph = Graph::default();
        let root = run_top(bytes, "t.pkl", &Limits::default(), &mut graph)?;
        Ok((graph, root))
    }

    #[test]
    fn scalars_and_containers() {
        // (1, 'ab', [None, True], {'k': 2.5}) at protocol 4.
        let b = b"\x80\x04(K\x01\x8c\x02ab](N\x88e}(\x8c\x01kG@\x04\x00\x00\x00\x00\x00\x00ut.";
        let (g, root) = run(b).unwrap();
        let Value::Tuple(items) = g.get(root) else {
            panic!("not a tuple")
        };
        assert_eq!(items.len(), 4);
        assert_eq!(g.get(items[0]), &Value::Int(1));
        assert_eq!(g.get(items[1]), &Value::Str("ab".into()));
        assert!(matches!(g.get(items[2]), Value::List(l) if l.len() == 2));
        assert_eq!(
            g.dict_get(items[3], "k").map(|id| g.get(id)),
            Some(&Value::Float(2.5))
        );
    }

    #[test]
    fn memo_shares_nodes() {
        // x = []; (x, x) then append to x through the memo: both tuple slots see it.
        let b = b"\x80\x04]\x94h\x00\x86\x94h\x00K\x07a0.";
        let (g, root) = run(b).unwrap();
        let Value::Tuple(items) = g.get(root) else {
            panic!()
        };
        assert_eq!(items[0], items[1]);
        assert_eq!(g.get(items[0]), &Value::List(vec![NodeId(2)]));
    }

    #[test]
    fn repeated_dict_key_replaces() {
        let b = b"\x80\x04}(\x8c\x01aK\x01\x8c\x01aK\x02u.";
        let (g, root) = run(b).unwrap();
        let Value::Dict(items) = g.get(root) else {
            panic!()
        };
        assert_eq!(items.len(), 1);
        assert_eq!(
            g.dict_get(root, "a").map(|id| g.get(id)),
            Some(&Value::Int(2))
        );
    }

    #[test]
    fn long1_sign_extends() {
        assert_eq!(long_from_le(&[0xff]), -1);
        assert_eq!(long_from_le(&[0x00, 0x80]), -32768);
        assert_eq!(long_from_le(&[]), 0);
        assert_eq!(long_from_le(&[0xff, 0x00]), 255);
    }

    #[test]
    fn refusals_name_the_global_and_offset() {
        let err = run(b"\x80\x02cos\nsystem\n.").unwrap_err().to_string();
        assert_eq!(
            err,
            "refused global os.system at byte 2 of t.pkl: not on the allow-list"
        );
        let err = run(b"\x80\x02(i").unwrap_err().to_string();
        assert!(err.contains("INST (0x69) at byte 3"), "{err}");
    }

    #[test]
    fn stack_and_mark_errors() {
        assert!(
            run(b"\x80\x04t.")
                .unwrap_err()
                .to_string()
                .contains("no MARK")
        );
        assert!(
            run(b"\x80\x040")
                .unwrap_err()
                .to_string()
                .contains("underflow")
        );
        assert!(
            run(b"\x80\x04h\x05.")
                .unwrap_err()
                .to_string()
                .contains("memo index 5")
        );
        assert!(
            run(b"\x80\x04N.N")
                .unwrap_err()
                .to_string()
                .contains("trailing")
        );
        assert!(
            run(b"\x80\x04N")
                .unwrap_err()
                .to_string()
                .contains("no STOP")
        );
        assert!(
            run(b"\x80\x01N.")
                .unwrap_err()
                .to_string()
                .contains("protocol 1")
        );
    }
}
