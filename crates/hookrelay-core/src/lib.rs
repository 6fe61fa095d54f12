//! hookrelay-core: provider callbacks in, one webhook payload out.
//!
//! This crate turns the delivery-status and inbound-message callbacks of email, SMS and
//! WhatsApp providers into one normalized [`Event`] model, renders events as webhook
//! payloads ([`payload`]: the `suprsend` format by default, or `standard`), checks each
//! provider's signature scheme ([`provider`]), and signs outgoing webhooks with
//! Standard Webhooks ([`signing`]).
//!
//! It is pure: no I/O, no async runtime, no clock of its own (the current time is always a
//! parameter). It is not the sidecar: routing, storage and delivery live in the other
//! hookrelay crates.
//!
//! # Status mapping
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
