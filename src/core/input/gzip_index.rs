//! Random access into gzip streams, after zlib's `examples/zran.c`.
//!
//! A deflate stream cannot be entered at an arbitrary byte: symbols are not byte aligned and
//! back-references reach up to 32 KiB into earlier output. It *can* be entered at a deflate
//! block boundary, given (a) the bit offset of that boundary and (b) the last 32 KiB of
//! uncompressed output before it. [`IndexingDecoder`] inflates a gzip stream and, while doing
//! so, records such [`AccessPoint`]s every `span` uncompressed bytes. Later,
//! [`IndexingDecoder::resume`] continues decompression from a point given only the compressed
//! bytes from [`AccessPoint::in_offset`] on, which is exactly what a ranged read of the object
//! (`Range: bytes=<in_offset>-`) returns. A resumed decoder records points too, so an index can
//! be extended across several partial reads.
//!
//! # Design choices
//!
//! * **Raw inflate, own gzip framing.** zlib is always initialised for raw deflate
//!   (`windowBits = -15`); member headers and trailers are parsed here. Resuming mid-member
//!   needs raw inflate anyway, so a fresh stream and a resumed one run the same state machine,
//!   and header/CRC/length failures become typed [`GzipIndexError`] variants instead of zlib
//!   message strings (`windowBits = 15 + 32` would report them all as `Z_DATA_ERROR` and also
//!   accept zlib-wrapped data). The CRC-32 is computed here, one pass over each output chunk,
//!   as zlib's gzip mode would do internally.
//! * **`Z_BLOCK` only when a point is due.** With `Z_BLOCK`, `inflate` returns at every
//!   deflate block boundary, and `data_type` then tells where it stopped: bit 7 (128) is set
//!   at a boundary, bit 6 (64) if the block just finished was the last one of the member (its
//!   end is no access point: the member trailer follows), and bits 0..=2 hold the number of
//!   bits of the last consumed byte that belong to the next block. Every return costs zlib a
//!   window update, so until `span` bytes have passed since the previous point `inflate` runs
//!   with `Z_NO_FLUSH` (output capped just short of the due offset), and without a span
//!   always. The points found are the same as with `Z_BLOCK` throughout.
//! * **Window from zlib.** zlib already keeps the last 32 KiB of output of the current member
//!   as its sliding window, so a point copies it with `inflateGetDictionary` when (and only
//!   when) it is recorded; the hot path keeps no window of its own.
//! * **Member starts are access points.** Between two members the deflate state is empty:
//!   such a point has no window, no bit offset, and its `in_offset` is the first byte of the
//!   next member's header. It is recorded once that header has been parsed successfully.
//! * **The running CRC travels with the point.** Each point carries the CRC-32 of its
//!   member's output before the point and the uncompressed offset of the member's start, so a
//!   resumed decoder still verifies both CRC-32 and ISIZE of the partially read member (zran
//!   itself cannot). A point used against a different object is therefore caught at the end
//!   of that member at the latest, if not earlier as corrupt deflate data.
//! * **End of stream.** As GNU gzip does, zero bytes after the last member (tape or block
//!   padding) are accepted and ignored. Any other byte where a member header should start is
//!   reported as [`GzipIndexError::TrailingGarbage`] (gzip warns, exit status 2); by then all
//!   data of the complete members has been returned, so a caller that wants gzip's leniency
//!   can treat that error as the end of the stream. An empty input is a truncated stream.
//!
//! # Checkpointing with it
//!
//! Decode with [`IndexingDecoder::with_span`]; to stop, keep the last point whose
//! `out_offset` is at or before the end of the data already processed, plus that end offset
//! ([`AccessPoint::to_bytes`] for storage). To restart, read the object from the point's
//! `in_offset`, [`IndexingDecoder::resume`] and discard `end - out_offset` bytes of output.
//! Points are only as dense as deflate blocks: on highly compressible text a block may hold
//! several hundred KiB of output.

use std::ffi::{c_int, c_uint, CStr};
use std::fmt;
use std::io::{self, Read};

use libz_rs_sys as zlib;

/// Size of the deflate sliding window: the most history a back-reference can reach.
pub const WINDOW_SIZE: usize = 32 * 1024;

/// Compressed bytes read from the inner reader at a time.
const INPUT_BUFFER_SIZE: usize = 64 * 1024;

/// gzip header flag bits (RFC 1952, section 2.3.1).
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

/// Errors of decoding or resuming a gzip stream. Every offset is an absolute byte offset in
/// the compressed stream (also for a resumed decoder).
///
/// Read errors of the inner reader are passed through unchanged as [`io::Error`]s; these
/// errors reach callers of [`Read::read`] wrapped in an [`io::Error`], see
/// [`GzipIndexError::from_io_error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GzipIndexError {
    /// The compressed input ended inside a member (or was empty).
    #[error("gzip stream truncated: input ended at compressed offset {offset}")]
    Truncated { offset: u64 },
    /// A member header starting at `offset` is invalid.
    #[error("invalid gzip header at compressed offset {offset}: {error}")]
    BadHeader { offset: u64, error: HeaderError },
    /// Bytes that are neither a gzip member nor zero padding follow a complete member.
    #[error("data after the last gzip member at compressed offset {offset} is not a gzip member")]
    TrailingGarbage { offset: u64 },
    /// The CRC-32 stored in the member trailer at `offset` does not match the data.
    #[error("CRC-32 mismatch in gzip trailer at compressed offset {offset}: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        offset: u64,
        stored: u32,
        computed: u32,
    },
    /// The ISIZE stored in the member trailer at `offset` does not match the data.
    #[error("length mismatch in gzip trailer at compressed offset {offset}: stored {stored}, computed {computed} (mod 2^32)")]
    LengthMismatch {
        offset: u64,
        stored: u32,
        computed: u32,
    },
    /// zlib rejected the deflate data; `message` is zlib's description, for humans only.
    #[error("corrupt deflate data near compressed offset {offset}: {message}")]
    Corrupt { offset: u64, message: String },
    /// zlib failed for a reason other than the data (out of memory, inconsistent state).
    #[error("zlib {operation} failed with code {code}")]
    Zlib { operation: &'static str, code: i32 },
}

impl GzipIndexError {
    /// The [`GzipIndexError`] inside an [`io::Error`] returned by [`IndexingDecoder`]'s
    /// `read`, if the error came from the gzip data rather than from the inner reader.
    pub fn from_io_error(error: &io::Error) -> Option<&GzipIndexError> {
        error.get_ref()?.downcast_ref()
    }
}

impl From<GzipIndexError> for io::Error {
    fn from(error: GzipIndexError) -> Self {
        let kind = match error {
            GzipIndexError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            GzipIndexError::Zlib { .. } => io::ErrorKind::Other,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, error)
    }
}

/// What is wrong with a gzip member header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    #[error("not a gzip member (magic bytes are not 1f 8b)")]
    BadMagic,
    #[error("unsupported compression method {0}")]
    UnsupportedMethod(u8),
    #[error("reserved flag bits set in {0:#04x}")]
    ReservedFlags(u8),
    #[error("header CRC-16 mismatch")]
    HeaderCrcMismatch,
}

/// Why [`AccessPoint::from_bytes`] rejected its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PointDecodeError {
    #[error("encoded access point too short ({len} bytes)")]
    TooShort { len: usize },
    #[error("not an encoded access point (bad magic)")]
    BadMagic,
    #[error("unsupported access point format version {0}")]
    UnsupportedVersion(u8),
    #[error("encoded access point has {actual} bytes, its header announces {expected}")]
    LengthMismatch { expected: usize, actual: usize },
    #[error("encoded access point checksum mismatch")]
    ChecksumMismatch,
    #[error("unknown access point flags {0:#04x}")]
    UnknownFlags(u8),
    #[error("bit offset {0} out of range 0..=7")]
    BitsOutOfRange(u8),
    #[error("window of {0} bytes exceeds 32 KiB")]
    WindowTooLarge(u32),
    #[error("offset beyond 2^63 - 1")]
    OffsetOutOfRange,
    #[error("access point fields are inconsistent with each other")]
    Inconsistent,
}

/// A position in a gzip stream where decompression can start (see the module docs).
///
/// Points are only made by [`IndexingDecoder`] or decoded and validated by
/// [`AccessPoint::from_bytes`], so their fields are always mutually consistent.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessPoint {
    in_offset: u64,
    bits: u8,
    out_offset: u64,
    member_out_offset: u64,
    member_crc: u32,
    member_start: bool,
    window: Vec<u8>,
}

impl fmt::Debug for AccessPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessPoint")
            .field("in_offset", &self.in_offset)
            .field("bits", &self.bits)
            .field("out_offset", &self.out_offset)
            .field("member_out_offset", &self.member_out_offset)
            .field("member_crc", &format_args!("{:#010x}", self.member_crc))
            .field("member_start", &self.member_start)
            .field("window_len", &self.window.len())
            .finish()
    }
}

