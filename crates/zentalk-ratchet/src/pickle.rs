//! Pickles.
