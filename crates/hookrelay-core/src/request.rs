//! The callback request as a provider sent it.

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use serde_json::Value;

use crate::NormalizeError;
#[cfg(any(
    feature = "postmark",
    feature = "mailgun",
    feature = "vonage",
    feature = "gupshup",
    feature = "generic",
    feature = "sinch",
    feature = "telnyx",
    feature = "messagebird",
    feature = "resend"
))]
use crate::{
    limits::{JsonLimits, TopLevel},
    provider::Unparsed,
};

/// A provider's callback: method, URI (path and query as received, or the absolute
/// public URL), headers and the raw body bytes. Signatures are checked on these bytes.
#[derive(Debug, Clone)]
pub struct CallbackRequest {
    /// HTTP method.
    pub method: Method,
    /// Request target: path and query (`/callbacks/twilio?x=1`) or an absolute URL.
    pub uri: Uri,
    /// Request headers.
    pub headers: HeaderMap,
    /// Raw body bytes, exactly as received.
    pub body: Bytes,
}

/// Most form fields [`CallbackRequest::form_pairs`] reads (about 8 MB of them at most):
/// providers send a few dozen.
pub const MAX_FORM_FIELDS: usize = 100_000;

impl CallbackRequest {
    /// A `POST` of `body` to `/` with no headers.
    #[must_use]
    pub fn post(body: impl Into<Bytes>) -> Self {
        Self {
            method: Method::POST,
            uri: Uri::from_static("/"),
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    /// Sets the `Content-Type` header (ignored when the value is not a valid header value).
    #[must_use]
    pub fn with_content_type(mut self, content_type: &str) -> Self {
        if let Ok(v) = http::HeaderValue::from_str(content_type) {
            self.headers.insert(http::header::CONTENT_TYPE, v);
        }
        self
    }

    /// The value of a header as text, if present and visible ASCII.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The media type of the body, lower-cased, without parameters (`application/json`).
    #[must_use]
    pub fn media_type(&self) -> Option<String> {
        let ct = self.header("content-type")?;
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        (!essence.is_empty()).then_some(essence)
    }

    /// True when the body is declared as JSON (`application/json`, `*/*+json`).
    #[must_use]
    pub fn is_json(&self) -> bool {
        self.media_type()
            .is_some_and(|m| m == "application/json" || m.ends_with("+json"))
    }

    /// True when the body is declared as `application/x-www-form-urlencoded`.
    #[must_use]
    pub fn is_form(&self) -> bool {
        self.media_type()
            .is_some_and(|m| m == "application/x-www-form-urlencoded")
    }

    /// The raw query string, if any.
    #[must_use]
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// Decoded query parameters in order.
    #[must_use]
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query().map(parse_form).unwrap_or_default()
    }

    /// Decoded `application/x-www-form-urlencoded` body parameters in order, the first
    /// [`MAX_FORM_FIELDS`] of them.
    ///
    /// Percent-decoding is lossy for invalid UTF-8 (replacement characters), never an error.
    /// Signature checks read the fields before the signature is known to be good, and each
    /// field costs some 80 bytes of memory however short it is (`a&a&…`, two bytes each),
    /// 40 times the body: a body of more fields is no provider's, and a signature check
    /// over the fields kept fails.
    #[must_use]
    pub fn form_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body)
            .take(MAX_FORM_FIELDS)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// Parses the body as JSON; an empty body is [`NormalizeError::EmptyBody`], one of more
    /// than [`MAX_JSON_VALUES`](crate::limits::MAX_JSON_VALUES) values a
    /// [`NormalizeError::Shape`] (refused before it is parsed).
    pub fn json(&self) -> Result<Value, NormalizeError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(NormalizeError::EmptyBody);
        }
        if !crate::limits::values_at_most(&self.body, crate::limits::MAX_JSON_VALUES) {
            return Err(NormalizeError::shape(
                "/",
                "a callback of at most 100000 JSON values",
            ));
        }
        serde_json::from_slice(&self.body).map_err(|source| NormalizeError::InvalidJson { source })
    }

    /// The whole body as one [`Unparsed`] event, when it is valid JSON with the provider's
    /// top-level shape (`top`) but beyond the default [`JsonLimits`]: for a provider whose
    /// body is one event, that event cannot be normalized, and is kept whole.
    ///
    /// `None` when the body is within the limits, or is not JSON, or not of that shape:
    /// then the provider reads it as usual (and refuses what is not its format). A body
    /// within the limits (the common case) is only scanned; one beyond them is then
    /// validated without being built (serde_json's skipping parser has no depth limit and
    /// reads numbers of any length).
    #[cfg(any(
        feature = "postmark",
        feature = "mailgun",
        feature = "vonage",
        feature = "gupshup",
        feature = "generic",
        feature = "sinch",
        feature = "telnyx",
        feature = "messagebird",
        feature = "resend"
    ))]
    pub(crate) fn beyond_limits(&self, top: TopLevel) -> Option<Unparsed> {
        let limits = JsonLimits::default();
        // The common case, within the limits, costs the scan alone.
        limits.check(&self.body).err()?;
        let text = std::str::from_utf8(&self.body).ok()?;
        let reason = limits.exceeded_by_json(text, top)?;
        Some(Unparsed::new(reason, text))
    }

    /// Rejects a declared content type that is not in `accepted` (an absent header is
    /// accepted: the provider's own format is assumed).
    pub fn expect_content_type(
        &self,
        provider: &'static str,
        accepted: &[&str],
        expected: &'static str,
    ) -> Result<(), NormalizeError> {
        match self.media_type() {
            None => Ok(()),
            Some(m) if accepted.contains(&m.as_str()) => Ok(()),
            Some(m) if accepted.contains(&"application/json") && m.ends_with("+json") => Ok(()),
            Some(found) => Err(NormalizeError::UnsupportedContentType {
                provider,
                found,
                expected,
            }),
        }
    }
}