/// Serialized form, version 1, all integers little endian:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `GZAP` |
/// | 4 | 1 | version (1) |
/// | 5 | 1 | flags: bit 0 = member start, others zero |
/// | 6 | 1 | bits (0..=7) |
/// | 7 | 1 | reserved, zero |
/// | 8 | 8 | `in_offset` |
/// | 16 | 8 | `out_offset` |
/// | 24 | 8 | `member_out_offset` |
/// | 32 | 4 | `member_crc` |
/// | 36 | 4 | window length `n` (at most 32768) |
/// | 40 | n | window |
/// | 40 + n | 4 | CRC-32 of bytes `0..40 + n` |
///
/// The window is stored uncompressed: a point is written once per checkpoint, and 32 KiB is
/// small next to a ranged read, so trading CPU for a few KiB is not worth a format decision.
const POINT_MAGIC: [u8; 4] = *b"GZAP";
const POINT_VERSION: u8 = 1;
const POINT_FLAG_MEMBER_START: u8 = 0x01;
const POINT_HEADER_LEN: usize = 40;
const POINT_CHECKSUM_LEN: usize = 4;
const MAX_OFFSET: u64 = i64::MAX as u64;

impl AccessPoint {
    /// Offset of the first compressed byte needed to resume: the byte holding the first
    /// unused bits when [`bits`](Self::bits) is non-zero, the next whole byte otherwise. A
    /// ranged read must start here.
    pub fn in_offset(&self) -> u64 {
        self.in_offset
    }

    /// How many (high) bits of the byte at `in_offset` belong to the next deflate block;
    /// 0 when the block starts on a byte boundary.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Offset in the uncompressed stream (all members concatenated) at this point.
    pub fn out_offset(&self) -> u64 {
        self.out_offset
    }

    /// Uncompressed offset at which the member containing this point starts.
    pub fn member_out_offset(&self) -> u64 {
        self.member_out_offset
    }

    /// CRC-32 of the member's uncompressed bytes before this point.
    pub fn member_crc(&self) -> u32 {
        self.member_crc
    }

    /// Whether the point is at the start of a member (`in_offset` is a gzip header).
    pub fn is_member_start(&self) -> bool {
        self.member_start
    }

    /// The up to 32 KiB of this member's uncompressed output just before the point; empty
    /// at a member start.
    pub fn window(&self) -> &[u8] {
        &self.window
    }

    /// Length of [`to_bytes`](Self::to_bytes)'s output.
    pub fn encoded_len(&self) -> usize {
        POINT_HEADER_LEN + self.window.len() + POINT_CHECKSUM_LEN
    }

    /// Serializes the point (format version 1, see the source for the layout).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&POINT_MAGIC);
        out.push(POINT_VERSION);
        out.push(if self.member_start {
            POINT_FLAG_MEMBER_START
        } else {
            0
        });
        out.push(self.bits);
        out.push(0);
        out.extend_from_slice(&self.in_offset.to_le_bytes());
        out.extend_from_slice(&self.out_offset.to_le_bytes());
        out.extend_from_slice(&self.member_out_offset.to_le_bytes());
        out.extend_from_slice(&self.member_crc.to_le_bytes());
        // The window never exceeds WINDOW_SIZE, so its length fits in u32.
        out.extend_from_slice(&(self.window.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.window);
        let checksum = crc32(0, &out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Parses [`to_bytes`](Self::to_bytes)'s output, rejecting anything that is not exactly
    /// one well-formed, internally consistent point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PointDecodeError> {
        if bytes.len() < POINT_HEADER_LEN + POINT_CHECKSUM_LEN {
            return Err(PointDecodeError::TooShort { len: bytes.len() });
        }
        let u32_at = |at: usize| u32::from_le_bytes(array_at(bytes, at));
        let u64_at = |at: usize| u64::from_le_bytes(array_at(bytes, at));
        if bytes[0..4] != POINT_MAGIC {
            return Err(PointDecodeError::BadMagic);
        }
        if bytes[4] != POINT_VERSION {
            return Err(PointDecodeError::UnsupportedVersion(bytes[4]));
        }
        let window_len = u32_at(36);
        if window_len as usize > WINDOW_SIZE {
            return Err(PointDecodeError::WindowTooLarge(window_len));
        }
        let body_len = POINT_HEADER_LEN + window_len as usize;
        let expected = body_len + POINT_CHECKSUM_LEN;
        if bytes.len() != expected {
            return Err(PointDecodeError::LengthMismatch {
                expected,
                actual: bytes.len(),
            });
        }
        if crc32(0, &bytes[..body_len]) != u32_at(body_len) {
            return Err(PointDecodeError::ChecksumMismatch);
        }

        let flags = bytes[5];
        if flags & !POINT_FLAG_MEMBER_START != 0 || bytes[7] != 0 {
            return Err(PointDecodeError::UnknownFlags(flags));
        }
        let bits = bytes[6];
        if bits > 7 {
            return Err(PointDecodeError::BitsOutOfRange(bits));
        }
        let point = AccessPoint {
            in_offset: u64_at(8),
            bits,
            out_offset: u64_at(16),
            member_out_offset: u64_at(24),
            member_crc: u32_at(32),
            member_start: flags & POINT_FLAG_MEMBER_START != 0,
            window: bytes[POINT_HEADER_LEN..body_len].to_vec(),
        };
        if point.in_offset > MAX_OFFSET || point.out_offset > MAX_OFFSET {
            return Err(PointDecodeError::OffsetOutOfRange);
        }
        // The invariants of points made by the decoder: the window is exactly the member's
        // output so far, capped at 32 KiB, and a member start has no state at all.
        let consistent = point.out_offset >= point.member_out_offset
            && point.window.len() as u64
                == (point.out_offset - point.member_out_offset).min(WINDOW_SIZE as u64)
            && (!point.member_start
                || (point.bits == 0
                    && point.out_offset == point.member_out_offset
                    && point.member_crc == 0));
        if !consistent {
            return Err(PointDecodeError::Inconsistent);
        }
        Ok(point)
    }
}

/// `N` bytes of `bytes` at `at`; callers have checked the length.
fn array_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// CRC-32 (gzip's) of `data`, continuing from `crc`.
fn crc32(crc: u32, data: &[u8]) -> u32 {
    // SAFETY: `data` is a valid slice, so its pointer is readable for `data.len()` bytes.
    let crc = unsafe { zlib::crc32_z(crc.into(), data.as_ptr(), data.len()) };
    // A CRC-32 always fits in 32 bits; zlib's type is merely wider.
    crc as u32
}

/// Owner of a zlib raw-inflate stream.
///
/// The `z_stream` is boxed because zlib's state refers back to the stream by address
/// (classic zlib checks `state->strm == strm` on every call): it must not move after
/// `inflateInit2_`. `next_in`/`next_out` only point into caller buffers during one
/// [`Inflater::inflate`] call and are cleared afterwards.
struct Inflater {
    stream: Box<zlib::z_stream>,
}

// SAFETY: the stream's state is allocated by `inflateInit2_` for this value alone and freed in
// `drop`; nothing in it is tied to a thread (the allocator is the global Rust allocator, `msg`
// points to static strings, and the input/output pointers are null between calls). Moving the
// owner to another thread is therefore sound; `Sync` is not claimed.
unsafe impl Send for Inflater {}

/// Outcome of one `inflate` call.
struct InflateOutcome {
    code: c_int,
    consumed: usize,
    produced: usize,
    data_type: c_int,
}

impl Inflater {
    fn new_raw() -> Result<Self, GzipIndexError> {
        // `Default` fills in zlib-rs' default allocator functions.
        let mut stream = Box::new(zlib::z_stream::default());
        // SAFETY: `stream` is a valid, exclusively borrowed `z_stream` with valid
        // zalloc/zfree/opaque; the version is zlib's own NUL-terminated version string and
        // the size is that of the struct passed.
        let code = unsafe {
            zlib::inflateInit2_(
                &mut *stream,
                -15,
                zlib::zlibVersion(),
                std::mem::size_of::<zlib::z_stream>() as c_int,
            )
        };
        if code != zlib::Z_OK {
            // Nothing was allocated that `inflateEnd` would have to free.
            return Err(GzipIndexError::Zlib {
                operation: "inflateInit2",
                code,
            });
        }
        Ok(Inflater { stream })
    }

    /// Forgets the current deflate stream and its window, for the next member.
    fn reset(&mut self) -> Result<(), GzipIndexError> {
        // SAFETY: the stream was initialised in `new_raw` and has not moved (boxed).
        let code = unsafe { zlib::inflateReset(&mut *self.stream) };
        check(code, "inflateReset")
    }

    /// Inserts the low `bits` bits of `value` before the next input byte.
    fn prime(&mut self, bits: u8, value: u8) -> Result<(), GzipIndexError> {
        // SAFETY: the stream was initialised in `new_raw` and has not moved.
        let code = unsafe { zlib::inflatePrime(&mut *self.stream, bits.into(), value.into()) };
        check(code, "inflatePrime")
    }

    fn set_dictionary(&mut self, dictionary: &[u8]) -> Result<(), GzipIndexError> {
        debug_assert!(dictionary.len() <= WINDOW_SIZE);
        // SAFETY: the stream was initialised in `new_raw` and has not moved; `dictionary` is
        // a valid slice of at most 32 KiB, so its length fits in `c_uint`.
        let code = unsafe {
            zlib::inflateSetDictionary(
                &mut *self.stream,
                dictionary.as_ptr(),
                dictionary.len() as c_uint,
            )
        };
        check(code, "inflateSetDictionary")
    }

