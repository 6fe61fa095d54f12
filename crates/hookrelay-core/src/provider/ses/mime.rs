//! The text of a received email: the first `text/plain` part of a MIME message
//! (RFC 2045, RFC 2046), decoded.
//!
//! Enough for the `content` of an SES receiving notification, not a general MIME parser:
//! it follows `multipart/*` bodies (at most [`MAX_DEPTH`] levels), skips parts marked
//! `Content-Disposition: attachment` and every type other than `text/plain` (an HTML-only
//! message has no text here), undoes the `base64` and `quoted-printable` transfer
//! encodings, and reads the charsets UTF-8 (also the default), US-ASCII, ISO-8859-1 and
//! Windows-1252; a part in any other charset yields no text. Header values are not
//! decoded (no RFC 2047 encoded words): only the body is read.

use std::borrow::Cow;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

/// Nested `multipart/*` levels followed; deeper parts are not read.
pub(super) const MAX_DEPTH: usize = 8;

/// Base64 as mail writes it: padding optional (whitespace is removed before).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The message's text: its first `text/plain` part, decoded, line breaks as `\n`, trailing
/// white space removed; `None` when it has none (or only white space).
pub(super) fn plain_text(message: &[u8]) -> Option<String> {
    let text = part_text(message, 0)?.replace("\r\n", "\n");
    let text = text.trim_end();
    (!text.trim_start().is_empty()).then(|| text.to_owned())
}

/// Decodes base64 text that may be broken into lines.
pub(super) fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    BASE64.decode(compact).ok()
}

/// The text of one entity (a message or a body part), searching its parts when it is a
/// multipart.
fn part_text(entity: &[u8], depth: usize) -> Option<String> {
    let (head, body) = split_entity(entity);
    let headers = Headers::parse(head);
    let (mime, params) = headers
        .get("content-type")
        .map_or_else(|| ("text/plain".to_owned(), Vec::new()), content_type);
    let attachment = headers.get("content-disposition").is_some_and(|d| {
        d.trim_start()
            .get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case("attachment"))
    });
    if attachment {
        return None;
    }
    if mime.starts_with("multipart/") {
        if depth >= MAX_DEPTH {
            return None;
        }
        let boundary = param(&params, "boundary").filter(|b| !b.is_empty())?;
        return parts(body, boundary)
            .into_iter()
            .find_map(|part| part_text(part, depth + 1));
    }
    if mime != "text/plain" {
        return None;
    }
    let encoding = headers
        .get("content-transfer-encoding")
        .map(|e| e.trim().to_ascii_lowercase());
    let decoded: Cow<'_, [u8]> = match encoding.as_deref() {
        Some("base64") => Cow::Owned(decode_base64(body)?),
        Some("quoted-printable") => Cow::Owned(decode_quoted_printable(body)),
        _ => Cow::Borrowed(body),
    };
    decode_charset(&decoded, param(&params, "charset"))
}

