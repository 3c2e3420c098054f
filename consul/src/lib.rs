//! consul (being built).
