//! How deep and how long the JSON an event carries may be.
//!
//! A provider's own event is passed on as it came (`vendor_response`). Common JSON
//! parsers refuse text nested deeper than a fixed limit (serde_json: 128 levels, Python's
//! `json`: about 1000 frames, many C parsers far fewer) and numbers too long for their
//! number type, and a parser that does not refuse them can be made to spend a stack or
//! seconds on one event. serde_json itself checks neither when it skips a value or keeps it
//! as raw text, so a value that hookrelay never reads could reach an endpoint unchecked.
//! [`JsonLimits`] bounds both on the JSON text of each event before it is emitted:
//!
//! - **depth**: at most [`MAX_DEPTH`] (64) nested arrays and objects, the event's own
//!   braces included. Real provider events nest 3 to 6 levels (SES's `mail.commonHeaders`,
//!   Meta's `errors[].error_data`), and Meta's envelope 6 more around them;
//! - **number length**: at most [`MAX_NUMBER_LEN`] (100) characters in one number token
//!   (sign, digits, fraction and exponent). Provider numbers are timestamps, ids, prices and
//!   coordinates, 25 characters at most.
//!
//! The check is one pass over the bytes that tracks whether it is inside a string (and
//! after a backslash there), the depth of `[` and `{`, and the length of the current
//! number; it stops at the first limit it exceeds, so a 100,000-deep array costs 65 bytes
//! of scanning. It does not validate JSON (the parsers do that) and never panics, whatever
//! the input. An event beyond the limits is not normalized: it is kept as
//! [`Unparsed`](crate::provider::Unparsed) with the one-line reason.
//!
//! ```
//! use hookrelay_core::limits::JsonLimits;
//!
//! let limits = JsonLimits::default();
//! assert!(limits.check(br#"{"id":"wamid.1","errors":[{"code":131026}]}"#).is_ok());
//! // Brackets and quotes inside strings are text, not structure.
//! assert!(limits.check(br#"{"text":"[[[[ \" {{{{"}"#).is_ok());
//!
//! let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
//! let e = limits.check(deep.as_bytes()).unwrap_err();
//! assert_eq!(e.to_string(), "nested deeper than 64 levels (at byte 64)");
//!
//! let long = format!(r#"{{"price":{}}}"#, "9".repeat(100_000));
//! let e = limits.check(long.as_bytes()).unwrap_err();
//! assert_eq!(e.to_string(), "a number longer than 100 characters (at byte 9)");
//! ```

use std::fmt;

use serde_json::Value;

/// Default deepest nesting of arrays and objects in an event.
pub const MAX_DEPTH: usize = 64;

/// Default longest number token in an event, in characters.
pub const MAX_NUMBER_LEN: usize = 100;

/// Where a one-pass scan of JSON text is with regard to strings: inside one (and just after
/// a backslash there) or not. Brackets, commas and digits inside strings are text.
#[derive(Debug, Default)]
struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    /// Whether `byte` belongs to a string (its closing quote included), following it.
    fn inside(&mut self, byte: u8) -> bool {
        if !self.inside {
            return false;
        }
        if self.escaped {
            self.escaped = false;
        } else if byte == b'\\' {
            self.escaped = true;
        } else if byte == b'"' {
            self.inside = false;
        }
        true
    }

    /// An opening quote was read.
    fn open(&mut self) {
        self.inside = true;
    }
}

/// Most JSON values a callback body may hold to be parsed whole
/// ([`CallbackRequest::json`](crate::CallbackRequest::json)): about 5 to 10 MB once parsed.
/// Providers send a few hundred, a batch a few tens of thousands; a signature check may
/// parse the body before the signature is known to be good, and a parsed value costs 16 to
/// 40 times its text (`[0,0,0,…]`).
pub const MAX_JSON_VALUES: usize = 100_000;

