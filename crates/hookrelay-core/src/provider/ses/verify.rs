//! The SNS message signature of an SES notification (see the `ses` module docs).

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use rsa::PublicKey as RsaPublicKey;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Map, Value};
use sha1::Sha1;
use sha2::Sha256;
use x509_cert::Certificate;
use x509_cert::der::{DecodePem as _, Encode as _};

use super::{PROVIDER, env_str, is_raw_delivery};
use crate::provider::{VerifyOptions, VerifySettings};
use crate::{CallbackRequest, VerifyConfigError, VerifyError};

const KNOWN_KEYS: &[&str] = &["cert_pem", "fetch_cert", "topic_arn"];

/// A parsed SNS signing certificate: its RSA public key and validity period.
#[derive(Clone)]
struct SigningCert {
    key: RsaPublicKey,
    not_before: i64,
    not_after: i64,
}

impl fmt::Debug for SigningCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningCert")
            .field("bits", &(self.key.size() * 8))
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl SigningCert {
    fn from_pem(pem: &str) -> Result<Self, String> {
        let cert = Certificate::from_pem(pem.trim().as_bytes())
            .map_err(|e| format!("not a PEM X.509 certificate: {e}"))?;
        let tbs = cert.tbs_certificate();
        let spki = tbs
            .subject_public_key_info()
            .to_der()
            .map_err(|e| format!("cannot encode the public key: {e}"))?;
        let key = RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| format!("not an RSA public key: {e}"))?;
        let secs = |t: &x509_cert::time::Time| {
            i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
        };
        let validity = tbs.validity();
        Ok(Self {
            key,
            not_before: secs(&validity.not_before),
            not_after: secs(&validity.not_after),
        })
    }

    fn check_validity(&self, opts: &VerifyOptions) -> Result<(), VerifyError> {
        if let Some(now) = opts.now_secs {
            if now < self.not_before {
                return Err(VerifyError::Certificate(
                    "certificate is not valid yet".into(),
                ));
            }
            if now > self.not_after {
                return Err(VerifyError::Certificate("certificate has expired".into()));
            }
        }
        Ok(())
    }
}

/// SNS message-signature check against a signing certificate supplied offline.
///
/// Holds the parsed certificate (public data, parsed once) and the topics it takes;
/// `Debug` prints neither key material nor settings values.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The certificate supplied offline; `None` when the caller fetches it (`fetch_cert`).
    cert: Option<Arc<SigningCert>>,
    /// The topics whose messages are taken (`topic_arn`, never empty): SNS signs the
    /// messages of every AWS account's topics with the same certificates, so the signature
    /// alone says a message came from SNS, not from whose topic.
    topic_arns: Vec<String>,
}

impl Verifier {
    /// Builds the verifier from the `verify:` settings: `cert_pem` (parsed here) or
    /// `fetch_cert`, and `topic_arn` (required: one topic ARN, or several separated by
    /// commas).
    pub fn from_settings(settings: &VerifySettings) -> Result<Self, VerifyConfigError> {
        settings.only(PROVIDER, KNOWN_KEYS)?;
        let fetch = match settings
            .get("fetch_cert")
            .map(|v| v.expose().trim().to_owned())
        {
            None => false,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(_) => {
                return Err(VerifyConfigError::Invalid {
                    provider: PROVIDER,
                    key: "fetch_cert",
                    reason: "must be true or false".into(),
                });
            }
        };
        let cert = match settings.get("cert_pem") {
            Some(pem) => Some(Arc::new(SigningCert::from_pem(pem.expose()).map_err(
                |reason| VerifyConfigError::Invalid {
                    provider: PROVIDER,
                    key: "cert_pem",
                    reason,
                },
            )?)),
            None if fetch => None,
            None => {
                return Err(VerifyConfigError::Missing {
                    provider: PROVIDER,
                    key: "cert_pem",
                });
            }
        };
        let topic_arns = topic_arns(settings)?;
        Ok(Self { cert, topic_arns })
    }

    /// Checks the SNS signature of the envelope and that its topic is one configured.
    pub fn verify(&self, req: &CallbackRequest, opts: &VerifyOptions) -> Result<(), VerifyError> {
        match &self.cert {
            Some(cert) => verify_envelope(req, cert, Some(&self.topic_arns), opts),
            None => Err(VerifyError::Certificate(
                "no certificate supplied (fetch_cert: the caller must fetch SigningCertURL)".into(),
            )),
        }
    }

