//! HMAC: the one place the crate computes and compares one.
//!
//! Every HMAC scheme of the crate (Twilio, Plivo, Mailgun, Vonage `sig` and JWT, Meta,
//! the generic provider, Standard Webhooks signing) computes its tag with [`hmac()`] over
//! the signed bytes exactly as received, given as parts so nothing is copied to join
//! them, and compares it with a method of [`Tag`]. Every comparison is constant-time and
//! fails closed: an expected value that does not decode, or has another length, never
//! matches. Lengths are not secret, so a length mismatch may return at once.
//!
//! Provider-specific steps stay with the provider: what is signed, how the header is
//! read, and whether an undecodable value is "malformed" or just "no match".

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};

use crate::secret::ct_eq;

/// The hash function of an HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    /// HMAC-MD5 (Vonage's `md5` `sig` method only).
    #[cfg(feature = "vonage")]
    Md5,
    /// HMAC-SHA1.
    #[cfg(any(
        feature = "twilio",
        feature = "vonage",
        feature = "generic",
        feature = "mandrill"
    ))]
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    #[cfg(any(feature = "vonage", feature = "generic"))]
    Sha512,
}

/// The longest tag, HMAC-SHA512's.
const MAX_TAG: usize = 64;

/// A computed HMAC tag, compared only through its constant-time methods.
#[derive(Clone)]
pub(crate) struct Tag {
    bytes: [u8; MAX_TAG],
    len: usize,
}

/// HMAC-`hash` keyed with `key` over the concatenation of `parts`.
pub(crate) fn hmac(hash: Hash, key: &[u8], parts: &[&[u8]]) -> Tag {
    match hash {
        #[cfg(feature = "vonage")]
        Hash::Md5 => tag::<Hmac<md5::Md5>>(key, parts),
        #[cfg(any(
            feature = "twilio",
            feature = "vonage",
            feature = "generic",
            feature = "mandrill"
        ))]
        Hash::Sha1 => tag::<Hmac<sha1::Sha1>>(key, parts),
        Hash::Sha256 => tag::<Hmac<sha2::Sha256>>(key, parts),
        #[cfg(any(feature = "vonage", feature = "generic"))]
        Hash::Sha512 => tag::<Hmac<sha2::Sha512>>(key, parts),
    }
}

fn tag<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Tag {
    // HMAC takes keys of any length (a longer one is hashed first), so this never fails.
    let mut mac = <M as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for part in parts {
        mac.update(part);
    }
    let out = mac.finalize().into_bytes();
    let mut tag = Tag {
        bytes: [0; MAX_TAG],
        len: out.len().min(MAX_TAG),
    };
    for (dst, src) in tag.bytes.iter_mut().zip(out.iter()) {
        *dst = *src;
    }
    tag
}

impl Tag {
    /// The tag's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    /// The tag in standard base64 with padding.
    pub(crate) fn to_base64(&self) -> String {
        STANDARD.encode(self.as_bytes())
    }

    /// Constant-time: `expected` is the tag's bytes.
    pub(crate) fn matches(&self, expected: &[u8]) -> bool {
        ct_eq(self.as_bytes(), expected)
    }

    /// Constant-time: `text` is the tag in hexadecimal, digits in either case.
    #[cfg(feature = "vonage")]
    pub(crate) fn matches_hex(&self, text: &str) -> bool {
        let mut decoded = [0; MAX_TAG];
        let Some(decoded) = decoded.get_mut(..self.len) else {
            return false;
        };
        text.len() == 2 * self.len
            && hex::decode_to_slice(text, decoded).is_ok()
            && ct_eq(self.as_bytes(), decoded)
    }