    /// A copy of the sliding window: the current member's last <= 32 KiB of output.
    fn dictionary(&self) -> Result<Vec<u8>, GzipIndexError> {
        let mut window = vec![0u8; WINDOW_SIZE];
        let mut len: c_uint = 0;
        // SAFETY: the stream was initialised in `new_raw`; `window` has 32768 writable
        // bytes, which zlib documents as always enough, and `len` is a valid `c_uint`.
        let code =
            unsafe { zlib::inflateGetDictionary(&*self.stream, window.as_mut_ptr(), &mut len) };
        check(code, "inflateGetDictionary")?;
        window.truncate(len as usize);
        Ok(window)
    }

    fn inflate(&mut self, input: &[u8], output: &mut [u8], flush: c_int) -> InflateOutcome {
        let avail_in = input.len().min(c_uint::MAX as usize) as c_uint;
        let avail_out = output.len().min(c_uint::MAX as usize) as c_uint;
        let stream = &mut *self.stream;
        stream.next_in = input.as_ptr();
        stream.avail_in = avail_in;
        stream.next_out = output.as_mut_ptr();
        stream.avail_out = avail_out;
        // SAFETY: the stream was initialised in `new_raw` and has not moved; next_in/avail_in
        // describe readable memory and next_out/avail_out writable memory, both borrowed
        // for the whole call.
        let code = unsafe { zlib::inflate(stream, flush) };
        let outcome = InflateOutcome {
            code,
            consumed: (avail_in - stream.avail_in) as usize,
            produced: (avail_out - stream.avail_out) as usize,
            data_type: stream.data_type,
        };
        stream.next_in = std::ptr::null();
        stream.avail_in = 0;
        stream.next_out = std::ptr::null_mut();
        stream.avail_out = 0;
        outcome
    }

    /// zlib's description of the last error.
    fn message(&self) -> String {
        if self.stream.msg.is_null() {
            return String::new();
        }
        // SAFETY: zlib sets `msg` to null or to a NUL-terminated string with static lifetime.
        unsafe { CStr::from_ptr(self.stream.msg) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised in `new_raw` (an `Inflater` exists only then),
        // has not moved, and is ended exactly once here.
        unsafe { zlib::inflateEnd(&mut *self.stream) };
    }
}

fn check(code: c_int, operation: &'static str) -> Result<(), GzipIndexError> {
    if code == zlib::Z_OK {
        Ok(())
    } else {
        Err(GzipIndexError::Zlib { operation, code })
    }
}

/// Stage of an incremental gzip header parse; the optional parts follow in RFC 1952 order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderStage {
    Fixed,
    ExtraLen,
    Extra(usize),
    Name,
    Comment,
    HeaderCrc,
    Done,
}

/// Parses one member header from input delivered in arbitrary pieces.
#[derive(Debug, Clone)]
struct HeaderParser {
    stage: HeaderStage,
    /// Bytes of the current fixed-size field (10-byte fixed part, XLEN or CRC16).
    field: [u8; 10],
    have: usize,
    flags: u8,
    /// CRC-32 of the header bytes so far, for FHCRC.
    crc: u32,
}

impl HeaderParser {
    fn new() -> Self {
        HeaderParser {
            stage: HeaderStage::Fixed,
            field: [0; 10],
            have: 0,
            flags: 0,
            crc: 0,
        }
    }

    /// The first optional part present after `after` (itself never `Done`).
    fn next_stage(&self, after: HeaderStage) -> HeaderStage {
        let order = [
            (HeaderStage::ExtraLen, FEXTRA),
            (HeaderStage::Name, FNAME),
            (HeaderStage::Comment, FCOMMENT),
            (HeaderStage::HeaderCrc, FHCRC),
        ];
        let from = match after {
            HeaderStage::Fixed => 0,
            HeaderStage::ExtraLen | HeaderStage::Extra(_) => 1,
            HeaderStage::Name => 2,
            HeaderStage::Comment => 3,
            HeaderStage::HeaderCrc | HeaderStage::Done => 4,
        };
        order[from..]
            .iter()
            .find(|(_, flag)| self.flags & flag != 0)
            .map_or(HeaderStage::Done, |&(stage, _)| stage)
    }

