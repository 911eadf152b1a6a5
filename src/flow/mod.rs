//! Flow: TCP connections, their lifecycle, and per-direction reassembly.
//!
//! A [`FlowTable`] owns the flows of one shard. Each [`Flow`] counts packets and bytes,
//! follows SYN/FIN/RST, and feeds each direction's reassembled bytes to a
//! [`StreamHandler`] (the analyzers, which live to the right of this module and plug in
//! through that trait).
//!
//! A flow ends when it is *decided*:
//! * closed: [`CLOSE_GRACE`] of quiet after a RST in its sender's sequence space or a FIN
//!   from both sides with the last FIN acknowledged (what trails a close by a few
//!   milliseconds, a RST after the FINs or data in flight when a RST was sent, still
//!   counts); a close whose final ACK was not captured after
//!   [`TableConfig::closed_linger`] of quiet. Packets of the connection that come later
//!   within the linger (a retransmitted FIN, a late RST) are absorbed by a small tombstone
//!   and counted as [`FlowTable::late_packets`] instead of opening a bogus new flow;
//! * idle past [`TableConfig::idle_timeout`];
//! * a new SYN reusing its ports;
//! * evicted, when the table holds [`TableConfig::max_flows`];
//! * the end of input.
//!
//! Time is the *capture clock*: the largest timestamp seen so far in the whole capture,
//! which the caller passes with every segment (and with clock ticks, so that a shard
//! with no traffic of its own still expires its flows). Every decision carries a
//! [`Decided`] key computed from the capture alone (clock, frame numbers), never from how
//! flows are spread over shards or when a shard happened to look, so the same input gives
//! the same records in the same order for any number of shards (evictions excepted).
//! Deadlines sit in a queue ordered by time (`deadlines.rs`), so expiry costs one compare
//! per packet when nothing expires.

mod deadlines;
mod index;
pub mod key;
pub mod reassembly;

use std::collections::HashMap;
use std::hash::BuildHasher;

use prefetch_index::prefetch_index;

use crate::capture::Timestamp;
use crate::decode::{Endpoint, TcpFlags, TcpSegment};
use deadlines::{Deadline, Deadlines, Kind};
use index::Index;
pub use key::{Dir, FlowKey};
pub use reassembly::{Chunk, Consumed, Limits, Reassembler, SeqNum, Stats};

/// Where and when the bytes being delivered arrived.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// Frame number of the segment that completed these bytes.
    pub frame: u64,
    /// Its capture time.
    pub ts: Timestamp,
}

/// Consumer of a flow's reassembled bytes (implemented by the analyzers).
pub trait StreamHandler {
    /// Bytes (or a gap) of direction `dir`, in stream order. Says whether it read any of
    /// the bytes or skipped them all unread (for a gap, the answer is not used).
    fn on_chunk(&mut self, dir: Dir, chunk: Chunk<'_>, ctx: &Ctx) -> Consumed;
    /// Whether the handler still needs `dir`'s bytes; once false, reassembly of that
    /// direction stops and only counting continues. Its answer for `dir` may change only
    /// when `dir` is fed: the table asks again only then.
    fn wants(&self, dir: Dir) -> bool;
    /// Starts loading into the cache what the next chunk of `dir` will read (a hint; by
    /// default none).
    fn prefetch(&self, dir: Dir) {
        let _ = dir;
    }
    /// Returns to the state of a new handler, to serve a new flow (the table reuses the
    /// bodies of finished flows). It may keep what it allocated, emptied; by default it
    /// starts afresh.
    fn reset(&mut self)
    where
        Self: Default,
    {
        *self = Self::default();
    }
}

/// Starts loading the cache line that holds the start of `value` (a hint: nothing is read,
/// and a wrong guess only costs a load). The hints of the flow table, the streams and the
/// analyzers are made of these.
#[inline(always)]
pub fn prefetch_line<T>(value: &T) {
    prefetch_index(std::slice::from_ref(value), 0);
}

/// Per-direction TCP facts: what every packet reads or updates, kept small and inline in
/// the flow (the byte stream lives in the flow's [`Body`]). The optional
/// numbers are stored bare, with a bit each in `has`; those set once per direction (its
/// first data frame, its SYN's sequence number, its interface) live in `Firsts`,
/// further from the key. The key and both halves then share two cache lines.
#[derive(Debug)]
#[repr(C)]
pub struct HalfFlow {
    /// Packets sent in this direction.
    pub packets: u64,
    /// TCP payload bytes on the wire (retransmissions included).
    pub bytes: u64,
    next_seq: u32,
    fin_ack_seq: u32,
    /// Which optional numbers (here and in `Firsts`) are set (`HAS_*`).
    has: u8,
    /// A SYN with ACK was sent in this direction.
    pub syn_ack: bool,
    /// A FIN was sent in this direction.
    pub fin: bool,
    /// A RST was sent in this direction.
    pub rst: bool,
    /// A RST in this direction's sequence space (or before any) closed the connection;
    /// a RST far from it (an answer to a stray segment) does not.
    pub reset: bool,
    /// The other side acknowledged this direction's FIN.
    pub fin_acked: bool,
    /// The direction's stream is still reassembled (mirrors [`Reassembler::is_active`],
    /// updated whenever the stream is fed or stopped),
    /// so that a packet of a direction whose bytes are no longer wanted does not touch
    /// the flow's body.
    reassembling: bool,
}

/// Per-direction numbers set once (see [`HalfFlow`]).
#[derive(Debug, Default)]
struct Firsts {
    first_data_frame: u64,
    syn_seq: u32,
    ifindex: u32,
}

const HAS_FIRST_DATA: u8 = 1;
const HAS_SYN: u8 = 2;
const HAS_NEXT: u8 = 4;
const HAS_FIN_ACK: u8 = 8;
const HAS_IFINDEX: u8 = 16;

impl HalfFlow {
    fn new() -> HalfFlow {
        HalfFlow {
            packets: 0,
            bytes: 0,
            next_seq: 0,
            fin_ack_seq: 0,
            has: 0,
            syn_ack: false,
            fin: false,
            rst: false,
            reset: false,
            fin_acked: false,
            reassembling: true,
        }
    }

