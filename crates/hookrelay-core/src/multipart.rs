//! `multipart/form-data` bodies (RFC 7578, framed as RFC 2046 §5.1 says), read from the raw
//! bytes.
//!
//! Some providers post a form with files: Mailgun Routes forward a received message with
//! its attachments this way. A normalizer needs each part's field name, file name, content
//! type and bytes, and this module gives exactly that, with the bytes as a slice of the
//! body (never copied).
//!
//! It is bounded, whatever the input: a boundary of 1 to [`MAX_BOUNDARY_LEN`] characters,
//! at most [`MAX_PARTS`] parts, each part's header block at most [`MAX_HEADER_BYTES`]. It
//! allocates the list of parts and their header values, nothing in proportion to a part's
//! content, and it never panics (the Mailgun fuzz target and a unit test feed it arbitrary
//! bytes). One pass: each delimiter is found with `memchr`'s substring search, and a
//! candidate that is not followed by what a delimiter line allows (`--`, or spaces and a
//! line break) is skipped, so content that happens to contain the boundary text does not
//! cut a part short.
//!
//! Not read: nested `multipart/mixed` parts and `Content-Transfer-Encoding` (RFC 7578
//! deprecates both; a part's bytes are returned as sent), and charsets other than UTF-8
//! (text is decoded as UTF-8, invalid sequences replaced).
//!
//! ```
//! use bytes::Bytes;
//! use hookrelay_core::multipart::{boundary, parse};
//!
//! let b = boundary("multipart/form-data; boundary=\"x-7\"").unwrap();
//! let body = Bytes::from_static(
//!     b"--x-7\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nHi\r\n\
//!       --x-7\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"a.txt\"\r\n\
//!       Content-Type: text/plain\r\n\r\nfile bytes\r\n--x-7--\r\n",
//! );
//! let parts = parse(&body, &b).unwrap();
//! assert_eq!(parts[0].name, "subject");
//! assert_eq!(parts[0].text(), "Hi");
//! assert_eq!(parts[1].filename.as_deref(), Some("a.txt"));
//! assert_eq!(parts[1].content_type.as_deref(), Some("text/plain"));
//! assert_eq!(parts[1].data.len(), 10);
//! ```

use std::borrow::Cow;

use bytes::Bytes;
use memchr::memmem;

/// Most parts one body may have.
pub const MAX_PARTS: usize = 1_000;

/// Longest header block of one part, in bytes (its lines and their line breaks).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Longest boundary (RFC 2046: 1 to 70 characters).
pub const MAX_BOUNDARY_LEN: usize = 70;

/// Why a `multipart/form-data` body cannot be read. The `Display` text is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MultipartError {
    /// The content type has no `boundary` parameter.
    #[error("no boundary parameter in the content type")]
    NoBoundary,
    /// The boundary is empty, longer than 70 characters, or has a character RFC 2046 does
    /// not allow in one.
    #[error("the boundary is not 1 to 70 of the characters RFC 2046 allows")]
    BadBoundary,
    /// No delimiter line opens the first part.
    #[error("no boundary line opens the body")]
    NoOpening,
    /// The body ends inside a part: no closing delimiter (`--boundary--`).
    #[error("the body ends before its closing boundary")]
    Unterminated,
    /// More than [`MAX_PARTS`] parts.
    #[error("more than {MAX_PARTS} parts")]
    TooManyParts,
    /// A part's header block is longer than [`MAX_HEADER_BYTES`].
    #[error("part {index}: headers longer than {MAX_HEADER_BYTES} bytes")]
    HeadersTooLong {
        /// The part, counted from 0.
        index: usize,
    },
    /// A part's headers are not those of a form field.
    #[error("part {index}: {reason}")]
    BadPart {
        /// The part, counted from 0.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// One part of a form: a field, or a file when it has a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The field name (`name` of `Content-Disposition: form-data`).
    pub name: String,
    /// The file name, for a file (`filename`, or the decoded `filename*`). May be empty.
    pub filename: Option<String>,
    /// The part's `Content-Type`, when it has one.
    pub content_type: Option<String>,
    /// The part's bytes, exactly as sent (a slice of the body).
    pub data: Bytes,
}

