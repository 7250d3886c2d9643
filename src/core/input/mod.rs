//! Reading k6 results: gzip detection, decompression on its own thread,
//! size caps, line splitting with a maximum line length, and positions to
//! resume reading at.
//!
//! Memory is bounded by `CHUNK × CHANNEL_DEPTH` plus one maximum-length line,
//! whatever the input size. Decompression runs on a second thread so that on
//! a 2-vCPU machine (or a ≥1769 MB Lambda) inflating and parsing overlap.
//!
//! # Resuming
//!
//! gzip is inflated by [`gzip_index::IndexingDecoder`], which records an
//! access point (a deflate block boundary and the 32 KiB window before it)
//! at least every [`ACCESS_POINT_SPAN`] bytes of output; the reader keeps
//! only the latest one. When the consumer stops (its callback returns
//! `false`), [`for_each_line_from`] hands back an [`InputPosition`]: the
//! next line's number and decompressed offset, the access point to decode
//! on from, and the text already inflated between the two (the read-ahead:
//! handed over first on resume instead of being inflated again). A later
//! run reads the object from [`InputPosition::source_offset`] on (a ranged
//! read) and continues as if it had never stopped.
//!
//! # Live input
//!
//! With [`InputOptions::flush_interval`] (a pipe from a running k6) every
//! read of the source is handed on at once and the consumer also gets
//! [`LineEvent::Tick`]s by a [`TickRule`]. Live input has no positions: a
//! pipe cannot be read again from an offset, and requests cut by the clock
//! cannot be rebuilt by a resumed run (see [`LinesOutcome::stopped_at`]).

pub mod gzip_index;

use gzip_index::{AccessPoint, GzipIndexError, IndexingDecoder, PointDecodeError};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

const CHUNK: usize = 256 * 1024;
const CHANNEL_DEPTH: usize = 8;

pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
/// 100 GiB: a one-hour 1000 RPS k6 run is ~15 GB of JSON; a gzip bomb
/// (ratio ~1000:1) of a few MB would blow far past it.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 100 << 30;

/// Access points are recorded at the first deflate block boundary at least
/// this many decompressed bytes after the previous one. A deflate block of
/// k6 JSON holds ~700 KB of output, so on k6 output every block boundary
/// qualifies and a resumed run inflates at most about one block again; on
/// data with small blocks (sync flushes, incompressible bytes) the span
/// keeps the cost of a point (a 32 KiB window copy) below 1/8 of the
/// output it follows.
pub const ACCESS_POINT_SPAN: u64 = 256 * 1024;

/// After a stop, gzip decoding goes on to the next access point, in reads
/// of this size (the read-ahead overshoots the point by at most one), and
/// gives up after this much output without one (a stream of very long
/// deflate blocks): then a resumed run inflates again from the last point.
const TO_POINT_READ: usize = 16 * 1024;
const TO_POINT_MAX: u64 = 2 << 20;

#[derive(Debug, Clone)]
pub struct InputOptions {
    pub max_line_bytes: usize,
    pub max_decompressed_bytes: u64,
    /// Live reading (a pipe from a running k6): every read of the source is
    /// handed on at once, and once the oldest data not yet handed over is
    /// this old the consumer gets a [`LineEvent::Tick`] (the pipeline then
    /// sends the group in progress and the partial request). None (files):
    /// nothing depends on time, requests are a function of the bytes alone.
    ///
    /// Trade-off: a tick can fall inside a k6 group whose next point comes
    /// later; that point then starts a second record at the same time and
    /// series, which the collision guard moves by +1 ns (counted as
    /// `nudged`). So a live-ingested run can differ from the same file
    /// ingested afterwards by such nudges, and it is never checkpointed.
    pub flush_interval: Option<Duration>,
}

impl Default for InputOptions {
    fn default() -> Self {
        Self {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            flush_interval: None,
        }
    }
}

/// Live counters of one run of the reader, readable from another thread
/// (progress bar, Lambda logs): what this run read and inflated, not where
/// in the input it is (a resumed run starts counting at zero).
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_read: AtomicU64,
    pub bytes_decompressed: AtomicU64,
    /// Bytes of the source (compressed ones for gzip) whose lines have
    /// been handed to the consumer, counted like `bytes_read`: a progress
    /// position that does not run ahead of the work by the read-ahead
    /// buffers (up to 2 MiB of decompressed text, most of a small gzip
    /// file). At the end of the input it equals `bytes_read`.
    pub bytes_done: AtomicU64,
}

impl Progress {
    /// See [`Progress::bytes_done`].
    pub fn done(&self) -> u64 {
        self.bytes_done.load(Ordering::Relaxed)
    }

    pub fn read(&self) -> (u64, u64) {
        (
            self.bytes_read.load(Ordering::Relaxed),
            self.bytes_decompressed.load(Ordering::Relaxed),
        )
    }
}

/// How far into the input reading got when it failed (offsets in the whole
/// input, also for a resumed run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub bytes_read: u64,
    pub bytes_decompressed: u64,
    pub lines: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "after {} bytes read, {} bytes decompressed, {} complete lines",
            self.bytes_read, self.bytes_decompressed, self.lines
        )
    }
}

/// Errors that end reading an input. What was converted before still counts.
#[derive(Debug, Error)]
pub enum InputError {
    #[error("{input}: gzip stream is truncated or corrupt ({detail}) {at}")]
    Corrupt {
        input: String,
        detail: String,
        at: Position,
    },
    #[error("{input}: decompressed size exceeds the cap of {cap} bytes (possible decompression bomb; raise --max-decompressed-bytes if the file is real) {at}")]
    TooLarge {
        input: String,
        cap: u64,
        at: Position,
    },
    #[error("{input}: read error: {source} {at}")]
    Io {
        input: String,
        source: io::Error,
        at: Position,
    },
    /// The first lines are neither k6 JSON nor a k6 CSV header (found by
    /// the pipeline after at most [`crate::core::pipeline::DETECT_LINES`]
    /// non-blank lines, which are not counted as skipped lines).
    #[error("{input}: not k6 output: the first {lines} non-blank line(s) are neither k6 JSON lines nor a k6 CSV header (expected the output of `k6 run --out json=FILE` or `--out csv=FILE`, plain or gzip)")]
    NotK6 { input: String, lines: u64 },
}

impl InputError {
    /// A read error of the underlying stream (a network problem for an S3
    /// body): a retry reads the same bytes and may succeed. Corrupt or
    /// oversized input fails the same way every time.
    pub fn retryable(&self) -> bool {
        matches!(self, InputError::Io { .. })
    }

    /// A stable code for the reports (`failure_reason`), for the errors
    /// a user acts on by kind rather than by message.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            InputError::NotK6 { .. } => Some("not_k6"),
            _ => None,
        }
    }
}

/// Where reading an input can go on: between two lines.
///
/// Invariants (checked by [`InputPosition::from_bytes`]): plain input has
/// no access point; gzip input with `pending` text has the access point at
/// its end; nothing is pending at the end of the input.
#[derive(Clone, PartialEq, Eq)]
pub struct InputPosition {
    /// Lines before the position: the next one is line `lines + 1`.
    pub lines: u64,
    /// Decompressed offset of the next line.
    pub offset: u64,
    pub gzip: bool,
    /// The text began with a byte-order mark (see [`Format::bom`]).
    pub bom: bool,
    /// The input was read to its end: nothing is left to read.
    pub finished: bool,
    /// Decompressed bytes from `offset` on that were already inflated
    /// (read ahead) at the stop; handed over before anything is read.
    pub pending: Vec<u8>,
    /// The read-ahead reached the end of the input (for gzip: with every
    /// member's CRC-32 and length checked): `pending` is all that is left,
    /// and the source is not read again.
    pub source_done: bool,
    /// gzip: the access point decoding goes on from (at the end of
    /// `pending` when that is not empty, else at or before `offset`); None:
    /// the start of the stream.
    pub point: Option<AccessPoint>,
}

impl std::fmt::Debug for InputPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputPosition")
            .field("lines", &self.lines)
            .field("offset", &self.offset)
            .field("gzip", &self.gzip)
            .field("bom", &self.bom)
            .field("finished", &self.finished)
            .field("pending_len", &self.pending.len())
            .field("source_done", &self.source_done)
            .field("point", &self.point)
            .finish()
    }
}