/// Splits an entity at the first empty line into its header block and its body. An entity
/// without an empty line is all headers.
fn split_entity(entity: &[u8]) -> (&[u8], &[u8]) {
    for blank in [&b"\r\n"[..], b"\n"] {
        if let Some(body) = entity.strip_prefix(blank) {
            return (&[], body);
        }
    }
    let crlf = find(entity, b"\r\n\r\n").map(|i| (i, 4));
    let lf = find(entity, b"\n\n").map(|i| (i, 2));
    let split = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    match split {
        // The head keeps its last line break, the body starts after the empty line.
        Some((at, len)) => (&entity[..at], &entity[at + len..]),
        None => (entity, &[]),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Header fields, names lowercased, folded lines joined.
struct Headers(Vec<(String, String)>);

impl Headers {
    fn parse(head: &[u8]) -> Self {
        let text = String::from_utf8_lossy(head);
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                fields.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        Self(fields)
    }

    /// The first field of this (lowercase) name.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `type/subtype; name=value; name="quoted value"` → the lowercased type and the
/// parameters (names lowercased, values unquoted).
fn content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = Vec::new();
    let mut piece = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        match c {
            _ if escaped => {
                piece.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => pieces.push(std::mem::take(&mut piece)),
            _ => piece.push(c),
        }
    }
    pieces.push(piece);
    let mut pieces = pieces.into_iter();
    let mime = pieces
        .next()
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let params = pieces
        .filter_map(|p| {
            let (name, value) = p.split_once('=')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    (mime, params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The body parts of a multipart body: what lies between the `--boundary` delimiter lines,
/// up to the closing `--boundary--` (or the end, when it is missing). The line break before
/// a delimiter belongs to the delimiter.
fn parts<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delimiter = format!("--{boundary}");
    let mut found = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    while pos < body.len() {
        let end = body[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| pos + i + 1);
        let line = body[pos..end].trim_ascii_end();
        if let Some(rest) = line.strip_prefix(delimiter.as_bytes()) {
            let closing = rest == b"--";
            if rest.is_empty() || closing {
                if let Some(s) = start {
                    found.push(without_final_line_break(&body[s..pos]));
                }
                if closing {
                    return found;
                }
                start = Some(end);
            }
        }
        pos = end;
    }
    if let Some(s) = start {
        found.push(&body[s.min(body.len())..]);
    }
    found
}

fn without_final_line_break(part: &[u8]) -> &[u8] {
    part.strip_suffix(b"\r\n")
        .or_else(|| part.strip_suffix(b"\n"))
        .unwrap_or(part)
}

/// Undoes `quoted-printable`: `=XX` is a byte, `=` at the end of a line joins it to the
/// next; anything else (a stray `=`) is kept as it is.
fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b != b'=' {
            out.push(b);
            i += 1;
            continue;
        }
        let rest = &input[i + 1..];
        let blanks = rest
            .iter()
            .take_while(|c| matches!(c, b' ' | b'\t'))
            .count();
        let after = &rest[blanks..];
        if after.starts_with(b"\r\n") {
            i += 1 + blanks + 2;
        } else if after.starts_with(b"\n") {
            i += 1 + blanks + 1;
        } else if after.is_empty() {
            i = input.len();
        } else if let [hi, lo, ..] = rest
            && let (Some(hi), Some(lo)) = (hex_digit(*hi), hex_digit(*lo))
        {
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(b'=');
            i += 1;
        }
    }
    out
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The text of `bytes` in `charset` (UTF-8 when absent); `None` for a charset not read
/// here. Invalid UTF-8 is replaced (U+FFFD), as mail often mislabels.
fn decode_charset(bytes: &[u8], charset: Option<&str>) -> Option<String> {
    let charset = charset.map(|c| c.trim().to_ascii_lowercase());
    match charset.as_deref() {
        None | Some("utf-8" | "utf8" | "us-ascii" | "ascii") => {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
        Some("iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "latin-1" | "l1") => {
            Some(bytes.iter().map(|&b| char::from(b)).collect())
        }
        Some("windows-1252" | "cp1252") => Some(bytes.iter().map(|&b| windows_1252(b)).collect()),
        Some(_) => None,
    }
}

/// A Windows-1252 byte as a character (the WHATWG table: ISO-8859-1 but for 0x80–0x9F).
fn windows_1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{81}', '\u{201A}', '\u{192}', '\u{201E}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{2C6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8D}', '\u{17D}',
        '\u{8F}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}',
        '\u{2014}', '\u{2DC}', '\u{2122}', '\u{161}', '\u{203A}', '\u{153}', '\u{9D}', '\u{17E}',
        '\u{178}',
    ];
    match b {
        0x80..=0x9F => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_part_message_is_its_body() {
        let m = b"From: a@example.com\r\nSubject: Hi\r\n\r\nExample content\r\n";
        assert_eq!(plain_text(m).as_deref(), Some("Example content"));
        // No Content-Type means text/plain; LF-only line breaks too.
        let m = b"From: a@example.com\n\nline 1\nline 2\n\n";
        assert_eq!(plain_text(m).as_deref(), Some("line 1\nline 2"));
        // Headers only, or an empty body: no text.
        assert_eq!(plain_text(b"From: a@example.com\r\n"), None);
        assert_eq!(plain_text(b"From: a@example.com\r\n\r\n \r\n"), None);
        assert_eq!(plain_text(b""), None);
    }

    #[test]
    fn the_plain_part_of_an_alternative_inside_a_mixed_message() {
        let m = concat!(
            "Content-Type: multipart/mixed; boundary=\"outer; b\"\r\n",
            "\r\n",
            "preamble\r\n",
            "--outer; b\r\n",
            "Content-Type: multipart/alternative;\r\n",
            "\tboundary=inner\r\n",
            "\r\n",
            "--inner\r\n",
            "Content-Type: text/html; charset=utf-8\r\n",
            "\r\n",
            "<p>Hello</p>\r\n",
            "--inner\r\n",
            "Content-Type: text/plain; charset=\"UTF-8\"\r\n",
            "Content-Transfer-Encoding: quoted-printable\r\n",
            "\r\n",
            "Gr=C3=BC=C3=9Fe, a long line that was =\r\n",
            "broken =3D joined.\r\n",
            "--inner--\r\n",
            "--outer; b\r\n",
            "Content-Type: text/plain\r\n",
            "Content-Disposition: attachment; filename=notes.txt\r\n",
            "\r\n",
            "not the body\r\n",
            "--outer; b--\r\n",
            "epilogue\r\n",
        );
        assert_eq!(
            plain_text(m.as_bytes()).as_deref(),
            Some("Grüße, a long line that was broken = joined.")
        );
    }

    #[test]
    fn attachments_and_html_only_have_no_text() {
        let m = concat!(
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n",
            "--b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n",
            "--b\r\nContent-Type: text/plain\r\nContent-Disposition: ATTACHMENT\r\n\r\nx\r\n",
            "--b--\r\n",
        );
        assert_eq!(plain_text(m.as_bytes()), None);
        assert_eq!(
            plain_text(b"Content-Type: text/html\r\n\r\n<p>hi</p>"),
            None
        );
        // A multipart without a boundary has no parts to read.
        assert_eq!(
            plain_text(b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nhi\r\n--x--"),
            None
        );
    }

    #[test]
    fn transfer_encodings_and_charsets() {
        let b64 = concat!(
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Content-Transfer-Encoding: Base64\r\n\r\n",
            "SGVsbG8g8J+Rizog\r\n",
            "w6nDqA\r\n",
        );
        assert_eq!(plain_text(b64.as_bytes()).as_deref(), Some("Hello 👋: éè"));
        let bad = "Content-Transfer-Encoding: base64\r\n\r\n!!!\r\n";
        assert_eq!(plain_text(bad.as_bytes()), None);
        let latin1 = b"Content-Type: text/plain; charset=ISO-8859-1\r\n\r\ncaf\xe9";
        assert_eq!(plain_text(latin1).as_deref(), Some("café"));
        let cp1252 = b"Content-Type: text/plain; charset=windows-1252\r\n\r\n\x93quoted\x94 \x80";
        assert_eq!(
            plain_text(cp1252).as_deref(),
            Some("\u{201C}quoted\u{201D} €")
        );
        let sjis = b"Content-Type: text/plain; charset=shift_jis\r\n\r\n\x82\xa0";
        assert_eq!(plain_text(sjis), None);
        // Mislabelled UTF-8 is replaced, not refused.
        let broken = b"Content-Type: text/plain\r\n\r\nok \xff";
        assert_eq!(plain_text(broken).as_deref(), Some("ok \u{FFFD}"));
    }

    #[test]
    fn quoted_printable_edge_cases() {
        assert_eq!(decode_quoted_printable(b"a=3d=3Db"), b"a==b");
        assert_eq!(
            decode_quoted_printable(b"soft=  \r\nbreak=\nx="),
            b"softbreakx"
        );
        assert_eq!(
            decode_quoted_printable(b"stray = and =zz and =4"),
            b"stray = and =zz and =4"
        );
    }

    #[test]
    fn nesting_is_bounded_and_unterminated_parts_are_read() {
        let mut m = String::new();
        for level in 0..=MAX_DEPTH {
            m.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{level}\r\n\r\n--b{level}\r\n"
            ));
        }
        m.push_str("Content-Type: text/plain\r\n\r\ntoo deep\r\n");
        assert_eq!(plain_text(m.as_bytes()), None);
        let unterminated = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nstill read";
        assert_eq!(
            plain_text(unterminated.as_bytes()).as_deref(),
            Some("still read")
        );
        // A delimiter must be the whole line: `--bx` is not `--b`.
        let prefix = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--bx\r\n\r\nno\r\n--b--";
        assert_eq!(plain_text(prefix.as_bytes()), None);
    }
}
