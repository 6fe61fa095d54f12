#![doc = include_str!("../README.md")]
//!
//! ## Where things are
//!
//! [`Event`] ([`event`]) is the normalized model and [`payload`] renders it as a webhook
//! body. [`provider`] holds each provider's verifier and normalizer, reached through
//! [`Provider`] and [`Verifier`] by provider id; a callback is a [`CallbackRequest`], and
//! credentials are [`Secret`]s. [`signing`] signs and verifies Standard Webhooks.
//!
//! ## Status mapping
//!
//! Every provider maps its vocabulary onto [`Status`] (`queued`, `sent`, `delivered`,
//! `seen`, `clicked`, `failed`, `bounced`, `complained`, `unsubscribed`). Unknown provider
//! values never fail a callback: an unknown status maps to `queued` marked
//! informational (so it never downgrades a later status) with the provider's event kept in
//! `vendor_response`. Each provider module documents its table.

pub mod error;
pub mod event;
mod mac;
pub mod payload;
#[cfg(any(
    feature = "twilio",
    feature = "vonage",
    feature = "plivo",
    feature = "meta_whatsapp",
    feature = "gupshup"
))]
mod phone;
pub mod provider;
pub mod request;
pub mod secret;
pub mod signing;
pub mod timestamp;

pub use error::{NormalizeError, VerifyConfigError, VerifyError};
pub use event::{
    Channel, ErrorInfo, Event, EventKind, EventType, InboundMessage, Location, Media, Raw,
    ReplyContext, Status, StatusUpdate,
};
pub use provider::{
    Acknowledgement, Context, Control, Normalized, Provider, Verifier, VerifyOptions,
    VerifySettings,
};
pub use request::CallbackRequest;
pub use secret::Secret;
