//! The log file: frames of records, appended and read back.
//!
//! A log file starts with [`MAGIC`], then holds frames. A frame is
//! `[payload length: u32 LE][xxh3-64 of the payload: u64 LE][payload]`, and the payload is
//! a run of records, each `[head length: u32 LE][tail length: u32 LE][head][tail]`, where
//! the head is a postcard-encoded [`Rec`](super::state::Rec) and the tail raw bytes (a
//! delivery's body). A frame is the unit of atomicity: at open, a frame that is cut short
//! or fails its checksum ends the file (a write the crash interrupted, never acknowledged)
//! and is cut off. Every operation's records go into one frame. A damaged frame that is
//! followed by an intact one is not the end of the file: it is skipped, and reported, and
//! the frames after it are read.

use crate::StoreError;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

/// The first bytes of every log file: name and format version.
pub(crate) const MAGIC: &[u8; 8] = b"HKRLOG\x00\x01";

/// The log file with sequence number `seq`.
pub(crate) fn log_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.log"))
}

const FRAME_HEADER: usize = 12;
const RECORD_HEADER: usize = 8;

/// Where one record lies: in which log file (its sequence number), at which offset, how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) seq: u64,
    pub(crate) off: u64,
    pub(crate) len: u32,
}

/// Frames being built in memory before one write.
#[derive(Debug)]
pub(crate) struct FrameBuf {
    buf: Vec<u8>,
    /// A record's head is encoded here first, so a failed encoding leaves `buf` whole.
    scratch: Vec<u8>,
    seq: u64,
    /// File offset of `buf[0]`.
    base: u64,
    /// Start of the open frame in `buf`, if one is open.
    frame: Option<usize>,
}

impl FrameBuf {
    /// An empty buffer whose first byte goes to offset `base` of log file `seq`.
    pub(crate) fn new(seq: u64, base: u64) -> Self {
        Self::reusing(Vec::new(), seq, base)
    }

    /// [`FrameBuf::new`] in the memory of `buf` (cleared), so the pages of the last
    /// batch's buffer serve the next one.
    pub(crate) fn reusing(mut buf: Vec<u8>, seq: u64, base: u64) -> Self {
        buf.clear();
        FrameBuf {
            buf,
            scratch: Vec::new(),
            seq,
            base,
            frame: None,
        }
    }

    /// Opens a frame unless one is open.
    pub(crate) fn begin(&mut self) {
        if self.frame.is_none() {
            self.frame = Some(self.buf.len());
            self.buf.extend_from_slice(&[0; FRAME_HEADER]);
        }
    }

    /// Bytes in the open frame so far.
    pub(crate) fn frame_len(&self) -> usize {
        self.frame.map_or(0, |start| self.buf.len() - start)
    }

    /// Where the next record would start; [`FrameBuf::rollback`] returns here.
    pub(crate) fn mark(&self) -> usize {
        self.buf.len()
    }

    /// Drops every record appended since `mark`.
    pub(crate) fn rollback(&mut self, mark: usize) {
        self.buf.truncate(mark);
    }

