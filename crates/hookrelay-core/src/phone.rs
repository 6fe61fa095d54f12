//! Phone numbers in events: one E.164 rule for every provider.
//!
//! An event's phone numbers (`channel_value`, an inbound message's `from` and `to`, a
//! reply's `context.from`) are E.164, `+` and the digits, whatever the provider wrote:
//! Twilio sends `+14155550100`, Vonage, Plivo, Meta and Gupshup send `14155550100`.
//!
//! The rule is [`e164`]: the value is trimmed, and when what remains is 7 to 15 ASCII
//! digits a `+` is put in front. Anything else is kept as sent (trimmed): a number that
//! already has its `+`, a short code (6 digits or fewer), a value too long to be a phone
//! number (E.164 allows 15 digits), an alphanumeric sender id, a WhatsApp group id, an
//! email address. Applying the rule twice changes nothing.
//!
//! A WhatsApp business-scoped user id ([`is_bsuid`]: `US.13491208655302741918`, what Meta
//! sends instead of the number of a user who adopted a username) is never a phone number:
//! every function here returns it as sent, without a `+` and without picking digits out of
//! it.
//!
//! Two providers need a step before the rule, each its own function:
//! [`e164_of_channel_address`] drops a `whatsapp:` prefix (Twilio's WhatsApp addresses),
//! and [`e164_of_display_number`] drops the spaces, dashes and brackets of a number written
//! for display (Meta's `metadata.display_phone_number`).

#[cfg(any(feature = "twilio", feature = "vonage", feature = "plivo"))]
use crate::provider::strip_channel_prefix;

/// Fewest digits of a number given without `+` (shorter ones are short codes).
const MIN_DIGITS: usize = 7;
/// Most digits of an E.164 number.
const MAX_DIGITS: usize = 15;

/// Most letters and digits after the country code of a business-scoped user id.
const MAX_BSUID_CHARS: usize = 128;

/// Whether `value` (trimmed) is a WhatsApp business-scoped user id (BSUID): a two-letter
/// country code, a dot and 1 to 128 ASCII letters and digits (`US.13491208655302741918`),
/// or a parent BSUID, with `ENT.` after the dot (`US.ENT.11815799212886844830`).
///
/// It identifies a user to one business (or, the parent form, to a business's portfolios)
/// and is what the business replies to when the user's number is withheld; it is never a
/// phone number.
pub(crate) fn is_bsuid(value: &str) -> bool {
    let v = value.trim().as_bytes();
    let [a, b, b'.', rest @ ..] = v else {
        return false;
    };
    let id = rest.strip_prefix(b"ENT.").unwrap_or(rest);
    a.is_ascii_alphabetic()
        && b.is_ascii_alphabetic()
        && (1..=MAX_BSUID_CHARS).contains(&id.len())
        && id.iter().all(u8::is_ascii_alphanumeric)
}

/// Whether `value` (trimmed) is a parent business-scoped user id (`US.ENT.…`, see
/// [`is_bsuid`]).
#[cfg(any(feature = "twilio", feature = "meta_whatsapp", feature = "gupshup"))]
pub(crate) fn is_parent_bsuid(value: &str) -> bool {
    let v = value.trim();
    is_bsuid(v) && v.get(3..).is_some_and(|id| id.starts_with("ENT."))
}

/// The E.164 rule (see the module docs): `+` in front of 7 to 15 ASCII digits, anything
/// else (a business-scoped user id included) as sent; trimmed either way.
pub(crate) fn e164(number: &str) -> String {
    let n = number.trim();
    if is_bsuid(n) {
        return n.to_owned();
    }
    if (MIN_DIGITS..=MAX_DIGITS).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()) {
        let mut out = String::with_capacity(n.len() + 1);
        out.push('+');
        out.push_str(n);
        out
    } else {
        n.to_owned()
    }
}

/// An address that may carry a `whatsapp:` channel prefix (`whatsapp:+14155550100`): the
/// prefix is dropped, then [`e164`].
#[cfg(any(feature = "twilio", feature = "vonage", feature = "plivo"))]
pub(crate) fn e164_of_channel_address(address: &str) -> String {
    e164(strip_channel_prefix(address.trim()))
}

