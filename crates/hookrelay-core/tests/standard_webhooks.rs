//! The official Standard Webhooks test vectors (tests/fixtures/standard-webhooks/).

use hookrelay_core::signing::{SecretError, SignatureError, Signer, SigningSecret, verify};
use serde_json::Value;

fn vector(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/standard-webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json")
}

struct Vector {
    secret: SigningSecret,
    id: String,
    ts: i64,
    payload: String,
    expected: String,
}

fn load(name: &str) -> Vector {
    let v = vector(name);
    Vector {
        secret: v["secret"]
            .as_str()
            .expect("secret")
            .parse()
            .expect("valid secret"),
        id: v["webhook_id"].as_str().expect("id").to_owned(),
        ts: v["webhook_timestamp"].as_i64().expect("ts"),
        payload: v["payload"].as_str().expect("payload").to_owned(),
        expected: v["expected_signature"].as_str().expect("sig").to_owned(),
    }
}

#[test]
fn official_sign_vectors_match() {
    for name in ["sign_vector_1.json", "sign_vector_2.json"] {
        let v = load(name);
        let sig = Signer::new(vec![v.secret.clone()]).signature(&v.id, v.ts, v.payload.as_bytes());
        assert_eq!(sig, v.expected, "{name}");
        verify(
            &[v.secret],
            &v.id,
            &v.ts.to_string(),
            &sig,
            v.payload.as_bytes(),
            Some(v.ts),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn tampered_copies_fail() {
    for name in ["sign_vector_1.json", "sign_vector_2.json"] {
        let v = load(name);
        let ts = v.ts.to_string();
        let body = v.payload.as_bytes();
        let mut tampered = body.to_vec();
        tampered[1] ^= 1;
        assert_eq!(
            verify(
                std::slice::from_ref(&v.secret),
                &v.id,
                &ts,
                &v.expected,
                &tampered,
                None
            ),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(
                std::slice::from_ref(&v.secret),
                "msg_other",
                &ts,
                &v.expected,
                body,
                None
            ),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(
                std::slice::from_ref(&v.secret),
                &v.id,
                &(v.ts + 1).to_string(),
                &v.expected,
                body,
                None
            ),
            Err(SignatureError::NoMatch)
        );
        let other: SigningSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oE"
            .parse()
            .expect("secret");
        let wrong = if v.secret == other {
            load("sign_vector_1.json").secret
        } else {
            other
        };
        assert_eq!(
            verify(&[wrong], &v.id, &ts, &v.expected, body, None),
            Err(SignatureError::NoMatch)
        );
    }
}

#[test]
fn official_negative_vectors_fail_and_multi_signature_headers_pass() {
    let v = load("sign_vector_1.json");
    let neg = vector("negative_vectors.json");
    let ts = v.ts.to_string();
    for bad in neg["invalid_signatures"].as_array().expect("list") {
        let bad = bad.as_str().expect("str");
        assert_eq!(
            verify(
                std::slice::from_ref(&v.secret),
                &v.id,
                &ts,
                bad,
                v.payload.as_bytes(),
                Some(v.ts)
            ),
            Err(SignatureError::NoMatch),
            "{bad}"
        );
    }
    let header: Vec<String> = neg["multi_signature_header_example_from_tests"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| {
            s.as_str()
                .expect("str")
                .replace("<valid signature goes here>", &v.expected)
        })
        .collect();
    verify(
        std::slice::from_ref(&v.secret),
        &v.id,
        &ts,
        &header.join(" "),
        v.payload.as_bytes(),
        Some(v.ts),
    )
    .expect("a valid v1 among invalid and v2 entries passes");
    // v2 entries are ignored even when their value is the valid one.
    let v2 = v.expected.replacen("v1,", "v2,", 1);
    assert!(verify(&[v.secret], &v.id, &ts, &v2, v.payload.as_bytes(), None).is_err());
    for empty in neg["empty_secrets_must_be_rejected"]
        .as_array()
        .expect("list")
    {
        assert_eq!(
            empty.as_str().expect("str").parse::<SigningSecret>(),
            Err(SecretError::Empty)
        );
    }
}

#[test]
fn a_header_is_read_up_to_32_entries() {
    let v = load("sign_vector_1.json");
    let ts = v.ts.to_string();
    let check = |header: &str| {
        verify(
            std::slice::from_ref(&v.secret),
            &v.id,
            &ts,
            header,
            v.payload.as_bytes(),
            None,
        )
    };
    let padded = |bogus: usize| {
        let mut entries = vec!["v1,"; bogus];
        entries.push(&v.expected);
        entries.join(" ")
    };
    check(&padded(31)).expect("the 32nd entry is looked at");
    // A header of thousands of entries is not checked entry by entry to its end: the
    // sender signs with one secret, two while it rotates them.
    assert_eq!(check(&padded(32)), Err(SignatureError::NoMatch));
    assert_eq!(check(&padded(16_000)), Err(SignatureError::NoMatch));
    // Entries that cannot be a SHA-256 tag are passed over.
    let short = v.expected[..v.expected.len() - 4].to_owned();
    assert_eq!(check(&short), Err(SignatureError::NoMatch));
    check(&format!("v1,AAAA v1,{} {}", "A".repeat(400), v.expected)).expect("valid after junk");
}

#[test]
fn timestamps_outside_five_minutes_fail() {
    let v = load("sign_vector_1.json");
    let ts = v.ts.to_string();
    let body = v.payload.as_bytes();
    let s = [v.secret];
    assert!(verify(&s, &v.id, &ts, &v.expected, body, Some(v.ts + 300)).is_ok());
    assert_eq!(
        verify(&s, &v.id, &ts, &v.expected, body, Some(v.ts + 301)),
        Err(SignatureError::TooOld)
    );
    assert_eq!(
        verify(&s, &v.id, &ts, &v.expected, body, Some(v.ts - 301)),
        Err(SignatureError::InFuture)
    );
    assert_eq!(
        verify(&s, &v.id, "abc", &v.expected, body, None),
        Err(SignatureError::InvalidTimestamp)
    );
    assert_eq!(
        verify(&[], &v.id, &ts, &v.expected, body, None),
        Err(SignatureError::NoSecret)
    );
}

#[test]
fn rotation_signs_with_every_secret_and_either_verifies() {
    let a: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().expect("a");
    let b: SigningSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".parse().expect("b");
    let header = Signer::new(vec![a.clone(), b.clone()]).signature("msg_1", 1_700_000_000, b"{}");
    assert_eq!(header.split(' ').count(), 2);
    assert!(verify(&[a], "msg_1", "1700000000", &header, b"{}", None).is_ok());
    assert!(verify(&[b], "msg_1", "1700000000", &header, b"{}", None).is_ok());
}