/// Decodes `a=1&b=2` into pairs (`+` is a space, percent-decoding, lossy UTF-8).
#[must_use]
pub fn parse_form(input: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(input.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Form or query parameters as a JSON object (the provider's own event for
/// form-encoded providers). A repeated name keeps its first value.
#[must_use]
pub fn pairs_to_json(pairs: &[(String, String)]) -> Value {
    let mut map = serde_json::Map::new();
    for (k, v) in pairs {
        map.entry(k.clone())
            .or_insert_with(|| Value::String(v.clone()));
    }
    Value::Object(map)
}

/// The first value of parameter `name`.
#[must_use]
pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The first non-empty value of parameter `name`.
#[must_use]
pub fn param_nonempty<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    param(pairs, name).filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_strips_parameters() {
        let r = CallbackRequest::post("x").with_content_type("Text/Plain; charset=UTF-8");
        assert_eq!(r.media_type().as_deref(), Some("text/plain"));
    }

    #[test]
    fn form_decoding_handles_plus_percent_and_empty() {
        let r = CallbackRequest::post("a=1+2&b=&c=%E2%9C%93&d");
        let p = r.form_pairs();
        assert_eq!(param(&p, "a"), Some("1 2"));
        assert_eq!(param(&p, "b"), Some(""));
        assert_eq!(param_nonempty(&p, "b"), None);
        assert_eq!(param(&p, "c"), Some("✓"));
        assert_eq!(param(&p, "d"), Some(""));
    }

    #[test]
    fn a_form_is_read_up_to_its_hundred_thousandth_field() {
        let r = CallbackRequest::post("a&".repeat(300_000));
        assert_eq!(r.form_pairs().len(), MAX_FORM_FIELDS);
        let r = CallbackRequest::post("a=1&".repeat(MAX_FORM_FIELDS));
        assert_eq!(r.form_pairs().len(), MAX_FORM_FIELDS);
    }

    #[test]
    fn a_body_of_too_many_json_values_is_refused_unparsed() {
        let many = |n: usize| CallbackRequest::post(format!("[{}0]", "0,".repeat(n - 1)));
        assert!(many(crate::limits::MAX_JSON_VALUES - 1).json().is_ok());
        let e = many(crate::limits::MAX_JSON_VALUES + 1)
            .json()
            .expect_err("too many");
        assert_eq!(e.kind(), "shape", "{e}");
        // Commas and brackets inside strings are text.
        let text = format!(r#"{{"a":"{}"}}"#, ",[{".repeat(200_000));
        assert!(CallbackRequest::post(text).json().is_ok());
    }

    #[test]
    fn empty_json_body_is_an_error() {
        assert!(matches!(
            CallbackRequest::post("  ").json(),
            Err(NormalizeError::EmptyBody)
        ));
    }
}
