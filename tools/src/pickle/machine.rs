//! The opcode loop: a pickle virtual machine that builds inert values instead of calling code.
//!
//! The machine reads the input, keeps each stream's stack and memo, and owns the [`Heap`] its
//! values go to. The stack and memo hold [`NodeId`]s into the heap, so memo reuse (BINGET)
//! shares a value instead of copying it, and BUILD/SETITEMS/APPENDS mutate the shared node.
//! Callables are only ever allow-listed globals, interpreted by their [`Role`]; numpy's are
//! handed to the [`numpy`] reconstructors. Every opcode is listed once, in [`OPCODES`], with
//! its name and what it does. joblib's inline arrays are read here too, since joblib writes
//! them into the stream between opcodes.

use std::collections::HashMap;

use super::allowlist::{self, Role};
use super::error::PickleError;
use super::heap::Heap;
use super::limits::Limits;
use super::numpy;
use super::value::{Global, Graph, NdArray, NodeId, Value};

/// Longest module or class name accepted by GLOBAL (Python has no such limit, real ones are
/// under 60 bytes).
const MAX_NAME: usize = 256;
/// Most bytes LONG1 may use for an integer. sklearn's ints fit in 8, but numpy's PCG64 random
/// state (pickled inside every HistGradientBoosting since scikit-learn 1.4) holds unsigned
/// 128-bit ints, 17 bytes with the sign byte; an int that does not fit `Value::Int`'s 128 bits
/// is kept as an opaque [`Value::BigInt`].
const MAX_LONG_BYTES: usize = 32;
/// Largest alignment padding joblib writes before an inline array (it aligns to 16 bytes).
const MAX_PADDING: u8 = 16;

// === the opcode table ===

