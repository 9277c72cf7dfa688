//! Test support: code that only tests, benchmarks, drills and the demo model's training
//! program use. Not part of medgate's API.
//!
//! Why a `#[doc(hidden)] pub` module rather than `#[cfg(test)]` or a cargo feature: the
//! integration tests (`tests/`), benchmarks (`benches/`) and `examples/train_demo_model.rs`
//! link the library as an ordinary dependency, where `cfg(test)` is off; a `testing` feature
//! would need a self dev-dependency and would build the library twice in the shared target
//! directory; and `medgate serve`'s hidden drill flags (`--chaos-*`, `--test-scorer`) ship in
//! the release binary on purpose. The rule instead: no pipeline stage (`protocol` ..
//! `verify`) and no other consumer imports this module; only `serve` (fault injection) and
//! the CLI's hidden flags do.
//!
//! | module | what |
//! |---|---|
//! | [`sample`] | a realistic sample evidence record and a hostile-string corpus for the report |
//! | [`chaos`] | fault injection for `medgate serve` |
//! | [`scorer`] | the mean-intensity scorer (the HTTP path without a model) |
//! | [`checkpoint`] | writing seeded CLIP checkpoints in the Hugging Face layout |

pub mod chaos;
pub mod checkpoint;
pub mod sample;
pub mod scorer;