    fn get<T>(&self, bit: u8, value: T) -> Option<T> {
        (self.has & bit != 0).then_some(value)
    }

    /// Sequence number after the last byte (or SYN/FIN) sent in this direction.
    pub fn next_seq(&self) -> Option<u32> {
        self.get(HAS_NEXT, self.next_seq)
    }

    /// Sequence number an ACK of this direction's FIN carries (FIN's sequence + 1).
    pub fn fin_ack_seq(&self) -> Option<u32> {
        self.get(HAS_FIN_ACK, self.fin_ack_seq)
    }

    /// Whether this direction's SYN was seen.
    pub fn saw_syn(&self) -> bool {
        self.has & HAS_SYN != 0
    }
}

/// What a flow holds beyond its per-packet TCP facts: both byte streams and the
/// analyzers. Boxed, and touched only by packets whose bytes are still wanted and when
/// the flow ends.
#[derive(Debug)]
pub struct Body<H> {
    /// Each direction's byte stream, indexed by [`Dir::idx`].
    pub streams: [Reassembler; 2],
    /// The analyzers.
    pub handler: H,
}

impl<H: StreamHandler + Default> Body<H> {
    fn new(limits: Limits) -> Body<H> {
        Body {
            streams: [Reassembler::new(limits), Reassembler::new(limits)],
            handler: H::default(),
        }
    }

    /// The body of a new flow, from a finished flow's
    /// (see [`FlowTable::report_finished`]).
    fn reset(&mut self, limits: Limits) {
        self.streams.iter_mut().for_each(|s| s.reset(limits));
        self.handler.reset();
    }
}

/// TCP-level state of a flow when it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// A SYN without an answer.
    SynSent,
    /// Handshake seen, no close.
    Established,
    /// FIN from one side only.
    HalfClosed,
    /// FIN from both sides.
    Closed,
    /// A RST ended it.
    Reset,
    /// The capture started after the handshake, and no close was seen.
    Midstream,
}

impl TcpState {
    /// Stable name used in the output.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "syn_sent",
            TcpState::Established => "established",
            TcpState::HalfClosed => "half_closed",
            TcpState::Closed => "closed",
            TcpState::Reset => "reset",
            TcpState::Midstream => "midstream",
        }
    }
}

/// Why a flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The input ended.
    EndOfInput,
    /// Closed (FIN/RST) and quiet for the linger time.
    Closed,
    /// No packet for the idle timeout.
    Idle,
    /// A new SYN reused the ports.
    PortReuse,
    /// The flow table was full.
    Evicted,
}

/// One TCP connection: its key, endpoints, counters, and its stream handler.
///
/// The flow table keeps flows in a slab, found through its index; a packet finds its
/// flow's TCP facts in the cache lines its lookup compared the key in.
/// The key and the fields every packet touches come first (`repr(C)` keeps that order)
/// and fill the first two of its four cache lines (it is aligned to them); the streams
/// and analyzers sit behind one pointer in [`Flow::body`].
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Flow<H> {
    /// The flow's key.
    pub key: FlowKey,
    /// Frame number of the last packet.
    pub last_frame: u64,
    /// Time of the last packet.
    pub last_ts: Timestamp,
    /// Per-direction facts, indexed by [`Dir::idx`].
    pub half: [HalfFlow; 2],
    /// `a` is the key's low end (so a packet's direction is known without reading `a`).
    a_is_lo: bool,
    /// Free for the table's owner: set once it has reported the flow before its end
    /// (e.g. when its handshake was decided).
    pub noted: bool,
    /// Why the flow ended (set when it leaves the table).
    pub end: Option<EndReason>,
    /// Byte streams and analyzers.
    pub body: Box<Body<H>>,
    /// Frame number of the first packet (with the body pointer: a deadline names the
    /// flow by it, read on every close and expiry check).
    pub first_frame: u64,
    /// Time of the first packet.
    pub first_ts: Timestamp,
    /// Sender of the first packet seen.
    pub a: Endpoint,
    /// The other end.
    pub b: Endpoint,
    /// Per-direction numbers set once, indexed by [`Dir::idx`] (read by few packets: last).
    firsts: [Firsts; 2],
}

impl<H: StreamHandler> Flow<H> {
    /// A new flow for `seg`, whose sender is the key's low end when `src_is_lo`.
    fn new(
        (key, src_is_lo): (FlowKey, bool),
        seg: &TcpSegment<'_>,
        ctx: &Ctx,
        body: Box<Body<H>>,
    ) -> Flow<H> {
        Flow {
            key,
            last_frame: ctx.frame,
            last_ts: ctx.ts,
            half: [HalfFlow::new(), HalfFlow::new()],
            a_is_lo: src_is_lo,
            noted: false,
            end: None,
            body,
            firsts: Default::default(),
            a: seg.src,
            b: seg.dst,
            first_frame: ctx.frame,
            first_ts: ctx.ts,
        }
    }

    /// Frame of the first payload byte sent in direction `dir`.
    pub fn first_data_frame(&self, dir: Dir) -> Option<u64> {
        self.half[dir.idx()].get(HAS_FIRST_DATA, self.firsts[dir.idx()].first_data_frame)
    }

    /// Sequence number of direction `dir`'s SYN, if seen.
    pub fn syn_seq(&self, dir: Dir) -> Option<u32> {
        self.half[dir.idx()].get(HAS_SYN, self.firsts[dir.idx()].syn_seq)
    }

    /// Linux cooked v2 interface index of the first packet in direction `dir`.
    pub fn ifindex(&self, dir: Dir) -> Option<u32> {
        self.half[dir.idx()].get(HAS_IFINDEX, self.firsts[dir.idx()].ifindex)
    }

    /// The analyzers.
    pub fn handler(&self) -> &H {
        &self.body.handler
    }

    /// Direction `dir`'s byte stream.
    pub fn stream(&self, dir: Dir) -> &Reassembler {
        &self.body.streams[dir.idx()]
    }

