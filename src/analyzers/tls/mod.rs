//! TLS analyzer: finds TLS by content in each direction's bytes and keeps handshake facts.
//!
//! Per direction it runs a small machine: `Sniff` (look for a TLS record at the stream
//! start, an SSL 2.0 hello, or a handshake record after a plaintext preamble such as
//! STARTTLS or HTTP CONNECT), then `Tls` (frame records; reassemble handshake messages
//! across records under a cap; skip encrypted bodies without buffering them), or
//! `NotTls`. A gap in the bytes is survived when it falls inside a skipped body, and
//! otherwise resynchronizes at the next record header or gives up for that direction.
//! Every malformed input becomes a counted anomaly, never a panic.

pub mod cert;
pub mod hello;
pub mod ja4;
mod memo;
pub mod names;

use std::sync::Arc;

use crate::capture::Timestamp;
use crate::flow::{Chunk, Consumed, Ctx, Dir, prefetch_line};
use cert::CertSummary;
use hello::{ClientHello, ServerHello};

/// Largest record body accepted (2^14 plus the expansion TLS allows).
const MAX_RECORD_LEN: usize = 16384 + 2048;
/// Bytes searched for a TLS start before a direction is declared not TLS.
const SNIFF_MAX: usize = 16 * 1024;
/// Bytes [`hello_record_at`] looks at (offsets 0 to 9): what a hello record header
/// straddling two chunks can need from the earlier one.
const PROBE_LEN: usize = 10;
/// Largest handshake message reassembled whole.
const MAX_HANDSHAKE_MSG: usize = 64 * 1024;
/// Of a larger Certificate message, only this prefix is kept (the leaf and its issuers
/// come first); the rest is passed over.
const CERT_PREFIX: usize = 64 * 1024;
/// Certificates of the server chain summarized.
const MAX_CERTS: usize = 8;
/// Record headers remembered per direction (sizes feed later heuristics).
pub const MAX_RECORD_SIGS: usize = 32;

/// A plaintext alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// Direction it was sent in.
    pub dir: Dir,
    /// 1 warning, 2 fatal.
    pub level: u8,
    /// Description code.
    pub description: u8,
    /// Frame that completed the alert record.
    pub frame: u64,
}

/// Header of one record as seen on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSig {
    /// Content type (20 CCS, 21 alert, 22 handshake, 23 application data).
    pub content_type: u8,
    /// Body length.
    pub len: u16,
    /// The body is encrypted.
    pub encrypted: bool,
    /// Frame that carried the header.
    pub frame: u64,
    /// Its time.
    pub ts: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Sniff,
    Tls,
    /// Lost sync after a gap; the next byte must start a record.
    Resync,
    NotTls,
}

#[derive(Debug)]
struct DirState {
    mode: Mode,
    /// Unconsumed bytes. While sniffing: the tail of the window still undecided (fewer
    /// than [`PROBE_LEN`] bytes: the window's start until it is that long, then a
    /// possible hello header cut by the chunk's end), or the whole window while it holds
    /// an SSL 2.0 hello. In TLS mode: the current record.
    buf: Vec<u8>,
    /// Handshake bytes not yet forming a whole message.
    hs: Vec<u8>,
    /// Bytes of an encrypted record body still to pass over (at most a record).
    skip: u32,
    /// Bytes of an oversized handshake message still to pass over (less than 2^24).
    hs_skip: u32,
    /// Handshake records in this direction are encrypted from here on.
    encrypted: bool,
    /// Bytes before the first TLS record (a STARTTLS or CONNECT preamble).
    preamble: u64,
    /// Stream offset of the next byte fed.
    offset: u64,
    /// Stream offset where the sniffed window starts (the stream's start, or the end of
    /// the last gap).
    buf_start: u64,
    /// Bytes of the sniffed window seen (at most [`SNIFF_MAX`]).
    window: u32,
    /// Window bytes already searched for a hello (so each byte is searched once).
    scanned: u32,
    /// The window starts like an SSL 2.0 ClientHello: `buf` holds all of it until the
    /// record is complete.
    sslv2_hello: bool,
    /// Records seen (only ever compared with 0; saturates).
    records: u32,
    /// Records seen after encryption started (only compared with [`MAX_RECORD_SIGS`];
    /// saturates).
    encrypted_records: u32,
    /// The first record headers.
    sigs: Vec<RecordSig>,
}

impl DirState {
    fn new() -> DirState {
        DirState {
            mode: Mode::Sniff,
            buf: Vec::new(),
            hs: Vec::new(),
            skip: 0,
            hs_skip: 0,
            encrypted: false,
            preamble: 0,
            offset: 0,
            buf_start: 0,
            window: 0,
            scanned: 0,
            sslv2_hello: false,
            records: 0,
            encrypted_records: 0,
            sigs: Vec::new(),
        }
    }

    /// From here on, handshake records of this direction are encrypted: what is left to
    /// read are record headers (bodies are passed over) and the odd small plaintext
    /// alert, so a record buffer grown for the handshake is freed now rather than kept
    /// for as long as the flow stays open.
    fn start_encryption(&mut self) {
        self.encrypted = true;
        self.release_buf();
    }