/// Whether the JSON `text` holds at most `max` values, counted without parsing it as its
/// commas and opening brackets outside strings (one pass; it stops at `max`).
///
/// ```
/// use hookrelay_core::limits::values_at_most;
///
/// assert!(values_at_most(br#"{"a":[1,2],"b":"x,y,[z"}"#, 5));
/// assert!(!values_at_most(format!("[{}0]", "0,".repeat(10)).as_bytes(), 10));
/// ```
#[must_use]
pub fn values_at_most(text: &[u8], max: usize) -> bool {
    let mut count = 1usize;
    let mut strings = Strings::default();
    for &byte in text {
        if strings.inside(byte) {
            continue;
        }
        match byte {
            b'"' => strings.open(),
            b',' | b'[' | b'{' => {
                count += 1;
                if count > max {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// The depth and number-length limits of an event's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    max_depth: usize,
    max_number_len: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        Self {
            max_depth: MAX_DEPTH,
            max_number_len: MAX_NUMBER_LEN,
        }
    }
}

/// Which limit a JSON text exceeds, and where. The `Display` text is one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// Arrays and objects nested deeper than the limit.
    Depth {
        /// The limit.
        limit: usize,
        /// Byte offset of the bracket that went past it (`None` for a parsed value).
        offset: Option<usize>,
    },
    /// A number token longer than the limit.
    Number {
        /// The limit.
        limit: usize,
        /// Byte offset of the number's first character.
        offset: usize,
    },
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LimitExceeded::Depth { limit, offset } => {
                write!(f, "nested deeper than {limit} levels")?;
                match offset {
                    Some(offset) => write!(f, " (at byte {offset})"),
                    None => Ok(()),
                }
            }
            LimitExceeded::Number { limit, offset } => {
                write!(
                    f,
                    "a number longer than {limit} characters (at byte {offset})"
                )
            }
        }
    }
}

impl std::error::Error for LimitExceeded {}

impl JsonLimits {
    /// The limits with a different deepest nesting (at least 1).
    #[must_use]
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth.max(1);
        self
    }

    /// The limits with a different longest number (at least 1 character).
    #[must_use]
    pub fn max_number_len(mut self, len: usize) -> Self {
        self.max_number_len = len.max(1);
        self
    }

    /// Checks JSON text: `Err` with the first limit it exceeds.
    ///
    /// Text that is not JSON is scanned all the same (the answer then means nothing, and
    /// the parser will refuse the text anyway); a closing bracket without an opening one
    /// does not make the depth negative.
    pub fn check(&self, text: &[u8]) -> Result<(), LimitExceeded> {
        let mut depth = 0usize;
        let mut strings = Strings::default();
        let mut number_start = None;
        for (offset, &byte) in text.iter().enumerate() {
            if strings.inside(byte) {
                continue;
            }
            if matches!(byte, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                let start = *number_start.get_or_insert(offset);
                if offset - start >= self.max_number_len {
                    return Err(LimitExceeded::Number {
                        limit: self.max_number_len,
                        offset: start,
                    });
                }
                continue;
            }
            number_start = None;
            match byte {
                b'"' => strings.open(),
                b'[' | b'{' => {
                    depth += 1;
                    if depth > self.max_depth {
                        return Err(LimitExceeded::Depth {
                            limit: self.max_depth,
                            offset: Some(offset),
                        });
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks a parsed value. It holds its numbers as 64-bit integers or floats, whose text
    /// is at most 24 characters, so only its depth can exceed a limit; the walk stops one
    /// level past the limit, so it never recurses deeper than that.
    pub fn check_value(&self, value: &Value) -> Result<(), LimitExceeded> {
        if depth_exceeds(value, self.max_depth) {
            Err(LimitExceeded::Depth {
                limit: self.max_depth,
                offset: None,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(any(
    feature = "postmark",
    feature = "mailgun",
    feature = "vonage",
    feature = "gupshup",
    feature = "generic",
    feature = "ses",
    feature = "sinch",
    feature = "telnyx",
    feature = "messagebird",
    feature = "resend",
    feature = "brevo"
))]
/// The top-level JSON value a text must be, for [`JsonLimits::exceeded_by_json`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopLevel {
    /// An object.
    #[cfg_attr(
        not(any(
            feature = "postmark",
            feature = "mailgun",
            feature = "vonage",
            feature = "generic",
            feature = "ses",
            feature = "sinch",
            feature = "telnyx",
            feature = "messagebird",
            feature = "resend"
        )),
        expect(dead_code, reason = "Gupshup's and Brevo's bodies may be arrays")
    )]
    Object,
    /// An object, or an array (a batch).
    #[cfg_attr(
        not(any(feature = "gupshup", feature = "generic", feature = "brevo")),
        expect(
            dead_code,
            reason = "only Gupshup, Brevo and generic batches are arrays"
        )
    )]
    ObjectOrArray,
}

#[cfg(any(
    feature = "postmark",
    feature = "mailgun",
    feature = "vonage",
    feature = "gupshup",
    feature = "generic",
    feature = "ses",
    feature = "sinch",
    feature = "telnyx",
    feature = "messagebird",
    feature = "resend",
    feature = "brevo"
))]
impl JsonLimits {
    /// The limit `text` exceeds, when it is valid JSON whose top level is `top`: for a
    /// provider whose body (or SNS `Message`) is one event, which cannot be normalized then
    /// but is kept whole. `None` when it is within the limits, not JSON, or not `top`.
    ///
    /// Only a text beyond the limits is validated, without being built: serde_json's
    /// skipping parser has no depth limit and reads numbers of any length.
    pub(crate) fn exceeded_by_json(&self, text: &str, top: TopLevel) -> Option<LimitExceeded> {
        let exceeded = self.check(text.as_bytes()).err()?;
        let first = text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .as_bytes()
            .first()?;
        match (top, first) {
            (_, b'{') | (TopLevel::ObjectOrArray, b'[') => {}
            _ => return None,
        }
        serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
        Some(exceeded)
    }
}

