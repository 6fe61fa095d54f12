//! What the form-encoded messaging providers (Twilio, Plivo) share: the public URL they
//! sign and how it is rebuilt from a request, how a callback's parameters and correlation
//! ids are read (the `POST` form, or the query of a `GET`), and the message type of a
//! media content type.
//!
//! Each provider keeps its own signature scheme (what is signed, with which hash, which
//! URL variants are tried); only the inputs of those schemes live here.

#[cfg(any(feature = "twilio", feature = "plivo"))]
use http::Method;
#[cfg(any(feature = "twilio", feature = "plivo"))]
use serde_json::{Map, Value};

#[cfg(any(feature = "twilio", feature = "plivo"))]
use crate::NormalizeError;
use crate::{CallbackRequest, VerifyConfigError, VerifyError};

#[cfg(any(feature = "twilio", feature = "plivo"))]
/// A callback's parameters and its correlation ids.
pub(crate) type ReadParams = (Vec<(String, String)>, Map<String, Value>);

/// The media type of form-encoded callbacks.
pub(crate) const FORM: &str = "application/x-www-form-urlencoded";

/// Validates a `public_url` setting: an absolute `http://` or `https://` URL with a host.
pub(crate) fn parse_public_url(
    provider: &'static str,
    value: &str,
) -> Result<String, VerifyConfigError> {
    let v = value.trim();
    let invalid = |reason: &str| VerifyConfigError::Invalid {
        provider,
        key: "public_url",
        reason: reason.to_owned(),
    };
    let (scheme, rest) = v
        .split_once("://")
        .ok_or_else(|| invalid("must be an absolute http:// or https:// URL"))?;
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return Err(invalid("must be an absolute http:// or https:// URL"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err(invalid("has no host"));
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains whitespace"));
    }
    Ok(v.to_owned())
}

/// The URL a provider called, as signed text (without fragment), plus the fragment of
/// `public_url` if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallbackUrl {
    /// `scheme://authority/path[?query]`.
    pub(crate) url: String,
    /// The fragment of `public_url` (after `#`), if any.
    pub(crate) fragment: Option<String>,
}

/// The URL the provider called: `public_url` (scheme, authority, path) with the request's
/// query string (or `public_url`'s own query when the request has none), else the request
/// target when it is absolute.
pub(crate) fn callback_url(
    provider: &'static str,
    public_url: Option<&str>,
    req: &CallbackRequest,
) -> Result<CallbackUrl, VerifyError> {
    let req_query = req.uri.query().filter(|q| !q.is_empty());
    if let Some(p) = public_url {
        let (p, fragment) = match p.split_once('#') {
            Some((u, f)) => (u, Some(f.to_owned())),
            None => (p, None),
        };
        let (base, own_query) = match p.split_once('?') {
            Some((b, q)) => (b, Some(q).filter(|q| !q.is_empty())),
            None => (p, None),
        };
        let mut url = base.to_owned();
        if let Some(q) = req_query.or(own_query) {
            url.push('?');
            url.push_str(q);
        }
        return Ok(CallbackUrl { url, fragment });
    }
    match (req.uri.scheme_str(), req.uri.authority()) {
        (Some(scheme), Some(authority)) => {
            let mut url = format!("{scheme}://{authority}{}", req.uri.path());
            if let Some(q) = req_query {
                url.push('?');
                url.push_str(q);
            }
            Ok(CallbackUrl {
                url,
                fragment: None,
            })
        }
        _ => Err(VerifyError::Unreadable(format!(
            "{provider} needs verify.public_url"
        ))),
    }
}