/// A number written for display (`+1 (650) 555-1234`): everything but the digits is
/// dropped, then [`e164`]. Empty when there are no digits. A business-scoped user id is
/// kept as sent (trimmed), never read for the digits in it.
#[cfg(any(feature = "meta_whatsapp", feature = "gupshup"))]
pub(crate) fn e164_of_display_number(number: &str) -> String {
    if is_bsuid(number) {
        return number.trim().to_owned();
    }
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    e164(&digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_get_a_plus() {
        assert_eq!(e164("447700900000"), "+447700900000");
        assert_eq!(e164("14155550100"), "+14155550100");
        assert_eq!(e164(" 919876543210\n"), "+919876543210");
    }

    #[test]
    fn only_seven_to_fifteen_digits_are_a_number() {
        assert_eq!(e164("123456"), "123456");
        assert_eq!(e164("1234567"), "+1234567");
        assert_eq!(e164("123456789012345"), "+123456789012345");
        assert_eq!(e164("1234567890123456"), "1234567890123456");
        assert_eq!(e164("12345"), "12345");
    }

    #[test]
    fn a_number_with_its_plus_is_kept() {
        assert_eq!(e164("+447700900000"), "+447700900000");
        assert_eq!(e164("  +14155550100 "), "+14155550100");
        assert_eq!(e164("+1 415 555 0100"), "+1 415 555 0100");
    }

    #[test]
    fn other_addresses_are_kept_as_sent() {
        assert_eq!(e164("AcmeInc"), "AcmeInc");
        assert_eq!(e164("user@example.com"), "user@example.com");
        assert_eq!(e164("120363025246125486@g.us"), "120363025246125486@g.us");
        assert_eq!(e164("1415-555-0100"), "1415-555-0100");
        assert_eq!(e164("whatsapp:14155550100"), "whatsapp:14155550100");
        assert_eq!(
            e164("\u{661}\u{662}\u{663}\u{664}\u{665}\u{666}\u{667}"),
            "١٢٣٤٥٦٧"
        );
        assert_eq!(e164(""), "");
        assert_eq!(e164("   "), "");
    }

    #[test]
    fn the_rule_is_idempotent() {
        for v in [
            "447700900000",
            "+447700900000",
            "12345",
            "1234567890123456",
            "AcmeInc",
            " 14155550100 ",
            "",
        ] {
            let once = e164(v);
            assert_eq!(e164(&once), once, "{v:?}");
        }
    }

    #[test]
    #[cfg(any(feature = "twilio", feature = "vonage", feature = "plivo"))]
    fn channel_addresses_lose_their_whatsapp_prefix() {
        assert_eq!(
            e164_of_channel_address("whatsapp:+14155550100"),
            "+14155550100"
        );
        assert_eq!(
            e164_of_channel_address(" whatsapp:14155550100 "),
            "+14155550100"
        );
        assert_eq!(e164_of_channel_address("+14155550100"), "+14155550100");
        assert_eq!(e164_of_channel_address("14155550100"), "+14155550100");
        assert_eq!(e164_of_channel_address("12345"), "12345");
        assert_eq!(e164_of_channel_address("whatsapp:Acme"), "Acme");
        assert_eq!(
            e164_of_channel_address("messenger:1234567"),
            "messenger:1234567"
        );
    }

    #[test]
    #[cfg(any(feature = "meta_whatsapp", feature = "gupshup"))]
    fn display_numbers_lose_their_formatting() {
        assert_eq!(e164_of_display_number("+1 (650) 555-1234"), "+16505551234");
        assert_eq!(e164_of_display_number("15550783881"), "+15550783881");
        assert_eq!(e164_of_display_number("+91 98765.43210"), "+919876543210");
        assert_eq!(e164_of_display_number("n/a"), "");
        assert_eq!(e164_of_display_number(""), "");
        assert_eq!(e164_of_display_number("12-34"), "1234");
    }

    #[test]
    fn business_scoped_user_ids_are_recognized() {
        for v in [
            "US.13491208655302741918",
            "BR.1502576394655843",
            "IN.1648738043044942",
            "US.1234",
            "us.abcDEF123",
            " US.13491208655302741918\n",
            "US.ENT.11815799212886844830",
            "HK.ENT.x",
        ] {
            assert!(is_bsuid(v), "{v:?}");
        }
        let longest = format!("US.{}", "a".repeat(128));
        assert!(is_bsuid(&longest));
        for v in [
            "",
            "US.",
            "US",
            "USA.1234",
            "U.1234",
            "1S.1234",
            "US-1234",
            "US.12 34",
            "US.12.34",
            "US.ENT.",
            "US.ENT.1.2",
            "US.1234@g.us",
            "+US.1234",
            "whatsapp:US.1234",
            "14155550100",
            "+14155550100",
            "user@example.com",
            "US.\u{661}\u{662}",
        ] {
            assert!(!is_bsuid(v), "{v:?}");
        }
        assert!(!is_bsuid(&format!("US.{}", "a".repeat(129))));
    }

    #[test]
    #[cfg(any(feature = "twilio", feature = "meta_whatsapp", feature = "gupshup"))]
    fn parent_business_scoped_user_ids_are_told_apart() {
        assert!(is_parent_bsuid("US.ENT.11815799212886844830"));
        assert!(is_parent_bsuid(" HK.ENT.abc "));
        assert!(!is_parent_bsuid("US.13491208655302741918"));
        assert!(!is_parent_bsuid("US.ENTabc"));
        assert!(!is_parent_bsuid("US.ENT."));
        assert!(!is_parent_bsuid("ENT.1234"));
    }

    #[test]
    fn a_business_scoped_user_id_never_becomes_a_phone_number() {
        for v in [
            "US.13491208655302741918",
            "US.1234",
            "US.1234567",
            "IN.123456789012345",
            "US.ENT.11815799212886844830",
        ] {
            assert_eq!(e164(v), v, "{v:?}");
            assert_eq!(e164(&format!("  {v} ")), v, "{v:?}");
            assert!(!e164(v).starts_with('+'), "{v:?}");
        }
    }

    #[test]
    #[cfg(any(feature = "twilio", feature = "vonage", feature = "plivo"))]
    fn a_business_scoped_user_id_loses_only_its_whatsapp_prefix() {
        assert_eq!(e164_of_channel_address("whatsapp:US.1234"), "US.1234");
        assert_eq!(
            e164_of_channel_address(" whatsapp:US.13491208655302741918 "),
            "US.13491208655302741918"
        );
        assert_eq!(e164_of_channel_address("US.1234567"), "US.1234567");
    }

    #[test]
    #[cfg(any(feature = "meta_whatsapp", feature = "gupshup"))]
    fn digits_are_not_picked_out_of_a_business_scoped_user_id() {
        // Without the check, the digits of these would read as a 7- and a 15-digit number.
        assert_eq!(e164_of_display_number("US.1234567"), "US.1234567");
        assert_eq!(
            e164_of_display_number(" IN.123456789012345 "),
            "IN.123456789012345"
        );
        assert_eq!(
            e164_of_display_number("US.13491208655302741918"),
            "US.13491208655302741918"
        );
    }
}