/// Why [`InputPosition::from_bytes`] rejected its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PositionDecodeError {
    #[error("not an encoded input position")]
    BadMagic,
    #[error("unsupported input position format version {0}")]
    UnsupportedVersion(u8),
    #[error("encoded input position has the wrong length")]
    Length,
    #[error("access point: {0}")]
    Point(#[from] PointDecodeError),
    #[error("input position fields are inconsistent with each other")]
    Inconsistent,
}

/// Encoded form, version 1, integers little endian: magic `K6IP`, version,
/// flags (bit 0 gzip, bit 1 finished, bit 2 access point present, bit 3
/// source done, bit 4 byte-order mark), two zero
/// bytes, `lines` u64, `offset` u64, pending length u64, access point
/// length u32, the pending bytes, the access point
/// ([`AccessPoint::to_bytes`], which carries its own checksum).
const POSITION_MAGIC: [u8; 4] = *b"K6IP";
const POSITION_VERSION: u8 = 1;
const POSITION_HEADER_LEN: usize = 36;
const FLAG_GZIP: u8 = 1;
const FLAG_FINISHED: u8 = 2;
const FLAG_POINT: u8 = 4;
const FLAG_SOURCE_DONE: u8 = 8;
const FLAG_BOM: u8 = 16;

impl InputPosition {
    /// The end of an input that was read completely.
    pub fn end(format: Format, lines: u64, offset: u64) -> Self {
        InputPosition {
            lines,
            offset,
            gzip: format.gzip,
            bom: format.bom,
            finished: true,
            pending: Vec::new(),
            source_done: true,
            point: None,
        }
    }

    /// Whether going on reads the source (else everything left is in
    /// `pending`, or nothing is).
    pub fn reads_source(&self) -> bool {
        !self.finished && !self.source_done
    }

    /// Decompressed offset at which reading the source goes on (after the
    /// pending text).
    pub fn resume_offset(&self) -> u64 {
        self.offset + self.pending.len() as u64
    }

    /// The byte of the object the source must start at: a ranged read
    /// `bytes=<source_offset>-`.
    pub fn source_offset(&self) -> u64 {
        if self.gzip {
            self.point.as_ref().map_or(0, AccessPoint::in_offset)
        } else {
            self.resume_offset()
        }
    }

    /// Decompressed offset of the first byte decoded from the source (for
    /// gzip, output from there up to [`Self::resume_offset`] is inflated
    /// again and discarded: at most about one deflate block).
    fn decode_offset(&self) -> u64 {
        if self.gzip {
            self.point.as_ref().map_or(0, AccessPoint::out_offset)
        } else {
            self.resume_offset()
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let point = self.point.as_ref().map(AccessPoint::to_bytes);
        let point_len = point.as_ref().map_or(0, Vec::len);
        let mut out = Vec::with_capacity(POSITION_HEADER_LEN + self.pending.len() + point_len);
        out.extend_from_slice(&POSITION_MAGIC);
        out.push(POSITION_VERSION);
        let mut flags = 0;
        for (set, flag) in [
            (self.gzip, FLAG_GZIP),
            (self.finished, FLAG_FINISHED),
            (point.is_some(), FLAG_POINT),
            (self.source_done, FLAG_SOURCE_DONE),
            (self.bom, FLAG_BOM),
        ] {
            if set {
                flags |= flag;
            }
        }
        out.push(flags);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.lines.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&(self.pending.len() as u64).to_le_bytes());
        // An encoded access point is at most ~32 KiB.
        out.extend_from_slice(&(point_len as u32).to_le_bytes());
        out.extend_from_slice(&self.pending);
        if let Some(p) = point {
            out.extend_from_slice(&p);
        }
        out
    }

    /// Parses [`Self::to_bytes`]'s output, rejecting anything that is not
    /// exactly one consistent position.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PositionDecodeError> {
        if bytes.len() < POSITION_HEADER_LEN {
            return Err(PositionDecodeError::Length);
        }
        if bytes[..4] != POSITION_MAGIC {
            return Err(PositionDecodeError::BadMagic);
        }
        if bytes[4] != POSITION_VERSION {
            return Err(PositionDecodeError::UnsupportedVersion(bytes[4]));
        }
        let flags = bytes[5];
        if flags & !(FLAG_GZIP | FLAG_FINISHED | FLAG_POINT | FLAG_SOURCE_DONE | FLAG_BOM) != 0
            || bytes[6..8] != [0, 0]
        {
            return Err(PositionDecodeError::Inconsistent);
        }
        let u64_at = |at: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let (lines, offset, pending_len) = (u64_at(8), u64_at(16), u64_at(24));
        let mut b = [0; 4];
        b.copy_from_slice(&bytes[32..36]);
        let point_len = u32::from_le_bytes(b) as u64;
        let body = &bytes[POSITION_HEADER_LEN..];
        if pending_len.checked_add(point_len) != Some(body.len() as u64) {
            return Err(PositionDecodeError::Length);
        }
        let (pending, point) = body.split_at(pending_len as usize);
        let has_point = flags & FLAG_POINT != 0;
        if has_point != (point_len > 0) {
            return Err(PositionDecodeError::Inconsistent);
        }
        let position = InputPosition {
            lines,
            offset,
            gzip: flags & FLAG_GZIP != 0,
            bom: flags & FLAG_BOM != 0,
            finished: flags & FLAG_FINISHED != 0,
            pending: pending.to_vec(),
            source_done: flags & FLAG_SOURCE_DONE != 0,
            point: has_point
                .then(|| AccessPoint::from_bytes(point))
                .transpose()?,
        };
        let end = offset.checked_add(pending_len);
        let consistent = end.is_some()
            && match &position.point {
                _ if position.finished => pending.is_empty() && !has_point && position.source_done,
                _ if position.source_done => !has_point,
                None => !position.gzip || pending.is_empty(),
                Some(p) => {
                    position.gzip
                        && if pending.is_empty() {
                            p.out_offset() <= offset
                        } else {
                            end == Some(p.out_offset())
                        }
                }
            };
        if !consistent {
            return Err(PositionDecodeError::Inconsistent);
        }
        Ok(position)
    }
}

/// What the reading thread sends.
enum Msg {
    /// Decompressed bytes, the latest access point recorded while
    /// producing them (at or before their end), and the offset in the
    /// source just after the bytes taken to produce them.
    Data(Vec<u8>, Option<AccessPoint>, u64),
    Fail(FailKind),
    /// The end of the input (gzip: every member checked).
    End,
}

enum FailKind {
    Corrupt(String),
    TooLarge,
    Io(io::Error),
}

impl FailKind {
    /// Errors in the gzip data are the input's fault; anything else the
    /// inflater passes on is a read error of the source.
    fn of_read(e: io::Error) -> FailKind {
        match GzipIndexError::from_io_error(&e) {
            // zlib itself failing (out of memory) is not the data's fault.
            Some(GzipIndexError::Zlib { .. }) | None => FailKind::Io(e),
            Some(g) => FailKind::Corrupt(g.to_string()),
        }
    }
}

struct CountingReader<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Is this a gzip stream? (magic bytes 1f 8b)
pub fn is_gzip(head: &[u8]) -> bool {
    head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b
}

/// Where the reading thread starts.
enum Begin {
    /// The object's first byte: gzip or not is told by its magic bytes.
    Detect,
    /// Nothing: the source was read to its end before (`gzip` as it was).
    Nothing { gzip: bool },
    /// Plain text from the source's first byte on.
    Plain,
    /// gzip from `point` (None: the stream start) on; the first `skip`
    /// bytes of output were handed over before and are discarded.
    Gzip {
        point: Option<AccessPoint>,
        skip: u64,
    },
}

enum Decoder<'a> {
    Plain(Box<dyn Read + 'a>),
    Gzip(IndexingDecoder<Box<dyn Read + 'a>>),
}

impl Decoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(d) => d.read(buf),
        }
    }

    /// Offset in the source of the first byte not yet taken by the
    /// decoder, `total` being the decompressed offset of the next output
    /// byte (plain text: the same offset).
    fn source_offset(&self, total: u64) -> u64 {
        match self {
            Decoder::Plain(_) => total,
            Decoder::Gzip(d) => d.compressed_offset(),
        }
    }

    /// The latest access point recorded since the last call (older ones are
    /// dropped: only the latest is ever needed).
    fn latest_point(&mut self) -> Option<AccessPoint> {
        match self {
            Decoder::Plain(_) => None,
            Decoder::Gzip(d) => d.take_points().pop(),
        }
    }
}