#[cfg(any(feature = "twilio", feature = "plivo"))]
/// The parameters of a form-encoded callback (the `POST` body, or the query of a `GET`)
/// and its correlation ids: the callback URL's query parameters that are not the
/// provider's own (`own`); on a `GET`, where the provider's parameters share the query,
/// also only names that are not capitalized as the provider's are.
pub(crate) fn read_form_params(
    req: &CallbackRequest,
    provider: &'static str,
    own: impl Fn(&str) -> bool,
    json_hint: &'static str,
) -> Result<ReadParams, NormalizeError> {
    if req.method == Method::GET {
        let params = req.query_pairs();
        if params.is_empty() {
            return Err(NormalizeError::MissingField(
                "query parameters (GET callback)".into(),
            ));
        }
        let correlation = correlation_of(&params, |k| {
            !own(k) && !k.starts_with(|c: char| c.is_ascii_uppercase())
        });
        Ok((params, correlation))
    } else if req.method == Method::POST {
        req.expect_content_type(provider, &[FORM], FORM)?;
        if req.body.iter().all(u8::is_ascii_whitespace) {
            return Err(NormalizeError::EmptyBody);
        }
        if looks_like_json(&req.body) {
            return Err(NormalizeError::shape("body", json_hint));
        }
        let correlation = correlation_of(&req.query_pairs(), |k| !own(k));
        Ok((req.form_pairs(), correlation))
    } else {
        Err(NormalizeError::UnsupportedMethod {
            provider,
            method: req.method.to_string(),
        })
    }
}

#[cfg(any(feature = "twilio", feature = "plivo"))]
/// True when the body starts (after whitespace) with `{` or `[`.
fn looks_like_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

#[cfg(any(feature = "twilio", feature = "plivo"))]
/// Query parameters kept as correlation ids (first value of a repeated name).
fn correlation_of(pairs: &[(String, String)], keep: impl Fn(&str) -> bool) -> Map<String, Value> {
    let mut map = Map::new();
    for (k, v) in pairs {
        if keep(k) {
            map.entry(k.clone())
                .or_insert_with(|| Value::String(v.clone()));
        }
    }
    map
}

#[cfg(any(feature = "twilio", feature = "plivo"))]
/// The inbound message type of a media content type.
pub(crate) fn media_kind(content_type: Option<&str>) -> &'static str {
    let ct = content_type.unwrap_or("").trim().to_ascii_lowercase();
    if ct.starts_with("image/") {
        "image"
    } else if ct.starts_with("audio/") {
        "audio"
    } else if ct.starts_with("video/") {
        "video"
    } else {
        "document"
    }
}

// The tests read forms as Twilio and Plivo post them.
#[cfg(all(test, any(feature = "twilio", feature = "plivo")))]
mod tests {
    use super::*;
    use http::Uri;

    fn request(method: Method, uri: &str, body: &str, content_type: &str) -> CallbackRequest {
        let mut req = CallbackRequest::post(body.to_owned()).with_content_type(content_type);
        req.method = method;
        req.uri = uri.parse::<Uri>().expect("uri");
        req
    }

