//! The signature check of a generic provider (see the `generic` module docs).

use base64::Engine as _;

use super::{
    Algorithm, Encoding, KNOWN_KEYS, LABEL, SignatureSpec, Signed, Spec, signature_problems,
};
use crate::mac::{self, Hash};
use crate::provider::{VerifyOptions, VerifySettings};
use crate::{CallbackRequest, Secret, VerifyConfigError, VerifyError};

/// Generic HMAC signature check.
#[derive(Debug, Clone)]
pub struct Verifier {
    secret: Secret,
    signature: SignatureSpec,
}

impl Verifier {
    /// Builds the verifier from the spec's `signature` block and the `verify:` settings
    /// (`secret`, required). A spec without a `signature` block cannot be verified: that
    /// is an error, and the route must declare `verify: none` instead.
    pub fn from_settings(
        spec: &Spec,
        settings: &VerifySettings,
    ) -> Result<Self, VerifyConfigError> {
        settings.only(LABEL, KNOWN_KEYS)?;
        let Some(signature) = spec.signature.clone() else {
            return Err(VerifyConfigError::Invalid {
                provider: LABEL,
                key: "signature",
                reason: format!(
                    "provider {:?} has no `signature` block, so its callbacks cannot be verified; \
                     add one, or declare `verify: none` on the route",
                    spec.name
                ),
            });
        };
        if let Some(problem) = signature_problems(&signature).into_iter().next() {
            return Err(VerifyConfigError::Invalid {
                provider: LABEL,
                key: "signature",
                reason: problem,
            });
        }
        let secret = settings.require(LABEL, "secret")?.clone();
        Ok(Self { secret, signature })
    }

    /// Checks the HMAC signature header against the raw body.
    pub fn verify(&self, req: &CallbackRequest, opts: &VerifyOptions) -> Result<(), VerifyError> {
        let sig = &self.signature;
        let value = req
            .header(&sig.header)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(VerifyError::Missing("signature header"))?;
        let value = match &sig.prefix {
            Some(p) => value.strip_prefix(p.as_str()).ok_or_else(|| {
                VerifyError::Malformed(format!("signature does not start with {p:?}"))
            })?,
            None => value,
        };
        let expected = decode(sig.encoding, value.trim())?;
        let timestamp = match sig.signed {
            Signed::Body => None,
            Signed::TimestampBody => {
                let name = sig.timestamp_header.as_deref().unwrap_or_default();
                let ts = req
                    .header(name)
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .ok_or(VerifyError::Missing("timestamp header"))?;
                Some(ts)
            }
        };
        let parts: Vec<&[u8]> = match timestamp {
            None => vec![&req.body],
            Some(ts) => vec![ts.as_bytes(), b".", &req.body],
        };
        let hash = match sig.algorithm {
            Algorithm::Sha256 => Hash::Sha256,
            Algorithm::Sha1 => Hash::Sha1,
            Algorithm::Sha512 => Hash::Sha512,
        };
        if !mac::hmac(hash, self.secret.expose().as_bytes(), &parts).matches(&expected) {
            return Err(VerifyError::Mismatch);
        }
        if let (Some(ts), Some(_)) = (timestamp, opts.now_secs) {
            let ms = crate::timestamp::parse_str_ms(ts).ok_or_else(|| {
                VerifyError::Malformed(format!("timestamp {ts:?} is not epoch seconds"))
            })?;
            opts.check_timestamp(ms.div_euclid(1000))?;
        }
        Ok(())
    }
}