/// What the reading thread shares with the consumer.
struct Shared<'a> {
    opts: &'a InputOptions,
    progress: Arc<Progress>,
    /// Set by the consumer when it stopped: finish the chunk in hand, send
    /// it and end (the consumer keeps it as read-ahead).
    stop: AtomicBool,
    /// See [`for_each_line_bounded`].
    soft_end: Option<u64>,
}

/// Opens the decoder for `begin` and tells the consumer whether the input
/// is gzip. Returns the decoder and how many bytes of its output to discard.
fn open<'a, R: Read + 'a>(
    source: R,
    begin: Begin,
    shared: &Shared<'_>,
    gzip_flag: &SyncSender<bool>,
) -> Result<(Decoder<'a>, u64), FailKind> {
    let mut counting = CountingReader {
        inner: source,
        progress: shared.progress.clone(),
    };
    let gzip = |inner: Box<dyn Read + 'a>, point: Option<&AccessPoint>| {
        let decoder = match point {
            Some(p) => IndexingDecoder::resume(p, inner),
            None => IndexingDecoder::new(inner),
        };
        decoder
            .map(|d| Decoder::Gzip(d.with_span(ACCESS_POINT_SPAN)))
            .map_err(|e| FailKind::of_read(e.into()))
    };
    match begin {
        Begin::Nothing { gzip } => {
            let _ = gzip_flag.send(gzip);
            Ok((Decoder::Plain(Box::new(io::empty())), 0))
        }
        Begin::Plain => {
            let _ = gzip_flag.send(false);
            Ok((Decoder::Plain(Box::new(counting)), 0))
        }
        Begin::Gzip { point, skip } => {
            let _ = gzip_flag.send(true);
            Ok((gzip(Box::new(counting), point.as_ref())?, skip))
        }
        Begin::Detect => {
            // Peek the first two bytes, however the source chooses to split
            // its reads (a pipe or a network stream may return one byte at a
            // time).
            let mut head = [0u8; 2];
            let mut got = 0;
            while got < 2 {
                match counting.read(&mut head[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = gzip_flag.send(false);
                        return Err(FailKind::Io(e));
                    }
                }
            }
            let gz = is_gzip(&head[..got]);
            let _ = gzip_flag.send(gz);
            let inner: Box<dyn Read + 'a> =
                Box::new(io::Cursor::new(head).take(got as u64).chain(counting));
            if gz {
                Ok((gzip(inner, None)?, 0))
            } else {
                Ok((Decoder::Plain(inner), 0))
            }
        }
    }
}

/// The reading side: detects gzip, inflates every member, enforces the cap,
/// and sends chunks until the receiver hangs up, the consumer stops, or the
/// input ends. `start` is the decompressed offset of the first byte the
/// decoder produces.
fn produce<R: Read>(
    source: R,
    begin: Begin,
    start: u64,
    shared: &Shared<'_>,
    gzip_flag: &SyncSender<bool>,
    tx: SyncSender<Msg>,
    free: Receiver<Vec<u8>>,
) {
    let (mut reader, mut skip) = match open(source, begin, shared, gzip_flag) {
        Ok(r) => r,
        Err(k) => {
            let _ = tx.send(Msg::Fail(k));
            return;
        }
    };
    let progress = &shared.progress;
    // Absolute decompressed offset of the next byte decoded.
    let mut total = start;
    let mut point = None;
    // At a stop, gzip decoding goes on to the next access point (output
    // left before giving up): the read-ahead then ends at a point, so a
    // resumed run inflates nothing a second time. The work is the same,
    // done by this run instead of the next.
    let gzip = matches!(reader, Decoder::Gzip(_));
    let mut to_point: Option<u64> = None;
    // Live input hands on whatever one read returned: a pipe that is
    // written slowly must not hold its lines back until 256 KiB have come.
    let live = shared.opts.flush_interval.is_some();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            if shared.soft_end.is_some() {
                // A bounded reader is not resumed: nothing to read on to.
                return;
            }
            match to_point {
                // Still discarding output handed over before: the consumer
                // stopped in that text and needs none of this.
                _ if !gzip || skip > 0 => return,
                None => to_point = Some(TO_POINT_MAX),
                Some(0) => return,
                Some(_) => {}
            }
        }
        // Chunks come back from the consumer: no fresh (page-faulting,
        // zeroed) allocation per 256 KiB.
        let mut buf = free.try_recv().unwrap_or_default();
        // Up to a soft end whole chunks (ending at it); past it small
        // steps, so a stop soon after leaves little inflated for nothing.
        let size = match shared.soft_end {
            Some(e) if total < e => usize::try_from(e - total).map_or(CHUNK, |l| l.min(CHUNK)),
            Some(_) => TO_POINT_READ,
            None => CHUNK,
        };
        buf.resize(size, 0);
        let mut filled = 0;
        // Fill whole chunks (fewer, larger messages), except live.
        let res = loop {
            let want = if skip > 0 {
                // Output handed over before: decoded again, discarded.
                usize::try_from(skip).unwrap_or(usize::MAX).min(buf.len())
            } else if to_point.is_some() {
                (buf.len() - filled).min(TO_POINT_READ)
            } else {
                buf.len() - filled
            };
            match reader.read(&mut buf[filled..filled + want]) {
                Ok(0) => break Ok(true),
                Ok(n) if skip > 0 => {
                    skip -= n as u64;
                    total += n as u64;
                    progress
                        .bytes_decompressed
                        .store(total - start, Ordering::Relaxed);
                    if shared.stop.load(Ordering::Relaxed) {
                        break Ok(false);
                    }
                }
                Ok(n) => {
                    filled += n;
                    if let Some(left) = to_point {
                        let left = left.saturating_sub(n as u64);
                        to_point = Some(left);
                        if let Some(p) = reader.latest_point() {
                            point = Some(p);
                            to_point = Some(0);
                            break Ok(false);
                        }
                        if left == 0 || filled == buf.len() {
                            break Ok(false);
                        }
                    } else if live || filled == buf.len() || shared.stop.load(Ordering::Relaxed) {
                        break Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        buf.truncate(filled);
        total += filled as u64;
        if total > shared.opts.max_decompressed_bytes {
            let _ = tx.send(Msg::Fail(FailKind::TooLarge));
            return;
        }
        progress
            .bytes_decompressed
            .store(total - start, Ordering::Relaxed);
        if let Some(p) = reader.latest_point() {
            point = Some(p);
        }
        if skip > 0 && res.as_ref().is_ok_and(|end| *end) {
            let _ = tx.send(Msg::Fail(FailKind::Corrupt(format!(
                "the stream ends {skip} bytes before the position reading resumes at"
            ))));
            return;
        }
        let taken = reader.source_offset(total);
        if filled > 0 && tx.send(Msg::Data(buf, point.take(), taken)).is_err() {
            return; // consumer gone
        }
        match res {
            Ok(true) => {
                let _ = tx.send(Msg::End);
                return;
            }
            Ok(false) => {}
            Err(e) => {
                let _ = tx.send(Msg::Fail(FailKind::of_read(e)));
                return;
            }
        }
    }
}

/// What reading learned about the input's encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Format {
    /// gzip (magic bytes 1f 8b on the raw bytes; every member inflated).
    pub gzip: bool,
    /// The (decompressed) text began with a UTF-8 byte-order mark, which
    /// was skipped: some Windows tools write one; it is not part of the
    /// first line's JSON.
    pub bom: bool,
    /// The input ended without `\n` after its last line. k6 ends every
    /// line with one, so this is a hand-made file or a cut-off one.
    pub unterminated: bool,
}

/// The UTF-8 byte-order mark.
pub const BOM: &[u8] = b"\xef\xbb\xbf";

/// A line handed to the consumer.
pub enum LineEvent<'a> {
    /// A complete line, without its `\n` (and `\r`).
    Line(&'a [u8]),
    /// A line longer than the maximum (its bytes are discarded).
    TooLong,
    /// Live reading only ([`InputOptions::flush_interval`]): no line, but the
    /// oldest data not yet handed over is a flush interval old. The
    /// consumer should pass on what it holds back (the line number is
    /// that of the last line).
    Tick,
}

/// When live reading wakes its consumer: once the oldest data that
/// arrived since the last tick is `every` old and the input has then been
/// quiet for a moment (`every` / 20, at most 20 ms), or at the latest when
/// that data is 1.25 × `every` old. That also covers "no new line for
/// `every`": the first data after a tick is at least as old as the last.
///
/// Trade-off of the quiet moment: k6 writes its output in bursts (every
/// 200 ms), and a cut inside a burst can split a k6 group (one more record
/// and one +1 ns nudge); waiting for the gap after a burst avoids most
/// splits at the cost of ≤ 25 % more lag. Only data arrival restarts the
/// clock, so an idle input ticks once after its last data and then sleeps.
///
/// Pure (instants are passed in), so the rule is tested without sleeping.
#[derive(Debug, Clone)]
pub struct TickRule {
    every: Duration,
    quiet: Duration,
    /// Arrival of the first and of the latest data since the last tick.
    pending: Option<(Instant, Instant)>,
}

impl TickRule {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            quiet: (every / 20).min(Duration::from_millis(20)),
            pending: None,
        }
    }

    /// Data arrived at `now`.
    pub fn data(&mut self, now: Instant) {
        let first = self.pending.map_or(now, |(f, _)| f);
        self.pending = Some((first, now));
    }

    /// When the next tick is due (None: nothing pending).
    fn due_at(&self) -> Option<Instant> {
        let (first, last) = self.pending?;
        let soonest = first + self.every;
        Some(soonest.max(last + self.quiet).min(soonest + self.every / 4))
    }

    /// Is a tick due at `now`?
    pub fn due(&self, now: Instant) -> bool {
        self.due_at().is_some_and(|t| now >= t)
    }

    /// A tick was delivered.
    pub fn ticked(&mut self) {
        self.pending = None;
    }

    /// How long to wait for data at `now` before the next tick is due
    /// (None: nothing pending, wait for data however long it takes).
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        self.due_at().map(|t| t.saturating_duration_since(now))
    }
}