    /// Constant-time: `text` is exactly the tag in standard base64 with padding (as
    /// Twilio and Plivo send it; their libraries compare the text too).
    #[cfg(any(feature = "twilio", feature = "plivo"))]
    pub(crate) fn matches_base64(&self, text: &str) -> bool {
        ct_eq(self.to_base64().as_bytes(), text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JEFE: &[u8] = b"Jefe";
    const WANT: &[u8] = b"what do ya want for nothing?";

    fn hex_of(hash: Hash, key: &[u8], parts: &[&[u8]]) -> String {
        hex::encode(hmac(hash, key, parts).as_bytes())
    }

    #[test]
    fn rfc_vectors() {
        // RFC 2202 test case 2 (MD5, SHA-1) and RFC 4231 test case 2 (SHA-256, SHA-512).
        #[cfg(feature = "vonage")]
        assert_eq!(
            hex_of(Hash::Md5, JEFE, &[WANT]),
            "750c783e6ab0b503eaa86e310a5db738"
        );
        #[cfg(any(
            feature = "twilio",
            feature = "vonage",
            feature = "generic",
            feature = "mandrill"
        ))]
        assert_eq!(
            hex_of(Hash::Sha1, JEFE, &[WANT]),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex_of(Hash::Sha256, JEFE, &[WANT]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        #[cfg(any(feature = "vonage", feature = "generic"))]
        assert_eq!(
            hex_of(Hash::Sha512, JEFE, &[WANT]),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    #[test]
    fn keys_longer_than_a_block_are_hashed_first() {
        // RFC 4231 test case 6.
        let key = [0xaa; 131];
        assert_eq!(
            hex_of(
                Hash::Sha256,
                &key,
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(hmac(Hash::Sha256, b"", &[b"x"]).as_bytes().len(), 32);
    }

    #[test]
    fn parts_are_concatenated() {
        let whole = hmac(Hash::Sha256, JEFE, &[WANT]);
        let (a, b) = WANT.split_at(7);
        let split = hmac(Hash::Sha256, JEFE, &[a, b"", b]);
        assert_eq!(whole.as_bytes(), split.as_bytes());
        assert_eq!(
            hmac(Hash::Sha256, JEFE, &[]).as_bytes(),
            hmac(Hash::Sha256, JEFE, &[b""]).as_bytes()
        );
    }

    #[test]
    fn tag_lengths() {
        // The hashes compiled in: one of them may be alone.
        let cases = [
            #[cfg(feature = "vonage")]
            (Hash::Md5, 16),
            #[cfg(any(
                feature = "twilio",
                feature = "vonage",
                feature = "generic",
                feature = "mandrill"
            ))]
            (Hash::Sha1, 20),
            (Hash::Sha256, 32),
            #[cfg(any(feature = "vonage", feature = "generic"))]
            (Hash::Sha512, 64),
        ];
        for (hash, len) in cases {
            assert_eq!(hmac(hash, JEFE, &[WANT]).as_bytes().len(), len, "{hash:?}");
        }
    }

    #[test]
    fn matches_raw_bytes_only_when_equal() {
        let tag = hmac(Hash::Sha256, JEFE, &[WANT]);
        let bytes = tag.as_bytes().to_vec();
        assert!(tag.matches(&bytes));
        let mut flipped = bytes.clone();
        flipped[31] ^= 1;
        assert!(!tag.matches(&flipped));
        assert!(!tag.matches(&bytes[..31]));
        assert!(!tag.matches(&[]));
        let mut longer = bytes;
        longer.push(0);
        assert!(!tag.matches(&longer));
    }

    #[test]
    #[cfg(feature = "vonage")]
    fn matches_hex_in_either_case() {
        let tag = hmac(Hash::Sha1, JEFE, &[WANT]);
        let lower = "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79";
        assert!(tag.matches_hex(lower));
        assert!(tag.matches_hex(&lower.to_ascii_uppercase()));
        assert!(!tag.matches_hex(&lower.replace('e', "f")));
        assert!(!tag.matches_hex(&lower[..38]));
        assert!(!tag.matches_hex(&format!("{lower}00")));
        assert!(!tag.matches_hex(&lower.replace('e', "g")));
        assert!(!tag.matches_hex(" effcdf6ae5eb2fa2d27416d5f184df9c259a7c7"));
        assert!(!tag.matches_hex(""));
        // Multi-byte text of the right byte length is not hex.
        assert!(!tag.matches_hex(&format!("é{}", &lower[2..])));
    }

    #[test]
    #[cfg(any(feature = "twilio", feature = "plivo"))]
    fn matches_base64_exactly() {
        let tag = hmac(Hash::Sha256, JEFE, &[WANT]);
        let text = tag.to_base64();
        assert_eq!(text, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
        assert!(tag.matches_base64(&text));
        assert!(!tag.matches_base64(text.trim_end_matches('=')));
        assert!(!tag.matches_base64(&text.to_ascii_lowercase()));
        assert!(!tag.matches_base64(""));
    }
}