/// What an opcode does: run a handler (given the opcode's name for its errors), end the
/// stream, or refuse the file with a reason.
#[derive(Clone, Copy)]
enum Action {
    Run(fn(&mut Machine<'_>, &'static str) -> Result<(), PickleError>),
    Stop,
    Refuse(&'static str),
}

/// One pickle opcode: its byte, its pickletools name, and its action.
struct Opcode {
    code: u8,
    name: &'static str,
    action: Action,
}

const fn run(
    code: u8,
    name: &'static str,
    handler: fn(&mut Machine<'_>, &'static str) -> Result<(), PickleError>,
) -> Opcode {
    Opcode {
        code,
        name,
        action: Action::Run(handler),
    }
}

const fn refuse(code: u8, name: &'static str, reason: &'static str) -> Opcode {
    Opcode {
        code,
        name,
        action: Action::Refuse(reason),
    }
}

const BUILDS_ANYTHING: &str = "builds arbitrary objects (not allowed)";
const PERSISTENT_ID: &str = "persistent ids are not allowed";
const EXTENSION: &str = "extension registry codes are not allowed";
const OUT_OF_BAND: &str = "out-of-band buffers are not allowed";
const TEXT_PROTOCOL: &str = "protocol 0/1 and Python 2 opcodes are not supported";

/// Every opcode of pickle protocols 0-5. A byte not listed here is refused as unknown.
const OPCODES: &[Opcode] = &[
    // Protocol and framing.
    run(0x80, "PROTO", |m, _| m.protocol()),
    run(0x95, "FRAME", |m, name| m.frame(name)),
    Opcode {
        code: b'.',
        name: "STOP",
        action: Action::Stop,
    },
    // Stack.
    run(b'(', "MARK", |m, _| m.mark()),
    run(b'0', "POP", |m, _| m.pop().map(drop)),
    run(b'1', "POP_MARK", |m, _| m.pop_mark().map(drop)),
    run(b'2', "DUP", |m, _| m.dup()),
    // Scalars.
    run(b'N', "NONE", |m, _| m.push(Value::None)),
    run(0x88, "NEWTRUE", |m, _| m.push(Value::Bool(true))),
    run(0x89, "NEWFALSE", |m, _| m.push(Value::Bool(false))),
    run(b'K', "BININT1", |m, name| m.unsigned(1, name)),
    run(b'M', "BININT2", |m, name| m.unsigned(2, name)),
    run(b'J', "BININT", |m, name| m.binint(name)),
    run(0x8a, "LONG1", |m, name| m.long1(name)),
    run(b'G', "BINFLOAT", |m, name| m.binfloat(name)),
    // Strings and bytes: a little-endian length of 1, 4 or 8 bytes, then the payload.
    run(0x8c, "SHORT_BINUNICODE", |m, name| m.unicode(1, name)),
    run(b'X', "BINUNICODE", |m, name| m.unicode(4, name)),
    run(0x8d, "BINUNICODE8", |m, name| m.unicode(8, name)),
    run(b'C', "SHORT_BINBYTES", |m, name| m.bytes(1, name)),
    run(b'B', "BINBYTES", |m, name| m.bytes(4, name)),
    run(0x8e, "BINBYTES8", |m, name| m.bytes(8, name)),
    run(0x96, "BYTEARRAY8", |m, name| m.bytes(8, name)),
    // Containers.
    run(b')', "EMPTY_TUPLE", |m, _| m.push(Value::Tuple(Vec::new()))),
    run(b't', "TUPLE", |m, _| m.tuple()),
    run(0x85, "TUPLE1", |m, _| m.small_tuple(1)),
    run(0x86, "TUPLE2", |m, _| m.small_tuple(2)),
    run(0x87, "TUPLE3", |m, _| m.small_tuple(3)),
    run(b']', "EMPTY_LIST", |m, _| m.push(Value::List(Vec::new()))),
    run(b'a', "APPEND", |m, _| m.append()),
    run(b'e', "APPENDS", |m, _| m.appends()),
    run(b'}', "EMPTY_DICT", |m, _| m.push(Value::Dict(Vec::new()))),
    run(b's', "SETITEM", |m, _| m.setitem()),
    run(b'u', "SETITEMS", |m, _| m.setitems()),
    run(0x8f, "EMPTY_SET", |m, _| m.push(Value::Set(Vec::new()))),
    run(0x90, "ADDITEMS", |m, _| m.additems()),
    run(0x91, "FROZENSET", |m, _| m.frozenset()),
    // Memo: an index of 1 or 4 bytes, or the next free one (MEMOIZE).
    run(0x94, "MEMOIZE", |m, _| m.memoize()),
    run(b'q', "BINPUT", |m, name| m.put(1, name)),
    run(b'r', "LONG_BINPUT", |m, name| m.put(4, name)),
    run(b'h', "BINGET", |m, name| m.get(1, name)),
    run(b'j', "LONG_BINGET", |m, name| m.get(4, name)),
    // Globals and object construction.
    run(b'c', "GLOBAL", |m, _| m.global()),
    run(0x93, "STACK_GLOBAL", |m, _| m.stack_global()),
    run(b'R', "REDUCE", |m, name| m.reduce(name)),
    run(0x81, "NEWOBJ", |m, name| m.newobj(name)),
    run(0x92, "NEWOBJ_EX", |m, name| m.newobj_ex(name)),
    run(b'b', "BUILD", |m, _| m.build()),
    // Refused outright.
    refuse(b'i', "INST", BUILDS_ANYTHING),
    refuse(b'o', "OBJ", BUILDS_ANYTHING),
    refuse(b'P', "PERSID", PERSISTENT_ID),
    refuse(b'Q', "BINPERSID", PERSISTENT_ID),
    refuse(0x82, "EXT1", EXTENSION),
    refuse(0x83, "EXT2", EXTENSION),
    refuse(0x84, "EXT4", EXTENSION),
    refuse(0x97, "NEXT_BUFFER", OUT_OF_BAND),
    refuse(0x98, "READONLY_BUFFER", OUT_OF_BAND),
    refuse(0x8b, "LONG4", "integers that large are not allowed"),
    refuse(b'I', "INT", TEXT_PROTOCOL),
    refuse(b'L', "LONG", TEXT_PROTOCOL),
    refuse(b'F', "FLOAT", TEXT_PROTOCOL),
    refuse(b'S', "STRING", TEXT_PROTOCOL),
    refuse(b'V', "UNICODE", TEXT_PROTOCOL),
    refuse(b'g', "GET", TEXT_PROTOCOL),
    refuse(b'p', "PUT", TEXT_PROTOCOL),
    refuse(b'd', "DICT", TEXT_PROTOCOL),
    refuse(b'l', "LIST", TEXT_PROTOCOL),
    refuse(b'T', "BINSTRING", TEXT_PROTOCOL),
    refuse(b'U', "SHORT_BINSTRING", TEXT_PROTOCOL),
];

/// For each byte, its position in [`OPCODES`] (`u8::MAX` for none). Built at compile time,
/// which also rejects a byte listed twice.
const INDEX: [u8; 256] = {
    assert!(OPCODES.len() < u8::MAX as usize);
    let mut index = [u8::MAX; 256];
    let mut i = 0;
    while i < OPCODES.len() {
        let code = OPCODES[i].code as usize;
        assert!(index[code] == u8::MAX, "an opcode byte is listed twice");
        index[code] = i as u8;
        i += 1;
    }
    index
};

impl Opcode {
    fn of(code: u8) -> Option<&'static Opcode> {
        OPCODES.get(usize::from(INDEX[usize::from(code)]))
    }
}

