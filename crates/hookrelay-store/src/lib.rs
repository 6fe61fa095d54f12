//! Durable delivery queue and dead letters for hookrelay: embedded and Redis backends.
//!
//! This crate is the home of that part of hookrelay; it has no public items yet.