/// The next message, or a tick when one is due first (`Some(None)`).
/// None: the producer is gone.
fn next_msg(rx: &Receiver<Msg>, rule: &mut Option<TickRule>) -> Option<Option<Msg>> {
    let Some(rule) = rule else {
        return rx.recv().ok().map(Some);
    };
    loop {
        let now = Instant::now();
        if rule.due(now) {
            rule.ticked();
            return Some(None);
        }
        let msg = match rule.wait(now) {
            None => rx.recv().ok()?,
            Some(d) => match rx.recv_timeout(d) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return None,
            },
        };
        if matches!(msg, Msg::Data(..)) {
            rule.data(Instant::now());
        }
        return Some(Some(msg));
    }
}

/// What reading an input came to.
#[derive(Debug)]
pub struct LinesOutcome {
    /// What reading learned of the input's format (for a resumed run: of
    /// the whole input, except `unterminated`, which only its end tells).
    pub format: Format,
    /// `Err` for a fatal input error.
    pub result: Result<(), InputError>,
    /// Where to go on when the consumer stopped early (None: the input was
    /// read to its end, or failed, or is live input, which is never
    /// resumed: see [`InputOptions::flush_interval`]).
    pub stopped_at: Option<InputPosition>,
    /// Decompressed offset just after the last line handed over.
    pub offset: u64,
}

