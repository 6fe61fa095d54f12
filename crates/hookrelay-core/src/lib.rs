// The README's quick start verifies a Meta WhatsApp callback: it is the crate's front page
// (and a doctest) when that provider is built, as it is by default.
#![cfg_attr(feature = "meta_whatsapp", doc = include_str!("../README.md"))]
#![cfg_attr(
    not(feature = "meta_whatsapp"),
    doc = "hookrelay-core: provider callback verification and normalization into one \
           webhook payload, and Standard Webhooks signing. The README (built with the \
           `meta_whatsapp` feature) has a quick start and the feature list."
)]
//!
//! ## Where things are
//!
//! [`Event`] ([`event`]) is the normalized model and [`payload`] renders it as a webhook
//! body. [`provider`] holds each provider's verifier and normalizer, reached through
//! [`Provider`] and [`Verifier`] by provider id; a callback is a [`CallbackRequest`], and
//! credentials are [`Secret`]s. [`signing`] signs and verifies Standard Webhooks.
//! [`multipart`] reads `multipart/form-data` bodies (Mailgun's Routes forward files).
//! [`limits`] bounds the depth and the number lengths of the JSON an event carries; an
//! event beyond them, or one a batch provider cannot normalize, is kept as [`Unparsed`].
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
pub mod limits;
mod mac;
pub mod multipart;
pub mod payload;
#[cfg(any(
    feature = "twilio",
    feature = "vonage",
    feature = "plivo",
    feature = "meta_whatsapp",
    feature = "gupshup",
    feature = "infobip",
    feature = "sinch",
    feature = "telnyx",
    feature = "messagebird",
    feature = "brevo",
    feature = "sparkpost"
))]
mod phone;
pub mod provider;
pub mod request;
pub mod secret;
pub mod signing;
pub mod timestamp;

pub use error::{NormalizeError, VerifyConfigError, VerifyError};
pub use event::{
    Channel, ChannelUser, ErrorInfo, Event, EventKind, EventType, InboundMessage, Location, Media,
    Raw, ReplyContext, Status, StatusUpdate,
};
pub use provider::{
    Acknowledgement, Context, Control, Normalized, Provider, Unparsed, Verifier, VerifyOptions,
    VerifySettings,
};
pub use request::CallbackRequest;
pub use secret::Secret;
