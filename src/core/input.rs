//! Reading k6 results: gzip detection, decompression on its own thread,
//! size caps, and line splitting with a maximum line length.
//!
//! Memory is bounded by `CHUNK × CHANNEL_DEPTH` plus one maximum-length line,
//! whatever the input size. Decompression runs on a second thread so that on
//! a 2-vCPU machine (or a ≥1769 MB Lambda) inflating and parsing overlap.

use flate2::bufread::MultiGzDecoder;
use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

const CHUNK: usize = 256 * 1024;
const CHANNEL_DEPTH: usize = 8;

pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
/// 100 GiB: a one-hour 1000 RPS k6 run is ~15 GB of JSON; a gzip bomb
/// (ratio ~1000:1) of a few MB would blow far past it.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 100 << 30;

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
    /// ingested afterwards by such nudges.
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

/// Live counters, readable from another thread (progress bar, Lambda logs).
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_read: AtomicU64,
    pub bytes_decompressed: AtomicU64,
    /// Bytes of the source (compressed ones for gzip) whose lines have
    /// been handed to the consumer: a progress position that does not run
    /// ahead of the work by the read-ahead buffers (256 KiB of the source
    /// and 2 MiB of decompressed text, most of a small gzip file).
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

/// How far reading got when it failed.
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
}

impl InputError {
    /// A read error of the underlying stream (a network problem for an S3
    /// body): a retry reads the same bytes and may succeed. Corrupt or
    /// oversized input fails the same way every time.
    pub fn retryable(&self) -> bool {
        matches!(self, InputError::Io { .. })
    }
}

/// What the reading thread sends.
enum Msg {
    /// Decompressed bytes, and the source bytes taken to produce them.
    Data(Vec<u8>, u64),
    Fail(FailKind),
}

enum FailKind {
    Corrupt(String),
    TooLarge,
    Io(io::Error),
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

/// Counts the source bytes taken out of the read buffer (by the inflater,
/// or by the plain reader): how far into the source the output has got.
struct Taken<B> {
    inner: B,
    taken: Rc<Cell<u64>>,
}

impl<B: BufRead> Read for Taken<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken.set(self.taken.get() + n as u64);
        Ok(n)
    }
}

impl<B: BufRead> BufRead for Taken<B> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.taken.set(self.taken.get() + amt as u64);
        self.inner.consume(amt);
    }
}

/// Is this a gzip stream? (magic bytes 1f 8b)
pub fn is_gzip(head: &[u8]) -> bool {
    head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b
}

