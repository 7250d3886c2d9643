//! Reading k6 results: gzip detection, decompression on its own thread,
//! size caps, and line splitting with a maximum line length.
//!
//! Memory is bounded by `CHUNK × CHANNEL_DEPTH` plus one maximum-length line,
//! whatever the input size. Decompression runs on a second thread so that on
//! a 2-vCPU machine (or a ≥1769 MB Lambda) inflating and parsing overlap.

use flate2::bufread::MultiGzDecoder;
use std::io::{self, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
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
}

impl Default for InputOptions {
    fn default() -> Self {
        Self {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// Live counters, readable from another thread (progress bar, Lambda logs).
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_read: AtomicU64,
    pub bytes_decompressed: AtomicU64,
}

impl Progress {
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
}

/// What the reading thread sends.
enum Msg {
    Data(Vec<u8>),
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
    let br = BufReader::with_capacity(
        CHUNK,
        io::Cursor::new(head).take(got as u64).chain(counting),
    );
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
        // Fill whole chunks: fewer, larger messages.
        let res = loop {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break Ok(true),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
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
        if filled > 0 && tx.send(Msg::Data(buf)).is_err() {
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

/// A line handed to the consumer.
pub enum LineEvent<'a> {
    /// A complete line, without its `\n` (and `\r`).
    Line(&'a [u8]),
    /// A line longer than the maximum (its bytes are discarded).
    TooLong,
}

/// Reads `source` on a scoped thread and calls `on_line` for each line, in
/// order, with 1-based line numbers. `on_line` returns `false` to stop early.
/// Returns whether the input was gzip, and `Err` for a fatal input error.
pub fn for_each_line<R, F>(
    source: R,
    name: &str,
    opts: &InputOptions,
    progress: Arc<Progress>,
    mut on_line: F,
) -> (bool, Result<(), InputError>)
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
        let gzip = grx.recv().unwrap_or(false);
        // Dropping the receiver (inside consume) lets the producer finish.
        (
            gzip,
            consume(rx, free_tx, name, opts, &progress, &mut on_line),
        )
    })
}

fn consume<F>(
    rx: Receiver<Msg>,
    free: std::sync::mpsc::SyncSender<Vec<u8>>,
    name: &str,
    opts: &InputOptions,
    progress: &Progress,
    on_line: &mut F,
) -> Result<(), InputError>
where
    F: FnMut(u64, LineEvent<'_>) -> bool,
{
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
    let emit = |line_no: &mut u64, bytes: &[u8], on_line: &mut F| -> bool {
        *line_no += 1;
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        on_line(*line_no, LineEvent::Line(bytes))
    };
    for msg in rx.iter() {
        let chunk = match msg {
            Msg::Data(c) => c,
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
                    emit(&mut line_no, line, on_line)
                }
            } else {
                carry.extend_from_slice(line);
                let r = if carry.len() > opts.max_line_bytes {
                    line_no += 1;
                    on_line(line_no, LineEvent::TooLong)
                } else {
                    emit(&mut line_no, &carry, on_line)
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
        let _ = free.try_send(chunk);
    }
    // Last line without a trailing newline.
    if discarding {
        line_no += 1;
        on_line(line_no, LineEvent::TooLong);
    } else if !carry.is_empty() {
        emit(&mut line_no, &carry, on_line);
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
        let mut out = Vec::new();
        let (gz, r) = for_each_line(input, "t", opts, Arc::default(), |n, ev| {
            out.push((
                n,
                match ev {
                    LineEvent::Line(b) => Some(String::from_utf8_lossy(b).into_owned()),
                    LineEvent::TooLong => None,
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
        assert!(is_gz);
        assert_eq!(out, vec![b"a".to_vec(), b"b".to_vec()]);
        let (is_gz, _) = for_each_line(
            Trickle(b"x"),
            "t",
            &InputOptions::default(),
            Arc::default(),
            |_, _| true,
        );
        assert!(!is_gz);
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
}