    /// Takes `old`'s buffers, emptied, when they are no larger than [`KEPT_ROOM`].
    fn reuse(&mut self, old: &mut DirState) {
        fn keep<T>(to: &mut Vec<T>, from: &mut Vec<T>) {
            if from.capacity() * std::mem::size_of::<T>() <= KEPT_ROOM {
                from.clear();
                std::mem::swap(to, from);
            }
        }
        keep(&mut self.buf, &mut old.buf);
        keep(&mut self.hs, &mut old.hs);
        keep(&mut self.sigs, &mut old.sigs);
    }

    /// Frees the record buffer when it is empty and larger than [`SMALL_BUF`] in an
    /// encrypted direction.
    fn release_buf(&mut self) {
        if self.encrypted && self.buf.is_empty() && self.buf.capacity() > SMALL_BUF {
            self.buf = Vec::new();
        }
    }
}

/// Facts the TLS analyzer found in one connection.
///
/// They live inside every open flow, so the hellos (a few hundred bytes, and absent from
/// flows that are not TLS or whose handshake was not captured) are boxed: the flow holds
/// a pointer until a hello is actually seen.
#[derive(Debug, Default)]
pub struct TlsFacts {
    /// Direction that sent the ClientHello.
    pub client_dir: Option<Dir>,
    /// Direction that sent the ServerHello.
    pub server_dir: Option<Dir>,
    /// The first ClientHello.
    pub client_hello: Option<Box<ClientHello>>,
    /// ClientHellos seen (2 after a HelloRetryRequest).
    pub client_hellos: u32,
    /// Frame of the first ClientHello's last byte.
    pub client_hello_frame: Option<u64>,
    /// The final ServerHello.
    pub server_hello: Option<Box<ServerHello>>,
    /// A HelloRetryRequest.
    pub hello_retry: Option<Box<ServerHello>>,
    /// Plaintext alerts.
    pub alerts: Vec<Alert>,
    /// The server asked for a client certificate.
    pub certificate_request: bool,
    /// Certificates in the client's Certificate message, when one was sent (TLS ≤ 1.2).
    pub client_certificates: Option<usize>,
    /// The client's chain, when visible (TLS ≤ 1.2). Summaries are shared with the
    /// per-thread memo and every other flow that saw the same certificate.
    pub client_certificate_chain: Vec<Arc<CertSummary>>,
    /// The server's chain, when visible (TLS ≤ 1.2), shared likewise.
    pub server_certificates: Vec<Arc<CertSummary>>,
    /// Certificates in the server's Certificate message, if one was seen.
    pub server_certificate_count: Option<usize>,
    /// The server sent ServerKeyExchange or ServerHelloDone (a full TLS ≤ 1.2 handshake).
    pub server_full_handshake: bool,
    /// The server issued a session ticket.
    pub session_ticket_issued: bool,
    /// ChangeCipherSpec seen per direction.
    pub change_cipher_spec: [bool; 2],
    /// Encrypted alert records (type 21 longer than 2 bytes) per direction.
    pub encrypted_alerts: [u32; 2],
    /// Application data records per direction.
    pub app_data_records: [u64; 2],
    /// Malformed TLS seen (bad record header, undecodable hello, oversize message).
    pub malformed: u32,
    /// Resynchronizations after a gap broke record framing.
    pub desyncs: u32,
}

/// The TLS analyzer of one connection.
#[derive(Debug)]
pub struct TlsAnalyzer {
    dirs: [DirState; 2],
    facts: TlsFacts,
}

impl Default for TlsAnalyzer {
    fn default() -> TlsAnalyzer {
        TlsAnalyzer {
            dirs: [DirState::new(), DirState::new()],
            facts: TlsFacts::default(),
        }
    }
}

/// Capacity an empty record buffer may keep: enough for a record header cut by a chunk
/// boundary, or a ChangeCipherSpec or plaintext alert record.
const SMALL_BUF: usize = 16;

/// Room a direction's buffer may keep when the analyzer is reset for a new flow.
const KEPT_ROOM: usize = 4096;

/// Whether `h` is a plausible record header (type, version, length).
fn valid_header(h: &[u8]) -> bool {
    h.len() >= 5
        && (20..=24).contains(&h[0])
        && h[1] == 3
        && h[2] <= 4
        && usize::from(u16::from_be_bytes([h[3], h[4]])) <= MAX_RECORD_LEN
}

/// Whether `b` starts a handshake record carrying a ClientHello or ServerHello:
/// `16 03 0v LL LL 01|02 HH HH HH 03 0v`. `None` when more bytes are needed to tell.
fn hello_record_at(b: &[u8]) -> Option<bool> {
    type Check = (usize, fn(u8) -> bool);
    let checks: [Check; 6] = [
        (0, |x| x == 0x16),
        (1, |x| x == 3),
        (2, |x| x <= 4),
        (5, |x| x == 1 || x == 2),
        (6, |x| x == 0),
        (9, |x| x == 3 || x == 0x7f),
    ];
    for (i, ok) in checks {
        if !ok(*b.get(i)?) {
            return Some(false);
        }
    }
    Some(valid_header(b))
}

impl TlsAnalyzer {
    /// Facts so far.
    pub fn facts(&self) -> &TlsFacts {
        &self.facts
    }

    /// Takes the facts out, leaving those of an analyzer that has seen nothing.
    pub fn take_facts(&mut self) -> TlsFacts {
        std::mem::take(&mut self.facts)
    }

    /// Bytes of room the directions' buffers hold (for tests of [`TlsAnalyzer::reset`]).
    #[cfg(test)]
    pub fn kept_room(&self) -> usize {
        self.dirs
            .iter()
            .map(|d| d.buf.capacity() + d.hs.capacity() + d.sigs.capacity())
            .sum()
    }

