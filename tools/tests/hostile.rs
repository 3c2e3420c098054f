//! Hostile inputs: every one must be refused with an error that names the global, opcode or
//! limit involved, quickly and without a panic. Most are hand-assembled here with [`P`]; the
//! rest are mutations of the real fixtures.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tools::pickle::{self, Graph, Limits, PickleError, Value};
use tools::sklearn;

// --- a tiny pickle assembler ----------------------------------------------------------------

/// Builds pickle opcode streams by hand.
#[derive(Clone)]
struct P(Vec<u8>);

impl P {
    fn proto(version: u8) -> Self {
        P(vec![0x80, version])
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn op(self, code: u8) -> Self {
        self.raw(&[code])
    }
    fn global(self, module: &str, name: &str) -> Self {
        self.op(b'c')
            .raw(module.as_bytes())
            .raw(b"\n")
            .raw(name.as_bytes())
            .raw(b"\n")
    }
    fn str(self, s: &str) -> Self {
        let len = u8::try_from(s.len()).unwrap();
        self.op(0x8c).raw(&[len]).raw(s.as_bytes())
    }
    fn stack_global(self, module: &str, name: &str) -> Self {
        self.str(module).str(name).op(0x93)
    }
    fn int(self, v: i32) -> Self {
        self.op(b'J').raw(&v.to_le_bytes())
    }
    fn bytes(self, b: &[u8]) -> Self {
        self.op(b'B').raw(&(b.len() as u32).to_le_bytes()).raw(b)
    }
    fn memoize(self) -> Self {
        self.op(0x94)
    }
    fn binput(self, i: u8) -> Self {
        self.op(b'q').raw(&[i])
    }
    fn binget(self, i: u8) -> Self {
        self.op(b'h').raw(&[i])
    }
    fn mark(self) -> Self {
        self.op(b'(')
    }
    fn tuple(self) -> Self {
        self.op(b't')
    }
    fn empty_tuple(self) -> Self {
        self.op(b')')
    }
    fn empty_dict(self) -> Self {
        self.op(b'}')
    }
    fn setitem(self) -> Self {
        self.op(b's')
    }
    fn reduce(self) -> Self {
        self.op(b'R')
    }
    fn newobj(self) -> Self {
        self.op(0x81)
    }
    fn build(self) -> Self {
        self.op(b'b')
    }
    fn stop(self) -> Vec<u8> {
        self.op(b'.').0
    }
    /// `numpy.dtype('f8')` with its BUILD state.
    fn dtype_f8(self) -> Self {
        self.global("numpy", "dtype")
            .str("f8")
            .op(0x89)
            .op(0x88)
            .op(0x87)
            .reduce()
            .mark()
            .int(3)
            .str("<")
            .op(b'N')
            .op(b'N')
            .op(b'N')
            .int(-1)
            .int(-1)
            .int(0)
            .tuple()
            .build()
    }
}

fn read(bytes: &[u8]) -> Result<Graph, PickleError> {
    pickle::read_bytes(bytes, "evil.pkl", &Limits::default())
}

/// Reads `bytes`, expecting a refusal whose message contains every one of `needles`.
#[track_caller]
fn refused(bytes: &[u8], needles: &[&str]) -> String {
    refused_with(bytes, &Limits::default(), needles)
}

#[track_caller]
fn refused_with(bytes: &[u8], limits: &Limits, needles: &[&str]) -> String {
    let start = Instant::now();
    let result = pickle::read_bytes(bytes, "evil.pkl", limits);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    let message = match result {
        Ok(graph) => match sklearn::extract(&graph) {
            Ok(model) => panic!("accepted a hostile input as {}", model.kind),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    for needle in needles {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
    message
}

/// A committed fixture's bytes (the fixtures are part of the repository, so a missing one fails).
fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures/1.9.1-np2.4.6")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("committed fixture {}: {e}", path.display()))
}

fn hostile_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/hostile")
        .join(name)
}

const PAYLOADS: &[(&str, &str)] = &[
    ("os", "system"),
    ("posix", "system"),
    ("nt", "system"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "getattr"),
    ("builtins", "__import__"),
    ("builtins", "compile"),
    ("builtins", "open"),
    ("__builtin__", "eval"),
    ("runpy", "_run_code"),
    ("pickle", "loads"),
    ("_pickle", "loads"),
    ("importlib", "import_module"),
    ("pkgutil", "resolve_name"),
    ("marshal", "loads"),
    ("operator", "attrgetter"),
    ("functools", "partial"),
    ("numpy", "load"),
    ("numpy.testing._private.utils", "runstring"),
    ("torch._utils", "_rebuild_tensor"),
    ("webbrowser", "open"),
    ("mailcap", "findmatch"),
    ("joblib.numpy_pickle", "load"),
    ("sklearn.neighbors._regression", "KNeighborsRegressor"),
    ("numpy.core", "multiarray._reconstruct"),
    ("numpy.matrixlib.defmatrix", "matrix"),
];

// --- forbidden globals -----------------------------------------------------------------------

#[test]
fn global_opcode_payloads_are_refused_by_name_and_offset() {
    for (module, name) in PAYLOADS {
        for proto in [2, 4] {
            let bytes = P::proto(proto)
                .global(module, name)
                .str("id")
                .op(0x85)
                .reduce()
                .stop();
            let message = refused(&bytes, &[]);
            assert_eq!(
                message,
                format!(
                    "refused global {module}.{name} at byte 2 of evil.pkl: not on the allow-list"
                )
            );
        }
    }
}

#[test]
fn stack_global_payloads_are_refused() {
    for (module, name) in PAYLOADS {
        let bytes = P::proto(4)
            .stack_global(module, name)
            .empty_tuple()
            .reduce()
            .stop();
        let offset = 2 + 2 + module.len() + 2 + name.len();
        refused(
            &bytes,
            &[&format!(
                "refused global {module}.{name} at byte {offset} of evil.pkl"
            )],
        );
    }
}

#[test]
fn stack_global_through_memo_indirection_is_resolved_at_run_time() {
    // Memoize harmless-looking strings, overwrite a memo slot, then rebuild "os" + "system"
    // from the memo: a static scanner sees only "numpy"/"dtype".
    let bytes = P::proto(4)
        .str("numpy")
        .binput(0)
        .op(b'0')
        .str("dtype")
        .binput(1)
        .op(b'0')
        .str("os")
        .binput(0) // overwrite slot 0
        .op(b'0')
        .str("system")
        .binput(1)
        .op(b'0')
        .binget(0)
        .binget(1)
        .op(0x93)
        .str("id")
        .op(0x85)
        .reduce()
        .stop();
    refused(&bytes, &["refused global os.system"]);

    // MEMOIZE and BINPUT mixed: MEMOIZE numbers by memo size, not by the last BINPUT.
    let bytes = P::proto(4)
        .str("subprocess")
        .binput(7)
        .memoize() // index 1
        .op(b'0')
        .str("Popen")
        .memoize() // index 2 (memo has {7, 1})
        .op(b'0')
        .binget(1)
        .binget(2)
        .op(0x93)
        .stop();
    refused(&bytes, &["refused global subprocess.Popen"]);
}

#[test]
fn a_sklearn_looking_estimator_hiding_a_payload_is_refused() {
    let bytes = P::proto(4)
        .stack_global("sklearn.linear_model._base", "LinearRegression")
        .empty_tuple()
        .newobj()
        .empty_dict()
        .str("coef_")
        .global("os", "system")
        .str("touch /tmp/pwned")
        .op(0x85)
        .reduce()
        .setitem()
        .build()
        .stop();
    refused(&bytes, &["refused global os.system"]);

    // The same wrapper whose attributes are merely wrong types: refused by extraction.
    let bytes = P::proto(4)
        .stack_global("sklearn.linear_model._base", "LinearRegression")
        .empty_tuple()
        .newobj()
        .empty_dict()
        .str("coef_")
        .str("not an array")
        .setitem()
        .build()
        .stop();
    refused(&bytes, &["invalid model.coef_", "expected an ndarray"]);
}

#[test]
fn calling_allow_listed_globals_the_wrong_way_is_refused() {
    // REDUCE on numpy.ndarray itself, NEWOBJ on a function, BUILD on a dict.
    let bytes = P::proto(4)
        .stack_global("numpy", "ndarray")
        .empty_tuple()
        .reduce()
        .stop();
    refused(&bytes, &["REDUCE on numpy.ndarray is not allowed"]);
    let bytes = P::proto(4)
        .stack_global("numpy", "dtype")
        .empty_tuple()
        .newobj()
        .stop();
    refused(&bytes, &["NEWOBJ on numpy.dtype is not allowed"]);
    let bytes = P::proto(4).empty_dict().empty_dict().build().stop();
    refused(&bytes, &["BUILD on a dict"]);
    // REDUCE on a string (not a global at all).
    let bytes = P::proto(4).str("os.system").empty_tuple().reduce().stop();
    refused(&bytes, &["REDUCE on a str"]);
    // _reconstruct of another subtype.
    let bytes = P::proto(4)
        .stack_global("numpy.core.multiarray", "_reconstruct")
        .stack_global("numpy", "dtype")
        .mark()
        .int(0)
        .tuple()
        .bytes(b"b")
        .op(0x87)
        .reduce()
        .stop();
    refused(&bytes, &["_reconstruct of numpy.dtype"]);
    // Keyword arguments through NEWOBJ_EX.
    let bytes = P::proto(4)
        .stack_global("sklearn.linear_model._ridge", "Ridge")
        .empty_tuple()
        .empty_dict()
        .str("k")
        .int(1)
        .setitem()
        .op(0x92)
        .stop();
    refused(&bytes, &["NEWOBJ_EX with keyword arguments"]);
}

// --- forbidden opcodes -----------------------------------------------------------------------

#[test]
fn code_running_and_out_of_band_opcodes_are_refused() {
    let cases: &[(&[u8], &str)] = &[
        (b"(i", "INST (0x69)"),
        (b"(o", "OBJ (0x6f)"),
        (b"P1\n", "PERSID (0x50)"),
        (b"NQ", "BINPERSID (0x51)"),
        (b"\x82\x01", "EXT1 (0x82)"),
        (b"\x83\x01\x00", "EXT2 (0x83)"),
        (b"\x84\x01\x00\x00\x00", "EXT4 (0x84)"),
        (b"\x97", "NEXT_BUFFER (0x97)"),
        (b"N\x98", "READONLY_BUFFER (0x98)"),
        (b"\x8b\xff\xff\xff\x7f", "LONG4 (0x8b)"),
        (b"I1\n", "INT (0x49)"),
        (b"S'x'\n", "STRING (0x53)"),
        (b"U\x01x", "SHORT_BINSTRING (0x55)"),
        (b"\xff", "0xff at byte 2"),
    ];
    for (body, needle) in cases {
        let bytes = P::proto(4).raw(body).stop();
        refused(&bytes, &["refused opcode", needle]);
    }
}

#[test]
fn protocols_0_and_1_are_refused() {
    refused(b"cos\nsystem\n(S'id'\ntR.", &["protocol 0/1"]);
    refused(b"(lp0\nI1\na.", &["protocol 0/1"]);
    refused(b"]q\x00K\x01a.", &["protocol 0/1"]);
    refused(b"\x80\x01N.", &["pickle protocol 1"]);
    refused(b"\x80\x06N.", &["pickle protocol 6"]);
    refused(b"", &["empty"]);
}

// --- huge declared lengths -------------------------------------------------------------------

#[test]
fn huge_declared_lengths_are_refused_before_allocating() {
    let huge = u64::MAX.to_le_bytes();
    let large = (1u64 << 40).to_le_bytes();
    for (code, name) in [
        (0x8e, "BINBYTES8"),
        (0x8d, "BINUNICODE8"),
        (0x96, "BYTEARRAY8"),
        (0x95, "FRAME"),
    ] {
        for len in [huge, large] {
            let bytes = P::proto(4).op(code).raw(&len).stop();
            refused(&bytes, &[name, "exceeds the limit of 1073741824 bytes"]);
        }
        // Within the limit but beyond the end of the data: truncated, not allocated.
        let bytes = P::proto(4).op(code).raw(&1_000_000u64.to_le_bytes()).stop();
        let message = refused(&bytes, &[name]);
        assert!(message.contains("left"), "{message}");
    }
    let bytes = P::proto(4).op(b'X').raw(&u32::MAX.to_le_bytes()).stop();
    refused(&bytes, &["BINUNICODE length 4294967295 exceeds the limit"]);
    let bytes = P::proto(4).op(b'B').raw(&1_000_000u32.to_le_bytes()).stop();
    refused(&bytes, &["BINBYTES needs 1000000 bytes", "left"]);
    let bytes = P::proto(4).op(0x8a).raw(&[255]).raw(&[1; 255]).stop();
    refused(&bytes, &["LONG1 integer of 255 bytes exceeds the limit"]);
}

#[test]
fn a_huge_memo_index_is_just_a_key() {
    // LONG_BINPUT 0xFFFFFFFF must not size a table by the index.
    let bytes = P::proto(4)
        .op(b'N')
        .op(b'r')
        .raw(&u32::MAX.to_le_bytes())
        .op(b'0')
        .op(b'j')
        .raw(&u32::MAX.to_le_bytes())
        .stop();
    let graph = read(&bytes).unwrap();
    assert_eq!(graph.root(), Some(&Value::None));
    refused(&bytes, &["the pickle holds a None"]);
}

#[test]
fn too_many_memo_entries_hit_the_limit() {
    let limits = Limits {
        max_memo: 100,
        ..Limits::default()
    };
    let mut p = P::proto(4).op(b'N');
    for i in 0..200u32 {
        p = p.op(b'r').raw(&i.to_le_bytes());
    }
    refused_with(&p.stop(), &limits, &["more than 100 memo entries"]);
}

#[test]
fn overflowing_shape_products_are_refused() {
    let big = P::proto(4)
        .int(i32::MAX)
        .int(i32::MAX)
        .int(i32::MAX)
        .op(0x87);
    // _reconstruct + BUILD with a shape whose product overflows.
    let bytes = P::proto(4)
        .stack_global("numpy._core.multiarray", "_reconstruct")
        .stack_global("numpy", "ndarray")
        .mark()
        .int(0)
        .tuple()
        .bytes(b"b")
        .op(0x87)
        .reduce()
        .mark()
        .int(1)
        .raw(&big.0[2..])
        .dtype_f8()
        .op(0x89)
        .bytes(&[0; 8])
        .tuple()
        .build()
        .stop();
    refused(
        &bytes,
        &[
            "array shape [2147483647, 2147483647, 2147483647]",
            "elements",
        ],
    );

    // _frombuffer with a shape that needs more bytes than given.
    let bytes = P::proto(5)
        .stack_global("numpy._core.numeric", "_frombuffer")
        .mark()
        .bytes(&[0; 16])
        .dtype_f8()
        .int(3)
        .op(0x85)
        .str("C")
        .tuple()
        .reduce()
        .stop();
    refused(&bytes, &["array data has 16 bytes", "needs 24"]);

    // A joblib wrapper declaring an enormous array.
    let bytes = joblib_wrapper(&big.0[2..], b"").stop();
    refused(&bytes, &["elements"]);
}

// --- joblib inline arrays --------------------------------------------------------------------

/// A `NumpyArrayWrapper` for an f8 array of `shape_ops` (opcodes pushing a shape tuple),
/// followed by `data` (padding byte, padding, raw bytes).
fn joblib_wrapper(shape_ops: &[u8], data: &[u8]) -> P {
    P::proto(4)
        .stack_global("joblib.numpy_pickle", "NumpyArrayWrapper")
        .empty_tuple()
        .newobj()
        .empty_dict()
        .mark()
        .str("subclass")
        .stack_global("numpy", "ndarray")
        .str("shape")
        .raw(shape_ops)
        .str("order")
        .str("C")
        .str("dtype")
        .dtype_f8()
        .str("allow_mmap")
        .op(0x88)
        .str("numpy_array_alignment_bytes")
        .op(b'K')
        .raw(&[16])
        .op(b'u')
        .build()
        .raw(data)
}

fn inline_f8(values: &[f64]) -> Vec<u8> {
    let mut data = vec![4u8, 0xff, 0xff, 0xff, 0xff];
    for v in values {
        data.extend_from_slice(&v.to_le_bytes());
    }
    data
}

#[test]
fn a_payload_after_the_first_inline_array_is_found() {
    let shape = P::proto(4).int(2).op(0x85);
    let clean = joblib_wrapper(&shape.0[2..], &inline_f8(&[1.5, 2.5])).stop();
    let graph = read(&clean).unwrap();
    let Some(Value::NdArray(array)) = graph.root() else {
        panic!("not an array: {:?}", graph.root())
    };
    assert_eq!(array.to_f64(), Some(vec![1.5, 2.5]));

    // The same file with a payload right after the raw array bytes (where scanners that stop
    // at the first inline array never look), inside a tuple so the stream stays balanced.
    let mut evil = joblib_wrapper(&shape.0[2..], &inline_f8(&[1.5, 2.5]));
    let array_end = evil.0.len();
    evil = evil
        .global("os", "system")
        .str("id")
        .op(0x85)
        .reduce()
        .op(0x86);
    let evil = evil.stop();
    let message = refused(&evil, &["refused global os.system"]);
    assert!(
        message.contains(&format!("at byte {array_end} ")),
        "{message} (array ends at {array_end})"
    );

    // And inside a zlib stream, as joblib's compress=3 writes it.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&evil).unwrap();
    let compressed = z.finish().unwrap();
    refused(
        &compressed,
        &["refused global os.system", "evil.pkl (zlib-decompressed)"],
    );
}

#[test]
fn a_payload_inside_a_nested_object_array_stream_is_found() {
    // dtype O wrapper: the data is a nested pickle stream, which gets the same allow-list.
    let shape = P::proto(4).int(1).op(0x85);
    let wrapper = P::proto(4)
        .stack_global("joblib.numpy_pickle", "NumpyArrayWrapper")
        .empty_tuple()
        .newobj()
        .empty_dict()
        .mark()
        .str("subclass")
        .stack_global("numpy", "ndarray")
        .str("shape")
        .raw(&shape.0[2..])
        .str("order")
        .str("C")
        .str("dtype")
        .global("numpy", "dtype")
        .str("O8")
        .op(0x89)
        .op(0x88)
        .op(0x87)
        .reduce()
        .str("allow_mmap")
        .op(0x89)
        .op(b'u')
        .build();
    let nested = P::proto(2)
        .global("posix", "system")
        .str("id")
        .op(0x85)
        .reduce()
        .stop();
    let bytes = wrapper.raw(&nested).stop();
    refused(&bytes, &["refused global posix.system"]);
}

// --- shape of the object graph ---------------------------------------------------------------

#[test]
fn billion_laughs_memo_reuse_stays_small() {
    // L0 = []; Lk = [L(k-1)] * 10, for k = 1..=60: 10^60 paths, 61 lists.
    let mut p = P::proto(4).op(b']').memoize();
    for k in 0..60u8 {
        p = p.op(b']').mark();
        for _ in 0..10 {
            p = p.binget(k);
        }
        p = p.op(b'e').memoize();
    }
    for _ in 0..60 {
        p = p.op(b'0');
    }
    let bytes = p.stop();
    let start = Instant::now();
    let graph = read(&bytes).unwrap();
    assert!(graph.nodes.len() < 100, "{} nodes", graph.nodes.len());
    assert!(start.elapsed() < Duration::from_secs(2));
    refused(&bytes, &["the pickle holds a list"]);
}

#[test]
fn cycles_are_refused() {
    // l = []; l.append(l)
    let bytes = P::proto(4).op(b']').memoize().binget(0).op(b'a').stop();
    refused(&bytes, &["cycle"]);
    // An estimator whose state refers to itself.
    let bytes = P::proto(4)
        .stack_global("sklearn.linear_model._ridge", "Ridge")
        .empty_tuple()
        .newobj()
        .memoize()
        .empty_dict()
        .str("self")
        .binget(0)
        .setitem()
        .build()
        .stop();
    refused(&bytes, &["cycle"]);
}

#[test]
fn deep_nesting_is_refused() {
    // 50,000 nested lists: [[[[...]]]]
    let n = 50_000;
    let mut bytes = vec![0x80, 4];
    bytes.extend(std::iter::repeat_n(b']', n));
    bytes.extend(std::iter::repeat_n(b'a', n - 1));
    bytes.push(b'.');
    refused(&bytes, &["nesting deeper than 200"]);

    // 200,000 open lists exceed the stack limit; 200,000 MARKs the mark limit.
    let mut bytes = vec![0x80, 4];
    bytes.extend(std::iter::repeat_n(b']', 200_000));
    refused(&bytes, &["stack deeper than 100000"]);
    let mut bytes = vec![0x80, 4];
    bytes.extend(std::iter::repeat_n(b'(', 200_000));
    refused(&bytes, &["more than 100000 open MARKs"]);
}

#[test]
fn node_count_is_limited() {
    let limits = Limits {
        max_nodes: 1000,
        ..Limits::default()
    };
    let mut bytes = vec![0x80, 4, b']', b'('];
    bytes.extend(std::iter::repeat_n(b'N', 5000));
    bytes.extend_from_slice(b"e.");
    refused_with(&bytes, &limits, &["more than 1000 values"]);
}

#[test]
fn repeated_copies_of_one_array_hit_the_byte_budget() {
    // One 1 MiB buffer rebuilt into arrays 64 times through the memo.
    let limits = Limits {
        max_bytes: 16 << 20,
        ..Limits::default()
    };
    let mut p = P::proto(5)
        .op(0x8e)
        .raw(&(1u64 << 20).to_le_bytes())
        .raw(&vec![0u8; 1 << 20])
        .binput(0)
        .op(b'0')
        .dtype_f8()
        .binput(1)
        .op(b'0')
        .op(b']')
        .mark();
    for _ in 0..64 {
        p = p
            .stack_global("numpy._core.numeric", "_frombuffer")
            .mark()
            .binget(0)
            .binget(1)
            .int(1 << 17)
            .op(0x85)
            .str("C")
            .tuple()
            .reduce();
    }
    let bytes = p.op(b'e').stop();
    refused_with(&bytes, &limits, &["exceed 16777216 bytes in total"]);
}

// --- broken streams --------------------------------------------------------------------------

#[test]
fn stack_and_memo_misuse_is_refused() {
    refused(&P::proto(4).op(b't').stop(), &["no MARK"]);
    refused(&P::proto(4).op(b'u').stop(), &["no MARK"]);
    refused(&P::proto(4).op(b'e').stop(), &["no MARK"]);
    refused(&P::proto(4).op(b'0').stop(), &["stack underflow"]);
    refused(&P::proto(4).op(b'R').stop(), &["stack underflow"]);
    refused(
        &P::proto(4).binget(9).stop(),
        &["memo index 9 was never stored"],
    );
    refused(&P::proto(4).memoize().stop(), &["stack underflow"]);
    refused(
        &P::proto(4).op(b'N').mark().op(b'a').stop(),
        &["stack underflow"],
    );
    refused(
        &P::proto(4).empty_dict().mark().op(b'N').op(b'u').stop(),
        &["odd number"],
    );
    refused(
        &P::proto(4).op(b'N').op(b'N').stop(),
        &["values left on the stack"],
    );
    refused(&P::proto(4).op(b'N').op(b'a').stop(), &["stack underflow"]);
    refused(
        &P::proto(4).op(b']').op(b'N').setitem().stop(),
        &["stack underflow"],
    );
    refused(
        &P::proto(4).op(b'N').op(b'N').op(b'N').setitem().stop(),
        &["not a dict"],
    );
    refused(
        &P::proto(4).op(0x8c).raw(&[2, 0xff, 0xfe]).stop(),
        &["not valid UTF-8"],
    );
    refused(&P::proto(4).raw(b"cos").stop(), &["newline-terminated"]);
    refused(&P::proto(4).op(b'N').op(0x93).stop(), &["stack underflow"]);
    refused(
        &P::proto(4).op(b'N').op(b'N').op(0x93).stop(),
        &["two strings"],
    );
}

#[test]
fn every_prefix_of_real_files_is_refused_without_panic() {
    for name in [
        "linear.p2.pkl",
        "linear.p4.pkl",
        "linear.joblib",
        "gb_squared_error.p5.pkl",
    ] {
        let bytes = fixture(name);
        assert!(read(&bytes).is_ok(), "{name} itself must read");
        for len in 0..bytes.len() {
            let result = pickle::read_bytes(&bytes[..len], name, &Limits::default());
            assert!(result.is_err(), "{name} prefix of {len} bytes was accepted");
        }
    }
    // Compressed: a sample of prefixes (each decompresses from scratch).
    for name in [
        "linear.zlib.joblib",
        "linear.gz.joblib",
        "linear.bz2.joblib",
        "linear.xz.joblib",
        "linear.lzma.joblib",
        "linear.lz4.joblib",
    ] {
        let bytes = fixture(name);
        assert!(read(&bytes).is_ok(), "{name} itself must read");
        for len in (0..bytes.len()).step_by(7) {
            let result = pickle::read_bytes(&bytes[..len], name, &Limits::default());
            assert!(result.is_err(), "{name} prefix of {len} bytes was accepted");
        }
    }
}

#[test]
fn trailing_garbage_is_refused() {
    let mut bytes = fixture("linear.p4.pkl");
    bytes.extend_from_slice(b"\x80\x04cos\nsystem\n.");
    refused(&bytes, &["trailing data after STOP"]);
}

// --- compression -----------------------------------------------------------------------------

#[test]
fn decompression_bombs_hit_the_cap() {
    let limits = Limits {
        max_bytes: 1 << 20,
        ..Limits::default()
    };
    let mut zeros = vec![0u8; 8 << 20];
    zeros[0] = 0x80; // looks like a pickle start
    zeros[1] = 4;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&zeros).unwrap();
    let zlib = z.finish().unwrap();
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    g.write_all(&zeros).unwrap();
    let gzip = g.finish().unwrap();
    let mut b = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    b.write_all(&zeros).unwrap();
    let bz2 = b.finish().unwrap();
    let mut l = lz4_flex::frame::FrameEncoder::new(Vec::new());
    l.write_all(&zeros).unwrap();
    let lz4 = l.finish().unwrap();
    // lzma-rs only writes literal-coded streams, so these two were written by Python's lzma:
    // 16 MiB of zeros behind a pickle header.
    let xz = std::fs::read(hostile_file("bomb_16MiB.xz.joblib")).unwrap();
    let lzma = std::fs::read(hostile_file("bomb_16MiB.lzma.joblib")).unwrap();

    for (name, data, limits) in [
        ("zlib", &zlib, &limits),
        ("gzip", &gzip, &limits),
        ("bz2", &bz2, &limits),
        ("lz4", &lz4, &limits),
        ("xz", &xz, &limits),
        ("lzma", &lzma, &limits),
    ] {
        assert!(
            data.len() < (limits.max_bytes as usize),
            "{name} bomb is not compressed"
        );
        refused_with(
            data,
            limits,
            &[&format!(
                "{name} stream decompresses to more than {} bytes",
                limits.max_bytes
            )],
        );
    }
}

#[test]
fn compressed_streams_must_hold_a_pickle_and_old_joblib_is_refused() {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(b"cos\nsystem\n(S'id'\ntR.").unwrap();
    refused(
        &z.finish().unwrap(),
        &["does not hold a protocol 2-5 pickle"],
    );
    refused(b"ZF0x1c\x78\x9c", &["joblib < 0.10"]);
    refused(b"\x78\x9cnot zlib at all", &["corrupt zlib stream"]);
}

// --- unsupported but harmless models ---------------------------------------------------------

#[test]
fn other_losses_are_refused_by_name() {
    let cases = [
        (
            "gb_huber_sklearn1.2.p4.pkl",
            "GradientBoostingRegressor with loss=\"huber\"",
        ),
        (
            "gb_huber_sklearn1.9.joblib",
            "GradientBoostingRegressor with loss=\"huber\"",
        ),
    ];
    for (name, needle) in cases {
        let graph = pickle::read_file(&hostile_file(name), &Limits::default()).unwrap();
        let message = sklearn::extract(&graph).unwrap_err().to_string();
        assert!(message.contains(needle), "{name}: {message}");
    }
}

/// Issue 18: a linear model fitted on float32 data, once refused, is now accepted: its float32
/// `coef_`/`intercept_` widen exactly to the float64 values sklearn's `predict` uses.
#[test]
fn float32_linear_models_are_accepted() {
    let graph =
        pickle::read_file(&hostile_file("linear_float32.p4.pkl"), &Limits::default()).unwrap();
    let model = sklearn::extract(&graph).unwrap();
    assert_eq!(model.kind, "LinearRegression");
    let tools::estimator::Estimator::Linear(linear) = &model.estimator else {
        panic!("not linear: {:?}", model.estimator)
    };
    assert_eq!(linear.coef[0].len(), 4);
    assert!(
        linear.coef[0]
            .iter()
            .chain(&linear.intercept)
            .all(|v| f64::from(*v as f32) == *v),
        "float32 values widen exactly"
    );
}

// --- randomized mutations --------------------------------------------------------------------

fn seeds() -> Vec<Vec<u8>> {
    [
        "linear.p2.pkl",
        "linear.joblib",
        "decision_tree.p4.pkl",
        "gb_squared_error.p5.pkl",
        "gb_squared_error.joblib",
        "pipeline_scaler_ridge.zlib.joblib",
    ]
    .iter()
    .map(|n| fixture(n))
    .collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Remove(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len().max(1);
    match m {
        Mutation::Flip(i, b) => {
            if let Some(x) = bytes.get_mut(i % len) {
                *x ^= b;
            }
        }
        Mutation::Set(i, b) => {
            if let Some(x) = bytes.get_mut(i % len) {
                *x = *b;
            }
        }
        Mutation::Insert(i, b) => {
            let at = i % (bytes.len() + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let at = i % len;
            let end = (at + n).min(bytes.len());
            if at < end {
                bytes.drain(at..end);
            }
        }
        Mutation::Truncate(i) => bytes.truncate(i % len),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_fixtures_never_panic(
        seed in any::<prop::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        prop_assume!(!seeds.is_empty());
        let mut bytes = seed.get(&seeds).clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let start = Instant::now();
        if let Ok(graph) = pickle::read_bytes(&bytes, "mutated.pkl", &Limits::default()) {
            let _ = sklearn::extract(&graph);
        }
        prop_assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    }
}
