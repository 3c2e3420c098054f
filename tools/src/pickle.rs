//! Safe pickle reading (see `pickle/value.rs` for the object model).

pub mod value;

pub use value::{Dtype, Field, Global, Graph, NdArray, NodeId, Value};