    /// Starts afresh, for a new flow, keeping the directions' buffers (emptied) up to
    /// `KEPT_ROOM` bytes each.
    pub fn reset(&mut self) {
        let mut dirs = [DirState::new(), DirState::new()];
        for (new, old) in dirs.iter_mut().zip(&mut self.dirs) {
            new.reuse(old);
        }
        *self = TlsAnalyzer {
            dirs,
            facts: TlsFacts::default(),
        };
    }

    /// TLS (or SSL 2.0) was found in at least one direction.
    pub fn is_tls(&self) -> bool {
        self.dirs.iter().any(|d| d.records > 0)
            || self.facts.client_hello.is_some()
            || self.facts.server_hello.is_some()
    }

    /// Bytes of plaintext before TLS started, per direction (STARTTLS, CONNECT).
    pub fn preamble(&self, dir: Dir) -> u64 {
        let d = &self.dirs[dir.idx()];
        if d.records > 0 { d.preamble } else { 0 }
    }

    /// First record headers of a direction.
    pub fn record_sigs(&self, dir: Dir) -> &[RecordSig] {
        &self.dirs[dir.idx()].sigs
    }

    /// Whether more bytes of `dir` could still add facts.
    pub fn wants(&self, dir: Dir) -> bool {
        let d = &self.dirs[dir.idx()];
        match d.mode {
            Mode::Sniff | Mode::Resync => true,
            Mode::Tls => !(d.encrypted && d.encrypted_records as usize >= MAX_RECORD_SIGS),
            Mode::NotTls => false,
        }
    }

    /// Starts loading into the cache the state that the next chunk of `dir` reads (a
    /// hint only).
    #[inline]
    pub fn prefetch(&self, dir: Dir) {
        let d = &self.dirs[dir.idx()];
        prefetch_line(d);
        prefetch_line(&d.mode);
        prefetch_line(&d.skip);
        prefetch_line(&d.offset);
    }

    /// Feeds one chunk of `dir`'s stream. Its bytes are skipped unread when they all lie
    /// in the body of an encrypted record.
    pub fn on_chunk(&mut self, dir: Dir, chunk: Chunk<'_>, ctx: &Ctx) -> Consumed {
        match chunk {
            Chunk::Data(data) => {
                let mode = self.dirs[dir.idx()].mode;
                let mut used = Consumed::Read;
                match mode {
                    Mode::Sniff => self.sniff(dir, data, ctx),
                    Mode::Resync => {
                        let d = &mut self.dirs[dir.idx()];
                        let mut head = std::mem::take(&mut d.buf);
                        head.extend_from_slice(&data[..data.len().min(5 - head.len().min(5))]);
                        if head.len() < 5 && head.len() == data.len() {
                            d.buf = head;
                            return used;
                        }
                        d.buf.clear();
                        if valid_header(&head) || head.len() < 5 {
                            d.mode = Mode::Tls;
                            self.feed(dir, data, ctx);
                        } else {
                            self.facts.desyncs += 1;
                            self.give_up(dir);
                        }
                    }
                    Mode::Tls => {
                        if data.len() as u64 <= u64::from(self.dirs[dir.idx()].skip) {
                            used = Consumed::Skipped;
                        }
                        self.feed(dir, data, ctx);
                    }
                    Mode::NotTls => used = Consumed::Skipped,
                }
                let d = &mut self.dirs[dir.idx()];
                d.offset += data.len() as u64;
                used
            }
            Chunk::Gap(n) => {
                self.gap(dir, n);
                Consumed::Read
            }
        }
    }

    fn give_up(&mut self, dir: Dir) {
        let d = &mut self.dirs[dir.idx()];
        d.mode = Mode::NotTls;
        d.buf = Vec::new();
        d.hs = Vec::new();
    }

    fn gap(&mut self, dir: Dir, n: u64) {
        let d = &mut self.dirs[dir.idx()];
        d.offset += n;
        match d.mode {
            Mode::Sniff => {
                d.buf.clear();
                d.window = 0;
                d.scanned = 0;
                d.sslv2_hello = false;
            }
            Mode::Tls if u64::from(d.skip) >= n => d.skip -= n as u32,
            Mode::Tls => {
                // Bytes of the current record are lost; drop it, and find the next header.
                let mut n = n - u64::from(d.skip);
                d.skip = 0;
                if d.buf.len() >= 5 {
                    let need =
                        5 + usize::from(u16::from_be_bytes([d.buf[3], d.buf[4]])) - d.buf.len();
                    if (need as u64) > n {
                        d.skip = (need - n as usize) as u32;
                        n = 0;
                    } else {
                        n -= need as u64;
                    }
                }
                d.buf.clear();
                d.release_buf();
                d.hs = Vec::new();
                if n > 0 {
                    d.mode = Mode::Resync;
                }
            }
            Mode::Resync | Mode::NotTls => {}
        }
    }

