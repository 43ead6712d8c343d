//! Runnable examples of the ZenTalk crates live beside this file; see `examples/*.rs`.