    /// Direction of a segment whose sender is (or is not) its key's low end: `AtoB` when
    /// sent by `a`, found without reading the flow's endpoints.
    fn dir_of_side(&self, src_is_lo: bool) -> Dir {
        if src_is_lo == self.a_is_lo {
            Dir::AtoB
        } else {
            Dir::BtoA
        }
    }

    /// The sender's endpoint of direction `dir`.
    pub fn sender(&self, dir: Dir) -> Endpoint {
        match dir {
            Dir::AtoB => self.a,
            Dir::BtoA => self.b,
        }
    }

    /// The direction the connection was opened from, by TCP evidence: the SYN sender, or
    /// the receiver of a SYN-ACK.
    pub fn opened_by(&self) -> Option<Dir> {
        for d in [Dir::AtoB, Dir::BtoA] {
            if self.half[d.idx()].saw_syn() && !self.half[d.idx()].syn_ack {
                return Some(d);
            }
        }
        [Dir::AtoB, Dir::BtoA]
            .into_iter()
            .find(|d| self.half[d.rev().idx()].syn_ack)
    }

    /// TCP state at this point.
    pub fn state(&self) -> TcpState {
        let [x, y] = &self.half;
        if x.rst || y.rst {
            TcpState::Reset
        } else if x.fin && y.fin {
            TcpState::Closed
        } else if x.fin || y.fin {
            TcpState::HalfClosed
        } else if !x.saw_syn() && !y.saw_syn() {
            TcpState::Midstream
        } else if x.syn_ack || y.syn_ack || (x.saw_syn() && y.packets > 0 && x.packets > 0) {
            TcpState::Established
        } else {
            TcpState::SynSent
        }
    }

    /// Reassembly counters of both directions.
    pub fn stats(&self, dir: Dir) -> Stats {
        self.body.streams[dir.idx()].stats()
    }

    fn is_closed(&self) -> bool {
        matches!(self.state(), TcpState::Closed | TcpState::Reset)
    }

    /// Whether `seg` opens a new connection on this flow's ports.
    fn is_reuse(&self, seg: &TcpSegment<'_>, d: Dir) -> bool {
        if !seg.flags.has(TcpFlags::SYN) || seg.flags.has(TcpFlags::ACK) {
            return false;
        }
        let h = &self.half[d.idx()];
        match self.syn_seq(d) {
            Some(isn) => isn != seg.seq,
            None => self.is_closed() || h.packets > 0 && self.first_data_frame(d).is_some(),
        }
    }

    fn process(&mut self, seg: &TcpSegment<'_>, d: Dir, ctx: &Ctx) {
        self.last_frame = ctx.frame;
        self.last_ts = self.last_ts.max(ctx.ts);
        let Flow {
            half, body, firsts, ..
        } = self;
        let h = &mut half[d.idx()];
        let first = &mut firsts[d.idx()];
        h.packets += 1;
        h.bytes += u64::from(seg.wire_len);
        if h.has & HAS_IFINDEX == 0
            && let Some(i) = seg.ifindex
        {
            first.ifindex = i;
            h.has |= HAS_IFINDEX;
        }
        let mut seq = SeqNum(seg.seq);
        if seg.flags.has(TcpFlags::SYN) {
            if h.has & HAS_SYN == 0 {
                first.syn_seq = seg.seq;
                h.has |= HAS_SYN;
            }
            h.syn_ack |= seg.flags.has(TcpFlags::ACK);
            if h.reassembling {
                body.streams[d.idx()].syn(seq);
            }
            seq = seq.wrapping_add(1);
        }
        let mut fed = false;
        if seg.wire_len > 0 {
            if h.has & HAS_FIRST_DATA == 0 {
                first.first_data_frame = ctx.frame;
                h.has |= HAS_FIRST_DATA;
            }
            if h.reassembling {
                let Body { streams, handler } = &mut **body;
                let stream = &mut streams[d.idx()];
                stream.segment(seq, seg.wire_len, seg.payload, &mut |c| {
                    handler.on_chunk(d, c, ctx)
                });
                // Past the depth limit the stream stops itself.
                h.reassembling = stream.is_active();
                fed = true;
            }
        }
        if seg.flags.has(TcpFlags::FIN) {
            h.fin = true;
            // The FIN occupies the sequence number after the payload.
            h.fin_ack_seq = seq.wrapping_add(seg.wire_len).wrapping_add(1).0;
            h.has |= HAS_FIN_ACK;
        }
        if seg.flags.has(TcpFlags::RST) {
            h.rst = true;
            h.reset |= h
                .next_seq()
                .is_none_or(|n| SeqNum(seg.seq).distance_from(SeqNum(n)).abs() <= RST_WINDOW);
        }
        let end = seq
            .wrapping_add(seg.wire_len)
            .wrapping_add(u32::from(seg.flags.has(TcpFlags::FIN)));
        if !seg.flags.has(TcpFlags::RST)
            && h.next_seq()
                .is_none_or(|n| end.distance_from(SeqNum(n)) > 0)
        {
            h.next_seq = end.0;
            h.has |= HAS_NEXT;
        }
        if seg.flags.has(TcpFlags::ACK) {
            let o = &mut half[d.rev().idx()];
            if let Some(want) = o.fin_ack_seq() {
                o.fin_acked |= SeqNum(seg.ack).distance_from(SeqNum(want)) >= 0;
            }
        }
        // What the handler wants of a direction changes only with what that direction is
        // fed (see `StreamHandler::wants`): a packet without payload leaves its state, and
        // the other direction's, and the cache lines holding them, alone.
        if fed {
            let Body { streams, handler } = &mut **body;
            let h = &mut half[d.idx()];
            if h.reassembling && !handler.wants(d) {
                streams[d.idx()].stop();
                h.reassembling = false;
            }
        }
    }

    /// Whether the close is decided by the packets themselves: a RST, or both FINs
    /// acknowledged.
    fn close_complete(&self) -> bool {
        let [x, y] = &self.half;
        x.reset || y.reset || (x.fin_acked && y.fin_acked)
    }

