//! Timestamps in every format providers use, converted to epoch milliseconds.
//!
//! | format | example | providers |
//! |---|---|---|
//! | integer seconds | `1600112502` | SendGrid, Meta (as a string), Vonage `timestamp` |
//! | float seconds | `1529692199.626182` | Mailgun |
//! | integer milliseconds | `1710941393420` | Gupshup, SuprSend |
//! | RFC 3339 / ISO 8601 | `2016-10-19T23:20:52.240Z` | SES, Postmark, Vonage Messages |
//! | `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC) | `2023-01-01 12:00:00.123456` | Vonage SMS, Plivo |
//! | `YYMMDDHHMM` (UTC) | `2001011400` | Vonage `scts` |
//!
//! Numbers below 10^11 are seconds, above are milliseconds (10^11 s is the year 5138).

use serde_json::Value;
use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

const MS_THRESHOLD: f64 = 1e11;

/// Converts a number of seconds or milliseconds (decided by magnitude) to milliseconds.
#[must_use]
pub fn number_to_ms(n: f64) -> Option<i64> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let ms = if n < MS_THRESHOLD { n * 1000.0 } else { n };
    if ms > 253_402_300_799_999.0 {
        return None; // after year 9999
    }
    #[allow(clippy::cast_possible_truncation)]
    Some(ms.round() as i64)
}

/// Parses a textual timestamp in any of the formats in the module docs.
#[must_use]
pub fn parse_str_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return s.parse::<f64>().ok().and_then(number_to_ms);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(to_ms(t));
    }
    let fmt_frac = format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
    let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let fmt_t_frac =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]");
    let fmt_t = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    for f in [fmt_frac, fmt, fmt_t_frac, fmt_t] {
        if let Ok(t) = PrimitiveDateTime::parse(s, f) {
            return Some(to_ms(t.assume_utc()));
        }
    }
    // `2019-11-05T16:33:54.9070259Z` has more digits than RFC 3339 parsers may allow,
    // and `+0000` offsets without a colon; normalise both.
    if let Some(t) = parse_loose_offset(s) {
        return Some(t);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc2822) {
        return Some(to_ms(t));
    }
    None
}

fn parse_loose_offset(s: &str) -> Option<i64> {
    // Accept `...+0000` / `...-0400` by inserting a colon.
    let bytes = s.as_bytes();
    if bytes.len() > 5 && s.is_char_boundary(s.len() - 5) {
        let tail = &s[s.len() - 5..];
        if (tail.starts_with('+') || tail.starts_with('-'))
            && tail[1..].bytes().all(|b| b.is_ascii_digit())
        {
            let fixed = format!("{}{}:{}", &s[..s.len() - 5], &tail[..3], &tail[3..]);
            if let Ok(t) = OffsetDateTime::parse(&fixed, &Rfc3339) {
                return Some(to_ms(t));
            }
        }
    }
    None
}

/// Parses Vonage's `scts` (`YYMMDDHHMM`, UTC, 2000-based).
#[must_use]
pub fn parse_yymmddhhmm_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() != 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let full = format!(
        "20{}-{}-{} {}:{}:00",
        &s[0..2],
        &s[2..4],
        &s[4..6],
        &s[6..8],
        &s[8..10]
    );
    parse_str_ms(&full)
}

/// Parses a JSON timestamp: a number (seconds or ms) or a string in any supported format.
#[must_use]
pub fn value_to_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_f64().and_then(number_to_ms),
        Value::String(s) => parse_str_ms(s),
        _ => None,
    }
}

/// Converts a date-time to epoch milliseconds.
#[must_use]
pub fn to_ms(t: OffsetDateTime) -> i64 {
    #[allow(clippy::cast_possible_truncation)]
    let ms = (t.unix_timestamp_nanos() / 1_000_000) as i64;
    ms
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds (`2024-01-02T03:04:05.678Z`).
#[must_use]
pub fn ms_to_rfc3339(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let f =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_by_magnitude() {
        assert_eq!(value_to_ms(&json!(1_600_112_502)), Some(1_600_112_502_000));
        assert_eq!(
            value_to_ms(&json!(1_529_692_199.626_182)),
            Some(1_529_692_199_626)
        );
        assert_eq!(
            value_to_ms(&json!(1_710_941_393_420_i64)),
            Some(1_710_941_393_420)
        );
        assert_eq!(value_to_ms(&json!("1600112502")), Some(1_600_112_502_000));
        assert_eq!(
            value_to_ms(&json!("1529692199.626182")),
            Some(1_529_692_199_626)
        );
        assert_eq!(value_to_ms(&json!(-1)), None);
        assert_eq!(value_to_ms(&json!(1e300)), None);
    }

    #[test]
    fn text_formats() {
        assert_eq!(
            parse_str_ms("2016-10-19T23:20:52.240Z"),
            Some(1_476_919_252_240)
        );
        assert_eq!(
            parse_str_ms("2019-11-05T16:33:54.9070259Z"),
            Some(1_572_971_634_907)
        );
        assert_eq!(
            parse_str_ms("2014-08-01T13:28:10.2735393-04:00"),
            Some(1_406_914_090_273)
        );
        assert_eq!(parse_str_ms("2020-01-01 12:00:00"), Some(1_577_880_000_000));
        assert_eq!(
            parse_str_ms("2020-01-01 12:00:00.123456"),
            Some(1_577_880_000_123)
        );
        assert_eq!(parse_yymmddhhmm_ms("2001011200"), Some(1_577_880_000_000));
        assert_eq!(parse_str_ms("not a date"), None);
        assert_eq!(parse_str_ms("aé0000"), None);
        assert_eq!(parse_str_ms("2020-01-01T00:00:00é+0000"), None);
    }

    #[test]
    fn rfc3339_output() {
        assert_eq!(ms_to_rfc3339(1_476_919_252_240), "2016-10-19T23:20:52.240Z");
    }
}