    #[test]
    fn public_url_must_be_absolute_http_with_a_host() {
        for ok in [
            "https://notify.example.com/cb",
            "  http://notify.example.com:8080/cb?x=1#f  ",
            "HTTPS://u:p@notify.example.com",
        ] {
            assert_eq!(parse_public_url("twilio", ok).expect(ok), ok.trim(), "{ok}");
        }
        for bad in [
            "notify.example.com/cb",
            "ftp://notify.example.com/cb",
            "https:///cb",
            "https://:443/cb",
            "https://user@/cb",
            "https://notify.example.com/a b",
            "",
        ] {
            assert!(parse_public_url("plivo", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn callback_url_takes_the_request_query_over_the_public_urls() {
        let req = request(Method::POST, "/cb?a=1", "", FORM);
        let url =
            callback_url("twilio", Some("https://h.example/cb?own=2#frag"), &req).expect("url");
        assert_eq!(url.url, "https://h.example/cb?a=1");
        assert_eq!(url.fragment.as_deref(), Some("frag"));
        let bare = request(Method::POST, "/cb", "", FORM);
        let url = callback_url("twilio", Some("https://h.example/cb?own=2"), &bare).expect("url");
        assert_eq!(url.url, "https://h.example/cb?own=2");
        assert_eq!(url.fragment, None);
        let empty_query = request(Method::POST, "/cb?", "", FORM);
        let url = callback_url("twilio", Some("https://h.example/cb?"), &empty_query).expect("url");
        assert_eq!(url.url, "https://h.example/cb");
    }

    #[test]
    fn callback_url_without_public_url_needs_an_absolute_target() {
        let absolute = request(Method::POST, "https://h.example:8443/cb?a=1", "", FORM);
        assert_eq!(
            callback_url("plivo", None, &absolute).expect("url").url,
            "https://h.example:8443/cb?a=1"
        );
        let relative = request(Method::POST, "/cb?a=1", "", FORM);
        let err = callback_url("plivo", None, &relative).expect_err("relative");
        assert!(
            err.to_string().contains("plivo needs verify.public_url"),
            "{err}"
        );
    }

    #[test]
    fn post_reads_the_form_and_the_url_query_as_correlation() {
        let req = request(
            Method::POST,
            "/cb?distinct_id=u1&own=x&distinct_id=u2&Upper=kept",
            "MessageSid=SM1&To=%2B1555",
            FORM,
        );
        let (params, correlation) =
            read_form_params(&req, "twilio", |k| k == "own", "form").expect("params");
        assert_eq!(
            params,
            vec![
                ("MessageSid".to_owned(), "SM1".to_owned()),
                ("To".to_owned(), "+1555".to_owned())
            ]
        );
        assert_eq!(
            Value::Object(correlation),
            serde_json::json!({"distinct_id": "u1", "Upper": "kept"})
        );
    }

    #[test]
    fn get_keeps_only_lower_case_names_that_are_not_the_providers() {
        let req = request(
            Method::GET,
            "/cb?MessageSid=SM1&distinct_id=u1&requester_ip=1.2.3.4",
            "",
            FORM,
        );
        let (params, correlation) =
            read_form_params(&req, "plivo", |k| k == "requester_ip", "form").expect("params");
        assert_eq!(params.len(), 3);
        assert_eq!(
            Value::Object(correlation),
            serde_json::json!({"distinct_id": "u1"})
        );
        let empty = request(Method::GET, "/cb", "", FORM);
        assert!(matches!(
            read_form_params(&empty, "plivo", |_| false, "form"),
            Err(NormalizeError::MissingField(_))
        ));
    }

    #[test]
    fn bodies_that_are_not_a_form_are_refused() {
        let own = |_: &str| false;
        let json = request(Method::POST, "/cb", " {\"a\":1}", FORM);
        assert!(matches!(
            read_form_params(&json, "twilio", own, "form please"),
            Err(NormalizeError::Shape { .. })
        ));
        let array = request(Method::POST, "/cb", "[1]", FORM);
        assert!(read_form_params(&array, "twilio", own, "form").is_err());
        let blank = request(Method::POST, "/cb", " \n", FORM);
        assert!(matches!(
            read_form_params(&blank, "twilio", own, "form"),
            Err(NormalizeError::EmptyBody)
        ));
        let typed = request(Method::POST, "/cb", "a=1", "application/json");
        assert!(matches!(
            read_form_params(&typed, "twilio", own, "form"),
            Err(NormalizeError::UnsupportedContentType { .. })
        ));
        let put = request(Method::PUT, "/cb", "a=1", FORM);
        assert!(matches!(
            read_form_params(&put, "twilio", own, "form"),
            Err(NormalizeError::UnsupportedMethod { .. })
        ));
    }

    #[test]
    fn media_kind_by_content_type() {
        assert_eq!(media_kind(Some("image/jpeg")), "image");
        assert_eq!(media_kind(Some(" Audio/OGG ")), "audio");
        assert_eq!(media_kind(Some("video/mp4")), "video");
        assert_eq!(media_kind(Some("application/pdf")), "document");
        assert_eq!(media_kind(Some("")), "document");
        assert_eq!(media_kind(None), "document");
    }
}