    /// True when the certificate is fetched by the caller (`fetch_cert: true` and no
    /// `cert_pem`).
    #[must_use]
    pub fn fetches_cert(&self) -> bool {
        self.cert.is_none()
    }

    /// Checks `req` with a certificate the caller fetched from [`signing_cert_url`], and
    /// the configured topic.
    pub fn verify_with_cert_pem(
        &self,
        req: &CallbackRequest,
        pem: &str,
        opts: &VerifyOptions,
    ) -> Result<(), VerifyError> {
        let cert = SigningCert::from_pem(pem).map_err(VerifyError::Certificate)?;
        verify_envelope(req, &cert, Some(&self.topic_arns), opts)
    }
}

/// The `topic_arn` setting: one topic ARN or several separated by commas, each
/// `arn:<partition>:sns:<region>:<account>:<name>`.
fn topic_arns(settings: &VerifySettings) -> Result<Vec<String>, VerifyConfigError> {
    let Some(value) = settings.get("topic_arn") else {
        return Err(VerifyConfigError::Missing {
            provider: PROVIDER,
            key: "topic_arn",
        });
    };
    let arns: Vec<String> = value
        .expose()
        .split(',')
        .map(str::trim)
        .filter(|arn| !arn.is_empty())
        .map(str::to_owned)
        .collect();
    if arns.is_empty() {
        return Err(VerifyConfigError::Missing {
            provider: PROVIDER,
            key: "topic_arn",
        });
    }
    for arn in &arns {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let well_formed = parts.len() == 6
            && parts[0] == "arn"
            && parts[2] == "sns"
            && parts.iter().all(|p| !p.is_empty());
        if !well_formed {
            return Err(VerifyConfigError::Invalid {
                provider: PROVIDER,
                key: "topic_arn",
                reason: format!(
                    "{arn:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
                ),
            });
        }
    }
    Ok(arns)
}

/// Checks the SNS signature of `req` with the certificate `pem` (PEM text), for a caller
/// that fetched the certificate from [`signing_cert_url`] itself. No topic check.
pub fn verify_with_cert_pem(
    req: &CallbackRequest,
    pem: &str,
    opts: &VerifyOptions,
) -> Result<(), VerifyError> {
    let cert = SigningCert::from_pem(pem).map_err(VerifyError::Certificate)?;
    verify_envelope(req, &cert, None, opts)
}

/// The envelope's `SigningCertURL` (or `SigningCertUrl`), after checking it is `https`, on
/// an SNS host (`^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$`), with no user info or
/// non-default port, and a path ending in `.pem`.
pub fn signing_cert_url(req: &CallbackRequest) -> Result<String, VerifyError> {
    let envelope = signed_envelope(req)?;
    cert_url_of(&envelope)
}

/// The exact string SNS signed for the envelope in `body` (see the module docs).
pub fn string_to_sign(body: &[u8]) -> Result<String, VerifyError> {
    let envelope = parse_envelope_for_verify(body)?;
    string_to_sign_of(&envelope)
}

/// Most values an SNS envelope is read with before its signature is checked: it has a dozen
/// string members (the SES document is one of them, a string).
const MAX_ENVELOPE_VALUES: usize = 1_000;

fn parse_envelope_for_verify(body: &[u8]) -> Result<Map<String, Value>, VerifyError> {
    if !crate::limits::values_at_most(body, MAX_ENVELOPE_VALUES) {
        return Err(VerifyError::Unreadable(format!(
            "SNS envelope of more than {MAX_ENVELOPE_VALUES} JSON values"
        )));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(VerifyError::Unreadable(
            "SNS envelope is not a JSON object".into(),
        )),
        Err(e) => Err(VerifyError::Unreadable(format!(
            "SNS envelope is not JSON: {e}"
        ))),
    }
}

/// The parsed envelope of a request that claims to be signed.
fn signed_envelope(req: &CallbackRequest) -> Result<Map<String, Value>, VerifyError> {
    if is_raw_delivery(req) {
        return Err(VerifyError::Missing(
            "SNS raw message delivery carries no signature",
        ));
    }
    parse_envelope_for_verify(&req.body)
}