    /// How long the flow may stay quiet before it ends, and which wait that is.
    fn wait(&self, cfg: &TableConfig) -> (i64, Kind) {
        if self.close_complete() {
            (CLOSE_GRACE.min(cfg.closed_linger), Kind::Grace)
        } else if self.is_closed() {
            (cfg.closed_linger, Kind::Linger)
        } else {
            (cfg.idle_timeout, Kind::Idle)
        }
    }

    /// Capture time after which the flow expires.
    fn deadline(&self, cfg: &TableConfig) -> i64 {
        self.last_ts.0.saturating_add(self.wait(cfg).0)
    }

    /// The flow's deadline entry.
    fn deadline_entry(&self, cfg: &TableConfig) -> (Kind, Deadline) {
        let (wait, kind) = self.wait(cfg);
        let deadline = Deadline {
            at: self.last_ts.0.saturating_add(wait),
            first_frame: self.first_frame,
            key: self.key,
            tomb: false,
        };
        (kind, deadline)
    }

    /// Delivers what waits behind holes and marks the flow ended. Bytes delivered now
    /// are attributed to the flow's last frame, so the outcome does not depend on which
    /// packet (of whichever flow) triggered the end.
    fn finish(&mut self, reason: EndReason) {
        let ctx = Ctx {
            frame: self.last_frame,
            ts: self.last_ts,
        };
        let ctx = &ctx;
        let Body { streams, handler } = &mut *self.body;
        for d in [Dir::AtoB, Dir::BtoA] {
            streams[d.idx()].flush(&mut |c| handler.on_chunk(d, c, ctx));
        }
        self.end = Some(reason);
    }
}

/// Quiet time (capture clock, ns) after a complete close (RST, or both FINs acknowledged)
/// before the flow is decided: packets trailing the close by a few milliseconds still
/// count in it.
pub const CLOSE_GRACE: i64 = 1_000_000_000;

/// How far (bytes of sequence space) a RST may be from its sender's next sequence number
/// and still close the connection.
const RST_WINDOW: i64 = 1 << 22;

/// Bounds and timeouts of a flow table.
#[derive(Clone, Copy, Debug)]
pub struct TableConfig {
    /// Per-direction reassembly bounds.
    pub limits: Limits,
    /// Flows held at once by one table; the least recently active are evicted beyond it.
    pub max_flows: usize,
    /// A flow with no packet for this long (capture time, ns) ends.
    pub idle_timeout: i64,
    /// A closed flow whose final ACK was not seen ends after this long without packets
    /// (ns); a decided close absorbs the connection's late packets for this long.
    pub closed_linger: i64,
}

impl Default for TableConfig {
    fn default() -> TableConfig {
        TableConfig {
            limits: Limits::default(),
            max_flows: 1_000_000,
            idle_timeout: 300 * 1_000_000_000,
            closed_linger: 30 * 1_000_000_000,
        }
    }
}

/// Where in the capture a flow's end (or another report about it) was decided. Ordered;
/// computed from the capture alone, so records sorted by it come out in the same order
/// whatever the number of shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decided {
    /// Capture clock (ns): at a packet, the largest timestamp seen up to it; for an
    /// expiry, the deadline that passed; `i64::MAX` at the end of input.
    pub clock: i64,
    /// 0 at a packet, 1 at an expiry (after every packet of the same clock value, since a
    /// deadline passes only when the clock exceeds it), 2 at the end of input.
    pub phase: u8,
    /// At a packet, its frame number; otherwise the flow's first frame.
    pub frame: u64,
}

impl Decided {
    /// Decided by the packet `frame`, seen when the capture clock read `clock`.
    pub fn at_packet(clock: Timestamp, frame: u64) -> Decided {
        Decided {
            clock: clock.0,
            phase: 0,
            frame,
        }
    }

    /// The largest key a packet at `clock` and `frame` (or before) can produce: every
    /// later decision of a table that has processed that far sorts after it.
    pub fn watermark(clock: Timestamp, frame: u64) -> Decided {
        Decided::at_packet(clock, frame)
    }

    /// After every possible decision.
    pub const END: Decided = Decided {
        clock: i64::MAX,
        phase: u8::MAX,
        frame: u64::MAX,
    };
}

/// A flow that left the table, with where that was decided.
#[derive(Debug)]
pub struct Finished<H> {
    /// Sort key of its record.
    pub decided: Decided,
    /// The flow, with [`Flow::end`] set.
    pub flow: Flow<H>,
}

/// What remains of a flow whose close was decided, while its late packets may arrive.
#[derive(Clone, Copy, Debug)]
struct Tomb {
    /// Capture clock until which packets of the connection are absorbed.
    until: i64,
    /// First frame of the flow it stands for (identifies its deadline entry).
    first_frame: u64,
    /// The flow's `a` endpoint and each direction's next sequence number: new bytes
    /// beyond them are a new connection, not a late packet.
    a: Endpoint,
    next: [Option<u32>; 2],
}

impl Tomb {
    /// Whether `seg` belongs to the closed connection: not a new SYN, and in the
    /// sequence space its direction used. Absorbed data moves that space on.
    fn absorbs(&mut self, seg: &TcpSegment<'_>) -> bool {
        if seg.flags.has(TcpFlags::SYN) && !seg.flags.has(TcpFlags::ACK) {
            return false;
        }
        let dir = usize::from(seg.src != self.a);
        let Some(n) = self.next[dir] else {
            return true;
        };
        if SeqNum(seg.seq).distance_from(SeqNum(n)).abs() > RST_WINDOW {
            return false;
        }
        let end = SeqNum(seg.seq).wrapping_add(seg.wire_len);
        if end.distance_from(SeqNum(n)) > 0 {
            self.next[dir] = Some(end.0);
        }
        true
    }
}

type Hasher = foldhash::fast::RandomState;

/// Bodies of finished flows a table keeps for new flows
/// ([`FlowTable::report_finished`]): flows end about as often as they start, so a few
/// suffice; the cap bounds what they hold.
const SPARE_BODIES: usize = 64;

