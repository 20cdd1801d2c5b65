//! The Aegis engine.
#![deny(missing_docs)]