fn verify_envelope(
    req: &CallbackRequest,
    cert: &SigningCert,
    topic_arns: Option<&[String]>,
    opts: &VerifyOptions,
) -> Result<(), VerifyError> {
    let envelope = signed_envelope(req)?;
    let signature = match envelope.get("Signature") {
        None | Some(Value::Null) => return Err(VerifyError::Missing("Signature")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(VerifyError::Missing("Signature"));
        }
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(VerifyError::Malformed("Signature is not a string".into())),
    };
    let version = match envelope.get("SignatureVersion") {
        None | Some(Value::Null) => return Err(VerifyError::Missing("SignatureVersion")),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(VerifyError::Malformed(
                "SignatureVersion is not a string".into(),
            ));
        }
    };
    cert_url_of(&envelope)?;
    let sts = string_to_sign_of(&envelope)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|e| VerifyError::Malformed(format!("Signature is not base64: {e}")))?;
    cert.check_validity(opts)?;
    match version.as_str() {
        "1" => rsa_pkcs1v15_verify::<Sha1>(&cert.key, sts.as_bytes(), &sig)?,
        "2" => rsa_pkcs1v15_verify::<Sha256>(&cert.key, sts.as_bytes(), &sig)?,
        other => {
            return Err(VerifyError::Malformed(format!(
                "unsupported SignatureVersion {other:?} (expected 1 or 2)"
            )));
        }
    }
    if let Some(expected) = topic_arns {
        // Topic names are not secret; the signature was already checked in full.
        let topic = env_str(&envelope, &["TopicArn"]);
        if !expected.iter().any(|arn| Some(arn.as_str()) == topic) {
            return Err(VerifyError::Mismatch);
        }
    }
    Ok(())
}

/// RSASSA-PKCS1-v1_5 verification of `message` with the digest of SignatureVersion.
fn rsa_pkcs1v15_verify<D>(key: &RsaPublicKey, message: &[u8], sig: &[u8]) -> Result<(), VerifyError>
where
    D: sha2::Digest + rsa::pkcs8::AssociatedOid,
{
    use rsa::signature::Verifier as _;
    let sig = rsa::pkcs1v15::Signature::try_from(sig).map_err(|_| VerifyError::Mismatch)?;
    rsa::pkcs1v15::VerifyingKey::<D>::new(key.clone())
        .verify(message, &sig)
        .map_err(|_| VerifyError::Mismatch)
}