    /// Looks for the start of TLS in a direction that has not shown it yet.
    ///
    /// The window searched is the first [`SNIFF_MAX`] bytes after `buf_start` (bytes of a
    /// chunk beyond it are dropped). TLS starts at the window's start when a record header
    /// is there; otherwise at the first hello record header in the window (after a
    /// STARTTLS or CONNECT preamble). The window is searched in place, chunk by chunk:
    /// only its undecided tail is kept (see [`DirState::buf`]), never the whole window,
    /// except while it holds an SSL 2.0 hello (which only a whole record can tell).
    fn sniff(&mut self, dir: Dir, data: &[u8], ctx: &Ctx) {
        let d = &mut self.dirs[dir.idx()];
        if d.window == 0 {
            d.buf_start = d.offset;
        }
        let data = &data[..data.len().min(SNIFF_MAX - d.window as usize)];
        // The window is `w = [earlier bytes] + data`, `old` and `n` bytes long; `d.buf`
        // holds its bytes `keep..old`.
        let old = d.window as usize;
        let n = old + data.len();
        d.window = n as u32;
        if d.buf_start == 0
            && (d.sslv2_hello || old < PROBE_LEN)
            && self.sniff_sslv2(dir, data, ctx)
        {
            return;
        }
        let d = &mut self.dirs[dir.idx()];
        let mut carry = std::mem::take(&mut d.buf);
        let keep = old - carry.len();
        // `probe` is `w[keep..]` up to PROBE_LEN bytes into `data`: enough to decide at
        // every position of `carry` (as at the window's start while `keep` is 0).
        debug_assert!(carry.len() < PROBE_LEN);
        let mut probe = [0; 2 * PROBE_LEN];
        let probe_len = carry.len() + data.len().min(PROBE_LEN);
        probe[..carry.len()].copy_from_slice(&carry);
        probe[carry.len()..probe_len].copy_from_slice(&data[..probe_len - carry.len()]);
        let probe = &probe[..probe_len];
        // A record at the start: a handshake, or (midstream) any record type. Only the
        // window's first PROBE_LEN bytes decide it, so it is only looked at while the
        // window is shorter (and `keep` is 0: `probe` starts with the window).
        let at_start = old < PROBE_LEN
            && valid_header(probe)
            && (probe[0] != 0x16 || hello_record_at(probe) != Some(false));
        let mut found = at_start.then_some(0);
        let mut pending = None;
        if !at_start {
            // Candidates in `carry`, then in `data`; each is decided, or pending until
            // more bytes come.
            let in_carry = (d.scanned as usize - keep..carry.len())
                .filter(|&j| probe[j] == 0x16)
                .map(|j| (keep + j, hello_record_at(&probe[j..])));
            let in_data =
                memchr::memchr_iter(0x16, data).map(|p| (old + p, hello_record_at(&data[p..])));
            for (at, hello) in in_carry.chain(in_data) {
                match hello {
                    Some(true) => {
                        found = Some(at);
                        break;
                    }
                    Some(false) => {}
                    None => {
                        pending = Some(at);
                        break;
                    }
                }
            }
            d.scanned = pending.unwrap_or(n) as u32;
            if found.is_none() && pending.is_none() && n >= SNIFF_MAX {
                self.give_up(dir);
                return;
            }
        }
        match found {
            Some(at) => {
                d.preamble = d.buf_start + at as u64;
                d.mode = Mode::Tls;
                if at < old {
                    self.feed(dir, &carry[at - keep..], ctx);
                    self.feed(dir, data, ctx);
                } else {
                    self.feed(dir, &data[at - old..], ctx);
                }
            }
            None => {
                // Keep what is still undecided: the window's start while it is shorter
                // than PROBE_LEN, else from the pending candidate (fewer than PROBE_LEN
                // bytes, or it would be decided).
                let new_keep = if n < PROBE_LEN { 0 } else { d.scanned as usize };
                if new_keep < old {
                    carry.drain(..new_keep - keep);
                    carry.extend_from_slice(data);
                } else {
                    carry.clear();
                    carry.extend_from_slice(&data[new_keep - old..]);
                }
                d.buf = carry;
            }
        }
    }

    /// SSL 2.0 hellos, only at the very start of a stream: called while the window is
    /// shorter than [`PROBE_LEN`] (when `buf` holds all of it) or holds an SSL 2.0
    /// ClientHello. Returns whether it dealt with `data`.
    fn sniff_sslv2(&mut self, dir: Dir, data: &[u8], ctx: &Ctx) -> bool {
        let d = &mut self.dirs[dir.idx()];
        let mut head = [0; 2 * PROBE_LEN];
        let head_len = (d.buf.len() + data.len()).min(head.len());
        let from_buf = d.buf.len().min(head_len);
        head[..from_buf].copy_from_slice(&d.buf[..from_buf]);
        head[from_buf..head_len].copy_from_slice(&data[..head_len - from_buf]);
        let head = &head[..head_len];
        if d.sslv2_hello || hello::looks_like_sslv2_client_hello(head) {
            d.sslv2_hello = true;
            d.buf.extend_from_slice(data);
            let buf = std::mem::take(&mut d.buf);
            match hello::parse_sslv2_client_hello(&buf) {
                Some((ch, used)) => {
                    self.client_hello(dir, ch, ctx);
                    let d = &mut self.dirs[dir.idx()];
                    d.records = d.records.saturating_add(1);
                    d.mode = Mode::Tls;
                    d.sslv2_hello = false;
                    self.feed(dir, &buf[used.min(buf.len())..], ctx);
                }
                None if hello::sslv2_record(&buf).is_none() && buf.len() < SNIFF_MAX => {
                    self.dirs[dir.idx()].buf = buf;
                }
                None => self.give_up(dir),
            }
            return true;
        }
        if hello::looks_like_sslv2_server_hello(head) {
            let mut window = std::mem::take(&mut d.buf);
            window.extend_from_slice(data);
            if let Some(sh) = hello::parse_sslv2_server_hello(&window) {
                self.facts.server_dir = Some(dir);
                if self.facts.server_hello.is_none() {
                    self.facts.server_hello = Some(Box::new(sh));
                }
                let d = &mut self.dirs[dir.idx()];
                d.records = d.records.saturating_add(1);
            }
            self.give_up(dir);
            return true;
        }
        false
    }

