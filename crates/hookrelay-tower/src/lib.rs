//! Tower layers for outbound webhooks: throttle, rate limit, headers and Standard Webhooks signing.
//!
//! This crate is the home of that part of hookrelay; it has no public items yet.