/// Reads `source` on a scoped thread and calls `on_line` for each line, in
/// order, with 1-based line numbers. `on_line` returns `false` to stop early.
/// A leading byte-order mark (after decompression: gzip is recognised on
/// the raw bytes first) is not part of the first line. Returns what was
/// learned of the input's format, and `Err` for a fatal input error.
/// With [`InputOptions::flush_interval`], ticks come in between (by the
/// [`TickRule`] of that interval) even while the source has nothing to give.
pub fn for_each_line<R, F>(
    source: R,
    name: &str,
    opts: &InputOptions,
    progress: Arc<Progress>,
    on_line: F,
) -> (Format, Result<(), InputError>)
where
    R: Read + Send,
    F: FnMut(u64, LineEvent<'_>) -> bool,
{
    let out = for_each_line_from(source, name, opts, progress, None, on_line);
    (out.format, out.result)
}

/// [`for_each_line`] from the start (`from` None) or from a position an
/// earlier run stopped at; then `source` must yield the input from
/// [`InputPosition::source_offset`] on. Line numbers and the offsets in
/// errors continue those of the whole input. When `on_line` stops, the
/// position after that line is returned (see [`InputPosition`]).
pub fn for_each_line_from<R, F>(
    source: R,
    name: &str,
    opts: &InputOptions,
    progress: Arc<Progress>,
    from: Option<InputPosition>,
    on_line: F,
) -> LinesOutcome
where
    R: Read + Send,
    F: FnMut(u64, LineEvent<'_>) -> bool,
{
    for_each_line_bounded(source, name, opts, progress, from, None, on_line)
}

/// [`for_each_line_from`] for a reader that expects to stop soon after
/// the decompressed offset `soft_end` (a segment of a fanned-out input):
/// up to it the reader reads ahead as usual, past it in 16 KiB steps, and
/// at a stop it ends at once instead of inflating on to the next access
/// point. The trade-off: the position returned at a stop is not one a
/// resumed run can start from without inflating again (a segment is not
/// resumed), and past `soft_end` reading takes more, smaller messages
/// (a few hundred lines on k6 output before the stop).
pub fn for_each_line_bounded<R, F>(
    source: R,
    name: &str,
    opts: &InputOptions,
    progress: Arc<Progress>,
    from: Option<InputPosition>,
    soft_end: Option<u64>,
    mut on_line: F,
) -> LinesOutcome
where
    R: Read + Send,
    F: FnMut(u64, LineEvent<'_>) -> bool,
{
    let (begin, start, split) = match from {
        None => (Begin::Detect, Start::default(), Splitter::new(0, 0)),
        Some(p) if p.finished => {
            return LinesOutcome {
                format: Format {
                    gzip: p.gzip,
                    bom: p.bom,
                    unterminated: false,
                },
                result: Ok(()),
                stopped_at: None,
                offset: p.offset,
            }
        }
        Some(p) => {
            let begin = if p.source_done {
                Begin::Nothing { gzip: p.gzip }
            } else if p.gzip {
                Begin::Gzip {
                    point: p.point.clone(),
                    skip: p.resume_offset() - p.decode_offset(),
                }
            } else {
                Begin::Plain
            };
            let start = Start {
                source_offset: p.source_offset(),
                decode_offset: p.decode_offset(),
                point: p.point,
                pending: p.pending,
                source_done: p.source_done,
            };
            let mut split = Splitter::new(p.lines, p.offset);
            split.bom = p.bom;
            (begin, start, split)
        }
    };
    let (tx, rx) = sync_channel::<Msg>(CHANNEL_DEPTH);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(CHANNEL_DEPTH + 2);
    let (gtx, grx) = sync_channel::<bool>(1);
    let shared = Shared {
        opts,
        progress,
        stop: AtomicBool::new(false),
        soft_end,
    };
    let decode_offset = start.decode_offset;
    std::thread::scope(|s| {
        let shared = &shared;
        s.spawn(move || produce(source, begin, decode_offset, shared, &gtx, tx, free_rx));
        let gzip = grx.recv().unwrap_or(false);
        // Dropping the receiver (inside consume) lets the producer finish.
        consume(rx, free_tx, name, shared, gzip, start, split, &mut on_line)
    })
}

/// What the consumer starts with.
#[derive(Default)]
struct Start {
    /// Offsets of the source's first byte, and of the decoder's first byte of
    /// output (for the positions in errors).
    source_offset: u64,
    decode_offset: u64,
    /// The access point the decoder starts at.
    point: Option<AccessPoint>,
    /// Text handed over before anything from the decoder.
    pending: Vec<u8>,
    /// Nothing follows `pending`.
    source_done: bool,
}

/// Line splitting across chunks, with offsets.
struct Splitter {
    carry: Vec<u8>,
    discarding: bool,
    line_no: u64,
    /// Decompressed offset of the next byte fed.
    at: u64,
    /// Decompressed offset just after the last line handed over.
    next_line: u64,
    /// See [`Format`].
    bom: bool,
    unterminated: bool,
}

impl Splitter {
    fn new(lines: u64, offset: u64) -> Self {
        Splitter {
            carry: Vec::new(),
            discarding: false,
            line_no: lines,
            at: offset,
            next_line: offset,
            bom: false,
            unterminated: false,
        }
    }

    /// Hands the lines completed by `chunk` to `on_line`. Returns the index
    /// in `chunk` just after the line `on_line` stopped at, if it did.
    fn feed<F>(&mut self, chunk: &[u8], max_line: usize, on_line: &mut F) -> Option<usize>
    where
        F: FnMut(u64, LineEvent<'_>) -> bool,
    {
        let mut pos = 0;
        while let Some(nl) = memchr(b'\n', &chunk[pos..]) {
            let line = &chunk[pos..pos + nl];
            pos += nl + 1;
            let keep_going = if self.discarding {
                self.discarding = false;
                self.carry.clear();
                self.line_no += 1;
                on_line(self.line_no, LineEvent::TooLong)
            } else if self.carry.is_empty() {
                if line.len() > max_line {
                    self.line_no += 1;
                    on_line(self.line_no, LineEvent::TooLong)
                } else {
                    emit(&mut self.line_no, line, &mut self.bom, on_line)
                }
            } else {
                self.carry.extend_from_slice(line);
                let r = if self.carry.len() > max_line {
                    self.line_no += 1;
                    on_line(self.line_no, LineEvent::TooLong)
                } else {
                    emit(&mut self.line_no, &self.carry, &mut self.bom, on_line)
                };
                self.carry.clear();
                r
            };
            self.next_line = self.at + pos as u64;
            if !keep_going {
                self.at += chunk.len() as u64;
                return Some(pos);
            }
        }
        if !self.discarding {
            self.carry.extend_from_slice(&chunk[pos..]);
            if self.carry.len() > max_line {
                self.discarding = true;
                self.carry = Vec::new();
            }
        }
        self.at += chunk.len() as u64;
        None
    }

    /// The last line, without a trailing newline.
    fn finish<F>(&mut self, on_line: &mut F)
    where
        F: FnMut(u64, LineEvent<'_>) -> bool,
    {
        if self.discarding {
            self.unterminated = true;
            self.line_no += 1;
            on_line(self.line_no, LineEvent::TooLong);
        } else if !self.carry.is_empty() {
            self.unterminated = true;
            emit(&mut self.line_no, &self.carry, &mut self.bom, on_line);
        }
        self.carry.clear();
        self.discarding = false;
        self.next_line = self.at;
    }
}

fn emit<F>(line_no: &mut u64, bytes: &[u8], bom: &mut bool, on_line: &mut F) -> bool
where
    F: FnMut(u64, LineEvent<'_>) -> bool,
{
    let mut bytes = bytes;
    if *line_no == 0 {
        if let Some(rest) = bytes.strip_prefix(BOM) {
            bytes = rest;
            *bom = true;
        }
    }
    *line_no += 1;
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    on_line(*line_no, LineEvent::Line(bytes))
}

#[allow(clippy::too_many_arguments)]
fn consume<F>(
    rx: Receiver<Msg>,
    free: SyncSender<Vec<u8>>,
    name: &str,
    shared: &Shared<'_>,
    gzip: bool,
    start: Start,
    mut split: Splitter,
    on_line: &mut F,
) -> LinesOutcome
where
    F: FnMut(u64, LineEvent<'_>) -> bool,
{
    let opts = shared.opts;
    let end = |split: &Splitter, result, stopped_at| LinesOutcome {
        format: Format {
            gzip,
            bom: split.bom,
            unterminated: split.unterminated,
        },
        result,
        stopped_at,
        offset: split.next_line,
    };
    let at = |lines: u64| {
        let (r, d) = shared.progress.read();
        Position {
            bytes_read: start.source_offset + r,
            bytes_decompressed: start.decode_offset + d,
            lines,
        }
    };
    let mut latest = start.point;
    // The unread rest of the input at a stop.
    let mut rest = None;
    if !start.pending.is_empty() {
        if let Some(i) = split.feed(&start.pending, opts.max_line_bytes, on_line) {
            rest = Some(start.pending[i..].to_vec());
        }
    }
    let done = |source_at: u64| {
        shared.progress.bytes_done.store(
            source_at.saturating_sub(start.source_offset),
            Ordering::Relaxed,
        );
    };
    let mut rule = opts.flush_interval.map(TickRule::new);
    let mut stopped_at_tick = false;
    while rest.is_none() {
        let Some(msg) = next_msg(&rx, &mut rule) else {
            break;
        };
        let Some(msg) = msg else {
            if !on_line(split.line_no, LineEvent::Tick) {
                stopped_at_tick = true;
                break;
            }
            continue;
        };
        let (chunk, point, source_at) = match msg {
            Msg::Data(c, p, at) => (c, p, at),
            Msg::End => break,
            Msg::Fail(k) => {
                let at = at(split.line_no);
                let input = name.to_owned();
                return end(
                    &split,
                    Err(match k {
                        FailKind::Corrupt(detail) => InputError::Corrupt { input, detail, at },
                        FailKind::TooLarge => InputError::TooLarge {
                            input,
                            cap: opts.max_decompressed_bytes,
                            at,
                        },
                        FailKind::Io(source) => InputError::Io { input, source, at },
                    }),
                    None,
                );
            }
        };
        if point.is_some() {
            latest = point;
        }
        match split.feed(&chunk, opts.max_line_bytes, on_line) {
            Some(i) => rest = Some(chunk[i..].to_vec()),
            None => done(source_at),
        }
        let _ = free.try_send(chunk);
    }
    if stopped_at_tick || (rest.is_some() && rule.is_some()) {
        // Live input stopped: no position to go on from (a pipe is not
        // read again), so nothing of the read-ahead is kept either.
        shared.stop.store(true, Ordering::Relaxed);
        return end(&split, Ok(()), None);
    }
    let Some(mut rest) = rest else {
        split.finish(on_line);
        let (read, _) = shared.progress.read();
        shared.progress.bytes_done.store(read, Ordering::Relaxed);
        return end(&split, Ok(()), None);
    };
    // Stopped: take what was read ahead, so that a resumed run need not
    // inflate it again. An error in it recurs when a resumed run gets there.
    shared.stop.store(true, Ordering::Relaxed);
    let mut source_done = start.source_done;
    loop {
        match rx.recv() {
            Ok(Msg::Data(chunk, point, _)) => {
                if point.is_some() {
                    latest = point;
                }
                rest.extend_from_slice(&chunk);
            }
            Ok(Msg::End) => {
                source_done = true;
                break;
            }
            Ok(Msg::Fail(_)) | Err(_) => break,
        }
    }
    let offset = split.next_line;
    let (pending, point) = match latest {
        // All that is left is in hand: the source is not needed again.
        _ if source_done => (rest, None),
        // Decoding goes on at the latest point; what lies between the
        // position and that point is kept.
        Some(p) if gzip && p.out_offset() >= offset => {
            rest.truncate((p.out_offset() - offset) as usize);
            (rest, Some(p))
        }
        // The point (or the stream start) lies before the position: a
        // resumed run inflates from there and discards up to the position.
        p if gzip => (Vec::new(), p),
        _ => (rest, None),
    };
    let position = InputPosition {
        lines: split.line_no,
        offset,
        gzip,
        bom: split.bom,
        finished: false,
        pending,
        source_done,
        point,
    };
    end(&split, Ok(()), Some(position))
}

#[inline]
fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    type Lines = Vec<(u64, Option<String>)>;

    fn lines(input: &[u8], opts: &InputOptions) -> (Result<bool, InputError>, Lines) {
        let (f, l) = lines_format(input, opts);
        (f.map(|f| f.gzip), l)
    }

    fn lines_format(input: &[u8], opts: &InputOptions) -> (Result<Format, InputError>, Lines) {
        let mut out = Vec::new();
        let (gz, r) = for_each_line(input, "t", opts, Arc::default(), |n, ev| {
            out.push((
                n,
                match ev {
                    LineEvent::Line(b) => Some(String::from_utf8_lossy(b).into_owned()),
                    LineEvent::TooLong => None,
                    LineEvent::Tick => panic!("untimed reading never ticks"),
                },
            ));
            true
        });
        (r.map(|()| gz), out)
    }

    #[test]
    fn plain_gzip_and_multi_member_agree() {
        let a = b"one\ntwo\r\n\nthree".to_vec();
        let b = b"\nfour\n".to_vec();
        let mut plain = a.clone();
        plain.extend_from_slice(&b);
        let mut multi = gz(&a);
        multi.extend_from_slice(&gz(&b));
        let o = InputOptions::default();
        let (r1, l1) = lines(&plain, &o);
        let (r2, l2) = lines(&gz(&plain), &o);
        let (r3, l3) = lines(&multi, &o);
        assert!(!r1.unwrap() && r2.unwrap() && r3.unwrap());
        assert_eq!(l1, l2);
        assert_eq!(l1, l3);
        let texts: Vec<_> = l1.iter().map(|(_, t)| t.clone().unwrap()).collect();
        assert_eq!(texts, ["one", "two", "", "three", "four"]);
    }

    #[test]
    fn long_lines_are_reported_not_fatal() {
        let mut data = b"short\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 3 * CHUNK));
        data.extend_from_slice(b"\nafter\n");
        data.extend(std::iter::repeat_n(b'y', 20));
        let o = InputOptions {
            max_line_bytes: 10,
            ..Default::default()
        };
        let (r, l) = lines(&gz(&data), &o);
        r.unwrap();
        assert_eq!(
            l,
            vec![
                (1, Some("short".into())),
                (2, None),
                (3, Some("after".into())),
                (4, None)
            ]
        );
    }

    #[test]
    fn truncated_gzip_is_an_error_after_the_good_lines() {
        let data: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let z = gz(&data);
        let cut = &z[..z.len() * 2 / 3];
        let (r, l) = lines(cut, &InputOptions::default());
        let e = r.unwrap_err();
        assert!(matches!(e, InputError::Corrupt { .. }), "{e}");
        assert!(e.to_string().starts_with("t: gzip stream is truncated"));
        assert!(!l.is_empty() && l.len() < 20_000);
        // Every line delivered is a real, complete line.
        for (i, (n, t)) in l.iter().enumerate() {
            assert_eq!(*n, i as u64 + 1);
            assert_eq!(t.as_deref(), Some(format!("line {i}").as_str()));
        }
    }

    #[test]
    fn decompression_cap() {
        let data = vec![b'\n'; 4 * CHUNK];
        let o = InputOptions {
            max_decompressed_bytes: CHUNK as u64,
            ..Default::default()
        };
        let (r, _) = lines(&gz(&data), &o);
        assert!(matches!(r, Err(InputError::TooLarge { .. })));
    }

    /// A reader that hands out one byte per call.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    #[test]
    fn gzip_detected_from_a_trickling_source() {
        let z = gz(b"a\nb\n");
        let mut out = Vec::new();
        let (is_gz, r) = for_each_line(
            Trickle(&z),
            "t",
            &InputOptions::default(),
            Arc::default(),
            |_, ev| {
                if let LineEvent::Line(b) = ev {
                    out.push(b.to_vec());
                }
                true
            },
        );
        r.unwrap();
        assert!(is_gz.gzip);
        assert_eq!(out, vec![b"a".to_vec(), b"b".to_vec()]);
        let (is_gz, _) = for_each_line(
            Trickle(b"x"),
            "t",
            &InputOptions::default(),
            Arc::default(),
            |_, _| true,
        );
        assert!(!is_gz.gzip);
    }

    #[test]
    fn tick_rule_waits_for_the_oldest_pending_data_and_a_quiet_moment() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut r = TickRule::new(ms(1000));
        assert!(!r.due(t0 + ms(5000)), "nothing pending: never due");
        assert_eq!(r.wait(t0), None);
        r.data(t0 + ms(100));
        r.data(t0 + ms(900)); // later data does not postpone the tick
        assert_eq!(r.wait(t0 + ms(500)), Some(ms(600)));
        assert!(!r.due(t0 + ms(1099)));
        assert!(r.due(t0 + ms(1100)));
        // Data still coming at the 1 s mark: wait for a 20 ms gap.
        r.data(t0 + ms(1095));
        assert!(!r.due(t0 + ms(1100)));
        assert_eq!(r.wait(t0 + ms(1100)), Some(ms(15)));
        assert!(r.due(t0 + ms(1115)));
        // A stream without gaps: at the latest 1.25 × the interval.
        for t in (1100..1400).step_by(5) {
            r.data(t0 + ms(t));
        }
        assert!(!r.due(t0 + ms(1349)));
        assert!(r.due(t0 + ms(1350)));
        r.ticked();
        assert!(!r.due(t0 + ms(9000)));
        r.data(t0 + ms(2000));
        assert!(r.due(t0 + ms(3000)));
        assert_eq!(r.wait(t0 + ms(3500)), Some(Duration::ZERO));
    }

    /// A pipe: chunks from a channel, each read blocking until one comes.
    struct Pipe {
        rx: std::sync::mpsc::Receiver<Vec<u8>>,
        cur: Vec<u8>,
    }
    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.cur.is_empty() {
                match self.rx.recv() {
                    Ok(c) => self.cur = c,
                    Err(_) => return Ok(0),
                }
            }
            let n = self.cur.len().min(buf.len());
            buf[..n].copy_from_slice(&self.cur[..n]);
            self.cur.drain(..n);
            Ok(n)
        }
    }

    #[derive(Debug, PartialEq)]
    enum Ev {
        Line(String),
        Tick,
    }

    /// Writes `parts` into a pipe with `gap` between them; returns what
    /// reading with `tick` saw and when (relative to the start).
    fn timed(parts: &[&[u8]], gap: Duration, tick: Option<Duration>) -> Vec<(Ev, Duration)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let writer = std::thread::spawn(move || {
            for p in parts {
                tx.send(p).unwrap();
                std::thread::sleep(gap);
            }
        });
        let start = Instant::now();
        let mut out = Vec::new();
        let pipe = Pipe {
            rx,
            cur: Vec::new(),
        };
        let opts = InputOptions {
            flush_interval: tick,
            ..Default::default()
        };
        let (_, r) = for_each_line(pipe, "t", &opts, Arc::default(), |_, ev| {
            let e = match ev {
                LineEvent::Line(b) => Ev::Line(String::from_utf8_lossy(b).into_owned()),
                LineEvent::TooLong => panic!("no long lines here"),
                LineEvent::Tick => Ev::Tick,
            };
            out.push((e, start.elapsed()));
            true
        });
        r.unwrap();
        writer.join().unwrap();
        out
    }

    #[test]
    fn timed_reading_ticks_while_the_source_is_idle() {
        let gap = Duration::from_millis(400);
        let parts: [&[u8]; 3] = [b"a\nb\npar", b"tial\n", b"c\n"];
        let got = timed(&parts, gap, Some(Duration::from_millis(100)));
        let evs: Vec<&Ev> = got.iter().map(|(e, _)| e).collect();
        let line = |s: &str| Ev::Line(s.into());
        // Lines come as soon as they are complete (not when 256 KiB have
        // come), a tick follows each burst once its data is 100 ms old,
        // and a line split across the idle time is still one line.
        assert_eq!(
            evs,
            [
                &line("a"),
                &line("b"),
                &Ev::Tick,
                &line("partial"),
                &Ev::Tick,
                &line("c"),
                &Ev::Tick
            ]
        );
        let at = |i: usize| got[i].1;
        assert!(at(0) < Duration::from_millis(300), "{:?}", at(0));
        assert!(
            at(2) >= Duration::from_millis(100) && at(2) < gap,
            "{:?}",
            at(2)
        );
        assert!(at(3) >= gap, "{:?}", at(3));
        // Untimed: the same lines, no ticks.
        let plain = timed(&parts, Duration::from_millis(20), None);
        let lines: Vec<&Ev> = plain.iter().map(|(e, _)| e).collect();
        assert_eq!(
            lines,
            [&line("a"), &line("b"), &line("partial"), &line("c")]
        );
    }

    /// Live input is never resumed: a stop, at a tick or at a line, hands
    /// back no position (a file stopped the same way does).
    #[test]
    fn a_stopped_live_reading_has_no_position() {
        for stop_at_tick in [true, false] {
            let (tx, rx) = std::sync::mpsc::channel();
            // The reading thread ends with the pipe's next read (here its
            // end), as it would with a writer that goes on.
            let writer = std::thread::spawn(move || {
                tx.send(b"a\nb\n".to_vec()).unwrap();
                std::thread::sleep(Duration::from_millis(200));
            });
            let pipe = Pipe {
                rx,
                cur: Vec::new(),
            };
            let opts = InputOptions {
                flush_interval: Some(Duration::from_millis(20)),
                ..Default::default()
            };
            let mut seen = Vec::new();
            let out = for_each_line_from(pipe, "t", &opts, Arc::default(), None, |n, ev| {
                let tick = matches!(ev, LineEvent::Tick);
                seen.push((n, tick));
                if tick {
                    !stop_at_tick
                } else {
                    stop_at_tick || n < 2
                }
            });
            writer.join().unwrap();
            out.result.unwrap();
            assert!(out.stopped_at.is_none(), "{seen:?}");
            let want: &[(u64, bool)] = if stop_at_tick {
                &[(1, false), (2, false), (2, true)]
            } else {
                &[(1, false), (2, false)]
            };
            assert_eq!(seen, want);
        }
        let file = b"a\nb\nc\n";
        let out = for_each_line_from(
            &file[..],
            "t",
            &InputOptions::default(),
            Arc::default(),
            None,
            |n, _| n < 2,
        );
        let p = out.stopped_at.unwrap();
        assert_eq!((p.lines, p.offset, &p.pending[..]), (2, 4, &b"c\n"[..]));
    }

    #[test]
    fn done_position_follows_the_lines_not_the_read_ahead() {
        let data: Vec<u8> = (0..400_000u64)
            .flat_map(|i| format!("line {i} {}\n", i * 7919 % 1000).into_bytes())
            .collect();
        for input in [gz(&data), data.clone()] {
            let progress: Arc<Progress> = Arc::default();
            let p2 = progress.clone();
            let mut seen: Vec<(u64, u64)> = Vec::new();
            let (_, r) = for_each_line(
                &input[..],
                "t",
                &InputOptions::default(),
                progress.clone(),
                |n, _| {
                    if n % 20_000 == 1 {
                        seen.push((p2.done(), p2.read().0));
                    }
                    true
                },
            );
            r.unwrap();
            assert_eq!(seen[0].0, 0, "nothing is done before the first chunk");
            assert!(seen[0].1 > 0, "but the reader is ahead");
            assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
            assert!(seen.iter().all(|(d, r)| d <= r), "{seen:?}");
            assert!(seen.iter().any(|(d, _)| *d > 0));
            assert_eq!(progress.done(), input.len() as u64);
            assert_eq!(progress.read().0, input.len() as u64);
        }
    }

    #[test]
    fn early_stop() {
        let data: Vec<u8> = (0..200_000)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let mut seen = 0;
        for_each_line(
            &data[..],
            "t",
            &InputOptions::default(),
            Arc::default(),
            |_, _| {
                seen += 1;
                seen < 10
            },
        )
        .1
        .unwrap();
        assert_eq!(seen, 10);
    }

    #[test]
    fn a_leading_bom_is_skipped_plain_and_gzip() {
        let text = b"\xef\xbb\xbf{\"a\":1}\n\xef\xbb\xbfsecond\n";
        let o = InputOptions::default();
        for (input, gzip) in [(text.to_vec(), false), (gz(text), true)] {
            let (f, l) = lines_format(&input, &o);
            let f = f.unwrap();
            assert_eq!((f.gzip, f.bom, f.unterminated), (gzip, true, false));
            // Only a leading one: later lines are handed over as they are.
            assert_eq!(
                l,
                vec![
                    (1, Some("{\"a\":1}".into())),
                    (2, Some("\u{feff}second".into()))
                ]
            );
        }
        // Sniffing still works however the source splits its reads, and a
        // BOM alone is an empty first line.
        let z = gz(b"\xef\xbb\xbfx\n");
        let mut got = Vec::new();
        let (f, r) = for_each_line(Trickle(&z), "t", &o, Arc::default(), |_, ev| {
            if let LineEvent::Line(b) = ev {
                got.push(b.to_vec());
            }
            true
        });
        r.unwrap();
        assert!(f.gzip && f.bom);
        assert_eq!(got, vec![b"x".to_vec()]);
        let (f, l) = lines_format(b"\xef\xbb\xbf", &o);
        assert!(f.unwrap().bom);
        assert_eq!(l, vec![(1, Some(String::new()))]);
        // No BOM: nothing is taken from the first line.
        let (f, l) = lines_format(b"\xef\xbbx\n", &o);
        assert!(!f.unwrap().bom);
        assert_eq!(l[0].1.as_deref(), Some("\u{fffd}x"));
    }

    #[test]
    fn an_unterminated_last_line_is_flagged() {
        let o = InputOptions::default();
        for (input, unterminated) in [(&b"a\nb"[..], true), (b"a\nb\n", false), (b"", false)] {
            assert_eq!(
                lines_format(input, &o).0.unwrap().unterminated,
                unterminated
            );
            assert_eq!(
                lines_format(&gz(input), &o).0.unwrap().unterminated,
                unterminated
            );
        }
        let long = InputOptions {
            max_line_bytes: 2,
            ..Default::default()
        };
        let (f, l) = lines_format(b"a\nbbbbbbb", &long);
        assert!(f.unwrap().unterminated);
        assert_eq!(l[1], (2, None));
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use proptest::prelude::*;
    use std::io::Write;

    type Events = Vec<(u64, Option<Vec<u8>>)>;

    fn gz(data: &[u8], level: u32) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// One run from `from` over `whole` (sliced at the position's source
    /// offset), stopping after `stop_after` lines. Returns the lines, the
    /// outcome and the bytes this run inflated.
    fn run(
        whole: &[u8],
        from: Option<InputPosition>,
        stop_after: Option<usize>,
        opts: &InputOptions,
    ) -> (Events, LinesOutcome, u64) {
        let at = from.as_ref().map_or(0, InputPosition::source_offset) as usize;
        let progress: Arc<Progress> = Arc::default();
        let mut events = Vec::new();
        let out = for_each_line_from(&whole[at..], "t", opts, progress.clone(), from, |n, ev| {
            events.push((
                n,
                match ev {
                    LineEvent::Line(b) => Some(b.to_vec()),
                    LineEvent::TooLong => None,
                    LineEvent::Tick => panic!("untimed reading never ticks"),
                },
            ));
            stop_after != Some(events.len())
        });
        (events, out, progress.read().1)
    }

    /// Runs `whole` to its end, stopping after the given numbers of lines
    /// of each run and resuming from the (encoded, decoded) position.
    /// Returns every line seen and the bytes inflated in total.
    fn chain(whole: &[u8], stops: &[usize], opts: &InputOptions) -> (Events, u64) {
        let mut all = Vec::new();
        let mut inflated = 0;
        let mut from = None;
        for k in stops.iter().copied().map(Some).chain([None]) {
            let (events, out, d) = run(whole, from.take(), k, opts);
            out.result.unwrap();
            all.extend(events);
            inflated += d;
            match out.stopped_at {
                Some(p) => {
                    assert!(!p.finished);
                    let bytes = p.to_bytes();
                    let back = InputPosition::from_bytes(&bytes).unwrap();
                    assert_eq!(back, p);
                    from = Some(back);
                }
                None => return (all, inflated),
            }
        }
        (all, inflated)
    }

    fn lines_strategy() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            6 => "[a-z{}\":,0-9 ]{0,120}".prop_map(String::into_bytes),
            1 => Just(b"\r".to_vec()),
            1 => Just(Vec::new()),
            1 => (0..3000usize).prop_map(|n| vec![b'x'; n]),
        ];
        (prop::collection::vec(line, 0..3000), any::<bool>()).prop_map(|(lines, last_nl)| {
            let mut out = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                out.extend_from_slice(l);
                if i + 1 < lines.len() || last_nl {
                    out.push(b'\n');
                }
            }
            out
        })
    }

    /// Plain, one gzip member, or several (cut at the given fractions).
    fn encode(data: &[u8], how: u8, level: u32, cuts: &[f64]) -> Vec<u8> {
        match how {
            0 => data.to_vec(),
            1 => gz(data, level),
            _ => {
                let mut at: Vec<usize> = cuts
                    .iter()
                    .map(|f| (f * data.len() as f64) as usize)
                    .collect();
                at.push(0);
                at.push(data.len());
                at.sort_unstable();
                at.windows(2)
                    .flat_map(|w| gz(&data[w[0]..w[1]], level))
                    .collect()
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Stopping anywhere and resuming from the position yields exactly
        /// the lines (numbers, contents, too-long markers) of one run.
        #[test]
        fn resumed_reading_is_one_reading(
            data in lines_strategy(),
            how in 0u8..3,
            level in prop::sample::select(vec![1u32, 6, 9]),
            cuts in prop::collection::vec(0.0..1.0f64, 0..4),
            stops in prop::collection::vec(1usize..400, 0..6),
            max_line in prop::sample::select(vec![64usize, 1000, 1 << 20]),
        ) {
            let opts = InputOptions { max_line_bytes: max_line, ..Default::default() };
            let whole = encode(&data, how, level, &cuts);
            let (reference, out, _) = run(&whole, None, None, &opts);
            out.result.unwrap();
            prop_assert!(out.stopped_at.is_none());
            let (resumed, _) = chain(&whole, &stops, &opts);
            prop_assert_eq!(resumed, reference);
        }
    }

    /// k6-like lines (~300 bytes, like `--out json`).
    fn k6_lines(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..n {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            writeln!(
                out,
                r#"{{"metric":"http_req_duration","type":"Point","data":{{"time":"2024-05-01T12:{:02}:{:02}.{:06}Z","value":{}.{:03},"tags":{{"group":"","method":"GET","name":"http://127.0.0.1/item/{}","proto":"HTTP/1.1","scenario":"default","status":"{}","url":"http://127.0.0.1/item/{}"}}}}}}"#,
                (i / 60_000) % 60,
                (i / 1000) % 60,
                seed % 1_000_000,
                seed % 900,
                (seed >> 20) % 1000,
                (seed >> 30) % 50,
                if seed.is_multiple_of(50) { 500 } else { 200 },
                (seed >> 30) % 50,
            )
            .unwrap();
        }
        out
    }

    /// What a chain of stopped runs inflates in total stays close to the
    /// input: each resumed run inflates again at most what lies between its
    /// access point and the previous run's read-ahead end (about one deflate
    /// block), never the prefix.
    #[test]
    fn a_chain_inflates_the_input_about_once() {
        let data = k6_lines(60_000);
        for (whole, members) in [
            (gz(&data, 6), 1),
            (encode(&data, 2, 6, &[0.3, 0.31, 0.7]), 4),
        ] {
            let opts = InputOptions::default();
            let stops = vec![3000; 18];
            let (lines, inflated) = chain(&whole, &stops, &opts);
            assert_eq!(lines.len(), 60_000);
            let extra = inflated - data.len() as u64;
            // A stopped run inflates on to the next access point, so a
            // resumed one inflates again only when it stops before reaching
            // a new point: far less than a block per run on average.
            assert!(
                extra <= stops.len() as u64 * ACCESS_POINT_SPAN,
                "{members} member(s): inflated {inflated} for {} bytes",
                data.len()
            );
            eprintln!(
                "{members} member(s), {} bytes, 18 stops: inflated {inflated} ({:.3}x)",
                data.len(),
                inflated as f64 / data.len() as f64
            );
        }
    }

    /// A position holds the read-ahead, not more; a resumed run hands it
    /// over without reading it again.
    #[test]
    fn positions_keep_the_read_ahead() {
        let data = k6_lines(40_000);
        for whole in [data.clone(), gz(&data, 6)] {
            let opts = InputOptions::default();
            // Far enough in for an access point (≥ 256 KiB and a block
            // boundary: ~700 KB on k6 lines).
            let (events, out, _) = run(&whole, None, Some(15_000), &opts);
            assert_eq!(events.len(), 15_000);
            let p = out.stopped_at.unwrap();
            let line_end = data
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .nth(14_999)
                .unwrap()
                .0 as u64
                + 1;
            assert_eq!((p.lines, p.offset), (15_000, line_end));
            assert!(
                p.pending.len() as u64 <= ((CHANNEL_DEPTH + 2) * CHUNK) as u64 + TO_POINT_MAX,
                "{p:?}"
            );
            assert_eq!(
                &p.pending[..],
                &data[line_end as usize..p.resume_offset() as usize]
            );
            if p.gzip {
                let point = p.point.as_ref().unwrap();
                assert!(point.in_offset() < whole.len() as u64);
                // Taken at a stop: resuming starts where the run left off.
                assert!(point.out_offset() >= p.offset || p.pending.is_empty());
            } else {
                assert!(p.point.is_none() && p.source_offset() == p.resume_offset());
            }
        }
    }

    /// Errors after a resume keep their kind and give offsets in the whole
    /// input.
    #[test]
    fn errors_after_a_resume_are_located_in_the_whole_input() {
        let data = k6_lines(20_000);
        let whole = gz(&data, 6);
        let opts = InputOptions::default();
        let (_, out, _) = run(&whole, None, Some(5000), &opts);
        let p = out.stopped_at.unwrap();
        let cut = &whole[..whole.len() - 100];
        let (events, out, _) = run(cut, Some(p.clone()), None, &opts);
        match out.result {
            Err(InputError::Corrupt { at, .. }) => {
                assert_eq!(at.bytes_read, cut.len() as u64, "{at:?}");
                assert!(
                    at.lines > 5000 && at.bytes_decompressed > p.offset,
                    "{at:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(events[0].0, 5001);
        // The cap counts from the input's start, not the resume.
        let small = InputOptions {
            max_decompressed_bytes: p.offset + 1000,
            ..Default::default()
        };
        let (_, out, _) = run(&whole, Some(p), None, &small);
        assert!(matches!(out.result, Err(InputError::TooLarge { .. })));
    }

    /// A leading byte-order mark is stripped once, from the input's first
    /// line, and still reported by a resumed run.
    #[test]
    fn a_bom_is_remembered_across_a_resume() {
        let mut data = BOM.to_vec();
        data.extend(k6_lines(20_000));
        for whole in [data.clone(), gz(&data, 6)] {
            let opts = InputOptions::default();
            let (first, out, _) = run(&whole, None, Some(10), &opts);
            assert!(out.format.bom);
            assert!(first[0].1.as_ref().unwrap().starts_with(b"{"));
            let p = out.stopped_at.unwrap();
            assert!(p.bom);
            let (rest, out, _) = run(&whole, Some(p), None, &opts);
            out.result.unwrap();
            assert!(out.format.bom && !out.format.unterminated);
            assert_eq!(rest.len(), 20_000 - 10);
        }
    }

    #[test]
    fn position_encoding_rejects_inconsistent_fields() {
        let data = k6_lines(60_000);
        let whole = gz(&data, 6);
        let (_, out, _) = run(&whole, None, Some(15_000), &InputOptions::default());
        let p = out.stopped_at.unwrap();
        assert!(p.point.is_some());
        let bytes = p.to_bytes();
        assert_eq!(InputPosition::from_bytes(&bytes).unwrap(), p);
        let format = Format {
            gzip: true,
            bom: true,
            unterminated: false,
        };
        let end = InputPosition::end(format, 7, 99);
        assert_eq!(InputPosition::from_bytes(&end.to_bytes()).unwrap(), end);
        let mut plain_with_point = p.clone();
        plain_with_point.gzip = false;
        let mut finished_with_pending = p.clone();
        finished_with_pending.finished = true;
        let mut shifted = p.clone();
        shifted.offset += 1;
        for bad in [plain_with_point, finished_with_pending] {
            assert_eq!(
                InputPosition::from_bytes(&bad.to_bytes()),
                Err(PositionDecodeError::Inconsistent)
            );
        }
        if !shifted.pending.is_empty() {
            assert_eq!(
                InputPosition::from_bytes(&shifted.to_bytes()),
                Err(PositionDecodeError::Inconsistent)
            );
        }
        assert_eq!(
            InputPosition::from_bytes(&bytes[..bytes.len() - 1]),
            Err(PositionDecodeError::Length)
        );
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(
            InputPosition::from_bytes(&magic),
            Err(PositionDecodeError::BadMagic)
        );
        let mut flipped = bytes.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 1;
        assert!(
            InputPosition::from_bytes(&flipped).is_err(),
            "point checksum"
        );
    }
}
