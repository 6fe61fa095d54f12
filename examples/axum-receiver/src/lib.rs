//! An axum service that receives signed Twilio and Meta WhatsApp callbacks without the
//! hookrelay sidecar: `hookrelay-tower`'s [`VerifyLayer`] checks each callback on its raw
//! body (401 with a one-line reason when it is not genuine, so the handler never sees
//! it), and the [`Callback`] extractor hands the handler the normalized events, the same
//! events the sidecar would deliver.
//!
//! The verify settings are the keys of a sidecar route's `verify:` (`auth_token` and
//! `public_url` for Twilio, `app_secret` and `verify_token` for Meta). Each route's policy
//! sits behind a [`VerifyHandle`]: [`Receiver::reload`] puts new settings in force for
//! the next request, as `main.rs` does on SIGHUP.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use hookrelay_core::{Event, Secret, VerifySettings};
use hookrelay_tower::verify::{Callback, CallbackPolicy, PolicyError, VerifyHandle, VerifyLayer};
use serde::Deserialize;
use tokio::sync::mpsc;

/// The receiver's settings file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where to listen, `IP:PORT`.
    pub listen: String,
    /// Twilio: `auth_token` and `public_url` (the URL Twilio calls, which it signs).
    pub twilio: Provider,
    /// Meta WhatsApp: `app_secret` and `verify_token` (for the subscription handshake).
    pub meta_whatsapp: Provider,
}

/// One provider's `verify:` keys, as in a sidecar route.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Provider(pub std::collections::BTreeMap<String, String>);

impl Provider {
    fn settings(&self) -> VerifySettings {
        self.0.iter().fold(VerifySettings::new(), |s, (k, v)| {
            s.with(k.as_str(), Secret::new(v.clone()))
        })
    }
}

/// What went wrong building a policy from the settings.
#[derive(Debug, thiserror::Error)]
#[error("{provider}: {source}")]
pub struct SettingsError {
    provider: &'static str,
    #[source]
    source: PolicyError,
}

fn policy(id: &'static str, p: &Provider) -> Result<CallbackPolicy, SettingsError> {
    CallbackPolicy::builtin(id, &p.settings()).map_err(|source| SettingsError {
        provider: id,
        source,
    })
}

/// The receiving side: one reloadable policy per route.
#[derive(Clone)]
pub struct Receiver {
    twilio: VerifyHandle,
    meta_whatsapp: VerifyHandle,
}

impl Receiver {
    /// Policies from `settings`.
    ///
    /// # Errors
    ///
    /// A provider whose settings lack a secret it needs (verification never passes
    /// because a secret is missing).
    pub fn new(settings: &Settings) -> Result<Self, SettingsError> {
        Ok(Self {
            twilio: VerifyHandle::new(policy("twilio", &settings.twilio)?),
            meta_whatsapp: VerifyHandle::new(policy("meta_whatsapp", &settings.meta_whatsapp)?),
        })
    }

    /// Puts `settings` in force for the next request; nothing changes when one is invalid.
    ///
    /// # Errors
    ///
    /// As [`Receiver::new`].
    pub fn reload(&self, settings: &Settings) -> Result<(), SettingsError> {
        let twilio = policy("twilio", &settings.twilio)?;
        let meta = policy("meta_whatsapp", &settings.meta_whatsapp)?;
        self.twilio.set(twilio);
        self.meta_whatsapp.set(meta);
        Ok(())
    }

    /// The routes: `POST /callbacks/twilio`, `GET|POST /callbacks/whatsapp`; every
    /// normalized event goes to `events`.
    pub fn router(&self, events: mpsc::UnboundedSender<Event>) -> Router {
        let twilio = Router::new()
            .route("/callbacks/twilio", post(receive))
            .route_layer(VerifyLayer::new(self.twilio.clone()));
        let whatsapp = Router::new()
            .route("/callbacks/whatsapp", get(receive).post(receive))
            .route_layer(VerifyLayer::new(self.meta_whatsapp.clone()));
        twilio.merge(whatsapp).with_state(events)
    }
}

/// A verified callback: its events go on, the provider gets the answer it expects
/// (empty TwiML for Twilio, the challenge for Meta's handshake).
async fn receive(
    State(events): State<mpsc::UnboundedSender<Event>>,
    callback: Callback,
) -> Response {
    for event in &callback.normalized.events {
        let _ = events.send(event.clone());
    }
    callback.answer()
}