    /// Frames records out of `data` (following whatever is buffered).
    fn feed(&mut self, dir: Dir, mut data: &[u8], ctx: &Ctx) {
        while !data.is_empty() && self.dirs[dir.idx()].mode == Mode::Tls {
            let d = &mut self.dirs[dir.idx()];
            if d.skip > 0 {
                let n = (d.skip as usize).min(data.len());
                d.skip -= n as u32;
                data = &data[n..];
                continue;
            }
            if d.buf.len() < 5 {
                // A new record. Its header is read where it lies when the chunk holds
                // all of it (as usual), else completed in `buf` and copied out: `buf`
                // only ever holds a header cut by a chunk boundary, or a record whose
                // body is.
                let hdr: [u8; 5] = match data {
                    [a, b, c, e, f, rest @ ..] if d.buf.is_empty() => {
                        data = rest;
                        [*a, *b, *c, *e, *f]
                    }
                    _ => {
                        let take = (5 - d.buf.len()).min(data.len());
                        d.buf.extend_from_slice(&data[..take]);
                        data = &data[take..];
                        let [a, b, c, e, f] = d.buf[..] else {
                            return;
                        };
                        d.buf.clear();
                        [a, b, c, e, f]
                    }
                };
                if !valid_header(&hdr) {
                    self.facts.malformed += 1;
                    self.give_up(dir);
                    return;
                }
                let (ctype, len) = (hdr[0], u16::from_be_bytes([hdr[3], hdr[4]]));
                let encrypted = ctype == 23
                    || ctype == 24
                    || (d.encrypted && (ctype == 22 || (ctype == 21 && len != 2)));
                d.records = d.records.saturating_add(1);
                if d.encrypted {
                    d.encrypted_records = d.encrypted_records.saturating_add(1);
                }
                if d.sigs.len() < MAX_RECORD_SIGS {
                    if d.sigs.capacity() == 0 {
                        // Most directions have a handful of records, up to a dozen or so:
                        // room for half the maximum at once instead of growing from 4
                        // (each step a reallocation and a copy).
                        d.sigs.reserve_exact(MAX_RECORD_SIGS / 2);
                    }
                    d.sigs.push(RecordSig {
                        content_type: ctype,
                        len,
                        encrypted,
                        frame: ctx.frame,
                        ts: ctx.ts,
                    });
                }
                if encrypted {
                    match ctype {
                        23 => self.facts.app_data_records[dir.idx()] += 1,
                        21 => self.facts.encrypted_alerts[dir.idx()] += 1,
                        _ => {}
                    }
                    d.skip = u32::from(len);
                    continue;
                }
                let len = usize::from(len);
                if data.len() >= len {
                    // The whole body is in this chunk: read it where it lies.
                    let (body, rest) = data.split_at(len);
                    data = rest;
                    self.record(dir, ctype, body, ctx);
                    continue;
                }
                // The body is buffered whole, after its header: one allocation of the
                // record's size, not a doubling series (and no room to spare kept with
                // the flow).
                d.buf.reserve_exact(5 + len);
                d.buf.extend_from_slice(&hdr);
            }
            let need = 5 + usize::from(u16::from_be_bytes([d.buf[3], d.buf[4]]));
            let take = (need - d.buf.len()).min(data.len());
            d.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if d.buf.len() < need {
                return;
            }
            let record = std::mem::take(&mut d.buf);
            self.record(dir, record[0], &record[5..], ctx);
            let d = &mut self.dirs[dir.idx()];
            if d.buf.is_empty() {
                d.buf = record;
                d.buf.clear();
                d.release_buf();
            }
        }
    }

    /// Handles one whole plaintext record.
    fn record(&mut self, dir: Dir, ctype: u8, body: &[u8], ctx: &Ctx) {
        match ctype {
            20 => {
                self.facts.change_cipher_spec[dir.idx()] = true;
                // In TLS 1.3 the ChangeCipherSpec is a middlebox-compatibility no-op (it
                // may even precede a second ClientHello and ServerHello after a
                // HelloRetryRequest); encryption starts with the ServerHello instead.
                let tls13 = self.facts.hello_retry.is_some()
                    || self
                        .facts
                        .server_hello
                        .as_ref()
                        .is_some_and(|sh| sh.version == 0x0304 || sh.version >> 8 == 0x7f);
                if !tls13 {
                    self.dirs[dir.idx()].start_encryption();
                }
            }
            21 => {
                for a in body.chunks_exact(2) {
                    self.facts.alerts.push(Alert {
                        dir,
                        level: a[0],
                        description: a[1],
                        frame: ctx.frame,
                    });
                }
            }
            22 => {
                let d = &mut self.dirs[dir.idx()];
                let passed = (d.hs_skip as usize).min(body.len());
                d.hs_skip -= passed as u32;
                let body = &body[passed..];
                if d.hs.is_empty() {
                    // The usual case: messages are read where they lie, only an
                    // incomplete one at the end is kept.
                    if let Some(at) = self.handshake_messages(dir, body, ctx) {
                        self.dirs[dir.idx()].hs.extend_from_slice(&body[at..]);
                    }
                } else {
                    d.hs.extend_from_slice(body);
                    let mut hs = std::mem::take(&mut d.hs);
                    // Kept only while it holds the start of a message (else dropped here,
                    // with its capacity).
                    if let Some(at) = self.handshake_messages(dir, &hs, ctx)
                        && at < hs.len()
                    {
                        hs.drain(..at);
                        self.dirs[dir.idx()].hs = hs;
                    }
                }
            }
            _ => {}
        }
    }