fn cert_url_of(envelope: &Map<String, Value>) -> Result<String, VerifyError> {
    let raw = env_str(envelope, &["SigningCertURL", "SigningCertUrl"])
        .ok_or(VerifyError::Missing("SigningCertURL"))?;
    let url = url::Url::parse(raw.trim())
        .map_err(|e| VerifyError::Certificate(format!("SigningCertURL is not a URL: {e}")))?;
    if url.scheme() != "https" {
        return Err(VerifyError::Certificate(
            "SigningCertURL is not https".into(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() || url.port().is_some() {
        return Err(VerifyError::Certificate(
            "SigningCertURL has user info or a port".into(),
        ));
    }
    let host = url.host_str().unwrap_or_default();
    if !is_sns_host(host) {
        return Err(VerifyError::Certificate(format!(
            "SigningCertURL host {host:?} is not an SNS host"
        )));
    }
    if !url.path().ends_with(".pem") {
        return Err(VerifyError::Certificate(
            "SigningCertURL path does not end in .pem".into(),
        ));
    }
    Ok(url.to_string())
}

/// `^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$`
fn is_sns_host(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("sns.") else {
        return false;
    };
    let middle = rest
        .strip_suffix(".amazonaws.com.cn")
        .or_else(|| rest.strip_suffix(".amazonaws.com"));
    middle
        .is_some_and(|m| m.len() >= 3 && m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fn string_to_sign_of(envelope: &Map<String, Value>) -> Result<String, VerifyError> {
    // (name in the string-to-sign, accepted spellings, required)
    type Field = (&'static str, &'static [&'static str], bool);
    const NOTIFICATION: &[Field] = &[
        ("Message", &["Message"], true),
        ("MessageId", &["MessageId"], true),
        ("Subject", &["Subject"], false),
        ("Timestamp", &["Timestamp"], true),
        ("TopicArn", &["TopicArn"], true),
        ("Type", &["Type"], true),
    ];
    const CONFIRMATION: &[Field] = &[
        ("Message", &["Message"], true),
        ("MessageId", &["MessageId"], true),
        ("SubscribeURL", &["SubscribeURL", "SubscribeUrl"], true),
        ("Timestamp", &["Timestamp"], true),
        ("Token", &["Token"], true),
        ("TopicArn", &["TopicArn"], true),
        ("Type", &["Type"], true),
    ];
    let ty = match envelope.get("Type") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(VerifyError::Unreadable("SNS envelope has no Type".into())),
    };
    let fields = match ty {
        "Notification" => NOTIFICATION,
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => CONFIRMATION,
        other => {
            return Err(VerifyError::Unreadable(format!(
                "unknown SNS message Type {other:?}"
            )));
        }
    };
    let mut out = String::new();
    for (name, spellings, required) in fields {
        let value = spellings
            .iter()
            .find_map(|k| envelope.get(*k).filter(|v| !v.is_null()));
        match value {
            Some(Value::String(s)) => {
                out.push_str(name);
                out.push('\n');
                out.push_str(s);
                out.push('\n');
            }
            Some(_) => {
                return Err(VerifyError::Unreadable(format!("{name} is not a string")));
            }
            None if *required => {
                return Err(VerifyError::Unreadable(format!(
                    "SNS envelope has no {name}"
                )));
            }
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::RAW_DELIVERY_HEADER;
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    const OTHER_CERT: &str = include_str!("../../../tests/fixtures/ses/other_cert.pem");
    const STS_SELF_CONFIRMATION: &str = include_str!(
        "../../../tests/fixtures/ses/selfsigned_subscription_confirmation_v2.string_to_sign.txt"
    );
    /// 2022-07-29T00:00:00Z, inside the SNS certificate's validity.
    const IN_2022: i64 = 1_659_052_800;
    /// 2030-01-01T00:00:00Z: the SNS certificate has expired, `other_cert.pem` is valid.
    const IN_2030: i64 = 1_893_456_000;
    fn at(now: i64) -> VerifyOptions {
        VerifyOptions {
            now_secs: Some(now),
            tolerance_secs: None,
        }
    }

    #[test]
    fn string_to_sign_matches_the_vectors_byte_for_byte() {
        for (body, sts) in VECTORS {
            assert_eq!(string_to_sign(body.as_bytes()).expect("sts"), sts);
        }
        assert_eq!(
            string_to_sign(SELF_CONFIRMATION.as_bytes()).expect("sts"),
            STS_SELF_CONFIRMATION
        );
    }

    #[test]
    fn real_sns_vectors_verify() {
        let v = verifier(SNS_CERT);
        for (body, _) in VECTORS {
            v.verify(&sns(body), &recorded())
                .expect("recorded vector verifies");
            v.verify(&sns(body), &at(IN_2022))
                .expect("verifies inside validity");
            verify_with_cert_pem(&sns(body), SNS_CERT, &recorded()).expect("with pem");
        }
    }

    #[test]
    fn fetch_mode_fails_closed_alone_and_verifies_with_the_fetched_cert() {
        assert!(Verifier::from_settings(&VerifySettings::new()).is_err());
        assert!(
            Verifier::from_settings(&VerifySettings::new().with("fetch_cert", "maybe")).is_err()
        );
        assert!(
            Verifier::from_settings(&VerifySettings::new().with("fetch_cert", "false")).is_err()
        );
        let v = Verifier::from_settings(
            &VerifySettings::new()
                .with("fetch_cert", "true")
                .with("topic_arn", TOPICS),
        )
        .expect("fetch mode");
        assert!(v.fetches_cert());
        assert!(!verifier(SNS_CERT).fetches_cert());
        for (body, _) in VECTORS {
            assert!(matches!(
                v.verify(&sns(body), &recorded()),
                Err(VerifyError::Certificate(_))
            ));
            v.verify_with_cert_pem(&sns(body), SNS_CERT, &recorded())
                .expect("verifies with the fetched certificate");
            let mut tampered = body.to_string();
            tampered = tampered.replacen("Hello", "Jello", 1);
            assert!(
                v.verify_with_cert_pem(&sns(&tampered), SNS_CERT, &recorded())
                    .is_err()
            );
        }
    }

    #[test]
    fn expired_certificate_fails_only_with_a_clock() {
        let v = verifier(SNS_CERT);
        for (body, _) in VECTORS {
            assert!(matches!(
                v.verify(&sns(body), &at(IN_2030)),
                Err(VerifyError::Certificate(_))
            ));
            assert!(matches!(
                v.verify(&sns(body), &at(1_500_000_000)),
                Err(VerifyError::Certificate(_))
            ));
        }
    }

    #[test]
    fn tampered_body_fails() {
        let v = verifier(SNS_CERT);
        for (body, _) in VECTORS {
            for key in ["Message", "MessageId", "Timestamp", "TopicArn"] {
                let t = edit(body, |m| {
                    let old = m[key].as_str().expect("str").to_owned();
                    m.insert(key.into(), Value::String(format!("{old}x")));
                });
                assert!(
                    matches!(v.verify(&sns(&t), &recorded()), Err(VerifyError::Mismatch)),
                    "{key}"
                );
            }
            // Adding a Subject changes the string-to-sign.
            let t = edit(body, |m| {
                m.insert("Subject".into(), json!("injected"));
            });
            assert!(matches!(
                v.verify(&sns(&t), &recorded()),
                Err(VerifyError::Mismatch)
            ));
            // The other hash algorithm.
            let t = edit(body, |m| {
                let other = if m["SignatureVersion"] == "1" {
                    "2"
                } else {
                    "1"
                };
                m.insert("SignatureVersion".into(), json!(other));
            });
            assert!(matches!(
                v.verify(&sns(&t), &recorded()),
                Err(VerifyError::Mismatch)
            ));
        }
    }

    #[test]
    fn tampered_signature_fails() {
        let v = verifier(SNS_CERT);
        let b64 = base64::engine::general_purpose::STANDARD;
        for (body, _) in VECTORS {
            let t = edit(body, |m| {
                let mut sig = b64
                    .decode(m["Signature"].as_str().expect("sig"))
                    .expect("b64");
                sig[10] ^= 0x01;
                m.insert("Signature".into(), json!(b64.encode(&sig)));
            });
            assert!(matches!(
                v.verify(&sns(&t), &recorded()),
                Err(VerifyError::Mismatch)
            ));
            // Truncated signature, signature >= n, not base64.
            let t = edit(body, |m| {
                let sig = b64
                    .decode(m["Signature"].as_str().expect("sig"))
                    .expect("b64");
                m.insert("Signature".into(), json!(b64.encode(&sig[1..])));
            });
            assert!(matches!(
                v.verify(&sns(&t), &recorded()),
                Err(VerifyError::Mismatch)
            ));
            let t = edit(body, |m| {
                m.insert("Signature".into(), json!(b64.encode([0xffu8; 256])));
            });
            assert!(matches!(
                v.verify(&sns(&t), &recorded()),
                Err(VerifyError::Mismatch)
            ));
            let t = edit(body, |m| {
                m.insert("Signature".into(), json!("!!not base64!!"));
            });
            assert!(matches!(
                v.verify(&sns(&t), &recorded()),
                Err(VerifyError::Malformed(_))
            ));
            let t = edit(body, |m| {
                m.insert("SignatureVersion".into(), json!("3"));
            });
            assert!(matches!(
                v.verify(&sns(&t), &recorded()),
                Err(VerifyError::Malformed(_))
            ));
        }
    }

    #[test]
    fn wrong_certificate_fails() {
        let v = verifier(OTHER_CERT);
        for (body, _) in VECTORS {
            assert!(matches!(
                v.verify(&sns(body), &recorded()),
                Err(VerifyError::Mismatch)
            ));
        }
        let v = verifier(SNS_CERT);
        assert!(matches!(
            v.verify(&sns(SELF_CONFIRMATION), &recorded()),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn signed_confirmation_verifies_with_a_valid_certificate() {
        let v = verifier(OTHER_CERT);
        v.verify(&sns(SELF_CONFIRMATION), &at(IN_2030))
            .expect("valid");
        v.verify(&sns(SELF_CONFIRMATION), &recorded())
            .expect("valid");
        assert!(matches!(
            v.verify(&sns(SELF_CONFIRMATION), &at(1_600_000_000)),
            Err(VerifyError::Certificate(_))
        ));
        // Lambda spellings are signed under the canonical names.
        let lambda = edit(SELF_CONFIRMATION, |m| {
            let url = m.remove("SubscribeURL").expect("url");
            m.insert("SubscribeUrl".into(), url);
            let cert = m.remove("SigningCertURL").expect("cert");
            m.insert("SigningCertUrl".into(), cert);
        });
        v.verify(&sns(&lambda), &at(IN_2030))
            .expect("lambda spelling");
        let t = edit(SELF_CONFIRMATION, |m| {
            m.insert("Token".into(), json!("stolen"));
        });
        assert!(matches!(
            v.verify(&sns(&t), &recorded()),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn an_envelope_of_many_values_is_refused_before_it_is_parsed() {
        let body = format!(r#"{{"Type":"Notification","x":[{}0]}}"#, "0,".repeat(5_000));
        assert!(matches!(
            verifier(SNS_CERT).verify(&sns(&body), &recorded()),
            Err(VerifyError::Unreadable(reason)) if reason.contains("more than 1000")
        ));
        // The SES document is a string: its own commas do not count.
        for (body, _) in VECTORS {
            verifier(SNS_CERT)
                .verify(&sns(body), &recorded())
                .expect("a real notification");
        }
    }

    #[test]
    fn topic_arn_is_required_and_well_formed() {
        let with = |topic: Option<&str>| {
            let settings = VerifySettings::new().with("cert_pem", OTHER_CERT);
            Verifier::from_settings(&match topic {
                Some(t) => settings.with("topic_arn", t),
                None => settings,
            })
        };
        for missing in [None, Some(" "), Some(" , ")] {
            assert!(
                matches!(
                    with(missing),
                    Err(VerifyConfigError::Missing {
                        key: "topic_arn",
                        ..
                    })
                ),
                "{missing:?}"
            );
        }
        for bad in [
            "ses-events",
            "arn:aws:sqs:eu-west-1:1:q",
            "arn:aws:sns:eu-west-1:1:",
        ] {
            assert!(
                matches!(
                    with(Some(bad)),
                    Err(VerifyConfigError::Invalid {
                        key: "topic_arn",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        // Several topics: a message of any of them is taken.
        let two = with(Some(
            "arn:aws:sns:eu-west-1:123456789012:other, arn:aws:sns:eu-west-1:123456789012:ses-events",
        ))
        .expect("two topics");
        two.verify(&sns(SELF_CONFIRMATION), &recorded())
            .expect("the second topic");
    }

    #[test]
    fn a_signed_message_of_another_topic_is_refused() {
        let settings = |topic: &str| {
            VerifySettings::new()
                .with("cert_pem", OTHER_CERT)
                .with("topic_arn", topic)
        };
        let ok =
            Verifier::from_settings(&settings("arn:aws:sns:eu-west-1:123456789012:ses-events"))
                .expect("v");
        ok.verify(&sns(SELF_CONFIRMATION), &recorded())
            .expect("topic matches");
        let other = Verifier::from_settings(&settings("arn:aws:sns:eu-west-1:123456789012:other"))
            .expect("v");
        assert!(matches!(
            other.verify(&sns(SELF_CONFIRMATION), &recorded()),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn missing_or_unsigned_fails_closed() {
        let v = verifier(SNS_CERT);
        let t = edit(V1_NO_SUBJECT, |m| {
            m.remove("Signature");
        });
        assert!(matches!(
            v.verify(&sns(&t), &recorded()),
            Err(VerifyError::Missing(_))
        ));
        let t = edit(V1_NO_SUBJECT, |m| {
            m.insert("Signature".into(), json!(""));
        });
        assert!(matches!(
            v.verify(&sns(&t), &recorded()),
            Err(VerifyError::Missing(_))
        ));
        let t = edit(V1_NO_SUBJECT, |m| {
            m.remove("SigningCertURL");
        });
        assert!(matches!(
            v.verify(&sns(&t), &recorded()),
            Err(VerifyError::Missing(_))
        ));
        // Raw message delivery: unsigned, even when the body is a signed envelope.
        let mut raw = sns(V1_NO_SUBJECT);
        raw.headers
            .insert(RAW_DELIVERY_HEADER, http::HeaderValue::from_static("true"));
        assert!(matches!(
            v.verify(&raw, &recorded()),
            Err(VerifyError::Missing(_))
        ));
        let bare = sns(&json!({"eventType": "Send", "mail": mail(), "send": {}}).to_string());
        assert!(matches!(
            v.verify(&bare, &recorded()),
            Err(VerifyError::Missing(_))
        ));
        for body in ["", "not json", "[]", "{\"Type\":"] {
            assert!(v.verify(&sns(body), &recorded()).is_err(), "{body:?}");
        }
        let t = edit(V1_NO_SUBJECT, |m| {
            m.insert("Type".into(), json!("Other"));
        });
        assert!(matches!(
            v.verify(&sns(&t), &recorded()),
            Err(VerifyError::Unreadable(_))
        ));
    }

    #[test]
    fn signing_cert_url_is_validated() {
        let url = signing_cert_url(&sns(V1_NO_SUBJECT)).expect("url");
        assert_eq!(
            url,
            "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem"
        );
        let with = |u: &str| {
            let body = edit(V1_NO_SUBJECT, |m| {
                m.insert("SigningCertURL".into(), json!(u));
            });
            signing_cert_url(&sns(&body))
        };
        assert!(with("https://sns.cn-north-1.amazonaws.com.cn/cert.pem").is_ok());
        assert!(with("https://sns.us-gov-west-1.amazonaws.com/cert.pem").is_ok());
        for bad in [
            "http://sns.us-east-2.amazonaws.com/cert.pem",
            "https://evil.example.com/cert.pem",
            "https://sns.us-east-2.amazonaws.com.evil.com/cert.pem",
            "https://sns.ab.amazonaws.com/cert.pem",
            "https://sns.us_east.amazonaws.com/cert.pem",
            "https://xsns.us-east-2.amazonaws.com/cert.pem",
            "https://sns.us-east-2.amazonaws.com/cert.txt",
            "https://sns.us-east-2.amazonaws.com:8443/cert.pem",
            "https://user@sns.us-east-2.amazonaws.com/cert.pem",
            "https://sns.evil.com/x.amazonaws.com/cert.pem",
            "not a url",
        ] {
            assert!(
                matches!(with(bad), Err(VerifyError::Certificate(_))),
                "{bad}"
            );
        }
        // A bad URL fails verification even though the signature is right.
        let body = edit(V1_NO_SUBJECT, |m| {
            m.insert(
                "SigningCertURL".into(),
                json!("https://evil.example.com/c.pem"),
            );
        });
        assert!(matches!(
            verifier(SNS_CERT).verify(&sns(&body), &recorded()),
            Err(VerifyError::Certificate(_))
        ));
    }

    #[test]
    fn settings_fail_closed() {
        assert!(matches!(
            Verifier::from_settings(&VerifySettings::new()),
            Err(VerifyConfigError::Missing {
                key: "cert_pem",
                ..
            })
        ));
        assert!(matches!(
            Verifier::from_settings(&VerifySettings::new().with("cert_pem", "  ")),
            Err(VerifyConfigError::Missing { .. })
        ));
        assert!(matches!(
            Verifier::from_settings(&VerifySettings::new().with("cert_pem", "garbage")),
            Err(VerifyConfigError::Invalid { .. })
        ));
        assert!(matches!(
            Verifier::from_settings(
                &VerifySettings::new()
                    .with("cert_pem", SNS_CERT)
                    .with("cert_file", "/x.pem")
            ),
            Err(VerifyConfigError::Unknown { .. })
        ));
        assert!(matches!(
            verify_with_cert_pem(&sns(V1_NO_SUBJECT), "garbage", &recorded()),
            Err(VerifyError::Certificate(_))
        ));
        let debug = format!("{:?}", verifier(SNS_CERT));
        assert!(!debug.contains("MIIF"), "{debug}");
    }
}