impl Part {
    /// True for a file (the part has a file name).
    #[must_use]
    pub fn is_file(&self) -> bool {
        self.filename.is_some()
    }

    /// The part's bytes as text (UTF-8, invalid sequences replaced).
    #[must_use]
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.data)
    }
}

/// The `boundary` parameter of a `multipart/*` content type, checked.
///
/// # Errors
///
/// [`MultipartError::NoBoundary`] or [`MultipartError::BadBoundary`].
pub fn boundary(content_type: &str) -> Result<String, MultipartError> {
    let (_, value) = parameters(content_type)
        .into_iter()
        .find(|(name, _)| name == "boundary")
        .ok_or(MultipartError::NoBoundary)?;
    check_boundary(&value)?;
    Ok(value)
}

/// RFC 2046: `0*69<bchars> bcharsnospace`.
fn check_boundary(b: &str) -> Result<(), MultipartError> {
    let allowed = |c: u8| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c);
    let ok =
        !b.is_empty() && b.len() <= MAX_BOUNDARY_LEN && b.bytes().all(allowed) && !b.ends_with(' ');
    if ok {
        Ok(())
    } else {
        Err(MultipartError::BadBoundary)
    }
}

/// Splits `body` into its parts. The preamble (before the first delimiter line) and the
/// epilogue (after the closing one) are ignored.
///
/// # Errors
///
/// [`MultipartError`] when the body is not a complete, well-formed form within the bounds
/// of this module.
pub fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, MultipartError> {
    check_boundary(boundary)?;
    let mut delimiter = Vec::with_capacity(boundary.len() + 4);
    delimiter.extend_from_slice(b"\r\n--");
    delimiter.extend_from_slice(boundary.as_bytes());
    let finder = memmem::Finder::new(&delimiter);
    // The first delimiter line may open the body itself, without a line break before it.
    let opening = delimiter.get(2..).unwrap_or_default();
    let mut pos = if body.starts_with(opening) && ends_delimiter(body, opening.len()) {
        opening.len()
    } else {
        next_delimiter(body, &finder, 0)
            .ok_or(MultipartError::NoOpening)?
            .1
    };
    let mut parts = Vec::new();
    loop {
        // `pos` is just after a delimiter, which `ends_delimiter` checked is followed by
        // `--` (the close) or by spaces and a line break.
        if body.get(pos..pos + 2) == Some(b"--".as_slice()) {
            return Ok(parts);
        }
        while matches!(body.get(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        if body.get(pos..pos + 2) != Some(b"\r\n".as_slice()) {
            return Err(MultipartError::Unterminated);
        }
        pos += 2;
        let index = parts.len();
        if index == MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        let rest = body.get(pos..).unwrap_or_default();
        let (headers, content_start) = if rest.starts_with(b"\r\n") {
            (&rest[..0], pos + 2)
        } else {
            let window = rest
                .get(..MAX_HEADER_BYTES.saturating_add(4))
                .unwrap_or(rest);
            match memmem::find(window, b"\r\n\r\n") {
                Some(i) => (window.get(..i).unwrap_or_default(), pos + i + 4),
                None if window.len() < rest.len() => {
                    return Err(MultipartError::HeadersTooLong { index });
                }
                None => return Err(MultipartError::Unterminated),
            }
        };
        let head = part_head(headers, index)?;
        let (end, after) =
            next_delimiter(body, &finder, content_start).ok_or(MultipartError::Unterminated)?;
        parts.push(Part {
            name: head.name,
            filename: head.filename,
            content_type: head.content_type,
            data: body.slice(content_start..end),
        });
        pos = after;
    }
}

/// The next delimiter at or after `from`: its start and the position just after it.
/// A candidate not followed by what a delimiter line allows is skipped.
fn next_delimiter(body: &[u8], finder: &memmem::Finder<'_>, from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    loop {
        let found = at + finder.find(body.get(at..)?)?;
        let after = found + finder.needle().len();
        if ends_delimiter(body, after) {
            return Some((found, after));
        }
        at = found + 1;
    }
}

/// True when what follows a delimiter at `after` makes it one: `--` (the close), or
/// optional spaces or tabs and a line break.
fn ends_delimiter(body: &[u8], after: usize) -> bool {
    let rest = body.get(after..).unwrap_or_default();
    if rest.starts_with(b"--") {
        return true;
    }
    let padding = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    rest.get(padding..).is_some_and(|r| r.starts_with(b"\r\n"))
}

/// What a part's headers say.
struct Head {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
}

/// Reads a part's header block: `Content-Disposition: form-data; name=…` (required) and
/// `Content-Type`; other headers are ignored. Folded lines are joined.
fn part_head(block: &[u8], index: usize) -> Result<Head, MultipartError> {
    let bad = |reason| MultipartError::BadPart { index, reason };
    let text = String::from_utf8_lossy(block);
    let mut lines: Vec<String> = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        match lines.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push(' ');
                last.push_str(line.trim_start());
            }
            _ => lines.push(line.to_owned()),
        }
    }
    let mut disposition = None;
    let mut content_type = None;
    for line in &lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("a header line without a colon"))?;
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-disposition") && disposition.is_none() {
            disposition = Some(value.trim());
        } else if name.eq_ignore_ascii_case("content-type") && content_type.is_none() {
            content_type = Some(value.trim()).filter(|v| !v.is_empty());
        }
    }
    let disposition = disposition.ok_or_else(|| bad("no Content-Disposition header"))?;
    let kind = disposition.split(';').next().unwrap_or_default().trim();
    if !kind.eq_ignore_ascii_case("form-data") {
        return Err(bad("Content-Disposition is not form-data"));
    }
    let params = parameters(disposition);
    let param = |n: &str| {
        params
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, v)| v.clone())
    };
    let name = param("name").ok_or_else(|| bad("no field name"))?;
    let filename = param("filename*")
        .and_then(|v| extended_value(&v))
        .or_else(|| param("filename"));
    Ok(Head {
        name,
        filename,
        content_type: content_type.map(str::to_owned),
    })
}

