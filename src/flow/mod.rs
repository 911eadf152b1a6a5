//! Flow: TCP connections, their lifecycle, and per-direction reassembly.
//!
//! A [`FlowTable`] owns the flows of one shard. Each [`Flow`] counts packets and bytes,
//! follows SYN/FIN/RST, and feeds each direction's reassembled bytes to a
//! [`StreamHandler`] (the analyzers, which live to the right of this module and plug in
//! through that trait). Flows end when the capture ends, when they are closed and quiet
//! for [`TableConfig::closed_linger`], when idle past [`TableConfig::idle_timeout`], when
//! a new SYN reuses their ports, or when the table is full.
//!
//! Expiry is decided from capture time when a packet arrives, so the outcome does not
//! depend on how flows are spread over shards; sweeps only free memory early.

pub mod key;
pub mod reassembly;

use std::collections::HashMap;

use crate::capture::Timestamp;
use crate::decode::{Endpoint, TcpFlags, TcpSegment};
pub use key::{Dir, FlowKey};
pub use reassembly::{Chunk, Limits, Reassembler, SeqNum, Stats};

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
    /// Bytes (or a gap) of direction `dir`, in stream order.
    fn on_chunk(&mut self, dir: Dir, chunk: Chunk<'_>, ctx: &Ctx);
    /// Whether the handler still needs `dir`'s bytes; once false, reassembly of that
    /// direction stops and only counting continues.
    fn wants(&self, dir: Dir) -> bool;
}

/// Per-direction TCP facts.
#[derive(Debug)]
pub struct HalfFlow {
    /// Packets sent in this direction.
    pub packets: u64,
    /// TCP payload bytes on the wire (retransmissions included).
    pub bytes: u64,
    /// Sequence number of this direction's SYN, if seen.
    pub syn_seq: Option<u32>,
    /// A SYN with ACK was sent in this direction.
    pub syn_ack: bool,
    /// A FIN was sent in this direction.
    pub fin: bool,
    /// A RST was sent in this direction.
    pub rst: bool,
    /// Frame of the first payload byte sent in this direction.
    pub first_data_frame: Option<u64>,
    /// Linux cooked v2 interface index of the first packet in this direction.
    pub ifindex: Option<u32>,
    /// The byte stream.
    pub stream: Reassembler,
}