    /// Appends one record to the open frame.
    pub(crate) fn push<T: serde::Serialize>(
        &mut self,
        head: &T,
        tail: &[u8],
    ) -> Result<Loc, StoreError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        // On error postcard keeps the vector: only the scratch space is lost.
        let scratch =
            postcard::to_extend(head, scratch).map_err(|e| StoreError::backend("encode", e))?;
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; RECORD_HEADER]);
        self.buf.extend_from_slice(&scratch);
        self.scratch = scratch;
        let head_len = self.buf.len() - start - RECORD_HEADER;
        self.buf.extend_from_slice(tail);
        let len = self.buf.len() - start;
        let (Ok(head_len), Ok(tail_len), Ok(len)) = (
            u32::try_from(head_len),
            u32::try_from(tail.len()),
            u32::try_from(len),
        ) else {
            self.buf.truncate(start);
            return Err(StoreError::backend(
                "encode",
                io::Error::other("record longer than 4 GiB"),
            ));
        };
        self.buf[start..start + 4].copy_from_slice(&head_len.to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&tail_len.to_le_bytes());
        Ok(Loc {
            seq: self.seq,
            off: self.base + start as u64,
            len,
        })
    }

    /// Closes the open frame: writes its length and checksum, or drops it when empty.
    pub(crate) fn end(&mut self) -> Result<(), StoreError> {
        let Some(start) = self.frame.take() else {
            return Ok(());
        };
        let payload = &self.buf[start + FRAME_HEADER..];
        if payload.is_empty() {
            self.buf.truncate(start);
            return Ok(());
        }
        let Ok(len) = u32::try_from(payload.len()) else {
            return Err(StoreError::backend(
                "encode",
                io::Error::other("frame longer than 4 GiB"),
            ));
        };
        let sum = xxh3_64(payload);
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..start + FRAME_HEADER].copy_from_slice(&sum.to_le_bytes());
        Ok(())
    }

    /// Bytes ready to be written (every frame closed).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// After the bytes were written: an empty buffer continuing at the next offset.
    pub(crate) fn advance(&mut self) {
        self.base += self.buf.len() as u64;
        self.buf.clear();
        self.frame = None;
    }

    /// The buffer's memory, for the next batch.
    pub(crate) fn into_buf(self) -> Vec<u8> {
        self.buf
    }

    /// File offset after the buffered bytes.
    pub(crate) fn end_offset(&self) -> u64 {
        self.base + self.buf.len() as u64
    }
}

/// Splits a record into head and tail.
pub(crate) fn split(record: &[u8]) -> Option<(&[u8], &[u8])> {
    let head_len = u32::from_le_bytes(record.get(0..4)?.try_into().ok()?) as usize;
    let tail_len = u32::from_le_bytes(record.get(4..8)?.try_into().ok()?) as usize;
    let head_end = RECORD_HEADER.checked_add(head_len)?;
    let end = head_end.checked_add(tail_len)?;
    if end != record.len() {
        return None;
    }
    Some((&record[RECORD_HEADER..head_end], &record[head_end..end]))
}

/// Reads one record back.
pub(crate) fn read(file: &File, loc: Loc) -> io::Result<Vec<u8>> {
    let mut record = vec![0; loc.len as usize];
    file.read_exact_at(&mut record, loc.off)?;
    Ok(record)
}

