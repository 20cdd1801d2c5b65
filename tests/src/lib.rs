//! Aegis test kit.