/// Most deadline entries a table holds with `live` open flows and tombstones before it
/// drops the stale ones. A rebuild sorts the live ones, so a cap three times what is live
/// (and a floor for small tables) makes it rare: about once per `3 × live` closes.
fn deadlines_cap(live: usize) -> usize {
    4 * live + 4096
}

/// The flows of one shard.
pub struct FlowTable<H> {
    cfg: TableConfig,
    /// Each open flow's hash and place in `slab`: where a flow is, and where its index
    /// entry is, is known before either is read ([`FlowTable::prefetch_slot`]).
    flows: Index,
    /// The open flows, densely (a flow that leaves is replaced by the last one).
    slab: Vec<Flow<H>>,
    /// Hashes flow keys for `flows`.
    hasher: Hasher,
    tombs: HashMap<FlowKey, Tomb, Hasher>,
    deadlines: Deadlines,
    /// Flows [`FlowTable::expire`] found past their deadline (kept for reuse: it runs for
    /// every batch of segments).
    expired: Vec<(Decided, FlowKey)>,
    finished: Vec<Finished<H>>,
    /// Bodies of finished flows, for new flows: their allocations (the box, the streams'
    /// rings, the analyzers' buffers) serve again instead of being freed and allocated
    /// anew for every flow. At most [`SPARE_BODIES`], the last given back on top.
    spare: Vec<Box<Body<H>>>,
    clock: Timestamp,
    evicted: u64,
    late: u64,
    peak: usize,
}

impl<H: StreamHandler + Default> FlowTable<H> {
    /// An empty table.
    pub fn new(cfg: TableConfig) -> FlowTable<H> {
        FlowTable {
            cfg,
            flows: Index::default(),
            slab: Vec::new(),
            hasher: Hasher::default(),
            tombs: HashMap::default(),
            deadlines: Deadlines::new(),
            expired: Vec::new(),
            finished: Vec::new(),
            spare: Vec::new(),
            clock: Timestamp(i64::MIN),
            evicted: 0,
            late: 0,
            peak: 0,
        }
    }

    /// Flows currently open.
    pub fn open_flows(&self) -> usize {
        self.flows.len()
    }

    /// Most flows open at once so far.
    pub fn peak_flows(&self) -> usize {
        self.peak
    }

    /// Flows evicted because the table was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Packets of connections already decided closed, absorbed within the linger.
    pub fn late_packets(&self) -> u64 {
        self.late
    }

    /// Routes one segment to its flow, creating or replacing the flow as needed. `clock`
    /// is the capture clock at this frame (at least `ctx.ts`, never decreasing).
    pub fn process(&mut self, seg: &TcpSegment<'_>, ctx: &Ctx, clock: Timestamp) {
        let (key, src_is_lo) = FlowKey::with_side(seg.src, seg.dst);
        let hash = self.hash(&key);
        self.process_with((&key, src_is_lo), hash, seg, ctx, clock, |_| ());
    }

    /// The hash of `key` in this table (for [`FlowTable::process_with`] and
    /// [`FlowTable::prefetch_slot`]).
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    /// [`FlowTable::process`] for a segment whose key, side and hash the caller has
    /// computed (they are `FlowKey::with_side(seg.src, seg.dst)` and
    /// [`FlowTable::hash`] of the key); `then` sees the flow when it is still open
    /// afterwards, and its result is returned. One hash lookup for a packet of an open
    /// flow.
    pub fn process_with<R>(
        &mut self,
        (key, src_is_lo): (&FlowKey, bool),
        hash: u64,
        seg: &TcpSegment<'_>,
        ctx: &Ctx,
        clock: Timestamp,
        then: impl FnOnce(&mut Flow<H>) -> R,
    ) -> Option<R> {
        debug_assert_eq!((*key, src_is_lo), FlowKey::with_side(seg.src, seg.dst));
        debug_assert_eq!(hash, self.hash(key));
        self.advance(clock);
        let here = Decided::at_packet(self.clock, ctx.frame);
        let cfg = self.cfg;
        let at = match self.place(hash, key) {
            Some(at) if !self.slab[at].is_reuse(seg, self.slab[at].dir_of_side(src_is_lo)) => at,
            Some(_) => {
                if let Some(old) = self.take(key) {
                    self.retire(*key, old, EndReason::PortReuse, here);
                }
                self.open((*key, src_is_lo), hash, seg, ctx, here)
            }
            None => {
                if let Some(tomb) = self.tombs.get_mut(key) {
                    if tomb.until >= self.clock.0 && tomb.absorbs(seg) {
                        self.late += 1;
                        return None;
                    }
                    self.tombs.remove(key);
                }
                self.open((*key, src_is_lo), hash, seg, ctx, here)
            }
        };
        let flow = &mut self.slab[at];
        // The wait follows FINs, RSTs and the ACK of a FIN: a packet can shorten it only if
        // it carries a FIN or RST, or once a FIN was seen (most packets do neither).
        let closing =
            seg.flags.0 & (TcpFlags::FIN | TcpFlags::RST) != 0 || flow.half.iter().any(|h| h.fin);
        let wait = closing.then(|| flow.wait(&cfg).0);
        flow.process(seg, flow.dir_of_side(src_is_lo), ctx);
        // A close shortened the flow's wait: its queued deadline may now be too late.
        let sooner = wait
            .filter(|&w| flow.wait(&cfg).0 < w)
            .map(|_| flow.deadline_entry(&cfg));
        let r = then(flow);
        if let Some((kind, deadline)) = sooner {
            self.deadlines.push(kind, deadline);
        }
        Some(r)
    }

    /// Adds a new flow for `seg` (evicting if the table is full) and returns its place in
    /// the slab. `hash` is the key's; `side` as for [`FlowTable::process_with`].
    fn open(
        &mut self,
        side: (FlowKey, bool),
        hash: u64,
        seg: &TcpSegment<'_>,
        ctx: &Ctx,
        here: Decided,
    ) -> usize {
        let cfg = self.cfg;
        if self.slab.len() >= cfg.max_flows {
            self.evict(here);
        }
        let body = match self.spare.pop() {
            Some(mut body) => {
                body.reset(cfg.limits);
                body
            }
            None => Box::new(Body::new(cfg.limits)),
        };
        let f = Flow::new(side, seg, ctx, body);
        let (kind, deadline) = f.deadline_entry(&cfg);
        self.deadlines.push(kind, deadline);
        let at = self.slab.len();
        self.peak = self.peak.max(at + 1);
        self.slab.push(f);
        self.flows.insert(hash, at as u32);
        at
    }

