//! Reading a callback's body, bounded by its route's `max_body`.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use super::refusal::Refusal;

/// The body's declared length (`Content-Length`), if any and readable.
pub(crate) fn declared_length(session: &Session) -> Option<u64> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Reads the whole body, at most `limit` bytes: a `declared` length over the limit is
/// refused before anything is read, and reading stops as soon as the limit is passed.
pub(crate) async fn read(
    session: &mut Session,
    declared: Option<u64>,
    limit: usize,
) -> Result<Bytes, Refusal> {
    if let Some(len) = declared
        && len > limit as u64
    {
        return Err(Refusal::TooLarge {
            declared: Some(len),
            limit,
        });
    }
    // A body that arrives in one chunk (the usual case) is kept as it is, not copied.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                let held = first.as_ref().map_or(0, Bytes::len) + buf.len();
                if held + chunk.len() > limit {
                    return Err(Refusal::TooLarge {
                        declared: None,
                        limit,
                    });
                }
                if first.is_none() && buf.is_empty() {
                    first = Some(chunk);
                } else {
                    if let Some(earlier) = first.take() {
                        buf.extend_from_slice(&earlier);
                    }
                    buf.extend_from_slice(&chunk);
                }
            }
            Ok(None) => return Ok(first.unwrap_or_else(|| buf.freeze())),
            Err(e) => return Err(Refusal::Unreadable(e.to_string())),
        }
    }
}