    /// Handles the whole handshake messages at the start of `hs` (plaintext handshake
    /// bytes of a direction). Returns where the incomplete rest begins, to be kept until
    /// more bytes come; `None` when nothing is to be kept (the direction is no longer
    /// readable, or the rest of an oversized Certificate message is passed over).
    fn handshake_messages(&mut self, dir: Dir, hs: &[u8], ctx: &Ctx) -> Option<usize> {
        let mut at = 0;
        while hs.len() - at >= 4 {
            let (kind, len) = (
                hs[at],
                (usize::from(hs[at + 1]) << 16)
                    | (usize::from(hs[at + 2]) << 8)
                    | usize::from(hs[at + 3]),
            );
            let have = hs.len() - at - 4;
            if len > MAX_HANDSHAKE_MSG {
                if kind != 11 {
                    self.facts.malformed += 1;
                    self.dirs[dir.idx()].start_encryption();
                    return None;
                }
                if have < CERT_PREFIX {
                    break;
                }
                // An oversized chain: read the certificates in the prefix, pass over the rest.
                self.certificate(dir, &hs[at + 4..], false);
                // `len` has 24 bits.
                self.dirs[dir.idx()].hs_skip = (len - have) as u32;
                return None;
            }
            if have < len {
                break;
            }
            self.handshake(dir, kind, &hs[at + 4..at + 4 + len], ctx);
            at += 4 + len;
            if self.dirs[dir.idx()].encrypted {
                // What follows in this direction is no longer readable.
                return None;
            }
        }
        Some(at)
    }

    fn client_hello(&mut self, dir: Dir, ch: ClientHello, ctx: &Ctx) {
        self.facts.client_hellos += 1;
        self.facts.client_dir.get_or_insert(dir);
        if self.facts.client_hello.is_none() {
            self.facts.client_hello = Some(Box::new(ch));
            self.facts.client_hello_frame = Some(ctx.frame);
        }
    }

    /// Whether `dir` is the server side, as far as the hellos tell.
    fn is_server_side(&self, dir: Dir) -> bool {
        match (self.facts.client_dir, self.facts.server_dir) {
            (Some(c), _) => c != dir,
            (None, Some(s)) => s == dir,
            (None, None) => true,
        }
    }

    /// Handles one whole plaintext handshake message.
    fn handshake(&mut self, dir: Dir, msg_type: u8, body: &[u8], ctx: &Ctx) {
        match msg_type {
            1 => match hello::parse_client_hello(body) {
                Some(ch) => self.client_hello(dir, ch, ctx),
                None => self.facts.malformed += 1,
            },
            2 | 6 => {
                let parsed = if msg_type == 2 {
                    hello::parse_server_hello(body)
                } else {
                    hello::parse_draft_hello_retry(body)
                };
                let Some(sh) = parsed else {
                    self.facts.malformed += 1;
                    return;
                };
                self.facts.server_dir.get_or_insert(dir);
                if sh.hello_retry {
                    if self.facts.hello_retry.is_none() {
                        self.facts.hello_retry = Some(Box::new(sh));
                    }
                } else {
                    let tls13 =
                        sh.version == 0x0304 || sh.version >> 8 == 0x7f || sh.version >> 8 == 0x7e;
                    if self.facts.server_hello.is_none() {
                        self.facts.server_hello = Some(Box::new(sh));
                    }
                    if tls13 {
                        for d in &mut self.dirs {
                            d.start_encryption();
                        }
                    }
                }
            }
            4 => self.facts.session_ticket_issued = true,
            11 => self.certificate(dir, body, true),
            12 | 14 => self.facts.server_full_handshake = true,
            13 => self.facts.certificate_request = true,
            _ => {}
        }
    }

    /// A Certificate message (TLS ≤ 1.2 layout), whole or only a prefix of it.
    ///
    /// The first [`MAX_CERTS`] entries are kept as slices on the stack and the rest only
    /// counted: no vector of every entry is built just to take its first few.
    fn certificate(&mut self, dir: Dir, body: &[u8], whole: bool) {
        let mut first: [&[u8]; MAX_CERTS] = [&[]; MAX_CERTS];
        let mut count = 0;
        // Entries begun but cut off by the prefix still count as certificates sent.
        let mut cut = 0;
        let ok = body.len() >= 3 && {
            let mut rest = &body[3..];
            while rest.len() >= 3 {
                let len = (usize::from(rest[0]) << 16)
                    | (usize::from(rest[1]) << 8)
                    | usize::from(rest[2]);
                let Some(der) = rest.get(3..3 + len) else {
                    cut = 1;
                    break;
                };
                if let Some(slot) = first.get_mut(count) {
                    *slot = der;
                }
                count += 1;
                rest = &rest[3 + len..];
            }
            !whole || rest.is_empty()
        };
        if !ok {
            self.facts.malformed += 1;
            return;
        }
        let kept = &first[..count.min(MAX_CERTS)];
        let mut chain = Vec::with_capacity(kept.len());
        chain.extend(kept.iter().filter_map(|c| cert::summarize_cached(c)));
        if self.is_server_side(dir) {
            self.facts.server_certificate_count = Some(count + cut);
            self.facts.server_certificates = chain;
        } else {
            self.facts.client_certificates = Some(count + cut);
            self.facts.client_certificate_chain = chain;
        }
    }