/// The `; name=value` parameters after a header value's first item: names lower-cased,
/// quoted values unquoted (`\"` and `\\` are escapes; any other backslash is kept, since
/// senders put Windows paths in file names unescaped). A name without `=` is skipped.
fn parameters(header: &str) -> Vec<(String, String)> {
    let bytes = header.as_bytes();
    let len = bytes.len();
    let mut out = Vec::new();
    let Some(first) = header.find(';') else {
        return out;
    };
    let mut i = first + 1;
    // Every index this loop stops at is an ASCII byte or the end, so a char boundary.
    while i < len {
        while i < len && matches!(bytes.get(i), Some(b' ' | b'\t' | b';')) {
            i += 1;
        }
        let start = i;
        while i < len && !matches!(bytes.get(i), Some(b'=' | b';')) {
            i += 1;
        }
        let name = header
            .get(start..i)
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if bytes.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while matches!(bytes.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        let value = if bytes.get(i) == Some(&b'"') {
            i += 1;
            let mut v = String::new();
            let mut chars = header
                .get(i..)
                .unwrap_or_default()
                .char_indices()
                .peekable();
            let mut closed_at = None;
            while let Some((offset, c)) = chars.next() {
                match c {
                    '"' => {
                        closed_at = Some(offset + 1);
                        break;
                    }
                    '\\' if matches!(chars.peek(), Some((_, '"' | '\\'))) => {
                        if let Some((_, escaped)) = chars.next() {
                            v.push(escaped);
                        }
                    }
                    c => v.push(c),
                }
            }
            i = closed_at.map_or(len, |o| i + o);
            while i < len && bytes.get(i) != Some(&b';') {
                i += 1;
            }
            v
        } else {
            let start = i;
            while i < len && bytes.get(i) != Some(&b';') {
                i += 1;
            }
            header.get(start..i).unwrap_or_default().trim().to_owned()
        };
        if !name.is_empty() {
            out.push((name, value));
        }
    }
    out
}

/// An RFC 8187 extended value (`UTF-8''na%C3%AFve.txt`): the percent-decoded text (as
/// UTF-8, invalid sequences replaced). `None` when it is not of that form.
fn extended_value(v: &str) -> Option<String> {
    let mut fields = v.splitn(3, '\'');
    let _charset = fields.next()?;
    let _language = fields.next()?;
    let encoded = fields.next()?.as_bytes();
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while let Some(&b) = encoded.get(i) {
        let hex = |at: usize| encoded.get(at).and_then(|d| char::from(*d).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits fit a byte.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> Bytes {
        Bytes::from(s.replace('\n', "\r\n"))
    }

    #[test]
    fn boundary_parameter_is_read_and_checked() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").as_deref(),
            Ok("abc")
        );
        assert_eq!(
            boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b:c\"").as_deref(),
            Ok("a b:c")
        );
        assert_eq!(
            boundary("multipart/form-data"),
            Err(MultipartError::NoBoundary)
        );
        assert_eq!(
            boundary("multipart/form-data; boundary="),
            Err(MultipartError::BadBoundary)
        );
        assert_eq!(
            boundary("multipart/form-data; boundary=\"ends with space \""),
            Err(MultipartError::BadBoundary)
        );
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            Err(MultipartError::BadBoundary)
        );
        assert_eq!(
            boundary("multipart/form-data; boundary=a\u{e9}"),
            Err(MultipartError::BadBoundary)
        );
    }

    #[test]
    fn fields_files_preamble_and_epilogue() {
        let b = body(
            "preamble, ignored\n\
             --XyZ\n\
             Content-Disposition: form-data; name=\"a\"\n\
             \n\
             one\n\
             --XyZ  \n\
             content-disposition: form-data; name=\"f\"; filename=\"C:\\dir\\r\u{e9}sum\u{e9}.pdf\"\n\
             Content-Type: application/pdf\n\
             X-Other: ignored\n\
             \n\
             %PDF\n--XyZ-not-a-delimiter\n\
             --XyZ\n\
             Content-Disposition: form-data; name=\"empty\"\n\
             \n\
             \n\
             --XyZ--\n\
             epilogue --XyZ\n",
        );
        let parts = parse(&b, "XyZ").expect("parses");
        assert_eq!(parts.len(), 3);
        assert_eq!(
            (parts[0].name.as_str(), parts[0].text()),
            ("a", "one".into())
        );
        assert!(!parts[0].is_file());
        let f = &parts[1];
        assert_eq!(f.filename.as_deref(), Some("C:\\dir\\résumé.pdf"));
        assert_eq!(f.content_type.as_deref(), Some("application/pdf"));
        assert_eq!(f.data.as_ref(), b"%PDF\r\n--XyZ-not-a-delimiter");
        assert_eq!(parts[2].data.len(), 0);
    }

    #[test]
    fn extended_file_names_and_escapes() {
        let b = body(
            "--b\n\
             Content-Disposition: form-data; name=\"x\\\"y\"; filename=\"plain.txt\";\n \
             filename*=UTF-8''na%C3%AFve%20%E2%9C%93.txt\n\
             \n\
             x\n\
             --b--",
        );
        let parts = parse(&b, "b").expect("parses");
        assert_eq!(parts[0].name, "x\"y");
        assert_eq!(parts[0].filename.as_deref(), Some("naïve ✓.txt"));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let cases: &[(&str, MultipartError)] = &[
            ("", MultipartError::NoOpening),
            ("--other\n\n--other--", MultipartError::NoOpening),
            ("--b", MultipartError::NoOpening),
            ("--bx\n", MultipartError::NoOpening),
            (
                "--b\nContent-Disposition: form-data; name=\"a\"\n\nno end",
                MultipartError::Unterminated,
            ),
            (
                "--b\nContent-Disposition: form-data; name=\"a\"",
                MultipartError::Unterminated,
            ),
            (
                "--b\n\nno headers\n--b--",
                MultipartError::BadPart {
                    index: 0,
                    reason: "no Content-Disposition header",
                },
            ),
            (
                "--b\nContent-Disposition: attachment; name=\"a\"\n\nx\n--b--",
                MultipartError::BadPart {
                    index: 0,
                    reason: "Content-Disposition is not form-data",
                },
            ),
            (
                "--b\nContent-Disposition: form-data\n\nx\n--b--",
                MultipartError::BadPart {
                    index: 0,
                    reason: "no field name",
                },
            ),
            (
                "--b\nnot a header\n\nx\n--b--",
                MultipartError::BadPart {
                    index: 0,
                    reason: "a header line without a colon",
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(&body(text), "b").as_ref(), Err(expected), "{text:?}");
        }
        let long = format!(
            "--b\r\nX: {}\r\n\r\nx\r\n--b--",
            "y".repeat(MAX_HEADER_BYTES)
        );
        assert_eq!(
            parse(&Bytes::from(long), "b"),
            Err(MultipartError::HeadersTooLong { index: 0 })
        );
        let mut many = String::new();
        for _ in 0..=MAX_PARTS {
            many.push_str("--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n");
        }
        many.push_str("--b--");
        assert_eq!(
            parse(&Bytes::from(many), "b"),
            Err(MultipartError::TooManyParts)
        );
        assert_eq!(
            parse(&Bytes::from_static(b"--b--"), ""),
            Err(MultipartError::BadBoundary)
        );
    }

    /// A small deterministic generator, so the test needs no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn step(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.step() % (n.max(1) as u64)).unwrap_or(0)
        }
    }

    /// Mutates a valid body thousands of times (bytes flipped, inserted, removed, spliced
    /// with pieces of delimiters and headers): the parser returns, never panics, and
    /// every part it returns lies within the body.
    #[test]
    fn mutated_bodies_never_panic() {
        let seed = body(
            "--b0undary\n\
             Content-Disposition: form-data; name=\"timestamp\"\n\n1700000000\n\
             --b0undary\n\
             Content-Disposition: form-data; name=\"attachment-1\"; filename=\"a.bin\"\n\
             Content-Type: application/octet-stream\n\n\x00\x01\x02\n\
             --b0undary--\n",
        );
        let pieces: [&[u8]; 8] = [
            b"\r\n--b0undary",
            b"--",
            b"\r\n\r\n",
            b"Content-Disposition: form-data; name=\"",
            b"filename*=UTF-8''%",
            b"\"",
            b"\\",
            b" \t",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5_000 {
            let mut b = seed.to_vec();
            for _ in 0..=rng.below(6) {
                let at = rng.below(b.len() + 1);
                match rng.below(4) {
                    0 if !b.is_empty() => {
                        let i = rng.below(b.len());
                        b[i] = u8::try_from(rng.step() & 0xff).unwrap_or(0);
                    }
                    1 if at < b.len() => {
                        let n = rng.below(8).min(b.len() - at);
                        b.drain(at..at + n);
                    }
                    2 => {
                        let piece = pieces[rng.below(pieces.len())];
                        b.splice(at..at, piece.iter().copied());
                    }
                    _ => b.insert(
                        at.min(b.len()),
                        u8::try_from(rng.step() & 0xff).unwrap_or(0),
                    ),
                }
            }
            let bytes = Bytes::from(b);
            if let Ok(parts) = parse(&bytes, "b0undary") {
                assert!(parts.len() <= MAX_PARTS);
                let total: usize = parts.iter().map(|p| p.data.len()).sum();
                assert!(total <= bytes.len());
            }
            let ct = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
            let _ = boundary(&format!("multipart/form-data; {ct}"));
        }
    }
}