    /// The place in the slab of the open flow of `key`, whose hash is `hash`.
    #[inline]
    fn place(&self, hash: u64, key: &FlowKey) -> Option<usize> {
        let slab = &self.slab;
        let at = self.flows.find(hash, |at| slab[at as usize].key == *key)?;
        Some(at as usize)
    }

    /// The open flow of `key`.
    fn flow(&self, key: &FlowKey) -> Option<&Flow<H>> {
        let at = self.place(self.hash(key), key)?;
        Some(&self.slab[at])
    }

    /// The first of three hints a worker gives for a segment a few places ahead, so that
    /// the cache misses of different segments overlap (hints only: nothing changes, and a
    /// flow whose hash equals the key's is taken for its flow). First: load the index
    /// line where the lookup of `hash` ([`FlowTable::hash`]) starts.
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        self.flows.prefetch(hash);
    }

    /// The second hint, once the index line is in: load the flow's first lines (its key
    /// and per-packet TCP facts) and the line of its body pointer.
    #[inline]
    pub fn prefetch_flow(&self, hash: u64) {
        if let Some(f) = self.any_flow_of(hash) {
            prefetch_line(f);
            prefetch_line(&f.a_is_lo);
            prefetch_line(&f.body);
        }
    }

    /// The third hint, once the flow is in: load the state of the byte stream that a
    /// segment from the key's low end (when `src_is_lo`) or high end feeds, and of its
    /// handler.
    #[inline]
    pub fn prefetch_stream(&self, hash: u64, src_is_lo: bool) {
        if let Some(f) = self.any_flow_of(hash) {
            let dir = f.dir_of_side(src_is_lo);
            f.body.streams[dir.idx()].prefetch();
            f.body.handler.prefetch(dir);
        }
    }

    /// The first open flow of the index with this hash: the flow of a key of that hash,
    /// but for a collision.
    #[inline]
    fn any_flow_of(&self, hash: u64) -> Option<&Flow<H>> {
        let at = self.flows.find(hash, |_| true)?;
        self.slab.get(at as usize)
    }

    /// Takes the open flow of `key` out of the table. The last flow of the slab moves
    /// into its place.
    fn take(&mut self, key: &FlowKey) -> Option<Flow<H>> {
        let hash = self.hash(key);
        let slab = &self.slab;
        let at = self
            .flows
            .remove(hash, |at| slab[at as usize].key == *key)?;
        let flow = self.slab.swap_remove(at as usize);
        if let Some(moved) = self.slab.get(at as usize) {
            let last = self.slab.len() as u32;
            let replaced = self.flows.replace(self.hash(&moved.key), last, at);
            debug_assert!(replaced);
        }
        Some(flow)
    }

    /// Moves the capture clock to `clock` (never back) and ends every flow whose deadline
    /// it passed, in deadline order.
    #[inline]
    pub fn advance(&mut self, clock: Timestamp) {
        if clock <= self.clock {
            return;
        }
        self.clock = clock;
        // The clock moves with nearly every packet; a deadline passes far more rarely.
        if self.deadlines.next_at() < clock.0 {
            self.expire(clock);
        }
    }

    /// Ends what [`FlowTable::advance`] found past its deadline.
    fn expire(&mut self, clock: Timestamp) {
        let mut expired = std::mem::take(&mut self.expired);
        while self.deadlines.next_at() < clock.0 {
            let Some(d) = self.deadlines.pop() else {
                break;
            };
            if d.tomb {
                if self
                    .tombs
                    .get(&d.key)
                    .is_some_and(|t| t.first_frame == d.first_frame && t.until == d.at)
                {
                    self.tombs.remove(&d.key);
                }
                continue;
            }
            let Some(flow) = self.flow(&d.key) else {
                continue;
            };
            if flow.first_frame != d.first_frame {
                continue;
            }
            let at = flow.deadline(&self.cfg);
            if at < clock.0 {
                let decided = Decided {
                    clock: at,
                    phase: 1,
                    frame: flow.first_frame,
                };
                expired.push((decided, d.key));
            } else if at != d.at {
                let (kind, deadline) = flow.deadline_entry(&self.cfg);
                self.deadlines.push(kind, deadline);
            }
        }
        // Stale entries pop in their own order; records follow the real deadlines.
        // A flow with two entries (its timeout and its linger) appears twice, adjacent.
        expired.sort_unstable();
        expired.dedup_by_key(|(_, k)| *k);
        for (decided, key) in expired.drain(..) {
            let reason = match self.flow(&key) {
                Some(f) if f.is_closed() || f.close_complete() => EndReason::Closed,
                _ => EndReason::Idle,
            };
            self.end(key, reason, decided);
        }
        self.expired = expired;
    }

    fn end(&mut self, key: FlowKey, reason: EndReason, decided: Decided) {
        if let Some(flow) = self.take(&key) {
            self.retire(key, flow, reason, decided);
        }
    }

    /// Ends `flow`, just taken out of the table: a tombstone if it closed, then the list
    /// of finished flows.
    fn retire(&mut self, key: FlowKey, mut flow: Flow<H>, reason: EndReason, decided: Decided) {
        if reason == EndReason::Closed && self.tombs.len() < self.cfg.max_flows {
            let until = decided.clock.saturating_add(self.cfg.closed_linger);
            let tomb = Tomb {
                until,
                first_frame: flow.first_frame,
                a: flow.a,
                next: [flow.half[0].next_seq(), flow.half[1].next_seq()],
            };
            self.tombs.insert(key, tomb);
            let deadline = Deadline {
                at: until,
                first_frame: flow.first_frame,
                key,
                tomb: true,
            };
            self.deadlines.push(Kind::Tomb, deadline);
        }
        flow.finish(reason);
        self.finished.push(Finished { decided, flow });
        self.compact_deadlines();
    }

    /// Rebuilds the deadlines from the open flows and tombstones once stale entries (of
    /// flows that ended, or whose deadline moved) outnumber them three to one (see
    /// [`deadlines_cap`]): the queue then follows what is open, not every flow seen within
    /// the idle timeout. Entries are checked against the flow when they come due either
    /// way, so this changes no decision: each flow keeps one entry, at its current
    /// deadline.
    fn compact_deadlines(&mut self) {
        let live = self.flows.len() + self.tombs.len();
        if self.deadlines.len() <= deadlines_cap(live) {
            return;
        }
        let cfg = self.cfg;
        let mut entries = Vec::with_capacity(live);
        entries.extend(self.slab.iter().map(|f| f.deadline_entry(&cfg)));
        entries.extend(self.tombs.iter().map(|(&key, t)| {
            let deadline = Deadline {
                at: t.until,
                first_frame: t.first_frame,
                key,
                tomb: true,
            };
            (Kind::Tomb, deadline)
        }));
        self.deadlines.rebuild(entries);
    }

    /// Evicts the least recently active eighth of the table (at least one flow).
    fn evict(&mut self, here: Decided) {
        let mut by_age: Vec<(u64, FlowKey)> =
            self.slab.iter().map(|f| (f.last_frame, f.key)).collect();
        by_age.sort_unstable();
        let n = (by_age.len() / 8).max(1);
        for (_, k) in by_age.into_iter().take(n) {
            self.evicted += 1;
            self.end(k, EndReason::Evicted, here);
        }
    }

    /// Hands the flows that have ended so far, in decision order, to `report`, which
    /// gives back each one's body once it has read it: the bodies serve new flows (up to
    /// `SPARE_BODIES` are kept).
    pub fn report_finished(&mut self, mut report: impl FnMut(Finished<H>) -> Box<Body<H>>) {
        let mut finished = std::mem::take(&mut self.finished);
        for f in finished.drain(..) {
            let body = report(f);
            if self.spare.len() < SPARE_BODIES {
                self.spare.push(body);
            }
        }
        // Its room serves the next ones.
        self.finished = finished;
    }

    /// Whether flows have ended since the last [`FlowTable::report_finished`].
    pub fn has_finished(&self) -> bool {
        !self.finished.is_empty()
    }

    /// Ends every open flow (end of input), in first-frame order, after the flows already
    /// finished; returns them all.
    pub fn finish_all(&mut self) -> std::vec::Drain<'_, Finished<H>> {
        let mut keys: Vec<(u64, FlowKey)> =
            self.slab.iter().map(|f| (f.first_frame, f.key)).collect();
        keys.sort_unstable();
        for (first_frame, k) in keys {
            let decided = Decided {
                clock: i64::MAX,
                phase: 2,
                frame: first_frame,
            };
            self.end(k, EndReason::EndOfInput, decided);
        }
        self.tombs.clear();
        self.deadlines.clear();
        self.finished.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[derive(Default, Debug)]
    struct Bytes([Vec<u8>; 2]);

    impl StreamHandler for Bytes {
        fn on_chunk(&mut self, dir: Dir, chunk: Chunk<'_>, _ctx: &Ctx) -> Consumed {
            if let Chunk::Data(d) = chunk {
                self.0[dir.idx()].extend_from_slice(d);
            }
            Consumed::Read
        }
        fn wants(&self, _dir: Dir) -> bool {
            true
        }
    }

    const C: u16 = 40000;
    const S: u16 = 443;

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            ip: IpAddr::from([10, 0, 0, if port == S { 2 } else { 1 }]),
            port,
        }
    }

    /// Feeds `(secs, from_client, flags, seq, ack, payload)` packets as frames 1, 2, ...
    /// of client port `cport`, returning (frame, reason, decided) of finished flows.
    struct Run {
        t: FlowTable<Bytes>,
        frame: u64,
        clock: Timestamp,
        out: Vec<(u64, EndReason, Decided)>,
    }

    impl Run {
        fn new(cfg: TableConfig) -> Run {
            Run {
                t: FlowTable::new(cfg),
                frame: 0,
                clock: Timestamp(0),
                out: Vec::new(),
            }
        }
        fn pkt(&mut self, secs: i64, cport: u16, to_server: bool, flags: u8, seq: u32, ack: u32) {
            self.frame += 1;
            let ts = Timestamp(secs * 1_000_000_000);
            self.clock = self.clock.max(ts);
            let (src, dst) = if to_server {
                (ep(cport), ep(S))
            } else {
                (ep(S), ep(cport))
            };
            let seg = TcpSegment {
                src,
                dst,
                seq,
                ack,
                flags: TcpFlags(flags),
                payload: b"",
                wire_len: 0,
                ifindex: None,
            };
            let ctx = Ctx {
                frame: self.frame,
                ts,
            };
            self.t.process(&seg, &ctx, self.clock);
            self.collect();
        }
        fn collect(&mut self) {
            let out = &mut self.out;
            self.t.report_finished(|f| {
                out.push((f.flow.first_frame, f.flow.end.unwrap(), f.decided));
                f.flow.body
            });
        }
    }

    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;
    const FIN: u8 = TcpFlags::FIN;
    const RST: u8 = TcpFlags::RST;

    fn expiry(secs: i64, first_frame: u64) -> Decided {
        Decided {
            clock: secs * 1_000_000_000,
            phase: 1,
            frame: first_frame,
        }
    }

    #[test]
    fn key_and_per_packet_fields_fill_the_first_two_cache_lines() {
        use std::mem::{align_of, offset_of, size_of};
        type F = Flow<Bytes>;
        assert_eq!(align_of::<F>(), 64);
        assert_eq!(offset_of!(F, key), 0);
        assert!(size_of::<HalfFlow>() <= 32);
        // The key and everything a packet without payload reads or writes.
        for end in [
            offset_of!(F, half) + size_of::<[HalfFlow; 2]>(),
            offset_of!(F, a_is_lo) + 1,
            offset_of!(F, noted) + 1,
        ] {
            assert!(end <= 128, "{end}");
        }
    }

    #[test]
    fn a_close_is_decided_a_grace_after_the_last_ack_and_late_packets_are_absorbed() {
        let mut r = Run::new(TableConfig::default());
        r.pkt(0, C, true, SYN, 100, 0);
        r.pkt(0, C, false, SYN | ACK, 500, 101);
        r.pkt(0, C, true, ACK, 101, 501);
        r.pkt(10, C, true, FIN | ACK, 101, 501);
        r.pkt(10, C, false, FIN | ACK, 501, 102);
        r.t.advance(Timestamp(12_000_000_000));
        r.collect();
        assert!(r.out.is_empty(), "the server's FIN is not acknowledged yet");
        r.pkt(12, C, true, ACK, 102, 502);
        // A RST right after the close still counts in the flow.
        r.pkt(12, C, true, RST, 102, 0);
        assert!(r.out.is_empty());
        r.pkt(14, 1234, true, SYN, 7, 0); // another flow moves the clock on
        assert_eq!(r.out, [(1, EndReason::Closed, expiry(13, 1))]);
        // Later, a retransmitted FIN is absorbed, not a new flow.
        r.pkt(15, C, false, FIN | ACK, 501, 102);
        assert_eq!(r.t.late_packets(), 1);
        // A new SYN on the same ports is a new connection.
        r.pkt(16, C, true, SYN, 9000, 0);
        let rest: Vec<_> = r.t.finish_all().map(|f| f.flow.first_frame).collect();
        assert_eq!(rest, [8, 10]);
    }

    #[test]
    fn a_reset_is_a_close_but_not_one_from_another_sequence_space() {
        let mut r = Run::new(TableConfig::default());
        r.pkt(0, C, true, SYN, 1, 0);
        r.pkt(0, C, false, ACK, 777, 3_000_000_000);
        // The client answers the stray ACK with a RST far from its own sequence: the
        // connection attempt goes on (its SYN is retransmitted with the same ISN).
        r.pkt(0, C, true, RST, 900_000_000, 0);
        r.pkt(3, C, true, SYN, 1, 0);
        r.pkt(3, C, false, SYN | ACK, 50, 2);
        r.pkt(3, C, false, RST | ACK, 51, 2);
        r.t.advance(Timestamp(5_000_000_000));
        r.collect();
        assert_eq!(r.out, [(1, EndReason::Closed, expiry(4, 1))]);
    }

    #[test]
    fn deadlines_follow_open_flows_not_every_flow_seen() {
        // Thousands of flows reset one after another: each leaves a stale idle-timeout
        // entry, which compaction drops; every flow is still decided, in order.
        let cfg = TableConfig {
            closed_linger: 1_000_000_000,
            idle_timeout: 100_000 * 1_000_000_000,
            ..TableConfig::default()
        };
        let mut r = Run::new(cfg);
        for i in 0..5000u16 {
            let secs = i64::from(i) * 2;
            r.pkt(secs, 1000 + i, true, SYN, 1, 0);
            r.pkt(secs, 1000 + i, false, RST | ACK, 0, 2);
            let live = r.t.flows.len() + r.t.tombs.len();
            assert!(
                r.t.deadlines.len() <= deadlines_cap(live),
                "{}",
                r.t.deadlines.len()
            );
        }
        r.t.advance(Timestamp(200_000 * 1_000_000_000));
        r.collect();
        assert_eq!(r.out.len(), 5000);
        let frames: Vec<u64> = r.out.iter().map(|o| o.0).collect();
        assert!(frames.is_sorted(), "decided in the order they closed");
        assert!(r.out.iter().all(|o| o.1 == EndReason::Closed));
    }

    #[test]
    fn expiry_follows_the_capture_clock_in_deadline_order() {
        let cfg = TableConfig {
            idle_timeout: 10_000_000_000,
            ..TableConfig::default()
        };
        let mut r = Run::new(cfg);
        r.pkt(0, 1001, true, SYN, 1, 0); // frame 1, deadline 10 s
        r.pkt(1, 1002, true, SYN, 1, 0); // frame 2, deadline 11 s
        r.pkt(2, 1001, true, ACK, 2, 0); // flow 1 active: deadline 12 s
        r.pkt(3, 1003, true, SYN, 1, 0); // frame 4, deadline 13 s
        // A clock tick (another shard's packet) at 12.5 s expires flow 2 then flow 1.
        r.t.advance(Timestamp(12_500_000_000));
        r.collect();
        let got: Vec<(u64, i64)> = r.out.iter().map(|(f, _, d)| (*f, d.clock)).collect();
        assert_eq!(got, [(2, 11_000_000_000), (1, 12_000_000_000)]);
        assert!(
            r.out
                .iter()
                .all(|(_, e, d)| *e == EndReason::Idle && d.phase == 1)
        );
        let rest: Vec<_> = r.t.finish_all().map(|f| f.decided).collect();
        assert_eq!(
            rest,
            [Decided {
                clock: i64::MAX,
                phase: 2,
                frame: 4
            }]
        );
    }

    #[test]
    fn a_close_without_its_final_ack_ends_after_the_linger() {
        let mut r = Run::new(TableConfig::default());
        r.pkt(0, C, true, SYN, 100, 0);
        r.pkt(0, C, false, SYN | ACK, 500, 101);
        r.pkt(1, C, true, FIN | ACK, 101, 501);
        r.pkt(1, C, false, FIN | ACK, 501, 102);
        r.t.advance(Timestamp(30_000_000_000));
        r.collect();
        assert!(r.out.is_empty(), "30 s is not past the linger");
        r.t.advance(Timestamp(31_000_000_001));
        r.collect();
        assert_eq!(r.out.len(), 1);
        assert_eq!(
            (r.out[0].1, r.out[0].2.clock),
            (EndReason::Closed, 31_000_000_000)
        );
    }
}