    /// How the handshake resumed a session, if it did: `psk` (TLS 1.3 pre-shared key
    /// accepted), `session_id` (TLS ≤ 1.2 session id echoed) or `ticket` (an abbreviated
    /// TLS ≤ 1.2 handshake without an echoed id: ChangeCipherSpec with no certificate or
    /// key exchange from the server).
    pub fn resumption(&self) -> Option<&'static str> {
        let f = &self.facts;
        let sh = f.server_hello.as_ref()?;
        if sh.psk {
            return Some("psk");
        }
        if sh.version >= 0x0304 || sh.sslv2 {
            return None;
        }
        let echoed = f
            .client_hello
            .as_ref()
            .is_some_and(|ch| !ch.session_id.is_empty() && ch.session_id == sh.session_id);
        let server = f.server_dir.map_or(1, |d| d.idx());
        if echoed {
            Some("session_id")
        } else if f.change_cipher_spec[server]
            && !f.server_full_handshake
            && f.server_certificate_count.is_none()
        {
            Some("ticket")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx {
            frame: 1,
            ts: Timestamp(0),
        }
    }

    #[test]
    fn plaintext_alert_and_midstream_records() {
        let mut t = TlsAnalyzer::default();
        t.on_chunk(Dir::BtoA, Chunk::Data(&[0x15, 3, 3, 0, 2, 2, 48]), &ctx());
        assert_eq!(
            t.facts().alerts,
            vec![Alert {
                dir: Dir::BtoA,
                level: 2,
                description: 48,
                frame: 1
            }]
        );
        t.on_chunk(
            Dir::AtoB,
            Chunk::Data(&[0x17, 3, 3, 0, 3, 1, 2, 3, 0x17, 3, 3]),
            &ctx(),
        );
        t.on_chunk(Dir::AtoB, Chunk::Data(&[0, 1, 9]), &ctx());
        assert!(t.is_tls());
        assert_eq!(t.facts().app_data_records[0], 2);
    }

