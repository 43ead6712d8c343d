//! Sender-key groups.
