//! Feeds arbitrary bytes to the safe pickle reader and the sklearn extractor: neither may
//! panic, hang or allocate without bound, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tools::pickle::{self, Limits};

fuzz_target!(|data: &[u8]| {
    // Smaller caps than the defaults keep each run fast while exercising every limit path.
    let limits = Limits {
        max_bytes: 64 << 20,
        max_length: 64 << 20,
        max_nodes: 1_000_000,
        ..Limits::default()
    };
    if let Ok(graph) = pickle::read_bytes(data, "fuzz", &limits) {
        let _ = tools::sklearn::extract(&graph);
    }
});