    /// A handshake record holding a minimal ClientHello (no extensions).
    fn client_hello_record() -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        let mut msg = vec![1, 0, 0, body.len() as u8];
        msg.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1, 0, msg.len() as u8];
        rec.extend_from_slice(&msg);
        rec
    }

    /// What a stream fed in `chunks` leaves: the preamble and the ClientHello's ciphers.
    fn sniffed(chunks: &[&[u8]]) -> (u64, Option<Vec<u16>>) {
        let mut t = TlsAnalyzer::default();
        for c in chunks {
            t.on_chunk(Dir::AtoB, Chunk::Data(c), &ctx());
        }
        let ciphers = t.facts().client_hello.as_ref().map(|ch| ch.ciphers.clone());
        (t.preamble(Dir::AtoB), ciphers)
    }

    #[test]
    fn sniffing_across_chunk_boundaries() {
        // A preamble with decoys (a record type byte, a handshake header that is no
        // hello), then the hello.
        let mut stream = b"CONNECT a:443 HTTP/1.1\r\n\x16\x16\x03\x01\x00\x05\x0b\r\n\r\n".to_vec();
        let preamble = stream.len() as u64;
        stream.extend_from_slice(&client_hello_record());
        let whole = sniffed(&[&stream]);
        assert_eq!(whole, (preamble, Some(vec![0x1301])));
        for cut in PROBE_LEN..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(sniffed(&[a, b]), whole, "cut at {cut}");
            for cut2 in cut..stream.len() {
                let (b, c) = b.split_at(cut2 - cut);
                assert_eq!(sniffed(&[a, b, c]), whole, "cuts at {cut}, {cut2}");
            }
        }
        let (head, rest) = stream.split_at(PROBE_LEN);
        let mut bytes: Vec<&[u8]> = vec![head];
        bytes.extend(rest.chunks(1));
        assert_eq!(sniffed(&bytes), whole);
        // A record at the very start, whatever the first chunks' sizes.
        let rec = client_hello_record();
        for cut in 1..rec.len() {
            let (a, b) = rec.split_at(cut);
            assert_eq!(sniffed(&[a, b]), (0, Some(vec![0x1301])), "cut at {cut}");
        }
    }

    #[test]
    fn handshake_messages_across_records_and_chunks() {
        fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
            let mut m = vec![kind];
            m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            m.extend_from_slice(body);
            m
        }
        // A TLS 1.2 server flight: ServerHello, Certificate (two), ServerHelloDone.
        let mut sh = vec![3, 3];
        sh.extend_from_slice(&[9; 32]);
        sh.extend_from_slice(&[0, 0xc0, 0x2f, 0, 0, 0]);
        let mut chain = Vec::new();
        for der in [
            &include_bytes!("testdata/leaf_ec_p256_spiffe.der")[..],
            include_bytes!("testdata/ca_rsa2048.der"),
        ] {
            chain.extend_from_slice(&(der.len() as u32).to_be_bytes()[1..]);
            chain.extend_from_slice(der);
        }
        let mut certs = (chain.len() as u32).to_be_bytes()[1..].to_vec();
        certs.extend_from_slice(&chain);
        let flight = [msg(2, &sh), msg(11, &certs), msg(14, &[])].concat();
        for record_len in [flight.len(), 1000, 40, 3] {
            let mut stream = Vec::new();
            for part in flight.chunks(record_len) {
                stream.extend_from_slice(&[0x16, 3, 3]);
                stream.extend_from_slice(&(part.len() as u16).to_be_bytes());
                stream.extend_from_slice(part);
            }
            for chunk_len in [stream.len(), 1400, 7, 1] {
                let mut t = TlsAnalyzer::default();
                for c in stream.chunks(chunk_len) {
                    t.on_chunk(Dir::BtoA, Chunk::Data(c), &ctx());
                }
                let f = t.facts();
                let case = format!("records of {record_len}, chunks of {chunk_len}");
                assert_eq!(
                    f.server_hello.as_ref().map(|s| s.cipher),
                    Some(0xc02f),
                    "{case}"
                );
                assert_eq!(f.server_certificate_count, Some(2), "{case}");
                assert_eq!(f.server_certificates.len(), 2, "{case}");
                assert!(f.server_full_handshake, "{case}");
                assert_eq!(f.malformed, 0, "{case}");
                assert!(
                    t.dirs[1].hs.is_empty() && t.dirs[1].buf.is_empty(),
                    "{case}"
                );
            }
        }
    }

    #[test]
    fn sniffing_keeps_only_an_undecided_tail() {
        let mut t = TlsAnalyzer::default();
        // Each chunk ends with the first bytes of a possible hello header.
        let chunk = b"text text text\x16\x03\x01";
        let mut fed = 0;
        while fed + chunk.len() < SNIFF_MAX {
            t.on_chunk(Dir::AtoB, Chunk::Data(chunk), &ctx());
            fed += chunk.len();
            assert!(t.wants(Dir::AtoB));
            assert!(t.dirs[0].buf.len() < PROBE_LEN, "{}", t.dirs[0].buf.len());
        }
        t.on_chunk(Dir::AtoB, Chunk::Data(&[b'a'; 64]), &ctx());
        assert!(!t.wants(Dir::AtoB));
        assert!(!t.is_tls());
    }

    #[test]
    fn plaintext_is_not_tls() {
        let mut t = TlsAnalyzer::default();
        t.on_chunk(
            Dir::AtoB,
            Chunk::Data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            &ctx(),
        );
        assert!(!t.is_tls());
        assert!(t.wants(Dir::AtoB));
        t.on_chunk(Dir::AtoB, Chunk::Data(&vec![b'a'; SNIFF_MAX]), &ctx());
        assert!(!t.wants(Dir::AtoB));
    }

    #[test]
    fn chunks_inside_an_encrypted_body_are_skipped_unread() {
        let mut t = TlsAnalyzer::default();
        let mut feed = |bytes: &[u8]| t.on_chunk(Dir::AtoB, Chunk::Data(bytes), &ctx());
        assert_eq!(feed(&[0x17, 3, 3, 0, 10, 1, 2]), Consumed::Read);
        assert_eq!(feed(&[0; 5]), Consumed::Skipped);
        // The body's last bytes, exactly.
        assert_eq!(feed(&[0; 3]), Consumed::Skipped);
        // The next header is read, and so is a chunk that ends a body and starts a header.
        assert_eq!(feed(&[0x17, 3, 3, 0, 1, 9]), Consumed::Read);
        assert_eq!(feed(&[0x17, 3, 3, 0, 4, 1]), Consumed::Read);
        assert_eq!(feed(&[1, 2, 3, 0x17]), Consumed::Read);
        assert_eq!(t.facts.app_data_records[0], 3);
    }

    #[test]
    fn gap_inside_an_encrypted_body_keeps_framing() {
        let mut t = TlsAnalyzer::default();
        t.on_chunk(Dir::AtoB, Chunk::Data(&[0x17, 3, 3, 0, 10, 1, 2]), &ctx());
        t.on_chunk(Dir::AtoB, Chunk::Gap(5), &ctx());
        t.on_chunk(
            Dir::AtoB,
            Chunk::Data(&[8, 9, 10, 0x15, 3, 3, 0, 2, 1, 0]),
            &ctx(),
        );
        assert_eq!(t.facts().alerts.len(), 1);
        assert_eq!(t.facts().desyncs, 0);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 7u32;
        for round in 0..300 {
            let mut t = TlsAnalyzer::default();
            for _ in 0..20 {
                let len = (round % 50) + 1;
                let data: Vec<u8> = (0..len)
                    .map(|i| {
                        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        if i == 0 && round % 3 == 0 {
                            0x16
                        } else {
                            (seed >> 24) as u8
                        }
                    })
                    .collect();
                t.on_chunk(
                    if seed & 1 == 0 { Dir::AtoB } else { Dir::BtoA },
                    Chunk::Data(&data),
                    &ctx(),
                );
                if seed.is_multiple_of(7) {
                    t.on_chunk(Dir::AtoB, Chunk::Gap(u64::from(seed % 100)), &ctx());
                }
            }
            let _ = t.resumption();
        }
    }
}