    /// Consumes header bytes from the start of `input`. Returns how many were consumed and
    /// whether the header is complete (then the rest of `input` is deflate data).
    fn feed(&mut self, input: &[u8]) -> Result<(usize, bool), HeaderError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.stage {
                HeaderStage::Done => return Ok((pos, true)),
                HeaderStage::Fixed | HeaderStage::ExtraLen | HeaderStage::HeaderCrc => {
                    let need = if self.stage == HeaderStage::Fixed {
                        10
                    } else {
                        2
                    };
                    let start = self.have;
                    let take = (need - start).min(rest.len());
                    self.field[start..start + take].copy_from_slice(&rest[..take]);
                    self.have += take;
                    pos += take;
                    if self.stage == HeaderStage::Fixed {
                        // Validate the identifying bytes as soon as they arrive, so garbage
                        // is reported as such even when fewer than 10 bytes follow.
                        self.check_fixed(start)?;
                    }
                    if self.stage != HeaderStage::HeaderCrc {
                        self.crc = crc32(self.crc, &rest[..take]);
                    }
                    if self.have < need {
                        return Ok((pos, false));
                    }
                    self.have = 0;
                    self.stage = match self.stage {
                        HeaderStage::Fixed => {
                            self.flags = self.field[3];
                            self.next_stage(HeaderStage::Fixed)
                        }
                        HeaderStage::ExtraLen => {
                            HeaderStage::Extra(usize::from(u16::from_le_bytes([
                                self.field[0],
                                self.field[1],
                            ])))
                        }
                        _ => {
                            let stored = u16::from_le_bytes([self.field[0], self.field[1]]);
                            if stored != self.crc as u16 {
                                return Err(HeaderError::HeaderCrcMismatch);
                            }
                            HeaderStage::Done
                        }
                    };
                }
                HeaderStage::Extra(left) => {
                    let take = left.min(rest.len());
                    self.crc = crc32(self.crc, &rest[..take]);
                    pos += take;
                    if take < left {
                        self.stage = HeaderStage::Extra(left - take);
                        return Ok((pos, false));
                    }
                    self.stage = self.next_stage(HeaderStage::Extra(0));
                }
                HeaderStage::Name | HeaderStage::Comment => {
                    // Zero-terminated; not kept, so its length needs no limit.
                    let (take, terminated) = match rest.iter().position(|&b| b == 0) {
                        Some(nul) => (nul + 1, true),
                        None => (rest.len(), false),
                    };
                    self.crc = crc32(self.crc, &rest[..take]);
                    pos += take;
                    if !terminated {
                        return Ok((pos, false));
                    }
                    self.stage = self.next_stage(self.stage);
                }
            }
        }
    }

    /// Checks the bytes of the fixed part that arrived since `from`.
    fn check_fixed(&self, from: usize) -> Result<(), HeaderError> {
        for i in from..self.have.min(4) {
            let byte = self.field[i];
            match i {
                0 if byte != 0x1f => return Err(HeaderError::BadMagic),
                1 if byte != 0x8b => return Err(HeaderError::BadMagic),
                2 if byte != 8 => return Err(HeaderError::UnsupportedMethod(byte)),
                3 if byte & FRESERVED != 0 => return Err(HeaderError::ReservedFlags(byte)),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Where the decoder is in the gzip framing.
#[derive(Debug)]
enum Phase {
    /// Before a member header, or at the end of the stream. `required`: a member must
    /// follow (stream start, or resumption at a member start).
    MemberStart {
        required: bool,
    },
    Header {
        offset: u64,
        after_member: bool,
        parser: HeaderParser,
    },
    /// Resumed inside a member: the byte holding the point's first `bits` bits is next.
    Prime {
        bits: u8,
    },
    Deflate,
    Trailer {
        offset: u64,
        bytes: [u8; 8],
        have: usize,
    },
    /// Zero bytes after the last member, up to the end of input.
    Padding,
    Done,
    Failed(GzipIndexError),
}

/// Result of one step of the state machine.
enum Step {
    /// Made progress, writing this many bytes to the output.
    Progress(usize),
    /// All buffered input is consumed and more is needed.
    NeedInput,
    /// End of stream.
    Finished,
}

/// Kind of point a position qualifies as.
enum Candidate {
    /// Just after a deflate block, `data_type` as returned by `inflate`.
    Block { data_type: c_int },
    /// A member whose header starts at this compressed offset.
    MemberStart { header_offset: u64 },
}

/// A gzip decoder (multi-member, like `flate2::bufread::MultiGzDecoder`) that records
/// [`AccessPoint`]s while it reads.
///
/// Made by [`new`](Self::new) for a whole stream or [`resume`](Self::resume) for the
/// remainder of one; points are recorded only after [`with_span`](Self::with_span). Errors
/// in the gzip data are returned as [`io::Error`]s wrapping a [`GzipIndexError`], and
/// repeat on every later `read`. Read errors of the inner reader are returned as they are
/// (`Interrupted` is retried), leaving the decoder able to continue.
pub struct IndexingDecoder<R> {
    inner: R,
    input: Box<[u8]>,
    in_pos: usize,
    in_len: usize,
    /// Compressed offset of `input[0]`.
    in_base: u64,
    eof: bool,
    inflater: Inflater,
    phase: Phase,
    /// Uncompressed offset of the next output byte.
    out_offset: u64,
    /// Uncompressed offset at which the current member started.
    member_out_offset: u64,
    /// CRC-32 of the current member's output so far.
    member_crc: u32,
    span: Option<u64>,
    last_point_in: u64,
    last_point_out: u64,
    points: Vec<AccessPoint>,
}

impl<R> fmt::Debug for IndexingDecoder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexingDecoder")
            .field("phase", &self.phase)
            .field("compressed_offset", &self.compressed_offset())
            .field("uncompressed_offset", &self.out_offset)
            .field("span", &self.span)
            .field("points", &self.points.len())
            .finish_non_exhaustive()
    }
}

impl<R> IndexingDecoder<R> {
    /// Records an access point at each deflate block boundary or member start that lies at
    /// least `span` uncompressed bytes after the previous point (or after the position
    /// decoding started at, which is never recorded itself). `span == 0` records every such
    /// position. Each point costs about 32 KiB; zran.c uses a span of 1 MiB.
    #[must_use]
    pub fn with_span(mut self, span: u64) -> Self {
        self.span = Some(span);
        self
    }

    /// Points recorded so far and not yet taken, in stream order.
    pub fn points(&self) -> &[AccessPoint] {
        &self.points
    }

    /// Removes and returns the points recorded so far.
    pub fn take_points(&mut self) -> Vec<AccessPoint> {
        std::mem::take(&mut self.points)
    }

    /// Absolute offset in the compressed stream of the first byte not yet handed to zlib or
    /// the header/trailer parser (bytes buffered from the inner reader do not count).
    pub fn compressed_offset(&self) -> u64 {
        self.in_base + self.in_pos as u64
    }

    /// Absolute offset in the uncompressed stream of the next byte `read` returns.
    pub fn uncompressed_offset(&self) -> u64 {
        self.out_offset
    }

    /// Whether the end of the stream was reached (after the last member and any padding).
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The inner reader; buffered compressed bytes not yet decoded are lost.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> IndexingDecoder<R> {
    /// Decodes the gzip stream `inner` from its first byte, recording no points.
    pub fn new(inner: R) -> Result<Self, GzipIndexError> {
        Self::with_state(inner, 0, 0, Phase::MemberStart { required: true })
    }

    /// Continues decoding at `point`. `compressed` must yield the compressed stream from
    /// `point.in_offset()` on, e.g. the body of a ranged read; the output starts at
    /// uncompressed offset `point.out_offset()`, and offsets of new points continue from it.
    ///
    /// Passing bytes of another stream cannot cause undefined behaviour; it ends in a
    /// [`GzipIndexError`] (corrupt data, a bad header or a CRC mismatch), at the latest at the
    /// end of the member.
    pub fn resume(point: &AccessPoint, compressed: R) -> Result<Self, GzipIndexError> {
        let phase = if point.member_start {
            Phase::MemberStart { required: true }
        } else if point.bits > 0 {
            Phase::Prime { bits: point.bits }
        } else {
            Phase::Deflate
        };
        let mut decoder = Self::with_state(compressed, point.in_offset, point.out_offset, phase)?;
        if !point.member_start {
            decoder.inflater.set_dictionary(&point.window)?;
            decoder.member_out_offset = point.member_out_offset;
            decoder.member_crc = point.member_crc;
        }
        Ok(decoder)
    }

    fn with_state(
        inner: R,
        in_offset: u64,
        out_offset: u64,
        phase: Phase,
    ) -> Result<Self, GzipIndexError> {
        Ok(IndexingDecoder {
            inner,
            input: vec![0; INPUT_BUFFER_SIZE].into_boxed_slice(),
            in_pos: 0,
            in_len: 0,
            in_base: in_offset,
            eof: false,
            inflater: Inflater::new_raw()?,
            phase,
            out_offset,
            member_out_offset: out_offset,
            member_crc: 0,
            span: None,
            last_point_in: in_offset,
            last_point_out: out_offset,
            points: Vec::new(),
        })
    }

    /// Reads more compressed input into the (consumed) buffer.
    fn refill(&mut self) -> io::Result<()> {
        if self.in_pos < self.in_len {
            self.input.copy_within(self.in_pos..self.in_len, 0);
        }
        self.in_base += self.in_pos as u64;
        self.in_len -= self.in_pos;
        self.in_pos = 0;
        loop {
            match self.inner.read(&mut self.input[self.in_len..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.in_len += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// What the end of input means in the current phase: the end of the stream, or an error.
    fn at_eof(&mut self) -> Result<(), GzipIndexError> {
        match self.phase {
            Phase::MemberStart { required: false } | Phase::Padding => {
                self.phase = Phase::Done;
                Ok(())
            }
            _ => Err(GzipIndexError::Truncated {
                offset: self.compressed_offset(),
            }),
        }
    }

    /// Advances the state machine using buffered input only.
    fn step(&mut self, out: &mut [u8]) -> Result<Step, GzipIndexError> {
        let offset = self.compressed_offset();
        let available = &self.input[self.in_pos..self.in_len];
        match &mut self.phase {
            Phase::Done => Ok(Step::Finished),
            Phase::Failed(error) => Err(error.clone()),
            Phase::MemberStart { required } => {
                let Some(&first) = available.first() else {
                    return Ok(Step::NeedInput);
                };
                self.phase = if first == 0 && !*required {
                    Phase::Padding
                } else {
                    Phase::Header {
                        offset,
                        after_member: !*required,
                        parser: HeaderParser::new(),
                    }
                };
                Ok(Step::Progress(0))
            }
            Phase::Header {
                offset: header_offset,
                after_member,
                parser,
            } => {
                let header_offset = *header_offset;
                let (consumed, done) = parser.feed(available).map_err(|error| {
                    if error == HeaderError::BadMagic && *after_member {
                        GzipIndexError::TrailingGarbage {
                            offset: header_offset,
                        }
                    } else {
                        GzipIndexError::BadHeader {
                            offset: header_offset,
                            error,
                        }
                    }
                })?;
                self.in_pos += consumed;
                if !done {
                    return Ok(Step::NeedInput);
                }
                self.inflater.reset()?;
                self.member_out_offset = self.out_offset;
                self.member_crc = 0;
                self.phase = Phase::Deflate;
                self.consider_point(Candidate::MemberStart { header_offset })?;
                Ok(Step::Progress(0))
            }
            Phase::Prime { bits } => {
                let bits = *bits;
                let Some(&byte) = available.first() else {
                    return Ok(Step::NeedInput);
                };
                // The next block starts in the top `bits` bits of this byte (deflate fills
                // bytes from the least significant bit), as in zran.c.
                self.inflater.prime(bits, byte >> (8 - bits))?;
                self.in_pos += 1;
                self.phase = Phase::Deflate;
                Ok(Step::Progress(0))
            }
            Phase::Deflate => self.inflate_step(out),
            Phase::Trailer {
                offset: trailer_offset,
                bytes,
                have,
            } => {
                let take = (8 - *have).min(available.len());
                bytes[*have..*have + take].copy_from_slice(&available[..take]);
                *have += take;
                self.in_pos += take;
                if *have < 8 {
                    return Ok(Step::NeedInput);
                }
                let trailer_offset = *trailer_offset;
                let stored_crc = u32::from_le_bytes(array_at(&bytes[..], 0));
                let stored_len = u32::from_le_bytes(array_at(&bytes[..], 4));
                if stored_crc != self.member_crc {
                    return Err(GzipIndexError::CrcMismatch {
                        offset: trailer_offset,
                        stored: stored_crc,
                        computed: self.member_crc,
                    });
                }
                // ISIZE is the member length modulo 2^32.
                let computed_len = (self.out_offset - self.member_out_offset) as u32;
                if stored_len != computed_len {
                    return Err(GzipIndexError::LengthMismatch {
                        offset: trailer_offset,
                        stored: stored_len,
                        computed: computed_len,
                    });
                }
                self.phase = Phase::MemberStart { required: false };
                Ok(Step::Progress(0))
            }
            Phase::Padding => match available.iter().position(|&b| b != 0) {
                Some(nonzero) => Err(GzipIndexError::TrailingGarbage {
                    offset: offset + nonzero as u64,
                }),
                None => {
                    self.in_pos = self.in_len;
                    Ok(Step::NeedInput)
                }
            },
        }
    }

    fn inflate_step(&mut self, out: &mut [u8]) -> Result<Step, GzipIndexError> {
        // Z_BLOCK makes inflate return at every block boundary, which is where points can
        // be taken. Each return costs zlib a window update (up to 32 KiB copied), so Z_BLOCK
        // is only used once the next point is due: until then inflate runs with Z_NO_FLUSH,
        // its output capped to end one byte short of the due offset. No boundary before that
        // byte can qualify, and the call producing that byte uses Z_BLOCK, so a boundary
        // right at the due offset is not stepped over. The points are therefore exactly those
        // of Z_BLOCK throughout, whatever the buffer sizes.
        let (flush, out) = match self.span {
            None => (zlib::Z_NO_FLUSH, out),
            Some(span) => {
                let due = self.last_point_out.saturating_add(span);
                match due.saturating_sub(self.out_offset + 1) {
                    0 => (zlib::Z_BLOCK, out),
                    before => {
                        let cap = usize::try_from(before).unwrap_or(usize::MAX).min(out.len());
                        (zlib::Z_NO_FLUSH, &mut out[..cap])
                    }
                }
            }
        };
        let outcome = self
            .inflater
            .inflate(&self.input[self.in_pos..self.in_len], out, flush);
        self.in_pos += outcome.consumed;
        let produced = &out[..outcome.produced];
        self.member_crc = crc32(self.member_crc, produced);
        self.out_offset += produced.len() as u64;
        match outcome.code {
            zlib::Z_STREAM_END => {
                // Raw inflate has consumed exactly the deflate data (the bits after the final
                // block up to the byte boundary are padding): the trailer is next.
                self.phase = Phase::Trailer {
                    offset: self.compressed_offset(),
                    bytes: [0; 8],
                    have: 0,
                };
                Ok(Step::Progress(outcome.produced))
            }
            zlib::Z_OK | zlib::Z_BUF_ERROR => {
                let at_boundary = flush == zlib::Z_BLOCK && outcome.data_type & 0x80 != 0;
                if at_boundary {
                    self.consider_point(Candidate::Block {
                        data_type: outcome.data_type,
                    })?;
                }
                if outcome.consumed > 0 || outcome.produced > 0 || at_boundary {
                    // A stop at a boundary counts as progress even without I/O (the
                    // end-of-block code may come entirely from bits inflate already held);
                    // taken for a lack of input, it would be misreported as truncation at
                    // the end of the stream.
                    Ok(Step::Progress(outcome.produced))
                } else if self.in_pos == self.in_len {
                    Ok(Step::NeedInput)
                } else {
                    // inflate with input and output space always progresses or fails; never
                    // spin if that ever stops holding.
                    Err(GzipIndexError::Zlib {
                        operation: "inflate",
                        code: outcome.code,
                    })
                }
            }
            zlib::Z_DATA_ERROR => Err(GzipIndexError::Corrupt {
                offset: self.compressed_offset(),
                message: self.inflater.message(),
            }),
            code => Err(GzipIndexError::Zlib {
                operation: "inflate",
                code,
            }),
        }
    }

    /// Records a point at the current position if it qualifies and `span` allows.
    fn consider_point(&mut self, candidate: Candidate) -> Result<(), GzipIndexError> {
        let Some(span) = self.span else {
            return Ok(());
        };
        if self.out_offset - self.last_point_out < span {
            return Ok(());
        }
        let point = match candidate {
            Candidate::Block { data_type } => {
                // Bit 6: the block just ended was the member's last, so the trailer follows
                // rather than a block. Bits 3..=5 set would mean inflate holds whole unread
                // bytes, which zlib never does at a boundary; such a position is skipped
                // rather than trusted.
                if data_type & 0x40 != 0 || data_type & 0x38 != 0 {
                    return Ok(());
                }
                let bits = (data_type & 7) as u8;
                let in_offset = self.compressed_offset() - u64::from(bits > 0);
                // The position decoding started at (the point resumed from) is not repeated.
                if in_offset == self.last_point_in {
                    return Ok(());
                }
                AccessPoint {
                    in_offset,
                    bits,
                    out_offset: self.out_offset,
                    member_out_offset: self.member_out_offset,
                    member_crc: self.member_crc,
                    member_start: false,
                    window: self.inflater.dictionary()?,
                }
            }
            Candidate::MemberStart { header_offset } => {
                if header_offset == self.last_point_in {
                    return Ok(());
                }
                AccessPoint {
                    in_offset: header_offset,
                    bits: 0,
                    out_offset: self.out_offset,
                    member_out_offset: self.out_offset,
                    member_crc: 0,
                    member_start: true,
                    window: Vec::new(),
                }
            }
        };
        debug_assert_eq!(
            point.window.len() as u64,
            (point.out_offset - point.member_out_offset).min(WINDOW_SIZE as u64)
        );
        self.last_point_in = point.in_offset;
        self.last_point_out = point.out_offset;
        self.points.push(point);
        Ok(())
    }
}

impl<R: Read> Read for IndexingDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < buf.len() {
            let step = match self.step(&mut buf[written..]) {
                Ok(Step::NeedInput) if written > 0 => {
                    // Hand out what we have rather than block on the inner reader.
                    return Ok(written);
                }
                Ok(Step::NeedInput) if !self.eof => {
                    self.refill()?;
                    continue;
                }
                Ok(Step::NeedInput) => self.at_eof().map(|()| Step::Finished),
                other => other,
            };
            match step {
                Ok(Step::Progress(n)) => written += n,
                Ok(Step::Finished | Step::NeedInput) => break,
                Err(error) => {
                    self.phase = Phase::Failed(error.clone());
                    if written > 0 {
                        // The error repeats on the next call.
                        return Ok(written);
                    }
                    return Err(error.into());
                }
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::DeflateEncoder;
    use flate2::{Compression, Crc, GzBuilder};
    use proptest::prelude::*;
    use std::io::Write;

    // ----- building test streams (with flate2, independent of the code under test) -----

    #[derive(Debug, Clone)]
    struct HeaderSpec {
        /// Let flate2's `GzBuilder` write the member instead of the hand-made header below.
        via_gz_builder: bool,
        extra: Option<Vec<u8>>,
        name: Option<Vec<u8>>,
        comment: Option<Vec<u8>>,
        /// FHCRC (hand-made headers only: `GzBuilder` cannot write it).
        hcrc: bool,
    }

    #[derive(Debug, Clone)]
    struct MemberSpec {
        data: Vec<u8>,
        level: u32,
        header: HeaderSpec,
        /// Sync-flush after every this many input bytes (empty stored blocks, byte-aligned
        /// block boundaries).
        flush_every: Option<usize>,
    }

    struct Stream {
        gz: Vec<u8>,
        plain: Vec<u8>,
        /// Compressed (start, end) of each member.
        members: Vec<(usize, usize)>,
    }

    impl Stream {
        fn member_ends(&self) -> Vec<usize> {
            self.members.iter().map(|&(_, end)| end).collect()
        }
    }

    fn crc_of(data: &[u8]) -> u32 {
        let mut crc = Crc::new();
        crc.update(data);
        crc.sum()
    }

    fn write_chunked<W: Write>(encoder: &mut W, data: &[u8], flush_every: Option<usize>) {
        match flush_every {
            Some(every) => {
                for chunk in data.chunks(every) {
                    encoder.write_all(chunk).unwrap();
                    encoder.flush().unwrap();
                }
            }
            None => encoder.write_all(data).unwrap(),
        }
    }

    fn member_bytes(spec: &MemberSpec) -> Vec<u8> {
        let level = Compression::new(spec.level);
        let h = &spec.header;
        if h.via_gz_builder {
            let mut builder = GzBuilder::new().mtime(0x1234_5678);
            if let Some(extra) = &h.extra {
                builder = builder.extra(extra.clone());
            }
            if let Some(name) = &h.name {
                builder = builder.filename(name.clone());
            }
            if let Some(comment) = &h.comment {
                builder = builder.comment(comment.clone());
            }
            let mut encoder = builder.write(Vec::new(), level);
            write_chunked(&mut encoder, &spec.data, spec.flush_every);
            return encoder.finish().unwrap();
        }
        let mut out = vec![0x1f, 0x8b, 8, 0, 0x78, 0x56, 0x34, 0x12, 0, 3];
        let mut flags = 0;
        if let Some(extra) = &h.extra {
            flags |= FEXTRA;
            out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            out.extend_from_slice(extra);
        }
        for (field, flag) in [(&h.name, FNAME), (&h.comment, FCOMMENT)] {
            if let Some(text) = field {
                flags |= flag;
                out.extend_from_slice(text);
                out.push(0);
            }
        }
        if h.hcrc {
            flags |= FHCRC;
        }
        out[3] = flags;
        if h.hcrc {
            let crc = crc_of(&out) as u16;
            out.extend_from_slice(&crc.to_le_bytes());
        }
        let mut encoder = DeflateEncoder::new(out, level);
        write_chunked(&mut encoder, &spec.data, spec.flush_every);
        let mut out = encoder.finish().unwrap();
        out.extend_from_slice(&crc_of(&spec.data).to_le_bytes());
        out.extend_from_slice(&(spec.data.len() as u32).to_le_bytes());
        out
    }

    fn build(members: &[MemberSpec]) -> Stream {
        let mut stream = Stream {
            gz: Vec::new(),
            plain: Vec::new(),
            members: Vec::new(),
        };
        for spec in members {
            let start = stream.gz.len();
            stream.gz.extend_from_slice(&member_bytes(spec));
            stream.members.push((start, stream.gz.len()));
            stream.plain.extend_from_slice(&spec.data);
        }
        stream
    }

    fn plain_member(data: Vec<u8>, level: u32) -> MemberSpec {
        MemberSpec {
            data,
            level,
            header: HeaderSpec {
                via_gz_builder: true,
                extra: None,
                name: None,
                comment: None,
                hcrc: false,
            },
            flush_every: None,
        }
    }

    /// NDJSON lines shaped like k6's `--out json` output.
    fn ndjson(lines: &[(usize, u32)]) -> Vec<u8> {
        const METRICS: [&str; 8] = [
            "http_req_duration",
            "http_req_waiting",
            "http_reqs",
            "vus",
            "iterations",
            "data_received",
            "checks",
            "http_req_failed",
        ];
        let mut out = Vec::new();
        for &(metric, n) in lines {
            let metric = METRICS[metric % METRICS.len()];
            writeln!(
                out,
                r#"{{"type":"Point","data":{{"time":"2024-05-01T12:{:02}:{:02}.{:06}Z","value":{}.{},"tags":{{"group":"","method":"GET","name":"http://test.k6.io/{}","status":"{}"}}}},"metric":"{metric}"}}"#,
                n % 60,
                (n / 60) % 60,
                n % 1_000_000,
                n % 5000,
                n % 1000,
                n % 97,
                [200, 200, 200, 404, 500][(n % 5) as usize],
            )
            .unwrap();
        }
        out
    }

    /// Deterministic pseudo-random bytes (xorshift), for tests needing fixed large inputs.
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    fn sample_lines(count: u32) -> Vec<u8> {
        let lines: Vec<(usize, u32)> = (0..count)
            .map(|i| ((i * 7) as usize, i.wrapping_mul(2_654_435_761)))
            .collect();
        ndjson(&lines)
    }

    // ----- decoding -----

    fn gzip_error(error: io::Error) -> GzipIndexError {
        match GzipIndexError::from_io_error(&error) {
            Some(e) => e.clone(),
            None => panic!("not a gzip error: {error:?}"),
        }
    }

    struct Decoded {
        out: Vec<u8>,
        result: Result<(), GzipIndexError>,
        points: Vec<AccessPoint>,
    }

    fn run<R: Read>(mut decoder: IndexingDecoder<R>) -> Decoded {
        let mut out = Vec::new();
        let result = decoder
            .read_to_end(&mut out)
            .map(|_| ())
            .map_err(gzip_error);
        if result.is_ok() {
            assert!(decoder.is_finished());
        }
        Decoded {
            out,
            result,
            points: decoder.take_points(),
        }
    }

    fn decode(gz: &[u8], span: Option<u64>) -> Decoded {
        let decoder = IndexingDecoder::new(gz).unwrap();
        run(match span {
            Some(span) => decoder.with_span(span),
            None => decoder,
        })
    }

    fn resume_from(point: &AccessPoint, gz: &[u8], span: Option<u64>) -> Decoded {
        let decoder = IndexingDecoder::resume(point, &gz[point.in_offset() as usize..]).unwrap();
        run(match span {
            Some(span) => decoder.with_span(span),
            None => decoder,
        })
    }

    fn flate2_decode(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Checks a point against the plain data it claims to describe.
    fn check_point(point: &AccessPoint, stream: &Stream) {
        let out = point.out_offset() as usize;
        let member_out = point.member_out_offset() as usize;
        assert!(member_out <= out && out <= stream.plain.len(), "{point:?}");
        let window_start = out - (out - member_out).min(WINDOW_SIZE);
        assert_eq!(
            point.window(),
            &stream.plain[window_start..out],
            "{point:?}"
        );
        assert_eq!(point.member_crc(), crc_of(&stream.plain[member_out..out]));
        assert!(point.bits() <= 7);
        if point.is_member_start() {
            let at = point.in_offset() as usize;
            assert!(stream.members.iter().any(|&(start, _)| start == at));
        }
    }

    /// A reader returning `sizes[i]` bytes on its i-th call (cycling), and `Interrupted` on
    /// every third call when asked to.
    struct ChunkedReader<'a> {
        data: &'a [u8],
        sizes: Vec<usize>,
        calls: usize,
        interrupt: bool,
    }

    impl Read for ChunkedReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.interrupt && self.calls.is_multiple_of(3) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = self.sizes[self.calls % self.sizes.len()]
                .min(buf.len())
                .min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Reads with output buffers of `sizes[i]` bytes (cycling).
    fn read_in_pieces<R: Read>(decoder: &mut IndexingDecoder<R>, sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0; *sizes.iter().max().unwrap()];
        for &size in sizes.iter().cycle() {
            match decoder.read(&mut buf[..size]) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => panic!("{e}"),
            }
        }
        out
    }

    // ----- strategies -----

    fn data_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            3 => prop::collection::vec((0..8usize, any::<u32>()), 0..2500)
                .prop_map(|lines| ndjson(&lines)),
            1 => prop::collection::vec(any::<u8>(), 0..70_000),
            1 => (any::<u8>(), 0..200_000usize).prop_map(|(b, n)| vec![b; n]),
            1 => Just(Vec::new()),
        ]
    }

    fn header_strategy() -> impl Strategy<Value = HeaderSpec> {
        let text = || prop::option::of(prop::collection::vec(1u8..=255, 0..40));
        (
            any::<bool>(),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
            text(),
            text(),
            any::<bool>(),
        )
            .prop_map(|(via_gz_builder, extra, name, comment, hcrc)| HeaderSpec {
                via_gz_builder,
                extra,
                name,
                comment,
                hcrc,
            })
    }

    fn member_strategy() -> impl Strategy<Value = MemberSpec> {
        (
            data_strategy(),
            prop::sample::select(vec![0u32, 1, 6, 9]),
            header_strategy(),
            prop::option::of(1000..60_000usize),
        )
            .prop_map(|(data, level, header, flush_every)| MemberSpec {
                data,
                level,
                header,
                flush_every,
            })
    }

    fn stream_strategy() -> impl Strategy<Value = Vec<MemberSpec>> {
        prop::collection::vec(member_strategy(), 1..=4)
    }

    fn span_strategy() -> impl Strategy<Value = u64> {
        prop_oneof![Just(0u64), 1..150_000u64]
    }

    // ----- properties -----

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Output equals flate2's; every point is correct, resumes to exactly the rest of the
        /// data, continues the index identically, and survives serialization.
        #[test]
        fn every_point_resumes_exactly(specs in stream_strategy(), span in span_strategy()) {
            let stream = build(&specs);
            let full = decode(&stream.gz, Some(span));
            prop_assert_eq!(&full.result, &Ok(()));
            prop_assert!(full.out == stream.plain);
            prop_assert!(full.out == flate2_decode(&stream.gz));
            prop_assert!(decode(&stream.gz, None).out == stream.plain);

            // The points are the greedy choice among all eligible positions (span 0): the
            // first at least `span` after the previous one.
            let mut last = 0;
            let greedy: Vec<AccessPoint> = decode(&stream.gz, Some(0))
                .points
                .into_iter()
                .filter(|p| {
                    let take = p.out_offset() - last >= span;
                    if take {
                        last = p.out_offset();
                    }
                    take
                })
                .collect();
            prop_assert_eq!(&full.points, &greedy);

            for (i, point) in full.points.iter().enumerate() {
                check_point(point, &stream);
                if i > 0 {
                    let previous = &full.points[i - 1];
                    prop_assert!(point.out_offset() - previous.out_offset() >= span);
                    prop_assert!(point.in_offset() > previous.in_offset());
                }
                let decoded = AccessPoint::from_bytes(&point.to_bytes()).unwrap();
                prop_assert_eq!(&decoded, point);
                prop_assert_eq!(decoded.encoded_len(), point.to_bytes().len());

                let resumed = resume_from(&decoded, &stream.gz, Some(span));
                prop_assert_eq!(&resumed.result, &Ok(()));
                prop_assert!(resumed.out[..] == stream.plain[point.out_offset() as usize..]);
                prop_assert_eq!(&resumed.points[..], &full.points[i + 1..]);
            }
        }

        /// Input delivered 1..k bytes at a time (with `Interrupted` in between) and output
        /// read in small pieces give the same data and the same points.
        #[test]
        fn chunking_does_not_change_points(
            specs in stream_strategy(),
            span in span_strategy(),
            in_sizes in prop::collection::vec(1..5000usize, 1..8),
            out_sizes in prop::collection::vec(1..70_000usize, 1..8),
            interrupt in any::<bool>(),
        ) {
            let stream = build(&specs);
            let whole = decode(&stream.gz, Some(span));
            let reader = ChunkedReader { data: &stream.gz, sizes: in_sizes, calls: 0, interrupt };
            let mut decoder = IndexingDecoder::new(reader).unwrap().with_span(span);
            let out = read_in_pieces(&mut decoder, &out_sizes);
            prop_assert!(out == stream.plain);
            prop_assert_eq!(decoder.compressed_offset(), stream.gz.len() as u64);
            prop_assert_eq!(decoder.uncompressed_offset(), stream.plain.len() as u64);
            prop_assert_eq!(decoder.take_points(), whole.points);
        }

        /// A span that puts the first due offset exactly on a block boundary: that boundary
        /// must be taken, not stepped over while inflating towards it.
        #[test]
        fn boundary_exactly_at_due_offset(specs in stream_strategy(), pick in any::<prop::sample::Index>()) {
            let stream = build(&specs);
            let all = decode(&stream.gz, Some(0)).points;
            let blocks: Vec<&AccessPoint> =
                all.iter().filter(|p| !p.is_member_start() && p.out_offset() > 0).collect();
            prop_assume!(!blocks.is_empty());
            let target = blocks[pick.index(blocks.len())];
            let span = target.out_offset();
            let first = &decode(&stream.gz, Some(span)).points[0];
            let expected = all.iter().find(|p| p.out_offset() >= span).unwrap();
            prop_assert_eq!(first, expected);
            prop_assert_eq!(first.out_offset(), span);
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Output read a few bytes at a time, so that the output buffer often fills just
        /// before an end-of-block code: the same points (and no spurious error).
        #[test]
        fn tiny_reads_give_same_points(
            specs in stream_strategy(),
            out_sizes in prop::collection::vec(1..4usize, 1..5),
            in_sizes in prop::collection::vec(1..64usize, 1..5),
        ) {
            let stream = build(&specs);
            let whole = decode(&stream.gz, Some(0));
            let reader = ChunkedReader { data: &stream.gz, sizes: in_sizes, calls: 0, interrupt: false };
            let mut decoder = IndexingDecoder::new(reader).unwrap().with_span(0);
            prop_assert!(read_in_pieces(&mut decoder, &out_sizes) == stream.plain);
            prop_assert_eq!(decoder.take_points(), whole.points.clone());
            let mut decoder = IndexingDecoder::new(&stream.gz[..]).unwrap().with_span(0);
            prop_assert!(read_in_pieces(&mut decoder, &out_sizes) == stream.plain);
            prop_assert_eq!(decoder.take_points(), whole.points);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// A cut anywhere but at a member end is reported as truncation at the cut, for fresh
        /// and resumed decoders, and whatever was returned before is correct.
        #[test]
        fn truncation_is_an_error(specs in stream_strategy(), cut in any::<prop::sample::Index>()) {
            let stream = build(&specs);
            let ends = stream.member_ends();
            let n = cut.index(stream.gz.len());
            let got = decode(&stream.gz[..n], None);
            prop_assert!(stream.plain.starts_with(&got.out));
            if n > 0 && ends.contains(&n) {
                prop_assert_eq!(got.result, Ok(()));
            } else {
                prop_assert_eq!(got.result, Err(GzipIndexError::Truncated { offset: n as u64 }));
            }

            let points = decode(&stream.gz, Some(0)).points;
            for point in points.iter().filter(|p| p.in_offset() as usize <= n) {
                let got = resume_from(point, &stream.gz[..n], None);
                prop_assert!(stream.plain[point.out_offset() as usize..].starts_with(&got.out));
                if n as u64 > point.in_offset() && ends.contains(&n) {
                    prop_assert_eq!(got.result, Ok(()));
                } else {
                    prop_assert_eq!(got.result, Err(GzipIndexError::Truncated { offset: n as u64 }));
                }
            }
        }

        /// A wrong CRC-32 or ISIZE in any member's trailer is detected, also by a decoder
        /// resumed inside that member.
        #[test]
        fn trailer_corruption_is_detected(
            specs in stream_strategy(),
            member in any::<prop::sample::Index>(),
            byte in 0..8usize,
            flip in 1..=255u8,
        ) {
            let stream = build(&specs);
            let (start, end) = stream.members[member.index(stream.members.len())];
            let trailer = end - 8;
            let mut gz = stream.gz.clone();
            gz[trailer + byte] ^= flip;
            let expected = |computed: &[u8]| {
                let stored = u32::from_le_bytes(array_at(&gz, trailer + (byte / 4) * 4));
                let computed = u32::from_le_bytes(array_at(computed, 0));
                if byte < 4 {
                    GzipIndexError::CrcMismatch { offset: trailer as u64, stored, computed }
                } else {
                    GzipIndexError::LengthMismatch { offset: trailer as u64, stored, computed }
                }
            };
            let want = expected(&stream.gz[trailer + (byte / 4) * 4..]);
            prop_assert_eq!(decode(&gz, None).result, Err(want.clone()));
            for point in decode(&stream.gz, Some(0)).points {
                let inside = point.in_offset() as usize >= start && (point.in_offset() as usize) < trailer;
                if inside {
                    prop_assert_eq!(resume_from(&point, &gz, None).result, Err(want.clone()));
                }
            }
        }

        /// Corrupting any byte never yields wrong data silently: either an error, or (for
        /// bytes no check covers, such as MTIME) exactly the original data.
        #[test]
        fn corruption_is_never_silent(
            specs in stream_strategy(),
            at in any::<prop::sample::Index>(),
            flip in 1..=255u8,
        ) {
            let stream = build(&specs);
            let mut gz = stream.gz.clone();
            let at = at.index(gz.len());
            gz[at] ^= flip;
            let got = decode(&gz, Some(0));
            if got.result.is_ok() {
                prop_assert!(got.out == stream.plain);
            }
        }

        #[test]
        fn arbitrary_input_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..2000),
            prefix in any::<bool>(),
        ) {
            // With a valid header first, the bytes reach inflate and the trailer check.
            let mut gz = if prefix { vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3] } else { Vec::new() };
            gz.extend_from_slice(&bytes);
            let got = decode(&gz, Some(0));
            for point in &got.points {
                let _ = resume_from(point, &gz, Some(0));
            }
        }

        #[test]
        fn point_from_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = AccessPoint::from_bytes(&bytes);
        }

        /// Any change to an encoded point is rejected (the checksum at the latest).
        #[test]
        fn point_encoding_rejects_changes(
            specs in stream_strategy(),
            which in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            flip in 1..=255u8,
            cut in any::<bool>(),
        ) {
            let stream = build(&specs);
            let points = decode(&stream.gz, Some(0)).points;
            prop_assume!(!points.is_empty());
            let mut bytes = points[which.index(points.len())].to_bytes();
            let at = at.index(bytes.len());
            if cut {
                bytes.truncate(at);
            } else {
                bytes[at] ^= flip;
            }
            prop_assert!(AccessPoint::from_bytes(&bytes).is_err());
        }
    }

    // ----- examples -----

    /// Concatenated members written by the gzip tool (FNAME set, default level 6), with an
    /// empty file among them.
    #[test]
    fn gzip_tool_concatenation() {
        let dir = std::env::temp_dir().join(format!("gzip-index-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files: Vec<(&str, Vec<u8>)> = vec![
            ("a.ndjson", sample_lines(4000)),
            ("empty", Vec::new()),
            ("b.bin", noise(100_000, 7)),
            ("c.ndjson", sample_lines(2500)),
        ];
        let mut plain = Vec::new();
        let mut command = std::process::Command::new("gzip");
        command.arg("-c").current_dir(&dir);
        for (name, data) in &files {
            std::fs::write(dir.join(name), data).unwrap();
            plain.extend_from_slice(data);
            command.arg(name);
        }
        let output = command.output().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(output.status.success(), "{output:?}");
        let gz = output.stdout;
        assert_eq!(gz[3] & FNAME, FNAME, "gzip stores the file name");

        let full = decode(&gz, Some(0));
        assert_eq!(full.result, Ok(()));
        assert!(full.out == plain);
        assert_eq!(
            full.points.iter().filter(|p| p.is_member_start()).count(),
            3
        );
        for (i, point) in full.points.iter().enumerate() {
            let resumed = resume_from(point, &gz, Some(0));
            assert_eq!(resumed.result, Ok(()));
            assert!(resumed.out[..] == plain[point.out_offset() as usize..]);
            assert_eq!(resumed.points[..], full.points[i + 1..]);
        }
    }

    /// The cases the properties rely on do occur: points in the middle of a byte, at member
    /// starts, with full and partial windows.
    #[test]
    fn points_cover_all_kinds() {
        let stream = build(&[
            plain_member(sample_lines(3000), 6),
            plain_member(Vec::new(), 6),
            plain_member(sample_lines(100), 9),
            plain_member(noise(200_000, 3), 1),
            plain_member(noise(200_000, 4), 0),
            MemberSpec {
                flush_every: Some(4000),
                ..plain_member(sample_lines(300), 6)
            },
        ]);
        let full = decode(&stream.gz, Some(0));
        assert_eq!(full.result, Ok(()));
        let points = &full.points;
        assert!(points.iter().any(|p| p.bits() > 0));
        assert!(points.iter().any(|p| !p.is_member_start() && p.bits() == 0));
        assert_eq!(points.iter().filter(|p| p.is_member_start()).count(), 5);
        assert!(points.iter().any(|p| p.window().len() == WINDOW_SIZE));
        assert!(points
            .iter()
            .any(|p| !p.is_member_start() && p.window().len() < WINDOW_SIZE));
        for point in points {
            check_point(point, &stream);
        }
    }

    #[test]
    fn span_limits_points() {
        let stream = build(&[plain_member(sample_lines(40_000), 6)]);
        assert!(stream.plain.len() > 4_000_000);
        let none = decode(&stream.gz, None);
        assert!(none.points.is_empty());
        let span = 1 << 20;
        let points = decode(&stream.gz, Some(span)).points;
        let expected = stream.plain.len() as u64 / span;
        // One point per span, each at the first block boundary at least `span` after the
        // previous point.
        assert!(
            points.len() as u64 <= expected && points.len() as u64 >= expected / 2,
            "{} points for {} bytes",
            points.len(),
            stream.plain.len()
        );
        assert!(points[0].out_offset() >= span);
    }

    #[test]
    fn header_fields_are_skipped_and_checked() {
        let spec = MemberSpec {
            data: sample_lines(50),
            level: 6,
            header: HeaderSpec {
                via_gz_builder: false,
                extra: Some(vec![b'A', b'P', 2, 0, 0, 0]),
                name: Some(b"results.json".to_vec()),
                comment: Some(b"k6 run".to_vec()),
                hcrc: true,
            },
            flush_every: None,
        };
        let stream = build(&[spec.clone(), spec]);
        assert_eq!(
            stream.gz[3],
            FEXTRA | FNAME | FCOMMENT | FHCRC,
            "all optional fields present"
        );
        let got = decode(&stream.gz, None);
        assert_eq!(got.result, Ok(()));
        assert!(got.out == stream.plain);

        let header_len = 10 + 2 + 6 + 13 + 7;
        let mut bad_hcrc = stream.gz.clone();
        bad_hcrc[header_len] ^= 1;
        assert_eq!(
            decode(&bad_hcrc, None).result,
            Err(GzipIndexError::BadHeader {
                offset: 0,
                error: HeaderError::HeaderCrcMismatch
            })
        );
        let second = stream.members[1].0;
        let mut bad_method = stream.gz.clone();
        bad_method[second + 2] = 7;
        let got = decode(&bad_method, None);
        assert!(got.out == stream.plain[..got.out.len()]);
        assert_eq!(
            got.result,
            Err(GzipIndexError::BadHeader {
                offset: second as u64,
                error: HeaderError::UnsupportedMethod(7)
            })
        );
        let mut reserved = stream.gz.clone();
        reserved[3] |= 0x80;
        assert_eq!(
            decode(&reserved, None).result,
            Err(GzipIndexError::BadHeader {
                offset: 0,
                error: HeaderError::ReservedFlags(0x80 | FEXTRA | FNAME | FCOMMENT | FHCRC)
            })
        );
        assert_eq!(
            decode(b"\x1f\x8c", None).result,
            Err(GzipIndexError::BadHeader {
                offset: 0,
                error: HeaderError::BadMagic
            })
        );
    }

    #[test]
    fn end_of_stream_rules() {
        let stream = build(&[plain_member(sample_lines(200), 6)]);
        let len = stream.gz.len() as u64;

        let mut padded = stream.gz.clone();
        padded.extend_from_slice(&[0; 700]);
        let got = decode(&padded, None);
        assert_eq!(got.result, Ok(()));
        assert!(got.out == stream.plain);

        let mut garbage = padded.clone();
        garbage[stream.gz.len() + 300] = 1;
        let got = decode(&garbage, None);
        assert!(
            got.out == stream.plain,
            "all member data comes before the error"
        );
        assert_eq!(
            got.result,
            Err(GzipIndexError::TrailingGarbage { offset: len + 300 })
        );

        let mut text = stream.gz.clone();
        text.extend_from_slice(b"\n");
        assert_eq!(
            decode(&text, None).result,
            Err(GzipIndexError::TrailingGarbage { offset: len })
        );

        // A lone magic byte is the start of a member, cut short.
        let mut cut = stream.gz.clone();
        cut.push(0x1f);
        assert_eq!(
            decode(&cut, None).result,
            Err(GzipIndexError::Truncated { offset: len + 1 })
        );

        assert_eq!(
            decode(b"", None).result,
            Err(GzipIndexError::Truncated { offset: 0 })
        );
        // Zero padding is only accepted after a member.
        assert_eq!(
            decode(&[0; 20], None).result,
            Err(GzipIndexError::BadHeader {
                offset: 0,
                error: HeaderError::BadMagic
            })
        );
    }

    #[test]
    fn errors_are_io_errors_and_sticky() {
        let stream = build(&[plain_member(sample_lines(500), 6)]);
        let cut = &stream.gz[..stream.gz.len() / 2];
        let mut decoder = IndexingDecoder::new(cut).unwrap();
        let mut out = Vec::new();
        let error = decoder.read_to_end(&mut out).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        let expected = GzipIndexError::Truncated {
            offset: cut.len() as u64,
        };
        assert_eq!(GzipIndexError::from_io_error(&error), Some(&expected));
        let again = decoder.read(&mut [0; 100]).unwrap_err();
        assert_eq!(GzipIndexError::from_io_error(&again), Some(&expected));

        let mut corrupt = stream.gz.clone();
        let trailer = corrupt.len() - 8;
        corrupt[trailer] ^= 0xff;
        let error = IndexingDecoder::new(&corrupt[..])
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(matches!(
            GzipIndexError::from_io_error(&error),
            Some(GzipIndexError::CrcMismatch { .. })
        ));

        // Garbage deflate data: zlib's verdict, located.
        let mut bad_block = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        bad_block.extend_from_slice(&[0xff; 40]);
        match decode(&bad_block, None).result {
            Err(GzipIndexError::Corrupt { offset, message }) => {
                assert!(offset >= 10);
                assert!(!message.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    /// A failing inner read is passed through unchanged, and decoding can go on after it.
    #[test]
    fn inner_read_errors_pass_through() {
        struct FailOnce<'a> {
            data: &'a [u8],
            calls: usize,
        }
        impl Read for FailOnce<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.calls += 1;
                if self.calls == 3 {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "network"));
                }
                let n = buf.len().min(self.data.len()).min(1000);
                buf[..n].copy_from_slice(&self.data[..n]);
                self.data = &self.data[n..];
                Ok(n)
            }
        }
        let stream = build(&[plain_member(noise(50_000, 9), 6)]);
        let reader = FailOnce {
            data: &stream.gz,
            calls: 0,
        };
        let mut decoder = IndexingDecoder::new(reader).unwrap().with_span(0);
        let mut out = Vec::new();
        let error = decoder.read_to_end(&mut out).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(GzipIndexError::from_io_error(&error).is_none());
        decoder.read_to_end(&mut out).unwrap();
        assert!(out == stream.plain);
        assert_eq!(decoder.take_points(), decode(&stream.gz, Some(0)).points);
    }

    /// Resuming with the bytes of a different stream ends in an error, not wrong data.
    #[test]
    fn resume_against_other_data_fails() {
        let a = build(&[plain_member(sample_lines(5000), 6)]);
        let b = build(&[plain_member(noise(300_000, 5), 6)]);
        let point = decode(&a.gz, Some(100_000)).points.remove(1);
        let got = resume_from(&point, &b.gz, None);
        assert!(got.result.is_err(), "{:?}", got.result);
    }

    #[test]
    fn point_decoding_validates_fields() {
        let stream = build(&[
            plain_member(sample_lines(3000), 6),
            plain_member(sample_lines(10), 6),
        ]);
        let points = decode(&stream.gz, Some(0)).points;
        let block = points.iter().find(|p| p.bits() > 0).unwrap();
        let start = points.iter().find(|p| p.is_member_start()).unwrap();

        // Re-encodes `bytes` after `edit` with a fresh checksum.
        let edited = |point: &AccessPoint, edit: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = point.to_bytes();
            bytes.truncate(bytes.len() - POINT_CHECKSUM_LEN);
            edit(&mut bytes);
            let crc = crc_of(&bytes);
            bytes.extend_from_slice(&crc.to_le_bytes());
            AccessPoint::from_bytes(&bytes)
        };
        assert_eq!(edited(block, &|_| {}).as_ref(), Ok(block));
        assert_eq!(edited(start, &|_| {}).as_ref(), Ok(start));
        assert_eq!(
            edited(block, &|b| b[4] = 2),
            Err(PointDecodeError::UnsupportedVersion(2))
        );
        assert_eq!(
            edited(block, &|b| b[0] = b'X'),
            Err(PointDecodeError::BadMagic)
        );
        assert_eq!(
            edited(block, &|b| b[5] = 0x02),
            Err(PointDecodeError::UnknownFlags(0x02))
        );
        assert_eq!(
            edited(block, &|b| b[6] = 8),
            Err(PointDecodeError::BitsOutOfRange(8))
        );
        assert_eq!(
            edited(block, &|b| b[8..16]
                .copy_from_slice(&u64::MAX.to_le_bytes())),
            Err(PointDecodeError::OffsetOutOfRange)
        );
        // Window shorter than the member's output before the point.
        assert_eq!(
            edited(block, &|b| {
                b.truncate(b.len() - 1);
                let n = (b.len() - POINT_HEADER_LEN) as u32;
                b[36..40].copy_from_slice(&n.to_le_bytes());
            }),
            Err(PointDecodeError::Inconsistent)
        );
        // A member start with a bit offset or a CRC.
        assert_eq!(
            edited(start, &|b| b[6] = 3),
            Err(PointDecodeError::Inconsistent)
        );
        assert_eq!(
            edited(start, &|b| b[32] = 1),
            Err(PointDecodeError::Inconsistent)
        );
        assert_eq!(
            edited(block, &|b| b[36..40]
                .copy_from_slice(&40_000u32.to_le_bytes())),
            Err(PointDecodeError::WindowTooLarge(40_000))
        );
        let mut bytes = block.to_bytes();
        bytes.push(0);
        assert_eq!(
            AccessPoint::from_bytes(&bytes),
            Err(PointDecodeError::LengthMismatch {
                expected: bytes.len() - 1,
                actual: bytes.len()
            })
        );
        assert_eq!(
            AccessPoint::from_bytes(&[0; 10]),
            Err(PointDecodeError::TooShort { len: 10 })
        );
    }

    #[test]
    fn decoder_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<IndexingDecoder<std::fs::File>>();
        assert_send::<AccessPoint>();
    }

    /// A member larger than 4 GiB is out of reach for unit tests; ISIZE wraps, and the
    /// comparison must wrap the same way. Check the arithmetic on a resumed decoder whose
    /// member started more than 2^32 bytes earlier.
    #[test]
    fn isize_is_compared_modulo_2_pow_32() {
        let stream = build(&[plain_member(sample_lines(3000), 6)]);
        let mut point = decode(&stream.gz, Some(0))
            .points
            .into_iter()
            .find(|p| p.window().len() == WINDOW_SIZE)
            .unwrap();
        // The member now appears to have produced 5 * 2^32 more bytes before the point.
        let shift = 5u64 << 32;
        point.out_offset += shift;
        let got = resume_from(&point, &stream.gz, None);
        assert_eq!(got.result, Ok(()));
        assert!(got.out[..] == stream.plain[(point.out_offset - shift) as usize..]);
    }
}