fn decode(encoding: Encoding, value: &str) -> Result<Vec<u8>, VerifyError> {
    match encoding {
        Encoding::Hex => hex::decode(value)
            .map_err(|_| VerifyError::Malformed("signature is not hexadecimal".into())),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
            .decode(value)
            .map_err(|_| VerifyError::Malformed("signature is not base64".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::acme;
    use super::*;
    use crate::provider::Provider;
    use hmac::{Hmac, KeyInit, Mac};
    use sha1::Sha1;
    use sha2::{Sha256, Sha512};

    fn mac_hex(key: &str, msg: &[u8]) -> String {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("key");
        m.update(msg);
        hex::encode(m.finalize().into_bytes())
    }

    fn signed(body: &str, header: &str, value: &str) -> CallbackRequest {
        let mut r = CallbackRequest::post(body.to_owned()).with_content_type("application/json");
        r.headers.insert(
            http::HeaderName::from_bytes(header.as_bytes()).expect("name"),
            http::HeaderValue::from_str(value).expect("value"),
        );
        r
    }

    fn verifier(spec: &Spec, secret: &str) -> Verifier {
        Verifier::from_settings(spec, &VerifySettings::new().with("secret", secret))
            .expect("verifier")
    }

    #[test]
    fn hex_with_prefix_passes_and_tampering_fails() {
        let spec = acme();
        let body = r#"{"results":[]}"#;
        let sig = format!("sha256={}", mac_hex("s3cret", body.as_bytes()));
        let opts = VerifyOptions::default();
        verifier(&spec, "s3cret")
            .verify(&signed(body, "X-Acme-Signature", &sig), &opts)
            .expect("valid");
        // Upper-case hex is the same signature.
        let upper = format!(
            "sha256={}",
            mac_hex("s3cret", body.as_bytes()).to_uppercase()
        );
        verifier(&spec, "s3cret")
            .verify(&signed(body, "x-acme-signature", &upper), &opts)
            .expect("valid");
        // Tampered body, tampered signature, wrong secret.
        let tampered_body = r#"{"results":[1]}"#;
        assert!(matches!(
            verifier(&spec, "s3cret")
                .verify(&signed(tampered_body, "X-Acme-Signature", &sig), &opts),
            Err(VerifyError::Mismatch)
        ));
        let mut bad = sig.clone();
        let last = if bad.ends_with('0') { '1' } else { '0' };
        bad.pop();
        bad.push(last);
        assert!(matches!(
            verifier(&spec, "s3cret").verify(&signed(body, "X-Acme-Signature", &bad), &opts),
            Err(VerifyError::Mismatch)
        ));
        assert!(matches!(
            verifier(&spec, "other").verify(&signed(body, "X-Acme-Signature", &sig), &opts),
            Err(VerifyError::Mismatch)
        ));
        // Prefix missing, not hex, header missing.
        let bare = mac_hex("s3cret", body.as_bytes());
        assert!(matches!(
            verifier(&spec, "s3cret").verify(&signed(body, "X-Acme-Signature", &bare), &opts),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            verifier(&spec, "s3cret")
                .verify(&signed(body, "X-Acme-Signature", "sha256=xyz"), &opts),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            verifier(&spec, "s3cret").verify(&CallbackRequest::post(body), &opts),
            Err(VerifyError::Missing(_))
        ));
    }

    #[test]
    fn base64_sha1_and_sha512() {
        use base64::engine::general_purpose::STANDARD;
        let body = "{\"ok\":\"✓\"}";
        for (alg, sig) in [
            (Algorithm::Sha1, {
                let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(b"k").expect("key");
                m.update(body.as_bytes());
                STANDARD.encode(m.finalize().into_bytes())
            }),
            (Algorithm::Sha512, {
                let mut m = <Hmac<Sha512> as KeyInit>::new_from_slice(b"k").expect("key");
                m.update(body.as_bytes());
                STANDARD.encode(m.finalize().into_bytes())
            }),
        ] {
            let mut spec = acme();
            spec.signature = Some(SignatureSpec {
                header: "X-Sig".into(),
                algorithm: alg,
                encoding: Encoding::Base64,
                prefix: None,
                signed: Signed::Body,
                timestamp_header: None,
            });
            let opts = VerifyOptions::default();
            verifier(&spec, "k")
                .verify(&signed(body, "X-Sig", &sig), &opts)
                .expect("valid");
            // Without padding is accepted too.
            verifier(&spec, "k")
                .verify(&signed(body, "X-Sig", sig.trim_end_matches('=')), &opts)
                .expect("valid");
            assert!(matches!(
                verifier(&spec, "k").verify(&signed("{\"ok\":\"x\"}", "X-Sig", &sig), &opts),
                Err(VerifyError::Mismatch)
            ));
            assert!(matches!(
                verifier(&spec, "k2").verify(&signed(body, "X-Sig", &sig), &opts),
                Err(VerifyError::Mismatch)
            ));
            assert!(matches!(
                verifier(&spec, "k").verify(&signed(body, "X-Sig", "!!notbase64!!"), &opts),
                Err(VerifyError::Malformed(_))
            ));
            // A hex spec does not accept the base64 value.
            spec.signature.as_mut().expect("sig").encoding = Encoding::Hex;
            assert!(
                verifier(&spec, "k")
                    .verify(&signed(body, "X-Sig", &sig), &opts)
                    .is_err()
            );
        }
    }

    #[test]
    fn timestamp_body_signature_and_freshness() {
        let mut spec = acme();
        spec.signature = Some(SignatureSpec {
            header: "X-Sig".into(),
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            prefix: Some("v1=".into()),
            signed: Signed::TimestampBody,
            timestamp_header: Some("X-Ts".into()),
        });
        spec.validate().expect("valid");
        let body = r#"{"results":[]}"#;
        let sig = format!(
            "v1={}",
            mac_hex("k", format!("1700000000.{body}").as_bytes())
        );
        let mut req = signed(body, "X-Sig", &sig);
        req.headers
            .insert("x-ts", http::HeaderValue::from_static("1700000000"));
        let v = verifier(&spec, "k");
        v.verify(&req, &VerifyOptions::default())
            .expect("valid, no clock");
        let fresh = VerifyOptions {
            now_secs: Some(1_700_000_100),
            tolerance_secs: None,
        };
        v.verify(&req, &fresh).expect("fresh");
        let stale = VerifyOptions {
            now_secs: Some(1_700_000_301),
            tolerance_secs: None,
        };
        assert!(matches!(v.verify(&req, &stale), Err(VerifyError::Stale(_))));
        // Another timestamp breaks the signature.
        req.headers
            .insert("x-ts", http::HeaderValue::from_static("1700000001"));
        assert!(matches!(
            v.verify(&req, &VerifyOptions::default()),
            Err(VerifyError::Mismatch)
        ));
        req.headers.remove("x-ts");
        assert!(matches!(
            v.verify(&req, &VerifyOptions::default()),
            Err(VerifyError::Missing(_))
        ));
    }

    #[test]
    fn verifier_fails_closed() {
        let spec = acme();
        assert!(matches!(
            Verifier::from_settings(&spec, &VerifySettings::new()),
            Err(VerifyConfigError::Missing { key: "secret", .. })
        ));
        assert!(Verifier::from_settings(&spec, &VerifySettings::new().with("secret", "")).is_err());
        assert!(matches!(
            Verifier::from_settings(
                &spec,
                &VerifySettings::new().with("secret", "k").with("token", "t")
            ),
            Err(VerifyConfigError::Unknown { .. })
        ));
        let mut unsigned = acme();
        unsigned.signature = None;
        let err = Verifier::from_settings(&unsigned, &VerifySettings::new().with("secret", "k"))
            .expect_err("no signature block");
        assert!(err.to_string().contains("verify: none"), "{err}");
        let mut bad = acme();
        bad.signature = Some(SignatureSpec {
            header: "X-Sig".into(),
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            prefix: None,
            signed: Signed::TimestampBody,
            timestamp_header: None,
        });
        assert!(Verifier::from_settings(&bad, &VerifySettings::new().with("secret", "k")).is_err());
        let v = verifier(&spec, "hunter2-secret");
        assert!(!format!("{v:?}").contains("hunter2"));
        // Through the dispatching enum.
        let provider = Provider::Generic(std::sync::Arc::new(spec));
        assert_eq!(provider.id(), "acme_sms");
        assert!(crate::Verifier::new(&provider, &VerifySettings::new()).is_err());
    }
}
