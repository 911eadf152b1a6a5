//! Capture: frames from a pcap or pcapng file, from a stream of either on stdin, or (with
//! the `live` feature) from a network interface through libpcap.
//!
//! This module owns container formats only: byte order, timestamp resolution, pcapng
//! sections and per-interface link types. It does not look inside a frame. Reading is
//! incremental (a bounded buffer refilled from any `Read`), so a pipe such as
//! `tcpdump -U -w - | mtlscope analyze -` is processed as it arrives.
//!
//! Classic pcap is split by our own reader (`legacy.rs`) into shared, reference-counted
//! blocks ([`SharedBlock`]) that consumers may hold instead of copying frames; pcapng
//! (and pcap's rare "modified" format) goes through pcap-parser. A classic pcap in a
//! regular file is read through memory maps instead ([`MappedFile`], `mapped.rs`): its
//! frames lie in mapped windows of the file, which are shared blocks too.
//!
//! A source that may go quiet (a pipe, an interface) reports [`Event::Idle`] when no
//! data is waiting, so the caller can hand on what it holds and watch the wall clock:
//! [`ChunkReader`] turns chunks received from a channel (filled by a thread the caller
//! owns) into such a source. Nothing here spawns a thread.
//!
//! Non-packet pcapng blocks (name resolution, statistics, decryption secrets, custom)
//! are skipped; decryption secrets in particular are never read.

mod legacy;
#[cfg(feature = "live")]
pub mod live;
mod mapped;

pub use mapped::{CACHE_LINE, MappedCursor, MappedFile};

use std::fmt;
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};

/// Initial read buffer; grows (up to [`MAX_RECORD`]) when a record does not fit.
const INITIAL_BUFFER: usize = 256 * 1024;
/// Largest capture record accepted. Anything larger is a corrupt length field, not a packet.
pub const MAX_RECORD: usize = 16 * 1024 * 1024;
/// Interfaces accepted per pcapng section; guards against a flood of interface blocks.
const MAX_INTERFACES: usize = 4096;

/// A link-layer header type, as numbered by tcpdump.org's LINKTYPE registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkType(pub u32);

