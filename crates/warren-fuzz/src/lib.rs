//! What Warren's fuzz targets check, one module per parser of outside input.
//!
//! Each `check(data)` feeds arbitrary bytes to one parser and panics when a property breaks
//! (or the parser panics itself). The libFuzzer targets in `fuzz/` (run with
//! `cargo +nightly fuzz`, see `scripts/fuzz.sh`) are one call each, and `tests/corpus.rs`
//! replays the corpus kept in `fuzz/corpus/<target>/` through the same functions on stable
//! Rust, so the ordinary test command keeps every input the fuzzers found interesting.

pub mod client_message;
pub mod config;
pub mod envelope;
pub mod frames;
pub mod head;
pub mod signature;
pub mod user_data;

/// A property check: panics when the property breaks.
pub type Check = fn(&[u8]);

/// Every target, by the name of its corpus folder.
pub const TARGETS: &[(&str, Check)] = &[
    ("frames", frames::check),
    ("client_message", client_message::check),
    ("user_data", user_data::check),
    ("signature", signature::check),
    ("head", head::check),
    ("envelope", envelope::check),
    ("config", config::check),
];