impl HalfFlow {
    fn new(limits: Limits) -> HalfFlow {
        HalfFlow {
            packets: 0,
            bytes: 0,
            syn_seq: None,
            syn_ack: false,
            fin: false,
            rst: false,
            first_data_frame: None,
            ifindex: None,
            stream: Reassembler::new(limits),
        }
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

/// One TCP connection: endpoints, counters, and its stream handler.
#[derive(Debug)]
pub struct Flow<H> {
    /// Sender of the first packet seen.
    pub a: Endpoint,
    /// The other end.
    pub b: Endpoint,
    /// Frame number of the first packet.
    pub first_frame: u64,
    /// Frame number of the last packet.
    pub last_frame: u64,
    /// Time of the first packet.
    pub first_ts: Timestamp,
    /// Time of the last packet.
    pub last_ts: Timestamp,
    /// Per-direction facts, indexed by [`Dir::idx`].
    pub half: [HalfFlow; 2],
    /// Why the flow ended (set when it leaves the table).
    pub end: Option<EndReason>,
    /// The analyzers.
    pub handler: H,
}

impl<H: StreamHandler> Flow<H> {
    fn new(seg: &TcpSegment<'_>, ctx: &Ctx, limits: Limits, handler: H) -> Flow<H> {
        Flow {
            a: seg.src,
            b: seg.dst,
            first_frame: ctx.frame,
            last_frame: ctx.frame,
            first_ts: ctx.ts,
            last_ts: ctx.ts,
            half: [HalfFlow::new(limits), HalfFlow::new(limits)],
            end: None,
            handler,
        }
    }

    /// Direction of a segment sent by `src`.
    pub fn dir_of(&self, src: Endpoint) -> Dir {
        if src == self.a { Dir::AtoB } else { Dir::BtoA }
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
            if self.half[d.idx()].syn_seq.is_some() && !self.half[d.idx()].syn_ack {
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
        } else if x.syn_seq.is_none() && y.syn_seq.is_none() {
            TcpState::Midstream
        } else if x.syn_ack || y.syn_ack || (x.syn_seq.is_some() && y.packets > 0 && x.packets > 0)
        {
            TcpState::Established
        } else {
            TcpState::SynSent
        }
    }

    /// Reassembly counters of both directions.
    pub fn stats(&self, dir: Dir) -> Stats {
        self.half[dir.idx()].stream.stats()
    }

    fn is_closed(&self) -> bool {
        matches!(self.state(), TcpState::Closed | TcpState::Reset)
    }

    /// Whether `seg` opens a new connection on this flow's ports.
    fn is_reuse(&self, seg: &TcpSegment<'_>) -> bool {
        if !seg.flags.has(TcpFlags::SYN) || seg.flags.has(TcpFlags::ACK) {
            return false;
        }
        let h = &self.half[self.dir_of(seg.src).idx()];
        match h.syn_seq {
            Some(isn) => isn != seg.seq,
            None => self.is_closed() || h.packets > 0 && h.first_data_frame.is_some(),
        }
    }

    fn process(&mut self, seg: &TcpSegment<'_>, ctx: &Ctx) {
        let d = self.dir_of(seg.src);
        self.last_frame = ctx.frame;
        self.last_ts = self.last_ts.max(ctx.ts);
        let Flow { half, handler, .. } = self;
        let h = &mut half[d.idx()];
        h.packets += 1;
        h.bytes += u64::from(seg.wire_len);
        if h.ifindex.is_none() {
            h.ifindex = seg.ifindex;
        }
        let mut seq = SeqNum(seg.seq);
        if seg.flags.has(TcpFlags::SYN) {
            if h.syn_seq.is_none() {
                h.syn_seq = Some(seg.seq);
            }
            h.syn_ack |= seg.flags.has(TcpFlags::ACK);
            h.stream.syn(seq);
            seq = seq.wrapping_add(1);
        }
        if seg.wire_len > 0 {
            h.first_data_frame.get_or_insert(ctx.frame);
            if h.stream.is_active() {
                h.stream.segment(seq, seg.wire_len, seg.payload, &mut |c| {
                    handler.on_chunk(d, c, ctx)
                });
            }
        }
        h.fin |= seg.flags.has(TcpFlags::FIN);
        h.rst |= seg.flags.has(TcpFlags::RST);
        for d in [Dir::AtoB, Dir::BtoA] {
            if !handler.wants(d) && half[d.idx()].stream.is_active() {
                half[d.idx()].stream.stop();
            }
        }
    }

    /// Delivers what waits behind holes and marks the flow ended.
    fn finish(&mut self, reason: EndReason, ctx: &Ctx) {
        let Flow { half, handler, .. } = self;
        for d in [Dir::AtoB, Dir::BtoA] {
            half[d.idx()]
                .stream
                .flush(&mut |c| handler.on_chunk(d, c, ctx));
        }
        self.end = Some(reason);
    }
}

/// Bounds and timeouts of a flow table.
#[derive(Clone, Copy, Debug)]
pub struct TableConfig {
    /// Per-direction reassembly bounds.
    pub limits: Limits,
    /// Flows held at once by one table; the least recently active are evicted beyond it.
    pub max_flows: usize,
    /// A flow with no packet for this long (capture time, ns) ends.
    pub idle_timeout: i64,
    /// A closed or reset flow ends after this long without packets (ns).
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

/// Packets between memory sweeps of expired flows.
const SWEEP_EVERY: u64 = 16 * 1024;

/// The flows of one shard.
pub struct FlowTable<H> {
    cfg: TableConfig,
    flows: HashMap<FlowKey, Flow<H>>,
    finished: Vec<Flow<H>>,
    packets: u64,
    now: Timestamp,
    evicted: u64,
}

impl<H: StreamHandler + Default> FlowTable<H> {
    /// An empty table.
    pub fn new(cfg: TableConfig) -> FlowTable<H> {
        FlowTable {
            cfg,
            flows: HashMap::new(),
            finished: Vec::new(),
            packets: 0,
            now: Timestamp(0),
            evicted: 0,
        }
    }

    /// Flows currently open.
    pub fn open_flows(&self) -> usize {
        self.flows.len()
    }

    /// Flows evicted because the table was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Routes one segment to its flow, creating or replacing the flow as needed.
    pub fn process(&mut self, seg: &TcpSegment<'_>, ctx: &Ctx) {
        self.packets += 1;
        self.now = self.now.max(ctx.ts);
        let key = FlowKey::new(seg.src, seg.dst);
        if let Some(flow) = self.flows.get(&key) {
            let reason = if flow.is_reuse(seg) {
                Some(EndReason::PortReuse)
            } else {
                self.expiry(flow, ctx.ts)
            };
            if let Some(reason) = reason {
                self.end(key, reason, ctx);
            }
        }
        if !self.flows.contains_key(&key) && self.flows.len() >= self.cfg.max_flows {
            self.evict(ctx);
        }
        let limits = self.cfg.limits;
        self.flows
            .entry(key)
            .or_insert_with(|| Flow::new(seg, ctx, limits, H::default()))
            .process(seg, ctx);
        if self.packets.is_multiple_of(SWEEP_EVERY) {
            self.sweep(ctx);
        }
    }

    fn expiry(&self, flow: &Flow<H>, now: Timestamp) -> Option<EndReason> {
        let quiet = now.0.saturating_sub(flow.last_ts.0);
        if quiet > self.cfg.idle_timeout {
            Some(EndReason::Idle)
        } else if quiet > self.cfg.closed_linger && flow.is_closed() {
            Some(EndReason::Closed)
        } else {
            None
        }
    }

    fn end(&mut self, key: FlowKey, reason: EndReason, ctx: &Ctx) {
        if let Some(mut flow) = self.flows.remove(&key) {
            flow.finish(reason, ctx);
            self.finished.push(flow);
        }
    }

    /// Ends flows that any later packet would find expired anyway.
    fn sweep(&mut self, ctx: &Ctx) {
        let now = self.now;
        let expired: Vec<(FlowKey, EndReason)> = self
            .flows
            .iter()
            .filter_map(|(k, f)| self.expiry(f, now).map(|r| (*k, r)))
            .collect();
        for (k, r) in expired {
            self.end(k, r, ctx);
        }
    }

    /// Evicts the least recently active eighth of the table (at least one flow).
    fn evict(&mut self, ctx: &Ctx) {
        let mut by_age: Vec<(u64, FlowKey)> =
            self.flows.iter().map(|(k, f)| (f.last_frame, *k)).collect();
        by_age.sort_unstable();
        let n = (by_age.len() / 8).max(1);
        for (_, k) in by_age.into_iter().take(n) {
            self.evicted += 1;
            self.end(k, EndReason::Evicted, ctx);
        }
    }

    /// Takes the flows that have ended so far.
    pub fn take_finished(&mut self) -> Vec<Flow<H>> {
        std::mem::take(&mut self.finished)
    }

    /// Ends every open flow (end of input) and returns all ended flows.
    pub fn finish_all(&mut self) -> Vec<Flow<H>> {
        let ctx = Ctx {
            frame: 0,
            ts: self.now,
        };
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        for k in keys {
            self.end(k, EndReason::EndOfInput, &ctx);
        }
        self.take_finished()
    }
}