// === the machine ===

/// Runs the top-level pickle stream in `data` and returns the decoded values and the root.
pub fn run_top(data: &[u8], file: &str, limits: &Limits) -> Result<(Graph, NodeId), PickleError> {
    let mut machine = Machine {
        data,
        pos: 0,
        heap: Heap::new(file, limits),
        stream: StreamState::default(),
        nested: false,
    };
    let root = machine.run_stream()?;
    if machine.pos != data.len() {
        return Err(machine.heap.malformed(format!(
            "{} bytes of trailing data after STOP",
            data.len() - machine.pos
        )));
    }
    Ok((machine.heap.into_graph(), root))
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

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    heap: Heap<'a>,
    stream: StreamState,
    /// Whether this is a nested joblib object-array stream (no inline arrays inside those).
    nested: bool,
}

impl<'a> Machine<'a> {
    // --- the loop -----------------------------------------------------------------------

    /// Runs one pickle stream from `self.pos` to its STOP with a fresh stack and memo.
    fn run_stream(&mut self) -> Result<NodeId, PickleError> {
        self.heap.at(self.pos);
        let [code] = self.take_array::<1>("PROTO")?;
        if code != 0x80 {
            return Err(self
                .heap
                .malformed("the stream does not start with PROTO (protocol 0/1)"));
        }
        self.protocol()?;
        loop {
            self.heap.at(self.pos);
            let Ok([code]) = self.take_array::<1>("opcode") else {
                return Err(self
                    .heap
                    .malformed("unexpected end of data: no STOP opcode"));
            };
            let Some(opcode) = Opcode::of(code) else {
                return Err(self.refused(format!("0x{code:02x}"), "unknown opcode"));
            };
            match opcode.action {
                Action::Run(handler) => handler(self, opcode.name)?,
                Action::Stop => return self.stop(),
                Action::Refuse(reason) => {
                    return Err(self.refused(format!("{} (0x{code:02x})", opcode.name), reason));
                }
            }
        }
    }

    /// Runs a complete nested pickle stream at the current position (joblib object arrays)
    /// with its own stack and memo, sharing the heap; returns its root.
    fn run_nested(&mut self) -> Result<NodeId, PickleError> {
        if self.nested {
            return Err(self
                .heap
                .malformed("nested object-array stream inside another one"));
        }
        let outer = std::mem::take(&mut self.stream);
        self.nested = true;
        let result = self.run_stream();
        self.nested = false;
        self.stream = outer;
        result
    }

    fn refused(&self, opcode: String, reason: &'static str) -> PickleError {
        PickleError::RefusedOpcode {
            file: self.heap.file().to_owned(),
            offset: self.heap.offset(),
            opcode,
            reason,
        }
    }

