//! The hookrelay YAML configuration: model, validation, compiled snapshot and file watcher.
//!
//! This crate is the home of that part of hookrelay; it has no public items yet.