/// True when `value` nests arrays and objects deeper than `budget` levels.
fn depth_exceeds(value: &Value, budget: usize) -> bool {
    let Some(left) = budget.checked_sub(1) else {
        return matches!(value, Value::Array(_) | Value::Object(_));
    };
    match value {
        Value::Array(items) => items.iter().any(|child| depth_exceeds(child, left)),
        Value::Object(map) => map.values().any(|child| depth_exceeds(child, left)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_is_counted_up_to_the_limit_inclusive() {
        let limits = JsonLimits::default();
        assert!(limits.check(nested(64).as_bytes()).is_ok());
        assert_eq!(
            limits.check(nested(65).as_bytes()),
            Err(LimitExceeded::Depth {
                limit: 64,
                offset: Some(64)
            })
        );
        let objects = format!("{}1{}", r#"{"a":"#.repeat(65), "}".repeat(65));
        assert!(matches!(
            limits.check(objects.as_bytes()),
            Err(LimitExceeded::Depth { .. })
        ));
        // Siblings do not add up: depth is nesting, not count.
        let wide = format!("[{}]", vec![nested(63); 1000].join(","));
        assert!(limits.check(wide.as_bytes()).is_ok());
    }

    #[test]
    fn brackets_and_escaped_quotes_inside_strings_are_text() {
        let limits = JsonLimits::default().max_depth(2);
        assert!(limits.check(br#"{"a":"[[[[{{{{"}"#).is_ok());
        // An escaped quote does not end the string: the brackets after it are still text.
        assert!(limits.check(br#"{"a":"\"[[[[","b":1}"#).is_ok());
        // An escaped backslash does end before the quote: the brackets after are structure.
        assert!(limits.check(br#"{"a":"\\","b":[[[1]]]}"#).is_err());
        assert!(limits.check(br#"["\\\"[[[["]"#).is_ok());
        // Keys are strings too.
        assert!(limits.check(br#"{"[[[[":1}"#).is_ok());
        // Multi-byte text never looks like structure.
        assert!(limits.check("[\"日本語 👋🏽 [[[\"]".as_bytes()).is_ok());
    }

    #[test]
    fn numbers_are_measured_as_one_token() {
        let limits = JsonLimits::default();
        let at = |n: usize| format!(r#"{{"n":{}}}"#, "1".repeat(n));
        assert!(limits.check(at(100).as_bytes()).is_ok());
        assert_eq!(
            limits.check(at(101).as_bytes()),
            Err(LimitExceeded::Number {
                limit: 100,
                offset: 5
            })
        );
        assert!(
            limits
                .check(format!("-0.{}e+10", "5".repeat(95)).as_bytes())
                .is_err()
        );
        // Many short numbers are fine, and so are long digit runs inside strings.
        let many = format!("[{}]", vec!["123456789"; 10_000].join(","));
        assert!(limits.check(many.as_bytes()).is_ok());
        let text = format!(r#"{{"id":"{}"}}"#, "7".repeat(10_000));
        assert!(limits.check(text.as_bytes()).is_ok());
        // `true`, `false`, `null` are not numbers, though `e` may be.
        assert!(limits.check(br#"[true,false,null,1e5]"#).is_ok());
    }

    #[test]
    fn real_provider_numbers_fit() {
        let limits = JsonLimits::default();
        for n in [
            "1700000000",
            "1710941393420",
            "-122.41941550000001",
            "0.00750",
            "18446744073709551615",
            "1.7976931348623157e308",
        ] {
            assert!(limits.check(n.as_bytes()).is_ok(), "{n}");
        }
    }

    #[test]
    fn parsed_values_are_checked_by_depth() {
        let limits = JsonLimits::default().max_depth(3);
        assert!(limits.check_value(&json!({"a": [{"b": 1}]})).is_ok());
        assert!(limits.check_value(&json!({"a": [{"b": []}]})).is_err());
        assert!(limits.check_value(&json!(1)).is_ok());
        let deep: Value = serde_json::from_str(&nested(100)).expect("within serde's limit");
        assert!(JsonLimits::default().check_value(&deep).is_err());
        assert!(
            JsonLimits::default()
                .check_value(&serde_json::from_str(&nested(64)).expect("json"))
                .is_ok()
        );
    }

    #[test]
    fn the_scan_agrees_with_the_parsed_depth() {
        // For valid JSON, the text and the value give the same answer.
        for depth in [1, 2, 10, 63, 64, 65, 100, 127] {
            let text = format!(
                "{}\"[\"{}",
                r#"{"k":["#.repeat(depth / 2),
                "]}".repeat(depth / 2)
            );
            let value: Value = serde_json::from_str(&text).expect("json");
            let limits = JsonLimits::default();
            assert_eq!(
                limits.check(text.as_bytes()).is_ok(),
                limits.check_value(&value).is_ok(),
                "{depth}"
            );
        }
    }

    /// A small deterministic generator (xorshift), so the property test needs no crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Random JSON text: nested arrays and objects, strings with brackets, quotes and
    /// backslashes escaped in them, numbers of random length.
    fn json_text(rng: &mut Rng, depth: usize, out: &mut String) {
        const STRINGS: &[&str] = &[r#""[{""#, r#""\"[""#, r#""\\""#, r#""}]\\\"{""#, r#""é[""#];
        match rng.next() % if depth > 100 { 3 } else { 6 } {
            0 => out.push_str(STRINGS[usize::try_from(rng.next() % 5).unwrap_or(0)]),
            1 => {
                let len = if rng.next().is_multiple_of(8) {
                    101
                } else {
                    rng.next() % 100 + 1
                };
                out.push('-');
                for _ in 0..len {
                    out.push('7');
                }
            }
            2 => out.push_str("true"),
            3 | 4 => {
                out.push('[');
                for i in 0..rng.next() % 3 {
                    if i > 0 {
                        out.push(',');
                    }
                    json_text(rng, depth + 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..rng.next() % 3 {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(STRINGS[usize::try_from(rng.next() % 5).unwrap_or(0)]);
                    out.push(':');
                    json_text(rng, depth + 1, out);
                }
                out.push('}');
            }
        }
    }

    #[test]
    fn on_random_json_the_scan_measures_what_the_parser_sees() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let limits = JsonLimits::default();
        let mut seen = [0usize; 3];
        for _ in 0..3_000 {
            // A chain of 40 to 79 levels around a random value, so that depths on both
            // sides of the limit are common.
            let chain = usize::try_from(rng.next() % 40).unwrap_or(0) + 40;
            let mut text = String::new();
            for level in 0..chain {
                text.push_str(if level % 2 == 0 { "[" } else { r#"{"k":"# });
            }
            json_text(&mut rng, chain, &mut text);
            for level in (0..chain).rev() {
                text.push(if level % 2 == 0 { ']' } else { '}' });
            }
            let answer = limits.check(text.as_bytes());
            // The parser's view: depth from the value, the longest number from its tokens.
            let value: Value = serde_json::from_str(&text).expect("generated JSON");
            let depth_ok = limits.check_value(&value).is_ok();
            let longest = text
                .split(|c: char| !(c == '-' || c == '7'))
                .map(str::len)
                .max()
                .unwrap_or(0);
            match answer {
                Ok(()) => {
                    assert!(depth_ok && longest <= MAX_NUMBER_LEN, "{text}");
                    seen[0] += 1;
                }
                Err(LimitExceeded::Depth { .. }) => {
                    assert!(!depth_ok, "{text}");
                    seen[1] += 1;
                }
                Err(LimitExceeded::Number { .. }) => {
                    assert!(longest > MAX_NUMBER_LEN, "{text}");
                    seen[2] += 1;
                }
            }
        }
        assert!(
            seen.iter().all(|&n| n > 50),
            "every outcome is exercised: {seen:?}"
        );
    }

    #[test]
    fn any_bytes_are_scanned_without_panicking() {
        const ALPHABET: &[u8] = b"[]{}\"\\,:0123456789-+.eEtrunfalsx \n\t\xff\xc3\xa9";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let limits = JsonLimits::default().max_depth(8).max_number_len(6);
        let depth_only = limits.max_number_len(usize::MAX);
        for _ in 0..20_000 {
            let len = usize::try_from(rng.next() % 200).unwrap_or(0);
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    let i = usize::try_from(rng.next() % ALPHABET.len() as u64).unwrap_or(0);
                    ALPHABET[i]
                })
                .collect();
            let _ = limits.check(&text);
            // Whenever the text is JSON, the scan and the parsed value agree on depth.
            if let Ok(value) = serde_json::from_slice::<Value>(&text) {
                assert_eq!(
                    depth_only.check(&text).is_ok(),
                    depth_only.check_value(&value).is_ok(),
                    "{:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
        // Extremes: empty, only closers, unterminated string and escape.
        for text in [&b""[..], b"]]]]}}}}", b"\"", b"\"\\", b"[\"\\\"]"] {
            assert!(limits.check(text).is_ok());
        }
    }
}