    // --- input --------------------------------------------------------------------------

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Takes the next `n` bytes, or fails naming `what` if they are not there.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len());
        let Some(end) = end else {
            return Err(self.heap.malformed(format!(
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

    /// Takes a little-endian unsigned integer of `width` (at most 8) bytes.
    fn take_uint(&mut self, width: usize, what: &str) -> Result<u64, PickleError> {
        let bytes = self.take(width, what)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0, |acc, &byte| acc << 8 | u64::from(byte)))
    }

    /// Takes a payload whose length was declared in the input, checking it against the
    /// single-length limit before touching it.
    fn take_declared(&mut self, len: u64, what: &str) -> Result<&'a [u8], PickleError> {
        let max_length = self.heap.limits().max_length;
        if len > max_length {
            return Err(self.heap.limit(format!(
                "{what} length {len} exceeds the limit of {max_length} bytes"
            )));
        }
        let len =
            usize::try_from(len).map_err(|_| self.heap.limit(format!("{what} length {len}")))?;
        self.take(len, what)
    }

    fn line(&mut self, what: &str) -> Result<String, PickleError> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let window = rest.get(..MAX_NAME.min(rest.len())).unwrap_or_default();
        let Some(end) = window.iter().position(|&b| b == b'\n') else {
            return Err(self.heap.malformed(format!(
                "{what} is not a newline-terminated name of at most {MAX_NAME} bytes"
            )));
        };
        let bytes = self.take(end + 1, what)?;
        let text = bytes.get(..end).unwrap_or_default();
        String::from_utf8(text.to_vec())
            .map_err(|_| self.heap.malformed(format!("{what} is not UTF-8")))
    }

    // --- stack and memo -----------------------------------------------------------------

    fn push_id(&mut self, id: NodeId) -> Result<(), PickleError> {
        let max_stack = self.heap.limits().max_stack;
        if self.stream.stack.len() >= max_stack {
            return Err(self
                .heap
                .limit(format!("stack deeper than {max_stack} entries")));
        }
        self.stream.stack.push(id);
        Ok(())
    }

    /// Adds a value to the heap and pushes it.
    fn push(&mut self, value: Value) -> Result<(), PickleError> {
        let id = self.heap.alloc(value)?;
        self.push_id(id)
    }

    fn mark_base(&self) -> usize {
        self.stream.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<NodeId, PickleError> {
        if self.stream.stack.len() <= self.mark_base() {
            return Err(self.heap.malformed("stack underflow"));
        }
        self.stream
            .stack
            .pop()
            .ok_or_else(|| self.heap.malformed("stack underflow"))
    }

    fn top(&self) -> Result<NodeId, PickleError> {
        if self.stream.stack.len() <= self.mark_base() {
            return Err(self.heap.malformed("stack underflow"));
        }
        self.stream
            .stack
            .last()
            .copied()
            .ok_or_else(|| self.heap.malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<NodeId>, PickleError> {
        let Some(mark) = self.stream.marks.pop() else {
            return Err(self.heap.malformed("no MARK on the stack"));
        };
        if mark > self.stream.stack.len() {
            return Err(self.heap.malformed("MARK above the stack top"));
        }
        Ok(self.stream.stack.split_off(mark))
    }

    fn memo_put(&mut self, index: u32) -> Result<(), PickleError> {
        let top = self.top()?;
        let max_memo = self.heap.limits().max_memo;
        if self.stream.memo.len() >= max_memo && !self.stream.memo.contains_key(&index) {
            return Err(self
                .heap
                .limit(format!("more than {max_memo} memo entries")));
        }
        self.stream.memo.insert(index, top);
        Ok(())
    }

    // --- opcode handlers: protocol, framing, stack -------------------------------------

    fn protocol(&mut self) -> Result<(), PickleError> {
        let [version] = self.take_array::<1>("PROTO")?;
        if !(2..=5).contains(&version) {
            return Err(PickleError::Unsupported {
                file: self.heap.file().to_owned(),
                reason: format!("pickle protocol {version} (only 2 to 5 are supported)"),
            });
        }
        Ok(())
    }

    /// FRAME: a length prefix for the opcodes that follow; nothing to allocate.
    fn frame(&mut self, name: &str) -> Result<(), PickleError> {
        let len = self.take_uint(8, name)?;
        let max_length = self.heap.limits().max_length;
        if len > max_length {
            return Err(self.heap.limit(format!(
                "FRAME length {len} exceeds the limit of {max_length} bytes"
            )));
        }
        if len > self.remaining() as u64 {
            return Err(self.heap.malformed(format!(
                "FRAME length {len} exceeds the {} bytes left",
                self.remaining()
            )));
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<NodeId, PickleError> {
        let root = self.pop()?;
        if !self.stream.stack.is_empty() || !self.stream.marks.is_empty() {
            return Err(self.heap.malformed("values left on the stack at STOP"));
        }
        Ok(root)
    }

    fn mark(&mut self) -> Result<(), PickleError> {
        let max_stack = self.heap.limits().max_stack;
        if self.stream.marks.len() >= max_stack {
            return Err(self.heap.limit(format!("more than {max_stack} open MARKs")));
        }
        self.stream.marks.push(self.stream.stack.len());
        Ok(())
    }

    fn dup(&mut self) -> Result<(), PickleError> {
        let top = self.top()?;
        self.push_id(top)
    }

    // --- opcode handlers: scalars, strings, bytes ---------------------------------------

    fn unsigned(&mut self, width: usize, name: &str) -> Result<(), PickleError> {
        let v = self.take_uint(width, name)?;
        self.push(Value::Int(v.into()))
    }

    fn binint(&mut self, name: &str) -> Result<(), PickleError> {
        let v = i32::from_le_bytes(self.take_array::<4>(name)?);
        self.push(Value::Int(v.into()))
    }

    fn long1(&mut self, name: &str) -> Result<(), PickleError> {
        let [n] = self.take_array::<1>(name)?;
        let n = usize::from(n);
        if n > MAX_LONG_BYTES {
            return Err(self.heap.limit(format!(
                "LONG1 integer of {n} bytes exceeds the limit of {MAX_LONG_BYTES}"
            )));
        }
        let bytes = self.take(n, name)?;
        self.push(long_from_le(bytes).map_or(Value::BigInt, Value::Int))
    }

    fn binfloat(&mut self, name: &str) -> Result<(), PickleError> {
        let v = f64::from_be_bytes(self.take_array::<8>(name)?);
        self.push(Value::Float(v))
    }

    /// A UTF-8 string after a length of `width` bytes.
    fn unicode(&mut self, width: usize, name: &str) -> Result<(), PickleError> {
        let len = self.take_uint(width, name)?;
        let bytes = self.take_declared(len, name)?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| self.heap.malformed(format!("{name} is not valid UTF-8")))?;
        self.push(Value::Str(text.to_owned()))
    }

    /// Bytes after a length of `width` bytes.
    fn bytes(&mut self, width: usize, name: &str) -> Result<(), PickleError> {
        let len = self.take_uint(width, name)?;
        let bytes = self.take_declared(len, name)?;
        self.push(Value::Bytes(bytes.to_vec()))
    }

    // --- opcode handlers: containers ----------------------------------------------------

    fn tuple(&mut self) -> Result<(), PickleError> {
        let items = self.pop_mark()?;
        self.push(Value::Tuple(items))
    }

    /// TUPLE1-3: a tuple of the top `n` values.
    fn small_tuple(&mut self, n: usize) -> Result<(), PickleError> {
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.pop()?);
        }
        items.reverse();
        self.push(Value::Tuple(items))
    }

    fn append(&mut self) -> Result<(), PickleError> {
        let item = self.pop()?;
        self.extend_list(vec![item])
    }

    fn appends(&mut self) -> Result<(), PickleError> {
        let items = self.pop_mark()?;
        self.extend_list(items)
    }

    fn extend_list(&mut self, items: Vec<NodeId>) -> Result<(), PickleError> {
        let list = self.top()?;
        match self.heap.node_mut(list)? {
            Value::List(existing) => {
                existing.extend(items);
                Ok(())
            }
            _ => Err(self
                .heap
                .malformed("APPEND(S) on a value that is not a list")),
        }
    }

    fn setitem(&mut self) -> Result<(), PickleError> {
        let value = self.pop()?;
        let key = self.pop()?;
        self.set_items(vec![key, value])
    }

    fn setitems(&mut self) -> Result<(), PickleError> {
        let items = self.pop_mark()?;
        self.set_items(items)
    }

    fn set_items(&mut self, items: Vec<NodeId>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.heap.malformed("SETITEMS with an odd number of values"));
        }
        let dict = self.top()?;
        if !matches!(self.heap.node(dict)?, Value::Dict(_)) {
            return Err(self
                .heap
                .malformed("SETITEM(S) on a value that is not a dict"));
        }
        for pair in items.chunks_exact(2) {
            let (key, value) = match pair {
                [key, value] => (*key, *value),
                _ => continue,
            };
            let key_text = match self.heap.node(key)? {
                Value::Str(s) => Some(s.clone()),
                Value::Int(_) | Value::None | Value::Bool(_) | Value::Tuple(_) => None,
                Value::Float(_) | Value::Bytes(_) => None,
                // numpy scalars hash (LightGBM's `_class_map` is keyed by its labels).
                Value::NdArray(a) if a.shape.is_empty() => None,
                _ => return Err(self.heap.malformed("dict key of an unhashable type")),
            };
            let index = self.stream.dict_keys.entry(dict).or_default();
            let existing = key_text.as_ref().and_then(|k| index.get(k).copied());
            let Value::Dict(entries) = self.heap.node_mut(dict)? else {
                return Err(self
                    .heap
                    .malformed("SETITEM(S) on a value that is not a dict"));
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

    fn additems(&mut self) -> Result<(), PickleError> {
        let items = self.pop_mark()?;
        let set = self.top()?;
        match self.heap.node_mut(set)? {
            Value::Set(existing) => {
                existing.extend(items);
                Ok(())
            }
            _ => Err(self.heap.malformed("ADDITEMS on a value that is not a set")),
        }
    }

    fn frozenset(&mut self) -> Result<(), PickleError> {
        let items = self.pop_mark()?;
        self.push(Value::Set(items))
    }

    // --- opcode handlers: memo ----------------------------------------------------------

    fn memoize(&mut self) -> Result<(), PickleError> {
        let index = u32::try_from(self.stream.memo.len())
            .map_err(|_| self.heap.limit("memo index overflow"))?;
        self.memo_put(index)
    }

    /// BINPUT, LONG_BINPUT: store the top under an index of `width` bytes.
    fn put(&mut self, width: usize, name: &str) -> Result<(), PickleError> {
        let index = self.take_uint(width, name)?;
        self.memo_put(index as u32)
    }

    /// BINGET, LONG_BINGET: push the value stored under an index of `width` bytes.
    fn get(&mut self, width: usize, name: &str) -> Result<(), PickleError> {
        let index = self.take_uint(width, name)? as u32;
        let Some(&id) = self.stream.memo.get(&index) else {
            return Err(self
                .heap
                .malformed(format!("memo index {index} was never stored")));
        };
        self.push_id(id)
    }

    // --- opcode handlers: globals and objects -------------------------------------------

    fn global(&mut self) -> Result<(), PickleError> {
        let module = self.line("GLOBAL module")?;
        let name = self.line("GLOBAL name")?;
        self.push_global(module, name)
    }

    fn stack_global(&mut self) -> Result<(), PickleError> {
        let name = self.pop()?;
        let module = self.pop()?;
        let (Value::Str(module), Value::Str(name)) =
            (self.heap.node(module)?, self.heap.node(name)?)
        else {
            return Err(self.heap.malformed("STACK_GLOBAL needs two strings"));
        };
        let (module, name) = (module.clone(), name.clone());
        self.push_global(module, name)
    }

    fn push_global(&mut self, module: String, name: String) -> Result<(), PickleError> {
        if allowlist::lookup(&module, &name).is_none() {
            return Err(PickleError::RefusedGlobal {
                file: self.heap.file().to_owned(),
                offset: self.heap.offset(),
                global: format!("{}.{}", module.escape_debug(), name.escape_debug()),
            });
        }
        self.push(Value::Global(Global { module, name }))
    }

    /// The allow-listed global at `id` and its role.
    fn callable(&self, id: NodeId, opcode: &str) -> Result<(Global, Role), PickleError> {
        match self.heap.node(id)? {
            Value::Global(g) => match allowlist::lookup(&g.module, &g.name) {
                Some(role) => Ok((g.clone(), role)),
                None => Err(self
                    .heap
                    .malformed(format!("{opcode} on a global that is not allowed"))),
            },
            other => Err(self.heap.malformed(format!(
                "{opcode} on a {} instead of an allow-listed global",
                other.kind()
            ))),
        }
    }

    fn tuple_items(&mut self, id: NodeId, what: &str) -> Result<Vec<NodeId>, PickleError> {
        let len = match self.heap.node(id)? {
            Value::Tuple(items) => items.len(),
            _ => 0,
        };
        self.heap
            .charge(len.saturating_mul(std::mem::size_of::<NodeId>()))?;
        match self.heap.node(id)? {
            Value::Tuple(items) => Ok(items.clone()),
            other => Err(self.heap.malformed(format!(
                "{what} arguments are a {}, not a tuple",
                other.kind()
            ))),
        }
    }

    fn reduce(&mut self, name: &str) -> Result<(), PickleError> {
        let args = self.pop()?;
        let callable = self.pop()?;
        let (global, role) = self.callable(callable, name)?;
        let args = self.tuple_items(args, &global.to_string())?;
        let heap = &mut self.heap;
        let value = match role {
            Role::Reconstruct => numpy::reconstruct(heap, &args)?,
            Role::Dtype => numpy::dtype_new(heap, &args)?,
            Role::Scalar => numpy::scalar(heap, &args)?,
            Role::Frombuffer => numpy::frombuffer(heap, &args)?,
            Role::CodecsEncode => numpy::codecs_encode(heap, &args)?,
            Role::ByteArray => match args.len() {
                0 => Value::Bytes(vec![]),
                1 => {
                    let Value::Bytes(bytes) = heap.node(args[0])? else {
                        return Err(heap.malformed("bytearray of something other than bytes"));
                    };
                    let bytes = bytes.clone();
                    heap.charge(bytes.len())?;
                    Value::Bytes(bytes)
                }
                _ => numpy::codecs_encode(heap, &args)?,
            },
            Role::Estimator | Role::Opaque => Value::Object {
                class: global,
                args,
                state: None,
            },
            Role::Dict if args.len() <= 1 => Value::Dict(Vec::new()),
            Role::Dict | Role::NdarrayType | Role::ArrayWrapper => {
                return Err(heap.malformed(format!("REDUCE on {global} is not allowed")));
            }
        };
        self.push(value)
    }

    fn newobj(&mut self, name: &str) -> Result<(), PickleError> {
        let args = self.pop()?;
        let class = self.pop()?;
        self.new_object(class, args, name)
    }

    fn newobj_ex(&mut self, name: &str) -> Result<(), PickleError> {
        let kwargs = self.pop()?;
        let args = self.pop()?;
        let class = self.pop()?;
        if !matches!(self.heap.node(kwargs)?, Value::Dict(items) if items.is_empty()) {
            return Err(self.heap.malformed("NEWOBJ_EX with keyword arguments"));
        }
        self.new_object(class, args, name)
    }

    fn new_object(&mut self, class: NodeId, args: NodeId, opcode: &str) -> Result<(), PickleError> {
        let (global, role) = self.callable(class, opcode)?;
        if !matches!(role, Role::Estimator | Role::Opaque | Role::ArrayWrapper) {
            return Err(self
                .heap
                .malformed(format!("{opcode} on {global} is not allowed")));
        }
        let args = self.tuple_items(args, opcode)?;
        self.push(Value::Object {
            class: global,
            args,
            state: None,
        })
    }

    fn build(&mut self) -> Result<(), PickleError> {
        let state = self.pop()?;
        let target = self.top()?;
        let class = match self.heap.node(target)? {
            Value::Object {
                class, state: None, ..
            } => class.clone(),
            Value::Object { .. } => {
                return Err(self
                    .heap
                    .malformed("BUILD applied twice to the same object"));
            }
            Value::Dtype(_) => {
                return numpy::dtype_build(&mut self.heap, target, state);
            }
            other => {
                return Err(self.heap.malformed(format!("BUILD on a {}", other.kind())));
            }
        };
        match allowlist::lookup(&class.module, &class.name) {
            Some(Role::NdarrayType) => {
                let array = numpy::reconstruct_build(&mut self.heap, state)?;
                self.heap.replace(target, Value::NdArray(array))
            }
            Some(Role::ArrayWrapper) => {
                if self.nested {
                    return Err(self.heap.malformed(
                        "a joblib NumpyArrayWrapper inside a nested object-array stream",
                    ));
                }
                let array = self.read_wrapped_array(state)?;
                self.heap.replace(target, Value::NdArray(array))
            }
            _ => {
                if let Ok(Value::Object { state: slot, .. }) = self.heap.node_mut(target) {
                    *slot = Some(state);
                }
                Ok(())
            }
        }
    }

    // --- joblib's inline arrays ---------------------------------------------------------

    /// Reads the array joblib writes right after a `NumpyArrayWrapper` whose BUILD state is
    /// `state`, outside any opcode: a complete nested pickle stream for object arrays
    /// (through the same machine, allow-list and limits), otherwise an optional alignment
    /// padding and `prod(shape) * itemsize` raw bytes.
    fn read_wrapped_array(&mut self, state: NodeId) -> Result<NdArray, PickleError> {
        let wrapped = numpy::array_wrapper(&self.heap, state)?;
        if wrapped.dtype.kind == 'O' {
            // A whole pickle stream of the array itself, with its own memo and stack.
            let root = self.run_nested()?;
            self.heap.at(self.pos);
            return numpy::wrapped_object_array(&mut self.heap, root, &wrapped.shape);
        }
        let size = numpy::byte_size(&self.heap, &wrapped.dtype, &wrapped.shape)?;
        if wrapped.aligned {
            let [padding] = self.take_array::<1>("joblib array padding length")?;
            if padding > MAX_PADDING {
                return Err(self
                    .heap
                    .malformed(format!("joblib array padding of {padding} bytes")));
            }
            self.take(padding.into(), "joblib array padding")?;
        }
        self.heap.charge(size)?;
        let bytes = self.take_declared(size as u64, "joblib inline array")?;
        numpy::make_array(
            &self.heap,
            wrapped.dtype,
            wrapped.shape,
            bytes,
            wrapped.fortran,
            wrapped.big_endian,
        )
    }
}

/// Decodes a little-endian two's-complement integer of at most 16 bytes.
/// The two's-complement little-endian integer `bytes`, or `None` when it needs more than 128
/// bits.
fn long_from_le(bytes: &[u8]) -> Option<i128> {
    let Some(&last) = bytes.last() else {
        return Some(0);
    };
    let fill = if last & 0x80 != 0 { 0xFF } else { 0x00 };
    let mut buf = [fill; 16];
    for (dst, src) in buf.iter_mut().zip(bytes) {
        *dst = *src;
    }
    let value = i128::from_le_bytes(buf);
    // Bytes past the 16th must only repeat the sign of the 128-bit value.
    let sign = if value < 0 { 0xFF } else { 0x00 };
    bytes.iter().skip(16).all(|&b| b == sign).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<(Graph, NodeId), PickleError> {
        run_top(bytes, "t.pkl", &Limits::default())
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
    fn each_opcode_is_listed_once_and_found_by_its_byte() {
        let mut names: Vec<&str> = OPCODES.iter().map(|op| op.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OPCODES.len());
        for op in OPCODES {
            assert_eq!(Opcode::of(op.code).map(|found| found.name), Some(op.name));
        }
        assert!(Opcode::of(0x99).is_none());
        assert!(Opcode::of(b'x').is_none());
    }

    #[test]
    fn long1_sign_extends() {
        assert_eq!(long_from_le(&[0xff]), Some(-1));
        assert_eq!(long_from_le(&[0x00, 0x80]), Some(-32768));
        assert_eq!(long_from_le(&[]), Some(0));
        assert_eq!(long_from_le(&[0xff, 0x00]), Some(255));
        // 17 bytes: a sign byte that only extends the 128-bit value, then a true 2^127.
        let mut max = [0xff; 17];
        max[15] = 0x7f;
        max[16] = 0x00;
        assert_eq!(long_from_le(&max), Some(i128::MAX));
        let mut min = [0x00; 17];
        min[15] = 0x80;
        min[16] = 0xff;
        assert_eq!(long_from_le(&min), Some(i128::MIN));
        let mut two_127 = [0x00; 17];
        two_127[15] = 0x80;
        assert_eq!(long_from_le(&two_127), None);
    }

    #[test]
    fn wide_ints_are_opaque_and_bounded() {
        // numpy's PCG64 state: an unsigned 128-bit int with its top bit set (17 bytes).
        let mut pickle = b"\x80\x02\x8a\x11".to_vec();
        pickle.extend([0x00; 15]);
        pickle.extend([0x80, 0x00]);
        pickle.push(b'.');
        let (heap, root) = run(&pickle).unwrap();
        assert_eq!(heap.get(root), &Value::BigInt);
        let mut pickle = b"\x80\x02\x8a\x21".to_vec();
        pickle.extend([0x01; 33]);
        pickle.push(b'.');
        let err = run(&pickle).unwrap_err().to_string();
        assert!(
            err.contains("LONG1 integer of 33 bytes exceeds the limit of 32"),
            "{err}"
        );
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