/// The reading side: detects gzip, inflates every member, enforces the cap,
/// and sends chunks until the receiver hangs up or the input ends.
fn produce<R: Read>(
    source: R,
    opts: &InputOptions,
    progress: Arc<Progress>,
    gzip_flag: &std::sync::mpsc::SyncSender<bool>,
    tx: std::sync::mpsc::SyncSender<Msg>,
    free: Receiver<Vec<u8>>,
) {
    // Peek the first two bytes, however the source chooses to split its
    // reads (a pipe or a network stream may return one byte at a time).
    let mut counting = CountingReader {
        inner: source,
        progress: progress.clone(),
    };
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match counting.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = gzip_flag.send(false);
                let _ = tx.send(Msg::Fail(FailKind::Io(e)));
                return;
            }
        }
    }
    let gz = is_gzip(&head[..got]);
    let _ = gzip_flag.send(gz);
    let taken = Rc::new(Cell::new(0u64));
    let br = Taken {
        inner: BufReader::with_capacity(
            CHUNK,
            io::Cursor::new(head).take(got as u64).chain(counting),
        ),
        taken: taken.clone(),
    };
    let mut reader: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(br))
    } else {
        Box::new(br)
    };
    let mut total = 0u64;
    loop {
        // Chunks come back from the consumer: no fresh (page-faulting,
        // zeroed) allocation per 256 KiB.
        let mut buf = free.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let mut filled = 0;
        // Fill whole chunks: fewer, larger messages. Live input hands on
        // whatever one read returned instead: a pipe that is written
        // slowly must not hold its lines back until 256 KiB have come.
        let res = loop {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break Ok(true),
                Ok(n) => {
                    filled += n;
                    if opts.flush_interval.is_some() || filled == buf.len() {
                        break Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        buf.truncate(filled);
        total += filled as u64;
        if total > opts.max_decompressed_bytes {
            let _ = tx.send(Msg::Fail(FailKind::TooLarge));
            return;
        }
        progress.bytes_decompressed.store(total, Ordering::Relaxed);
        if filled > 0 && tx.send(Msg::Data(buf, taken.get())).is_err() {
            return; // consumer stopped early
        }
        match res {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                let kind = if gz
                    && matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::InvalidInput
                            | io::ErrorKind::InvalidData
                    ) {
                    FailKind::Corrupt(e.to_string())
                } else {
                    FailKind::Io(e)
                };
                let _ = tx.send(Msg::Fail(kind));
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
    mut on_line: F,
) -> (Format, Result<(), InputError>)
where
    R: Read + Send,
    F: FnMut(u64, LineEvent<'_>) -> bool,
{
    let (tx, rx) = sync_channel::<Msg>(CHANNEL_DEPTH);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(CHANNEL_DEPTH + 2);
    let (gtx, grx) = sync_channel::<bool>(1);
    std::thread::scope(|s| {
        let p2 = progress.clone();
        s.spawn(move || produce(source, opts, p2, &gtx, tx, free_rx));
        let mut format = Format {
            gzip: grx.recv().unwrap_or(false),
            ..Format::default()
        };
        // Dropping the receiver (inside consume) lets the producer finish.
        let res = consume(
            rx,
            free_tx,
            name,
            opts,
            &progress,
            &mut format,
            &mut on_line,
        );
        (format, res)
    })
}

/// The next message, or a tick when one is due first (`Some(None)`).
/// None: the producer is done.
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

fn consume<F>(
    rx: Receiver<Msg>,
    free: std::sync::mpsc::SyncSender<Vec<u8>>,
    name: &str,
    opts: &InputOptions,
    progress: &Progress,
    format: &mut Format,
    on_line: &mut F,
) -> Result<(), InputError>
where
    F: FnMut(u64, LineEvent<'_>) -> bool,
{
    let mut rule = opts.flush_interval.map(TickRule::new);
    let mut carry: Vec<u8> = Vec::new();
    let mut discarding = false;
    let mut line_no = 0u64;
    let at = |lines: u64| {
        let (r, d) = progress.read();
        Position {
            bytes_read: r,
            bytes_decompressed: d,
            lines,
        }
    };
    let emit = |line_no: &mut u64, bytes: &[u8], bom: &mut bool, on_line: &mut F| -> bool {
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
    };
    while let Some(msg) = next_msg(&rx, &mut rule) {
        let Some(msg) = msg else {
            if !on_line(line_no, LineEvent::Tick) {
                return Ok(());
            }
            continue;
        };
        let (chunk, source_pos) = match msg {
            Msg::Data(c, pos) => (c, pos),
            Msg::Fail(k) => {
                return Err(match k {
                    FailKind::Corrupt(d) => InputError::Corrupt {
                        input: name.to_owned(),
                        detail: d,
                        at: at(line_no),
                    },
                    FailKind::TooLarge => InputError::TooLarge {
                        input: name.to_owned(),
                        cap: opts.max_decompressed_bytes,
                        at: at(line_no),
                    },
                    FailKind::Io(e) => InputError::Io {
                        input: name.to_owned(),
                        source: e,
                        at: at(line_no),
                    },
                })
            }
        };
        let mut rest: &[u8] = &chunk;
        while let Some(nl) = memchr(b'\n', rest) {
            let (line, tail) = (&rest[..nl], &rest[nl + 1..]);
            rest = tail;
            if discarding {
                discarding = false;
                carry.clear();
                line_no += 1;
                if !on_line(line_no, LineEvent::TooLong) {
                    return Ok(());
                }
                continue;
            }
            let keep_going = if carry.is_empty() {
                if line.len() > opts.max_line_bytes {
                    line_no += 1;
                    on_line(line_no, LineEvent::TooLong)
                } else {
                    emit(&mut line_no, line, &mut format.bom, on_line)
                }
            } else {
                carry.extend_from_slice(line);
                let r = if carry.len() > opts.max_line_bytes {
                    line_no += 1;
                    on_line(line_no, LineEvent::TooLong)
                } else {
                    emit(&mut line_no, &carry, &mut format.bom, on_line)
                };
                carry.clear();
                r
            };
            if !keep_going {
                return Ok(());
            }
        }
        if !discarding {
            carry.extend_from_slice(rest);
            if carry.len() > opts.max_line_bytes {
                discarding = true;
                carry = Vec::new();
            }
        }
        progress.bytes_done.store(source_pos, Ordering::Relaxed);
        let _ = free.try_send(chunk);
    }
    progress
        .bytes_done
        .store(progress.read().0, Ordering::Relaxed);
    // Last line without a trailing newline.
    if discarding {
        format.unterminated = true;
        line_no += 1;
        on_line(line_no, LineEvent::TooLong);
    } else if !carry.is_empty() {
        format.unterminated = true;
        emit(&mut line_no, &carry, &mut format.bom, on_line);
    }
    Ok(())
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