impl LinkType {
    /// BSD loopback: a 4-byte address family in host byte order.
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet II (with optional 802.1Q/802.1ad tags).
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IP (the historic BSD value).
    pub const RAW_12: LinkType = LinkType(12);
    /// Raw IP (the historic OpenBSD value).
    pub const RAW_14: LinkType = LinkType(14);
    /// Raw IP.
    pub const RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: a 4-byte address family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux cooked capture v1.
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6.
    pub const IPV6: LinkType = LinkType(229);
    /// Linux cooked capture v2 (what `tcpdump -i any` writes today).
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Time of a frame, nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Builds a timestamp from seconds and a fraction in units of `1/per_sec`.
    pub fn from_parts(secs: i64, frac: u64, per_sec: u64) -> Timestamp {
        // Microseconds and nanoseconds (nearly every capture) without a division per frame.
        let nanos = match per_sec {
            0 => 0,
            1_000_000 => (u128::from(frac) * 1_000) as i64,
            1_000_000_000 => frac as i64,
            _ => (u128::from(frac) * 1_000_000_000 / u128::from(per_sec)) as i64,
        };
        Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`), for the dates the report and certificate summaries print.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A block of bytes that frames lie in, shared by reference count: holding a clone keeps
/// a frame's bytes alive after the reader has moved on (it reads into another block or
/// maps another window meanwhile), so frames can be handed on without copying them.
pub type SharedBlock = Arc<Bytes>;

/// What a [`SharedBlock`] holds.
pub enum Bytes {
    /// Bytes read into memory.
    Read(Vec<u8>),
    /// A window of a memory-mapped file.
    Mapped(mapped::Window),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Read(v) => v,
            Bytes::Mapped(w) => w,
        }
    }
}

impl fmt::Debug for Bytes {
    /// The length and kind, never the bytes (they are payloads).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Bytes::Read(_) => "read",
            Bytes::Mapped(_) => "mapped",
        };
        write!(f, "Bytes({kind}, {} bytes)", self.len())
    }
}

impl Clone for Bytes {
    /// A copy in memory (of a window too).
    fn clone(&self) -> Bytes {
        Bytes::Read(self.to_vec())
    }
}

impl Bytes {
    /// The bytes as a vector to write into (a mapped window is copied first).
    fn vec_mut(&mut self) -> &mut Vec<u8> {
        if let Bytes::Mapped(w) = self {
            *self = Bytes::Read(w.to_vec());
        }
        match self {
            Bytes::Read(v) => v,
            Bytes::Mapped(_) => unreachable!("a window was replaced by its copy above"),
        }
    }
}

/// One captured frame, borrowed from the reader's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// 1-based frame number, as Wireshark counts.
    pub number: u64,
    /// Capture time.
    pub ts: Timestamp,
    /// Link type of the interface the frame came from.
    pub link: LinkType,
    /// Interface index (pcapng), 0 for pcap.
    pub interface: u32,
    /// Captured bytes (may be shorter than `orig_len` when a snaplen cut it).
    pub data: &'a [u8],
    /// Length of the frame on the wire.
    pub orig_len: u32,
    /// The shared block `data` lies in, when the reader reads into shared blocks (classic
    /// pcap does; pcapng and live capture lend their bytes only for the call).
    pub block: Option<&'a SharedBlock>,
}

/// Why a capture could not be read (fatal for that input, never for the others).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// The input is empty.
    #[error("empty input, not a capture")]
    Empty,
    /// Neither a pcap nor a pcapng magic number.
    #[error("not a pcap or pcapng capture (unrecognized header)")]
    NotACapture,
    /// The input ends in the middle of a record.
    #[error("truncated: the capture ends in the middle of a record after {frames} frames")]
    Truncated {
        /// Frames read before the cut.
        frames: u64,
    },
    /// A record header announces a length beyond [`MAX_RECORD`].
    #[error("corrupt record after {frames} frames: length beyond {MAX_RECORD} bytes")]
    RecordTooLarge {
        /// Frames read before the bad record.
        frames: u64,
    },
    /// The container is malformed (bad block, bad header field).
    #[error("malformed capture after {frames} frames: {detail}")]
    Malformed {
        /// Frames read before the bad block.
        frames: u64,
        /// What the parser reported.
        detail: String,
    },
    /// A packet names a pcapng interface that was never described.
    #[error("packet refers to undeclared interface {interface} after {frames} frames")]
    UnknownInterface {
        /// Frames read so far.
        frames: u64,
        /// The interface id in the packet block.
        interface: u32,
    },
    /// Reading from the file or pipe failed.
    #[error("read error: {0}")]
    Io(String),
}

impl CaptureError {
    /// Whether the input ended in the middle of a record: the usual end of a stream that
    /// was cut (`kubectl sniff` interrupted), an error for a file.
    pub fn is_truncation(&self) -> bool {
        matches!(self, CaptureError::Truncated { .. })
    }
}

fn last_error(state: &SourceState, fallback: &str) -> String {
    state
        .error
        .lock()
        .ok()
        .and_then(|mut e| e.take())
        .map_or_else(|| fallback.to_string(), |e| e.to_string())
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    resolution: u64,
    offset_secs: i64,
}

/// What a capture source reports.
#[derive(Clone, Copy, Debug)]
pub enum Event<'f, 'a> {
    /// A frame.
    Frame(&'f Frame<'a>),
    /// No data is waiting right now (only from sources that can go quiet).
    Idle,
}

/// Bytes a container header needs before its format can be recognized (a pcapng section
/// header block is the longest, 28 bytes).
const HEADER_MIN: usize = 28;

/// What the reader learns from its byte source besides bytes.
#[derive(Debug, Default)]
struct SourceState {
    /// The last read error, with its kind (pcap-parser keeps only "read error").
    error: Mutex<Option<io::Error>>,
    /// The container header has been read; from now on "would block" is an idle report.
    started: AtomicBool,
}

/// A byte source that remembers its errors and, until the container header is read,
/// waits through "would block" so that pcap-parser's first read sees a whole header.
struct Tracked<R> {
    inner: R,
    state: Arc<SourceState>,
    reads: u32,
}

/// How many bytes the first read must return for the header to be recognized: a pcap
/// header, or a pcapng section header block whole (its length is in the block).
fn header_need(b: &[u8], cap: usize) -> usize {
    if b.len() >= 12 && b[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
        let len = match b[8..12] {
            [0x4d, 0x3c, 0x2b, 0x1a] => u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            _ => u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        };
        (len as usize).clamp(HEADER_MIN, cap)
    } else {
        HEADER_MIN.min(cap)
    }
}

impl<R: Read> Tracked<R> {
    fn fail(&mut self, e: io::Error) -> io::Error {
        let copy = io::Error::new(e.kind(), e.to_string());
        if let Ok(mut slot) = self.state.error.lock() {
            *slot = Some(e);
        }
        copy
    }
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        if self.state.started.load(Ordering::Relaxed) {
            return match self.inner.read(buf) {
                Ok(n) => Ok(n),
                Err(e) => Err(self.fail(e)),
            };
        }
        if self.reads > 1 {
            // pcap-parser's second read while opening: nothing waiting is fine.
            return match self.inner.read(buf) {
                Ok(n) => Ok(n),
                Err(e) if is_idle(&e) || e.kind() == io::ErrorKind::Interrupted => Ok(0),
                Err(e) => Err(self.fail(e)),
            };
        }
        let mut got = 0;
        while got < header_need(&buf[..got], buf.len()) {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if is_idle(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if got > 0 => {
                    self.fail(e);
                    break;
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(got)
    }
}

fn is_idle(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A [`Read`] over byte chunks arriving on a channel, for a stream read by another thread
/// (stdin). It answers "would block" (an [`Event::Idle`] for [`CaptureReader::run`]) when
/// no chunk is waiting, first at once, then after waiting `wait` for one; the channel
/// hanging up is the end of the stream, and `stop` being set ends it early.
pub struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    wait: Duration,
    idle_reported: bool,
    stop: Arc<AtomicBool>,
}

impl ChunkReader {
    /// Reads chunks from `rx`; reports idleness after `wait` without data.
    pub fn new(rx: Receiver<io::Result<Vec<u8>>>, wait: Duration, stop: Arc<AtomicBool>) -> Self {
        ChunkReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
            wait,
            idle_reported: false,
            stop,
        }
    }

    fn take(&mut self, chunk: io::Result<Vec<u8>>, buf: &mut [u8]) -> io::Result<usize> {
        self.idle_reported = false;
        self.chunk = chunk?;
        self.pos = 0;
        self.copy(buf)
    }

    fn copy(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.chunk.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.chunk.len() {
            return self.copy(buf);
        }
        if self.stop.load(Ordering::Relaxed) {
            return Ok(0);
        }
        match self.rx.try_recv() {
            Ok(c) => return self.take(c, buf),
            Err(TryRecvError::Disconnected) => return Ok(0),
            Err(TryRecvError::Empty) if !self.idle_reported => {
                self.idle_reported = true;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Err(TryRecvError::Empty) => {}
        }
        match self.rx.recv_timeout(self.wait) {
            Ok(c) => self.take(c, buf),
            Err(RecvTimeoutError::Disconnected) => Ok(0),
            Err(RecvTimeoutError::Timeout) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// Incremental reader of pcap and pcapng, from any byte source.
pub struct CaptureReader<'r> {
    inner: Inner<'r>,
}

enum Inner<'r> {
    /// Classic pcap, split by our own reader into shared blocks.
    Legacy(legacy::LegacyReader<Box<dyn Read + Send + 'r>>),
    /// pcapng (and pcap's rare "modified" format), through pcap-parser.
    Blocks(BlockReader<'r>),
}

/// pcap-parser's reader and what we know between its blocks.
struct BlockReader<'r> {
    inner: Box<dyn PcapReaderIterator + Send + 'r>,
    state: State,
    buffer_size: usize,
    source: Arc<SourceState>,
}

/// What the reader knows between blocks.
struct State {
    /// pcap: the one link type and resolution; pcapng: interfaces of the current section.
    interfaces: Vec<Interface>,
    legacy: bool,
    frames: u64,
}

impl<'r> CaptureReader<'r> {
    /// Recognizes the format from the first bytes of `source` (waiting for them if the
    /// source reports "would block").
    pub fn new<R: Read + Send + 'r>(source: R) -> Result<CaptureReader<'r>, CaptureError> {
        let state = Arc::new(SourceState::default());
        let mut tracked = Tracked {
            inner: source,
            state: Arc::clone(&state),
            reads: 0,
        };
        let mut head = vec![0; INITIAL_BUFFER];
        let got = match tracked.read(&mut head) {
            Ok(0) => return Err(CaptureError::Empty),
            Ok(n) => n,
            Err(_) => return Err(CaptureError::Io(last_error(&state, "cannot read input"))),
        };
        if let Some(h) = legacy::Header::parse(&head[..got]) {
            state.started.store(true, Ordering::Relaxed);
            let source: Box<dyn Read + Send + 'r> = Box::new(tracked);
            let reader = legacy::LegacyReader::new(source, h, head, legacy::Header::LEN..got);
            return Ok(CaptureReader {
                inner: Inner::Legacy(reader),
            });
        }
        head.truncate(got);
        // pcap-parser reads the header again: hand it the bytes already read first.
        let replayed = io::Cursor::new(head).chain(tracked);
        let inner = match pcap_parser::create_reader(INITIAL_BUFFER, replayed) {
            Ok(r) => r,
            Err(PcapError::Eof) => return Err(CaptureError::Empty),
            Err(PcapError::ReadError) => {
                return Err(CaptureError::Io(last_error(&state, "cannot read input")));
            }
            Err(PcapError::Incomplete(_)) | Err(PcapError::UnexpectedEof) => {
                return Err(CaptureError::Truncated { frames: 0 });
            }
            Err(_) => return Err(CaptureError::NotACapture),
        };
        state.started.store(true, Ordering::Relaxed);
        Ok(CaptureReader {
            inner: Inner::Blocks(BlockReader {
                inner,
                state: State {
                    interfaces: Vec::new(),
                    legacy: false,
                    frames: 0,
                },
                buffer_size: INITIAL_BUFFER,
                source: state,
            }),
        })
    }

    /// Number of frames delivered so far.
    pub fn frames(&self) -> u64 {
        match &self.inner {
            Inner::Legacy(r) => r.frames(),
            Inner::Blocks(r) => r.state.frames,
        }
    }

    /// Calls `on_frame` for every packet until the end of input. Returns how the input
    /// ended: `Ok(())` at a clean end, else the error that stopped reading (frames before
    /// it were delivered).
    pub fn for_each_frame(
        &mut self,
        mut on_frame: impl FnMut(&Frame<'_>),
    ) -> Result<(), CaptureError> {
        self.run(|ev| {
            if let Event::Frame(f) = ev {
                on_frame(f);
            }
            ControlFlow::Continue(())
        })
    }

    /// Reports every frame, and [`Event::Idle`] whenever the source has nothing waiting,
    /// until the end of input or until `on` breaks. Returns `Ok(())` at a clean end or a
    /// break, else the error that stopped reading (frames before it were delivered).
    pub fn run(
        &mut self,
        mut on: impl FnMut(Event<'_, '_>) -> ControlFlow<()>,
    ) -> Result<(), CaptureError> {
        match &mut self.inner {
            Inner::Legacy(r) => r.run(&mut on),
            Inner::Blocks(r) => r.run(&mut on),
        }
    }

    /// Whether the input was classic pcap (as opposed to pcapng).
    pub fn is_legacy_pcap(&self) -> bool {
        match &self.inner {
            Inner::Legacy(_) => true,
            Inner::Blocks(r) => r.state.legacy,
        }
    }
}

impl BlockReader<'_> {
    fn run(
        &mut self,
        on: &mut impl FnMut(Event<'_, '_>) -> ControlFlow<()>,
    ) -> Result<(), CaptureError> {
        loop {
            match self.inner.next() {
                Ok((offset, block)) => {
                    let frame = self.state.interpret(block)?;
                    let flow = match frame {
                        Some(frame) => on(Event::Frame(&frame)),
                        None => ControlFlow::Continue(()),
                    };
                    // Shifting the buffer is left to the refill, when little is left.
                    self.inner.consume_noshift(offset);
                    if flow.is_break() {
                        return Ok(());
                    }
                }
                Err(PcapError::Eof) => return Ok(()),
                Err(PcapError::Incomplete(_)) => {
                    if self.inner.refill().is_err() && !self.read_failed(on)? {
                        return Ok(());
                    }
                }
                Err(PcapError::BufferTooSmall) => {
                    if self.buffer_size >= MAX_RECORD + 64 {
                        return Err(CaptureError::RecordTooLarge {
                            frames: self.state.frames,
                        });
                    }
                    self.buffer_size = (self.buffer_size * 2).min(MAX_RECORD + 64);
                    if !self.inner.grow(self.buffer_size) {
                        return Err(CaptureError::RecordTooLarge {
                            frames: self.state.frames,
                        });
                    }
                    if self.inner.refill().is_err() && !self.read_failed(on)? {
                        return Ok(());
                    }
                }
                Err(PcapError::UnexpectedEof) => {
                    return Err(CaptureError::Truncated {
                        frames: self.state.frames,
                    });
                }
                Err(PcapError::ReadError) => {
                    return Err(CaptureError::Io(last_error(&self.source, "read failed")));
                }
                Err(e) => {
                    return Err(CaptureError::Malformed {
                        frames: self.state.frames,
                        detail: format!("{e}"),
                    });
                }
            }
        }
    }

    /// A refill failed: an idle source is reported, and reading goes on (`Ok(true)`)
    /// unless `on` breaks (`Ok(false)`); anything else is a read error.
    fn read_failed(
        &mut self,
        on: &mut impl FnMut(Event<'_, '_>) -> ControlFlow<()>,
    ) -> Result<bool, CaptureError> {
        let err = self.source.error.lock().ok().and_then(|mut e| e.take());
        match err {
            Some(e) if is_idle(&e) => Ok(on(Event::Idle).is_continue()),
            Some(e) => Err(CaptureError::Io(e.to_string())),
            None => Err(CaptureError::Io("read failed".into())),
        }
    }
}

impl State {
    /// Turns a container block into a frame, or updates reader state for non-packet blocks.
    fn interpret<'b>(
        &mut self,
        block: PcapBlockOwned<'b>,
    ) -> Result<Option<Frame<'b>>, CaptureError> {
        match block {
            PcapBlockOwned::LegacyHeader(h) => {
                self.legacy = true;
                let resolution = if h.is_nanosecond_precision() {
                    1_000_000_000
                } else {
                    1_000_000
                };
                self.interfaces = vec![Interface {
                    link: LinkType(h.network.0 as u32),
                    resolution,
                    offset_secs: 0,
                }];
                Ok(None)
            }
            PcapBlockOwned::Legacy(b) => {
                let iface = self.interface(0)?;
                self.frames += 1;
                let data = &b.data[..b.data.len().min(b.caplen as usize)];
                Ok(Some(Frame {
                    number: self.frames,
                    ts: Timestamp::from_parts(
                        i64::from(b.ts_sec),
                        u64::from(b.ts_usec),
                        iface.resolution,
                    ),
                    link: iface.link,
                    interface: 0,
                    data,
                    orig_len: b.origlen,
                    block: None,
                }))
            }
            PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                // Interface ids are scoped to a section.
                self.interfaces.clear();
                Ok(None)
            }
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                if self.interfaces.len() >= MAX_INTERFACES {
                    return Err(CaptureError::Malformed {
                        frames: self.frames,
                        detail: format!("more than {MAX_INTERFACES} interfaces"),
                    });
                }
                self.interfaces.push(Interface {
                    link: LinkType(idb.linktype.0 as u32),
                    resolution: idb.ts_resolution().unwrap_or(1_000_000),
                    offset_secs: idb.if_tsoffset,
                });
                Ok(None)
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let iface = self.interface(epb.if_id)?;
                self.frames += 1;
                let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                let res = iface.resolution.max(1);
                let secs = (ticks / res) as i64 + iface.offset_secs;
                Ok(Some(Frame {
                    number: self.frames,
                    ts: Timestamp::from_parts(secs, ticks % res, res),
                    link: iface.link,
                    interface: epb.if_id,
                    data: &epb.data[..epb.data.len().min(epb.caplen as usize)],
                    orig_len: epb.origlen,
                    block: None,
                }))
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                let iface = self.interface(0)?;
                self.frames += 1;
                Ok(Some(Frame {
                    number: self.frames,
                    ts: Timestamp(0),
                    link: iface.link,
                    interface: 0,
                    data: &spb.data[..spb.data.len().min(spb.origlen as usize)],
                    orig_len: spb.origlen,
                    block: None,
                }))
            }
            // Name resolution, statistics, decryption secrets, journal, custom: not packets.
            PcapBlockOwned::NG(_) => Ok(None),
        }
    }

    fn interface(&self, id: u32) -> Result<Interface, CaptureError> {
        self.interfaces
            .get(id as usize)
            .copied()
            .ok_or(CaptureError::UnknownInterface {
                frames: self.frames,
                interface: id,
            })
    }
}

#[cfg(test)]
/// Every pcap and pcapng under `captures/` (real tools' files).
pub(crate) fn committed_captures() -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("captures")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Microsecond and nanosecond fractions (taken without a division) come out as the
        /// general formula gives them, hostile fractions (beyond a second) included.
        #[test]
        fn timestamp_fractions_match_the_general_formula(secs in -5i64..5, frac: u64, small in 0u64..2_000_000_000) {
            for per_sec in [1_000_000u64, 1_000_000_000] {
                for f in [frac, small] {
                    let general = (u128::from(f) * 1_000_000_000 / u128::from(per_sec)) as i64;
                    let want = Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(general));
                    proptest::prop_assert_eq!(Timestamp::from_parts(secs, f, per_sec), want);
                }
            }
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
        assert_eq!(civil_from_days(-719_528), (0, 1, 1));
    }

    fn pcap_header(magic: u32, link: u32, big: bool) -> Vec<u8> {
        let mut v = Vec::new();
        let put32 = |v: &mut Vec<u8>, x: u32| {
            v.extend_from_slice(&if big {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            })
        };
        put32(&mut v, magic);
        v.extend_from_slice(&if big { [0, 2, 0, 4] } else { [2, 0, 4, 0] });
        put32(&mut v, 0);
        put32(&mut v, 0);
        put32(&mut v, 65535);
        put32(&mut v, link);
        v
    }

    fn record(v: &mut Vec<u8>, big: bool, sec: u32, frac: u32, data: &[u8]) {
        for x in [sec, frac, data.len() as u32, data.len() as u32] {
            v.extend_from_slice(&if big {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            });
        }
        v.extend_from_slice(data);
    }

    type Frames = Vec<(u64, Timestamp, LinkType, Vec<u8>)>;

    fn read_all(bytes: &[u8]) -> (Frames, Result<(), CaptureError>) {
        let mut out = Vec::new();
        let mut r = match CaptureReader::new(bytes) {
            Ok(r) => r,
            Err(e) => return (out, Err(e)),
        };
        let res = r.for_each_frame(|f| out.push((f.number, f.ts, f.link, f.data.to_vec())));
        (out, res)
    }

    #[test]
    fn reads_both_byte_orders_and_resolutions() {
        for (magic, big, per_sec) in [
            (0xa1b2_c3d4u32, false, 1_000_000u64),
            (0xa1b2_c3d4, true, 1_000_000),
            (0xa1b2_3c4d, false, 1_000_000_000),
            (0xa1b2_3c4d, true, 1_000_000_000),
        ] {
            let mut v = pcap_header(magic, 101, big);
            record(&mut v, big, 10, 5, b"abcd");
            record(&mut v, big, 11, 0, b"ef");
            let (frames, res) = read_all(&v);
            assert_eq!(res, Ok(()));
            assert_eq!(frames.len(), 2);
            assert_eq!(frames[0].2, LinkType::RAW);
            assert_eq!(frames[0].3, b"abcd");
            let expect = 10 * 1_000_000_000 + (5 * 1_000_000_000 / per_sec) as i64;
            assert_eq!(frames[0].1, Timestamp(expect), "magic {magic:x} big {big}");
            assert_eq!(frames[1].0, 2);
        }
    }

    #[test]
    fn truncated_record_is_an_error_after_the_good_frames() {
        let mut v = pcap_header(0xa1b2_c3d4, 1, false);
        record(&mut v, false, 1, 0, &[0u8; 60]);
        record(&mut v, false, 2, 0, &[0u8; 60]);
        v.truncate(v.len() - 10);
        let (frames, res) = read_all(&v);
        assert_eq!(frames.len(), 1);
        assert_eq!(res, Err(CaptureError::Truncated { frames: 1 }));
    }

    #[test]
    fn garbage_and_empty_are_rejected() {
        assert!(matches!(read_all(b"").1, Err(CaptureError::Empty)));
        assert!(matches!(
            read_all(b"hello world, this is not a capture file").1,
            Err(CaptureError::NotACapture)
        ));
    }

    /// A classic pcap whose one record announces a length of nearly 4 GiB.
    fn absurd_record_pcap() -> Vec<u8> {
        let mut v = pcap_header(0xa1b2_c3d4, 1, false);
        for x in [1u32, 0, 0xffff_fff0, 0xffff_fff0] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&[0u8; 100]);
        v
    }

    #[test]
    fn absurd_record_length_is_an_error_not_an_allocation() {
        let v = absurd_record_pcap();
        let (frames, res) = read_all(&v);
        assert!(frames.is_empty());
        assert!(res.is_err());
    }

    /// Frames as the mapped reader sees them with windows of `window` bytes, and the
    /// blocks they came in (held to the end).
    fn mapped_frames(bytes: &[u8], window: usize) -> (Frames, Result<(), CaptureError>) {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().expect("a temporary file");
        f.write_all(bytes).expect("written");
        let file = std::fs::File::open(f.path()).expect("opened");
        let Ok(m) = MappedFile::open(file) else {
            panic!("a classic pcap file is taken for mapping");
        };
        let m = m.with_window(window);
        let (mut frames, mut held) = (Vec::new(), Vec::new());
        let res = m.cursor(None).run(|ev| {
            if let Event::Frame(f) = ev {
                frames.push((f.number, f.ts, f.link, f.data.to_vec()));
                let block = f.block.expect("mapped frames lie in windows");
                let start = f.data.as_ptr() as usize - block.as_ptr() as usize;
                held.push((Arc::clone(block), start, f.data.len()));
            }
            ControlFlow::Continue(())
        });
        for ((block, start, len), frame) in held.iter().zip(&frames) {
            assert_eq!(&block[*start..start + len], &frame.3[..], "a held window");
        }
        (frames, res)
    }

    #[test]
    fn mapped_reading_gives_what_the_stream_reader_gives() {
        let mut classic = 0;
        for path in committed_captures() {
            let bytes = std::fs::read(&path).expect("readable");
            if legacy::Header::parse(&bytes).is_none() {
                let file = std::fs::File::open(&path).expect("opened");
                assert!(
                    MappedFile::open(file).is_err(),
                    "{path:?} is not classic pcap"
                );
                continue;
            }
            classic += 1;
            let want = read_all(&bytes);
            // Windows smaller than a record (every record spans windows), odd sizes, and
            // the usual one.
            for window in [1, 100, 4097, 1 << 23] {
                assert_eq!(mapped_frames(&bytes, window), want, "{path:?}, {window}");
            }
            // Cut anywhere: the same frames, and the same error (or a clean end at a
            // record's end).
            for cut in [25, 40, bytes.len() / 3, bytes.len() - 1] {
                let cut = &bytes[..cut.min(bytes.len())];
                assert_eq!(
                    mapped_frames(cut, 100),
                    read_all(cut),
                    "{path:?} cut at {}",
                    cut.len()
                );
            }
        }
        assert!(classic >= 20, "captures/ holds classic pcaps");
    }

    #[test]
    fn mapped_reading_rejects_absurd_records_and_takes_only_files() {
        let v = absurd_record_pcap();
        assert_eq!(
            mapped_frames(&v, 100),
            (Vec::new(), Err(CaptureError::RecordTooLarge { frames: 0 }))
        );
        // A header alone: no frames, no error.
        assert_eq!(mapped_frames(&v[..24], 100), (Vec::new(), Ok(())));
        // Not a regular file.
        let dir = std::fs::File::open(".").expect("the current directory");
        assert!(MappedFile::open(dir).is_err());
        // Too short for a header.
        let short = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(short.path(), &v[..10]).expect("written");
        let file = std::fs::File::open(short.path()).expect("opened");
        assert!(MappedFile::open(file).is_err());
    }

    /// Frames as pcap-parser's own classic reader sees them.
    fn pcap_parser_frames(bytes: &[u8]) -> Frames {
        use pcap_parser::LegacyPcapReader;
        let mut r = LegacyPcapReader::new(1 << 20, bytes).expect("a classic pcap");
        let (mut link, mut per_sec, mut out) = (LinkType(0), 1_000_000, Vec::new());
        loop {
            match r.next() {
                Ok((n, PcapBlockOwned::LegacyHeader(h))) => {
                    link = LinkType(h.network.0 as u32);
                    if h.is_nanosecond_precision() {
                        per_sec = 1_000_000_000;
                    }
                    r.consume(n);
                }
                Ok((n, PcapBlockOwned::Legacy(b))) => {
                    let ts =
                        Timestamp::from_parts(i64::from(b.ts_sec), u64::from(b.ts_usec), per_sec);
                    out.push((out.len() as u64 + 1, ts, link, b.data.to_vec()));
                    r.consume(n);
                }
                Ok(_) => unreachable!("classic pcap has no other blocks"),
                Err(PcapError::Eof) => return out,
                Err(PcapError::Incomplete(_)) => r.refill().expect("refill"),
                Err(e) => panic!("pcap-parser: {e:?}"),
            }
        }
    }

    #[test]
    fn own_splitter_reads_committed_captures_as_pcap_parser_does() {
        let mut classic = 0;
        for path in committed_captures() {
            let bytes = std::fs::read(&path).expect("readable");
            if legacy::Header::parse(&bytes).is_none() {
                continue;
            }
            classic += 1;
            let (frames, res) = read_all(&bytes);
            assert_eq!(res, Ok(()), "{}", path.display());
            assert!(!frames.is_empty(), "{}", path.display());
            assert_eq!(frames, pcap_parser_frames(&bytes), "{}", path.display());
        }
        assert!(
            classic >= 5,
            "only {classic} classic pcaps found under captures/"
        );
    }

    /// A source that hands out its bytes in pieces of varying size, and says "would
    /// block" between some of them, as a pipe does.
    struct Trickle<'a> {
        bytes: &'a [u8],
        calls: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(3) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = [1, 7, 100, 1500, 70_000][self.calls % 5]
                .min(buf.len())
                .min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    /// A classic pcap with records of many sizes, some larger than a read block.
    fn assorted_pcap() -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut v = pcap_header(0xa1b2_c3d4, 1, false);
        let mut datas = Vec::new();
        for (i, len) in [0usize, 1, 60, 1514, 65_535, 300_000, 3, 700_000, 54]
            .into_iter()
            .cycle()
            .take(40)
            .enumerate()
        {
            let data: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            record(&mut v, false, i as u32, 0, &data);
            datas.push(data);
        }
        (v, datas)
    }

    #[test]
    fn a_trickling_stream_gives_the_same_frames_and_reports_idleness() {
        let (bytes, datas) = assorted_pcap();
        let mut r = CaptureReader::new(Trickle {
            bytes: &bytes,
            calls: 0,
        })
        .expect("a capture");
        let (mut got, mut idle) = (Vec::new(), 0);
        let res = r.run(|ev| {
            match ev {
                Event::Frame(f) => got.push(f.data.to_vec()),
                Event::Idle => idle += 1,
            }
            ControlFlow::Continue(())
        });
        assert_eq!(res, Ok(()));
        assert_eq!(got, datas);
        assert!(idle > 0);
    }

    #[test]
    fn frames_stay_valid_in_the_blocks_consumers_hold() {
        let (bytes, datas) = assorted_pcap();
        let mut r = CaptureReader::new(&bytes[..]).expect("a capture");
        let mut held = Vec::new();
        r.for_each_frame(|f| {
            let block = f.block.expect("classic pcap frames come in shared blocks");
            let start = f.data.as_ptr() as usize - block.as_ptr() as usize;
            held.push((Arc::clone(block), start, f.data.len()));
        })
        .expect("read");
        assert_eq!(held.len(), datas.len());
        for ((block, start, len), data) in held.iter().zip(&datas) {
            assert_eq!(&block[*start..start + len], &data[..]);
        }
    }
}