/// Whether every byte of `file` from `from` to its end is zero.
pub(crate) fn zeros(file: &File, from: u64) -> io::Result<bool> {
    let size = file.metadata()?.len();
    let mut buf = vec![0; 1 << 20];
    let mut at = from;
    while at < size {
        let n = usize::try_from(size - at).map_or(buf.len(), |left| left.min(buf.len()));
        file.read_exact_at(&mut buf[..n], at)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// How a scan of a log file ended.
#[derive(Debug)]
pub(crate) struct Scanned {
    /// End of the last whole frame: where appends continue.
    pub(crate) valid_end: u64,
    /// Bytes after it: space set aside (zeros), or a write cut short by a crash, which the
    /// caller cuts off.
    pub(crate) torn: u64,
    /// Damaged frames that intact frames follow, skipped, as (offset, payload length):
    /// corruption of written data, or pages of a write that a crash left out while later
    /// pages of it landed.
    pub(crate) skipped: Vec<(u64, u64)>,
}

/// The most records a frame payload of `len` bytes can hold (each has a header).
pub(crate) fn most_records(len: u64) -> u64 {
    len / RECORD_HEADER as u64
}

/// Whether an intact frame (plausible length, matching checksum) starts at `at`.
fn intact_frame_at(file: &File, at: u64, size: u64) -> io::Result<bool> {
    let Some(room) = size.checked_sub(at.saturating_add(FRAME_HEADER as u64)) else {
        return Ok(false);
    };
    let mut header = [0; FRAME_HEADER];
    file.read_exact_at(&mut header, at)?;
    let len = u64::from(u32::from_le_bytes([
        header[0], header[1], header[2], header[3],
    ]));
    if len == 0 || len > room {
        return Ok(false);
    }
    let mut sum = [0; 8];
    sum.copy_from_slice(&header[4..]);
    let mut payload = vec![0; len as usize];
    file.read_exact_at(&mut payload, at + FRAME_HEADER as u64)?;
    Ok(xxh3_64(&payload) == u64::from_le_bytes(sum))
}

/// Reads every record of log file `seq` in order, handing each to `each` with its location.
///
/// Stops at the first frame that is cut short or fails its checksum, unless an intact frame
/// follows it: then that frame is skipped (and listed in [`Scanned::skipped`]) and the scan
/// goes on, so one damaged frame does not take every later frame with it. A record that
/// cannot be split inside a frame whose checksum holds is corruption, not a torn write: an
/// error.
pub(crate) fn scan(
    path: &Path,
    file: &File,
    seq: u64,
    mut each: impl FnMut(Loc, &[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<Scanned, StoreError> {
    let io_error = |source: io::Error| StoreError::Open {
        path: path.to_owned(),
        source: Arc::new(source),
    };
    let size = file.metadata().map_err(io_error)?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0; 8];
    reader.read_exact(&mut magic).map_err(io_error)?;
    if &magic != MAGIC {
        return Err(io_error(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a hookrelay log file (bad magic)",
        )));
    }
    let mut offset = MAGIC.len() as u64;
    let mut payload = Vec::new();
    let mut skipped = Vec::new();
    loop {
        let remaining = size - offset;
        if remaining < FRAME_HEADER as u64 {
            return Ok(Scanned {
                valid_end: offset,
                torn: remaining,
                skipped,
            });
        }
        let mut header = [0; FRAME_HEADER];
        reader.read_exact(&mut header).map_err(io_error)?;
        let len = u64::from(u32::from_le_bytes([
            header[0], header[1], header[2], header[3],
        ]));
        let mut sum = [0; 8];
        sum.copy_from_slice(&header[4..]);
        let sum = u64::from_le_bytes(sum);
        if len == 0 || len > remaining - FRAME_HEADER as u64 {
            return Ok(Scanned {
                valid_end: offset,
                torn: remaining,
                skipped,
            });
        }
        payload.resize(len as usize, 0);
        reader.read_exact(&mut payload).map_err(io_error)?;
        if xxh3_64(&payload) != sum {
            let next = offset + FRAME_HEADER as u64 + len;
            if intact_frame_at(file, next, size).map_err(io_error)? {
                // The reader is at `next` already.
                skipped.push((offset, len));
                offset = next;
                continue;
            }
            return Ok(Scanned {
                valid_end: offset,
                torn: remaining,
                skipped,
            });
        }
        let payload_start = offset + FRAME_HEADER as u64;
        let mut at = 0usize;
        while at < payload.len() {
            let rest = &payload[at..];
            let lens = rest
                .get(0..RECORD_HEADER)
                .map(|h| {
                    let head = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
                    let tail = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
                    RECORD_HEADER + head + tail
                })
                .filter(|&n| n <= rest.len());
            let Some(record_len) = lens else {
                return Err(corrupt(seq, payload_start + at as u64));
            };
            let record = &rest[..record_len];
            let Some((head, tail)) = split(record) else {
                return Err(corrupt(seq, payload_start + at as u64));
            };
            let loc = Loc {
                seq,
                off: payload_start + at as u64,
                len: record_len as u32,
            };
            each(loc, head, tail)?;
            at += record_len;
        }
        offset = payload_start + len;
    }
}

fn corrupt(seq: u64, offset: u64) -> StoreError {
    StoreError::Corrupt {
        table: "log",
        key: seq,
        source: Arc::new(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed record at offset {offset} inside a whole frame"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new log file `1.log` in `dir` holding only the magic bytes.
    fn new_log(dir: &Path) -> io::Result<(std::path::PathBuf, File)> {
        let path = dir.join("1.log");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        file.write_all_at(MAGIC, 0)?;
        Ok((path, file))
    }

    #[test]
    fn frames_round_trip_and_a_torn_tail_is_found() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (path, file) = new_log(dir.path())?;
        let mut frames = FrameBuf::new(1, MAGIC.len() as u64);
        frames.begin();
        let a = frames.push(&(1u8, "a"), b"body-a")?;
        let b = frames.push(&(2u8, "b"), b"")?;
        frames.end()?;
        frames.begin();
        let mark = frames.mark();
        frames.push(&(9u8, "rolled back"), b"x")?;
        frames.rollback(mark);
        let c = frames.push(&(3u8, "c"), b"body-c")?;
        frames.end()?;
        file.write_all_at(frames.bytes(), MAGIC.len() as u64)?;
        let whole = frames.end_offset();
        // Half a frame more: a write the crash cut short.
        frames.advance();
        frames.begin();
        frames.push(&(4u8, "torn"), b"0123456789")?;
        frames.end()?;
        let torn = &frames.bytes()[..frames.bytes().len() - 3];
        file.write_all_at(torn, whole)?;

        let record = read(&file, c)?;
        let (head, tail) = split(&record).ok_or("split")?;
        assert_eq!(postcard::from_bytes::<(u8, &str)>(head)?, (3, "c"));
        assert_eq!(tail, b"body-c");

        let mut seen = Vec::new();
        let scanned = scan(&path, &file, 1, |loc, head, tail| {
            let (n, _): (u8, &str) =
                postcard::from_bytes(head).map_err(|e| StoreError::backend("t", e))?;
            seen.push((loc, n, tail.to_vec()));
            Ok(())
        })?;
        assert_eq!(scanned.valid_end, whole);
        assert_eq!(scanned.torn, torn.len() as u64);
        let got: Vec<(Loc, u8)> = seen.iter().map(|(l, n, _)| (*l, *n)).collect();
        assert_eq!(got, vec![(a, 1), (b, 2), (c, 3)]);
        assert_eq!(seen[0].2, b"body-a");
        Ok(())
    }

    /// What [`scan_with_a_flipped_bit`] saw: the records handed over, how the scan ended,
    /// and where each frame started.
    type Flipped = (Vec<u8>, Scanned, Vec<u64>);

    /// Three one-record frames (records 0, 1, 2) with one bit of frame `damaged`'s payload
    /// flipped: the records the scan hands over, and how it ended.
    fn scan_with_a_flipped_bit(damaged: usize) -> Result<Flipped, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (path, file) = new_log(dir.path())?;
        let mut frames = FrameBuf::new(1, MAGIC.len() as u64);
        let mut starts = Vec::new();
        for n in 0..3u8 {
            starts.push(frames.end_offset());
            frames.begin();
            frames.push(&n, b"payload")?;
            frames.end()?;
        }
        let mut bytes = frames.bytes().to_vec();
        // Inside the payload: past the frame header and the record header.
        let at = usize::try_from(starts[damaged])? - MAGIC.len() + FRAME_HEADER + RECORD_HEADER;
        bytes[at] ^= 1;
        file.write_all_at(&bytes, MAGIC.len() as u64)?;
        let mut seen = Vec::new();
        let scanned = scan(&path, &file, 1, |_, head, _| {
            seen.push(postcard::from_bytes::<u8>(head).map_err(|e| StoreError::backend("t", e))?);
            Ok(())
        })?;
        Ok((seen, scanned, starts))
    }

    #[test]
    fn a_flipped_bit_in_the_last_frame_ends_the_scan_there()
    -> Result<(), Box<dyn std::error::Error>> {
        let (seen, scanned, starts) = scan_with_a_flipped_bit(2)?;
        assert_eq!(seen, vec![0, 1]);
        assert_eq!(scanned.valid_end, starts[2]);
        assert!(scanned.torn > 0);
        assert!(scanned.skipped.is_empty());
        Ok(())
    }

    #[test]
    fn a_flipped_bit_in_an_earlier_frame_skips_that_frame_only()
    -> Result<(), Box<dyn std::error::Error>> {
        let (seen, scanned, starts) = scan_with_a_flipped_bit(1)?;
        assert_eq!(seen, vec![0, 2]);
        let [(offset, len)] = scanned.skipped[..] else {
            return Err("one frame skipped".into());
        };
        assert_eq!(offset, starts[1]);
        assert_eq!(offset + FRAME_HEADER as u64 + len, starts[2]);
        assert_eq!(scanned.torn, 0);
        Ok(())
    }
}
