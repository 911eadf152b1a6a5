//! The pipeline: one reader, N shard workers, one printer. The only module with threads.
//!
//! ```text
//!            ┌─ batch ─▶ worker 0 (FlowTable shard) ─┐
//! reader ────┼─ batch ─▶ worker 1                    ├─ records + watermark ─▶ printer
//! (capture,  └─ batch ─▶ worker N-1                 ─┘   (merge by decision)   (stdout)
//!  decode, shard)
//! ```
//!
//! * The **reader** reads frames, decodes them and appends each TCP segment (its payload
//!   copied once into a per-batch arena) to the batch of the worker that owns its flow
//!   (`FlowKey::shard`, symmetric). It keeps the *capture clock*, the largest timestamp
//!   seen so far, and stamps every segment with it. It hands the batches of *all* workers
//!   on together, each carrying the clock and the last frame number read: when one batch
//!   is full, when the source goes quiet (a pipe or an interface with nothing waiting),
//!   and at the end. A worker with no segment of its own thus still learns the time.
//!   Channels are bounded: a slow worker slows the reader instead of growing memory.
//! * Each **worker** owns its flow table (no locks on the hot path). It processes its
//!   segments, then advances its table to the batch's clock (ending the flows whose
//!   deadline passed), turns every finished flow into a record, and sends the records
//!   with a *watermark*: no later record of this worker can sort before it.
//! * The **printer** (the calling thread) merges the workers' records by their decision
//!   key ([`Decided`]) as soon as every worker's watermark has passed them, pairs the two
//!   legs of each request ([`Pairer`]: a record waits at most 4 s of capture time for its
//!   partner), and writes. It is the only writer to stdout.
//!
//! With `--threads 1` the reader runs the one shard itself (no batches, no copies); the
//! code path is otherwise the same.
//!
//! # Ordering contract
//!
//! Records come out in the order their flows were *decided* (closed, timed out, reused,
//! evicted, or — with `--early` — handshake seen), and the flows still open at the end of
//! input come last, by first frame. Decision points are computed from the capture alone:
//! a packet's frame number and the capture clock at it, or the deadline a flow's idle
//! timeout passed. So for a file, and for a stream on stdin that is read faster than its
//! timeouts (any pipe that does not stall for seconds), the bytes written are the same for
//! any `--threads`, and they stream: memory follows the flows open at once, not the size of
//! the input, and a record never waits for an unrelated long-lived flow. Only evictions
//! (`--max-flows` reached, counted in the summary) depend on how flows are spread over
//! workers.
//!
//! When a stream (stdin, an interface) stays quiet for [`IDLE_ADVANCE`] of wall time, the
//! capture clock moves on with the wall clock, so idle flows still time out; that part of
//! live output depends on timing, as it must.
//!
//! # Several inputs
//!
//! Captures are written in the order given, each followed by its summary. With several
//! files and several threads, up to `threads` files are analyzed at once (each with a
//! share of the threads); the first unfinished file streams to stdout while the others
//! fill bounded buffers, so output order and memory stay bounded.

use std::io::{self, IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prefetch_index::prefetch_index;

use crate::analyzers::ConnAnalyzer;
use crate::capture::{
    CACHE_LINE, CaptureError, CaptureReader, ChunkReader, Event, Frame, LinkType, MappedFile,
    SharedBlock, Timestamp,
};
use crate::decode::{self, Endpoint, TcpFlags, TcpSegment};
use crate::flow::{Ctx, Decided, FlowKey, FlowTable, TableConfig, prefetch_line};
use crate::report::table::TableWriter;
use crate::report::{self, Drops, FlowRecord, SCHEMA_VERSION, Summary};

/// Segments per batch sent to a worker. Larger batches mean fewer channel handoffs and
/// thread wakeups (the two workers, the reader and the printer share the cores); a
/// stream that goes quiet flushes its batches at once (see `Reader::idle`), so this does
/// not delay records of a live capture.
const BATCH: usize = 2048;
/// With one thread, segments the reader gathers before it runs them (as a worker runs a
/// batch) and hands their records to the printer.
const INLINE_FLUSH: usize = 512;
/// Groups of written records on their way back to a worker.
const RETURN_DEPTH: usize = 64;
/// Batches in flight per worker.
const CHANNEL_DEPTH: usize = 8;
/// Messages in flight from the workers to the printer.
const RECORD_CHANNEL_DEPTH: usize = 64;
/// How long a quiet stream waits for data before the reader looks at the clocks again.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Wall time a stream must stay quiet before its capture clock follows the wall clock.
pub const IDLE_ADVANCE: Duration = Duration::from_secs(1);
/// Bytes per read from standard input.
const STDIN_CHUNK: usize = 64 * 1024;
/// A progress bar appears once a file has taken this long.
const PROGRESS_AFTER: Duration = Duration::from_millis(1500);
/// Frames between progress updates.
const PROGRESS_EVERY: u64 = 16 * 1024;

/// Where packets come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A pcap or pcapng file.
    File(PathBuf),
    /// A pcap or pcapng stream on standard input.
    Stdin,
    /// A network interface (needs the `live` feature and capture privileges).
    Live(LiveOptions),
}

/// What to capture live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveOptions {
    /// Interface name (`any` for all, on Linux).
    pub interface: String,
    /// A BPF filter, as for tcpdump.
    pub filter: Option<String>,
    /// Bytes kept of each packet.
    pub snaplen: u32,
}

impl Input {
    /// The name used in records and messages.
    pub fn name(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "-".to_string(),
            Input::Live(l) => format!("live:{}", l.interface),
        }
    }

    /// Whether the input can go quiet and should be printed as it arrives.
    fn is_stream(&self) -> bool {
        !matches!(self, Input::File(_))
    }
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A table for people.
    Table,
    /// JSON Lines for programs.
    Jsonl,
}

/// A validated configuration (built by `cli` from flags; nothing here knows clap).
#[derive(Clone, Debug)]
pub struct Config {
    /// Inputs, reported in order.
    pub inputs: Vec<Input>,
    /// Output format.
    pub format: Format,
    /// Shard workers (1: the reader does all the work).
    pub threads: usize,
    /// Flow table bounds and timeouts; `max_flows` is the total over all workers.
    pub table: TableConfig,
    /// Table width (None: the terminal's).
    pub width: Option<u16>,
    /// Also write a record when a flow's handshake is decided (`end: "handshake"`),
    /// before its final record.
    pub early: bool,
    /// Show a progress bar on stderr for files that take a while.
    pub progress: bool,
    /// List capture interfaces instead of analyzing.
    pub list_interfaces: bool,
    /// Table output: under each row, the flow's evidence, pairing and diagnosis.
    pub explain: bool,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every input was read to its end (or reading was interrupted by a signal).
    Ok,
    /// At least one input could not be read (or only in part).
    InputError,
}

/// Set by SIGINT/SIGTERM (and by a closed stdout): stop reading, report what was seen.
fn stop_flag() -> &'static Arc<AtomicBool> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    STOP.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // A second signal while the first is being handled exits at once.
            let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag));
            let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
        }
        flag
    })
}

/// Whether reading was asked to stop.
fn stopping() -> bool {
    stop_flag().load(Ordering::Relaxed)
}

/// Segment metadata; the payload lives in one of the batch's blocks or in its arena.
#[derive(Clone, Copy, Debug)]
struct SegMeta {
    /// The flow's key, computed once by the reader (it picks the shard by it).
    key: FlowKey,
    /// The segment's source is the key's low end.
    src_is_lo: bool,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    wire_len: u32,
    ifindex: Option<u32>,
    frame: u64,
    ts: Timestamp,
    clock: Timestamp,
    /// Where the payload is: `Batch::blocks[block - 1]`, or the arena when 0.
    block: u32,
    start: u32,
    len: u32,
}

/// Segments for one worker, and how far the reader had read when it sent them.
#[derive(Default)]
struct Batch {
    segs: Vec<SegMeta>,
    /// The reader's shared blocks that payloads lie in (held, not copied).
    blocks: Vec<SharedBlock>,
    /// Payloads of frames that came without a shared block (pcapng, live), copied.
    data: Vec<u8>,
    clock: Timestamp,
    frame: u64,
}

impl Batch {
    /// An empty batch with room for `segs` segments: a batch grown from nothing copies
    /// its segments at every doubling, and the first batches of an input are all new.
    fn with_room(segs: usize) -> Batch {
        Batch {
            segs: Vec::with_capacity(segs),
            ..Batch::default()
        }
    }

    fn push(
        &mut self,
        (key, src_is_lo): (FlowKey, bool),
        seg: &TcpSegment<'_>,
        frame: &Frame<'_>,
        clock: Timestamp,
    ) {
        let (block, start) = match frame
            .block
            .and_then(|b| Some((b, offset_in(b, seg.payload)?)))
        {
            Some((b, start)) => {
                if self.blocks.last().is_none_or(|last| !Arc::ptr_eq(last, b)) {
                    self.blocks.push(Arc::clone(b));
                }
                (self.blocks.len() as u32, start)
            }
            None => {
                let start = self.data.len();
                self.data.extend_from_slice(seg.payload);
                (0, start)
            }
        };
        self.segs.push(SegMeta {
            key,
            src_is_lo,
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags,
            wire_len: seg.wire_len,
            ifindex: seg.ifindex,
            frame: frame.number,
            ts: frame.ts,
            clock,
            block,
            start: start as u32,
            len: seg.payload.len() as u32,
        });
    }

    /// Segment `m`'s payload.
    fn payload(&self, m: &SegMeta) -> &[u8] {
        let bytes = match m.block {
            0 => &self.data[..],
            b => &self.blocks[b as usize - 1][..],
        };
        &bytes[m.start as usize..][..m.len as usize]
    }

    /// Empties the batch for reuse, letting go of its blocks.
    fn clear(&mut self) {
        self.segs.clear();
        self.blocks.clear();
        self.data.clear();
    }
}

/// Where `part` starts in `block`, if it lies in it and is not empty (an empty payload
/// needs no block).
fn offset_in(block: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(block.as_ptr() as usize)?;
    (!part.is_empty() && start + part.len() <= block.len()).then_some(start)
}

/// A record on its way to the printer: its decision, the record (the printer counts it
/// and renders table rows from it) and, for JSON Lines, its line already serialized by
/// the worker (serialization is parallel; the printer only writes bytes).
struct Out {
    decided: Decided,
    /// Boxed: a record is about 1.5 KB, and it moves through the worker's list, the
    /// channel, the merger's queue, the pairer's map and the printer's list.
    record: Box<FlowRecord>,
    line: Option<Vec<u8>>,
    /// The shard that made it: once written, it goes back there to be freed (a free
    /// where the memory was allocated is far cheaper than one from another thread) and
    /// its line buffer reused.
    shard: usize,
}

/// Records written, returned to the shard that made them.
struct Returns {
    /// Per shard: where to send them (none with one thread: they are freed in place).
    to: Vec<SyncSender<Vec<Out>>>,
    held: Vec<Vec<Out>>,
}

impl Returns {
    /// Records go back in groups of this many.
    const GROUP: usize = 64;

    fn new(to: Vec<SyncSender<Vec<Out>>>) -> Returns {
        Returns {
            held: to.iter().map(|_| Vec::new()).collect(),
            to,
        }
    }

    fn give_back(&mut self, o: Out) {
        let Some(tx) = self.to.get(o.shard) else {
            return;
        };
        let held = &mut self.held[o.shard];
        held.push(o);
        if held.len() >= Self::GROUP {
            // A shard that does not keep up frees nothing here: the group is dropped
            // (freed from this thread) rather than waited for.
            let _ = tx.try_send(std::mem::take(held));
        }
    }

    /// Sends back the groups not yet full (the workers wait for them once they are done).
    fn flush(&mut self) {
        for (tx, held) in self.to.iter().zip(&mut self.held) {
            if !held.is_empty() {
                let _ = tx.try_send(std::mem::take(held));
            }
        }
    }
}

/// From a worker to the printer.
enum ToPrinter {
    /// Records (in decision order) and the worker's new watermark.
    Progress {
        shard: usize,
        records: Vec<Out>,
        upto: Decided,
    },
    /// The worker is done; its counters.
    Done { stats: ShardStats },
}

/// Counters a shard adds to the summary.
#[derive(Clone, Copy, Debug, Default)]
struct ShardStats {
    evicted: u64,
    late: u64,
}

/// One shard's flow table and the records it has decided but not yet sent.
struct Shard {
    table: FlowTable<ConnAnalyzer>,
    /// The capture's name as its records hold it (one copy per shard: taking a reference
    /// touches no other core's cache line).
    capture: Arc<str>,
    early: bool,
    /// Bytes at a payload's end that reassembly may copy (its retransmission window).
    tail: usize,
    out: Outbox,
}

/// Records a shard has decided and not yet sent, with their JSON lines.
struct Outbox {
    index: usize,
    jsonl: bool,
    records: Vec<Out>,
    /// Line buffers of records the printer has written, to serialize new ones into.
    lines: Vec<Vec<u8>>,
}

/// Bytes of the next line buffer hinted (a line is ~2 KB).
const LINE_HINT: usize = 4096;

impl Outbox {
    /// Line buffers kept for reuse.
    const LINES: usize = 256;

    /// Adds a record (and its JSON line, for JSON Lines).
    fn push(&mut self, decided: Decided, record: Box<FlowRecord>) {
        let line = self.jsonl.then(|| {
            let mut v = self.lines.pop().unwrap_or_else(|| Vec::with_capacity(2048));
            report::json::write_flow(&mut v, &record);
            v.push(b'\n');
            // The next record is written into the next buffer: it came back from the
            // printer long ago and is cold by now (with worker threads); hint its lines.
            if let Some(next) = self.lines.last_mut() {
                let room = &next.spare_capacity_mut()[..];
                let len = room.len().min(LINE_HINT);
                for at in lines_of_tail(room.as_ptr() as usize, len, len) {
                    prefetch_index(room, at);
                }
            }
            v
        });
        self.records.push(Out {
            decided,
            record,
            line,
            shard: self.index,
        });
    }

    /// Takes back records the printer has written: frees them here, keeps line buffers.
    fn recycle(&mut self, spent: Vec<Out>) {
        for o in spent {
            if let Some(mut line) = o.line
                && self.lines.len() < Self::LINES
            {
                line.clear();
                self.lines.push(line);
            }
        }
    }
}

impl Shard {
    fn new(cfg: &Config, shards: usize, index: usize, name: &str) -> Shard {
        let table = TableConfig {
            max_flows: cfg.table.max_flows.div_ceil(shards).max(1),
            ..cfg.table
        };
        Shard {
            table: FlowTable::new(table),
            capture: Arc::from(name),
            early: cfg.early,
            tail: cfg.table.limits.retransmit_window,
            out: Outbox {
                index,
                jsonl: cfg.format == Format::Jsonl,
                records: Vec::new(),
                lines: Vec::new(),
            },
        }
    }

    fn segment(
        &mut self,
        side: (&FlowKey, bool),
        hash: u64,
        seg: &TcpSegment<'_>,
        frame: u64,
        ts: Timestamp,
        clock: Timestamp,
    ) {
        let ctx = Ctx { frame, ts };
        let (early, capture) = (self.early, &self.capture);
        let early = self
            .table
            .process_with(side, hash, seg, &ctx, clock, |f| {
                // The record comes boxed: the closure's result is moved out through
                // `Option`s, and a record is large.
                (early && !f.noted && handshake_decided(f.handler())).then(|| {
                    f.noted = true;
                    let mut r = report::flow_record(f, capture);
                    r.end = EARLY_END;
                    r
                })
            })
            .flatten();
        self.collect();
        if let Some(r) = early {
            self.out.push(Decided::at_packet(clock, frame), r);
        }
    }

    /// Processes a batch's segments in order, hinting what the segments a few places
    /// ahead will read so that their cache misses overlap with this segment's work.
    fn run(&mut self, batch: &Batch) {
        let segs = &batch.segs;
        // The flow-table hashes of the segments up to SLOT_AHEAD places ahead, by index
        // modulo their count.
        let mut hashes = [0u64; HASHES];
        for (h, m) in hashes.iter_mut().zip(segs.iter().take(SLOT_AHEAD)) {
            *h = self.table.hash(&m.key);
        }
        for (i, m) in segs.iter().enumerate() {
            // What the segments a few places ahead will read, asked for now so that the
            // loads overlap: their metadata, their index line, then their flow, then its
            // byte stream and their payload.
            if let Some(a) = segs.get(i + 2 * SLOT_AHEAD) {
                // Written by the reader's core: not in this one's cache.
                prefetch_line(&a.key);
                prefetch_line(&a.clock);
                prefetch_line(&a.len);
            }
            if let Some(a) = segs.get(i + SLOT_AHEAD) {
                let hash = self.table.hash(&a.key);
                hashes[(i + SLOT_AHEAD) % HASHES] = hash;
                self.table.prefetch_slot(hash);
            }
            if segs.len() > i + FLOW_AHEAD {
                self.table.prefetch_flow(hashes[(i + FLOW_AHEAD) % HASHES]);
            }
            if let Some(a) = segs.get(i + STREAM_AHEAD) {
                let hash = hashes[(i + STREAM_AHEAD) % HASHES];
                self.table.prefetch_stream(hash, a.src_is_lo);
                prefetch_payload(batch.payload(a), self.tail);
            }
            let hash = hashes[i % HASHES];
            let (src, dst) = m.key.endpoints(m.src_is_lo);
            let seg = TcpSegment {
                src,
                dst,
                seq: m.seq,
                ack: m.ack,
                flags: m.flags,
                payload: batch.payload(m),
                wire_len: m.wire_len,
                ifindex: m.ifindex,
            };
            self.segment((&m.key, m.src_is_lo), hash, &seg, m.frame, m.ts, m.clock);
        }
    }

    fn advance(&mut self, clock: Timestamp) {
        self.table.advance(clock);
        self.collect();
    }

    /// Turns the flows the table finished into records. Runs after every segment, so the
    /// usual case, nothing finished, costs only a look at the table's list.
    #[inline]
    fn collect(&mut self) {
        if self.table.has_finished() {
            self.collect_finished();
        }
    }

    /// [`Shard::collect`]'s work, out of line: the check above runs after every segment.
    #[inline(never)]
    fn collect_finished(&mut self) {
        let (capture, out) = (&self.capture, &mut self.out);
        self.table.report_finished(|f| {
            let (record, body) = report::finished_record(f.flow, capture);
            out.push(f.decided, record);
            body
        });
    }

    fn finish(&mut self) -> ShardStats {
        let (capture, out) = (&self.capture, &mut self.out);
        for f in self.table.finish_all() {
            out.push(f.decided, report::finished_record(f.flow, capture).0);
        }
        ShardStats {
            evicted: self.table.evicted(),
            late: self.table.late_packets(),
        }
    }
}

/// Hints the lines of a payload that its segment's processing reads: the first (where
/// the analyzers look) and those of the last `tail` bytes, which reassembly copies to
/// compare retransmissions against. With worker threads the payload was last read on the
/// reader's core; a line not hinted is fetched from there when it is needed.
#[inline]
fn prefetch_payload(payload: &[u8], tail: usize) {
    if payload.is_empty() {
        return;
    }
    prefetch_index(payload, 0);
    for at in lines_of_tail(payload.as_ptr() as usize, payload.len(), tail) {
        prefetch_index(payload, at);
    }
}

/// Of `len` bytes at address `base`, the index of one byte in each cache line that holds
/// one of the last `tail` bytes.
fn lines_of_tail(base: usize, len: usize, tail: usize) -> impl Iterator<Item = usize> {
    let (start, end) = (base + len - tail.min(len), base + len);
    // The line of the tail's first byte (none when the tail is empty).
    let first = if start < end {
        start & !(CACHE_LINE - 1)
    } else {
        end
    };
    (first..end)
        .step_by(CACHE_LINE)
        .map(move |line| line.saturating_sub(base))
}

/// `end` of a record written when the handshake was decided (`--early`).
pub const EARLY_END: &str = "handshake";

/// Whether a flow's handshake is decided, so that an early record can be written: TLS
/// 1.3 once the ServerHello is seen (the rest is encrypted), TLS ≤ 1.2 once both sides
/// sent ChangeCipherSpec, or a fatal alert.
fn handshake_decided(a: &ConnAnalyzer) -> bool {
    let f = a.tls.facts();
    let fatal = f.alerts.iter().any(|al| al.level == 2);
    match &f.server_hello {
        Some(sh) => {
            let tls13 = sh.version == 0x0304 || sh.version >> 8 == 0x7f;
            tls13 || sh.sslv2 || f.change_cipher_spec == [true, true] || fatal
        }
        None => fatal,
    }
}

/// The reader's state while it reads one input. `K` takes what the inline shard reports
/// (to the printer, directly or through a channel) and answers whether anyone listens.
struct Reader<'s, K> {
    senders: Vec<SyncSender<Batch>>,
    batches: Vec<Batch>,
    /// Batches the workers are done with, to refill.
    spent: Option<Receiver<Batch>>,
    /// With one shard, the reader runs it itself.
    inline: Option<Shard>,
    sink: K,
    shards: usize,
    counts: ReadCounts,
    unsupported: Option<LinkType>,
    clock: Timestamp,
    frames: u64,
    stream: bool,
    last_data: Instant,
    clock_at_data: Timestamp,
    hung_up: bool,
    progress: Option<&'s Progress>,
}

impl<K: FnMut(ToPrinter) -> bool> Reader<'_, K> {
    /// Takes what a source reports: a frame, or that it has nothing waiting.
    fn event(&mut self, ev: Event<'_, '_>) -> ControlFlow<()> {
        match ev {
            Event::Frame(f) => self.frame(f),
            Event::Idle => self.idle(),
        }
    }

    fn frame(&mut self, frame: &Frame<'_>) -> ControlFlow<()> {
        self.frames = frame.number;
        self.counts.frame(frame.link);
        if frame.ts > self.clock {
            self.clock = frame.ts;
        }
        if self.stream {
            self.last_data = Instant::now();
            self.clock_at_data = self.clock;
        }
        match decode::decode(frame) {
            Ok(seg) => {
                self.counts.decoded += 1;
                let (key, src_is_lo) = FlowKey::with_side(seg.src, seg.dst);
                if self.inline.is_some() {
                    // Run at the next flush, as a worker runs a batch.
                    self.batches[0].push((key, src_is_lo), &seg, frame, self.clock);
                    if self.batches[0].segs.len() >= INLINE_FLUSH {
                        self.flush();
                    }
                } else {
                    let i = key.shard(self.shards);
                    self.batches[i].push((key, src_is_lo), &seg, frame, self.clock);
                    if self.batches[i].segs.len() >= BATCH {
                        self.flush();
                    }
                }
            }
            Err(e) => {
                if !decode::supports(frame.link) {
                    self.unsupported.get_or_insert(frame.link);
                }
                *self.counts.undecoded.entry(e.name()).or_default() += 1;
            }
        }
        if let Some(p) = self.progress
            && self.counts.packets.is_multiple_of(PROGRESS_EVERY)
        {
            p.update();
        }
        if self.hung_up || stopping() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// The source has nothing waiting: hand on what is held, and let the capture clock
    /// follow the wall clock once the stream has been quiet for a while.
    fn idle(&mut self) -> ControlFlow<()> {
        let quiet = self.last_data.elapsed();
        if quiet >= IDLE_ADVANCE {
            let wall = Timestamp(
                self.clock_at_data
                    .0
                    .saturating_add(i64::try_from(quiet.as_nanos()).unwrap_or(i64::MAX)),
            );
            self.clock = self.clock.max(wall);
        }
        self.flush();
        if self.hung_up || stopping() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// Sends every worker its batch (possibly empty: it carries the clock), or, with one
    /// thread, runs the gathered segments on the inline shard and hands its records on.
    /// (Frames without a shared block, from pcapng or live capture, have their payload
    /// copied into the batch, as for workers.)
    fn flush(&mut self) {
        if let Some(shard) = &mut self.inline {
            shard.run(&self.batches[0]);
            self.batches[0].clear();
            shard.advance(self.clock);
            let msg = ToPrinter::Progress {
                shard: 0,
                records: std::mem::take(&mut shard.out.records),
                upto: Decided::watermark(self.clock, self.frames),
            };
            self.hung_up |= !(self.sink)(msg);
            return;
        }
        for (b, tx) in self.batches.iter_mut().zip(&self.senders) {
            let fresh = self
                .spent
                .as_ref()
                .and_then(|r| r.try_recv().ok())
                .unwrap_or_else(|| Batch::with_room(BATCH));
            let mut full = std::mem::replace(b, fresh);
            full.clock = self.clock;
            full.frame = self.frames;
            self.hung_up |= tx.send(full).is_err();
        }
    }

    fn finish(mut self) -> (ReadCounts, Option<LinkType>) {
        self.flush();
        self.counts.close();
        if let Some(mut shard) = self.inline.take() {
            let stats = shard.finish();
            (self.sink)(ToPrinter::Progress {
                shard: 0,
                records: std::mem::take(&mut shard.out.records),
                upto: Decided::END,
            });
            (self.sink)(ToPrinter::Done { stats });
        }
        (self.counts, self.unsupported)
    }
}

/// How many segments ahead a shard ([`Shard::run`]) hints at what a segment will read:
/// its index line ([`FlowTable::prefetch_slot`]), its flow ([`FlowTable::prefetch_flow`]),
/// its byte stream ([`FlowTable::prefetch_stream`]) and payload. Each hint needs the line
/// of the one before it; a few segments (~a microsecond each) leave it time to arrive.
const SLOT_AHEAD: usize = 12;
const FLOW_AHEAD: usize = 8;
const STREAM_AHEAD: usize = 4;
/// The hashes a worker keeps: those of a segment and the SLOT_AHEAD after it.
const HASHES: usize = (SLOT_AHEAD + 1).next_power_of_two();

/// A worker's channels.
struct WorkerChannels {
    /// Segments to analyze.
    batches: Receiver<Batch>,
    /// Records and watermarks.
    to_printer: SyncSender<ToPrinter>,
    /// Emptied batches, back to the reader.
    spent: SyncSender<Batch>,
    /// Records the printer has written, back to be freed here.
    returned: Receiver<Vec<Out>>,
}

/// One shard worker: owns a flow table; reports records with watermarks.
fn worker(ch: WorkerChannels, mut shard: Shard) {
    let index = shard.out.index;
    for mut batch in ch.batches {
        while let Ok(spent) = ch.returned.try_recv() {
            shard.out.recycle(spent);
        }
        shard.run(&batch);
        shard.advance(batch.clock);
        let msg = ToPrinter::Progress {
            shard: index,
            records: std::mem::take(&mut shard.out.records),
            upto: Decided::watermark(batch.clock, batch.frame),
        };
        if ch.to_printer.send(msg).is_err() {
            return;
        }
        // Hand the buffers back for reuse (fresh ones would be page-faulted in anew), and
        // the blocks to the reader.
        batch.clear();
        let _ = ch.spent.try_send(batch);
    }
    let stats = shard.finish();
    let _ = ch.to_printer.send(ToPrinter::Progress {
        shard: index,
        records: std::mem::take(&mut shard.out.records),
        upto: Decided::END,
    });
    let _ = ch.to_printer.send(ToPrinter::Done { stats });
    // Records are still coming back (those of the flows open at the end are all written
    // after this): free them here, in parallel and where they were allocated, rather than
    // on the printer's thread, until the printer is done.
    drop(ch.to_printer);
    for spent in ch.returned {
        shard.out.recycle(spent);
    }
}

/// Merges the workers' records by decision and writes them.
struct Merger {
    queues: Vec<std::collections::VecDeque<Out>>,
    upto: Vec<Decided>,
}

impl Merger {
    fn new(n: usize) -> Merger {
        Merger {
            queues: (0..n).map(|_| Default::default()).collect(),
            upto: vec![
                Decided {
                    clock: i64::MIN,
                    phase: 0,
                    frame: 0,
                };
                n
            ],
        }
    }

    fn add(&mut self, shard: usize, records: Vec<Out>, upto: Decided) {
        self.queues[shard].extend(records);
        self.upto[shard] = upto;
    }

    /// The next record every worker has moved past, if any.
    fn pop(&mut self) -> Option<Out> {
        let limit = self.upto.iter().min().copied()?;
        let (i, _) = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.front().map(|o| (i, o.decided)))
            .min_by_key(|(_, d)| *d)
            .filter(|(_, d)| *d <= limit)?;
        self.queues[i].pop_front()
    }
}

/// Capture time a leg waits, after the pairing window, for its partner to be decided
/// (see [`Pairer`]).
pub const PAIR_HOLD: i64 = 2_000_000_000;

/// A record held by the [`Pairer`].
struct Held {
    out: Out,
    /// A network leg (else a pod-local leg or an early record).
    network: bool,
}

/// The pairer's records by arrival number. Numbers are given in order and records leave
/// roughly in order, so they are slots of a queue (the first slot's number is `first`),
/// not a hash map: no hashing, and the leading empty slots are dropped as they appear.
#[derive(Default)]
struct Slots {
    slots: std::collections::VecDeque<Option<Held>>,
    first: u64,
}

impl Slots {
    /// Adds the record numbered `id`, the next number.
    fn push(&mut self, id: u64, h: Held) {
        debug_assert_eq!(id, self.first + self.slots.len() as u64);
        self.slots.push_back(Some(h));
    }

    fn slot(&mut self, id: u64) -> Option<&mut Option<Held>> {
        let i = usize::try_from(id.checked_sub(self.first)?).ok()?;
        self.slots.get_mut(i)
    }

    fn get(&mut self, id: u64) -> Option<&Held> {
        self.slot(id)?.as_ref()
    }

    /// Takes a record out (to write it, or to lend it to the pairing).
    fn take(&mut self, id: u64) -> Option<Held> {
        let h = self.slot(id)?.take();
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.first += 1;
        }
        h
    }

    /// Puts a lent record back in its slot.
    fn put_back(&mut self, id: u64, h: Held) {
        if id < self.first {
            // Its slot was dropped while it was out: make room again in front.
            for _ in id..self.first {
                self.slots.push_front(None);
            }
            self.first = id;
        }
        if let Some(slot) = self.slot(id) {
            *slot = Some(h);
        }
    }
}

/// A pod-local leg no network leg has taken yet, as the pairing reads it.
#[derive(Clone, Copy, Debug)]
struct Untaken {
    /// Capture clock of its decision (`i64::MAX` at the end of input).
    decided: i64,
    /// When it is written.
    release: i64,
    /// Its server: with the start, what tells whether it can fit a network leg at all.
    server: Endpoint,
}

/// Pairs the two legs of a request (a network flow and its pod-local hop) in the stream,
/// with [`report::link_legs`], the function the whole-capture pass uses.
///
/// Legs start within `classify::pairing::WINDOW` (W) of each other but end when they
/// end, so records wait here: a network leg is paired at
/// `max(decided, first_ts + W + PAIR_HOLD)` with the untaken pod-local legs decided by
/// then (network legs in that order, then by first frame: the greedy of the whole-capture
/// pass); a pod-local leg is written at `max(decided, first_ts + 2W + PAIR_HOLD)`, after
/// every network leg that could take it. Every key is a capture-clock value, so the result
/// is the same for any thread count. It matches the whole-capture pairing whenever both
/// legs are decided within PAIR_HOLD of the window; a leg still open later is written
/// unpaired. Records wait at most `2W + PAIR_HOLD` of capture time beyond their decision.
/// Early records (`--early`) do not wait and are not paired.
struct Pairer {
    /// Records by arrival number (records are boxed: moving a `Held` is cheap).
    held: Slots,
    next_id: u64,
    /// Write order: (release, decision, id), the least on top. Heaps, not ordered sets:
    /// only the first is ever looked at, and a heap's push and pop cost about a third.
    by_release: std::collections::BinaryHeap<std::cmp::Reverse<(i64, Decided, u64)>>,
    /// Network legs to pair: (pairing time, first frame, id), the least on top.
    network: std::collections::BinaryHeap<std::cmp::Reverse<(i64, u64, u64)>>,
    /// Untaken pod-local legs by start: (first_ts, first frame, id). A leg leaves when a
    /// network leg takes it or when it is written.
    pod_local: std::collections::BTreeMap<(i64, u64, u64), Untaken>,
}

impl Pairer {
    fn new() -> Pairer {
        Pairer {
            held: Default::default(),
            next_id: 0,
            by_release: Default::default(),
            network: Default::default(),
            pod_local: Default::default(),
        }
    }

    fn add(&mut self, out: Out) {
        const W: i64 = crate::classify::pairing::WINDOW;
        let id = self.next_id;
        self.next_id += 1;
        let decided = if out.decided.phase == 2 {
            i64::MAX
        } else {
            out.decided.clock
        };
        // Records come in decision order: every leg decided before this one is here, so
        // the network legs due before it can be paired now, with the same candidates as
        // later (see `pair`), and fewer legs decided after them to skip in the scan.
        self.pair(|at| at < decided);
        let r = &out.record;
        let start = r.first_ts.nanos();
        let (release, network) = if r.end == EARLY_END {
            (decided, false)
        } else if r.leg == crate::classify::Leg::PodLocal.name() {
            let release = decided.max(start.saturating_add(2 * W + PAIR_HOLD));
            self.pod_local.insert(
                (start, r.first_frame, id),
                Untaken {
                    decided,
                    release,
                    server: r.server,
                },
            );
            (release, false)
        } else {
            let at = decided.max(start.saturating_add(W + PAIR_HOLD));
            self.network
                .push(std::cmp::Reverse((at, r.first_frame, id)));
            (at, true)
        };
        self.by_release
            .push(std::cmp::Reverse((release, out.decided, id)));
        self.held.push(id, Held { out, network });
    }

    /// Pairs and releases everything due before capture clock `limit` (all of it when
    /// `None`), in order.
    fn advance(&mut self, limit: Option<i64>, out: &mut Vec<Out>) {
        let due = |t: i64| limit.is_none_or(|l| t < l);
        self.pair(due);
        while let Some(&std::cmp::Reverse((release, _, id))) = self.by_release.peek() {
            if !due(release) {
                break;
            }
            self.by_release.pop();
            if let Some(h) = self.held.take(id) {
                if !h.network {
                    let r = &h.out.record;
                    self.pod_local
                        .remove(&(r.first_ts.nanos(), r.first_frame, id));
                }
                out.push(h.out);
            }
        }
    }

    /// Pairs the network legs whose pairing time is `due`, in order: each with the untaken
    /// pod-local legs decided by its pairing time and not yet written then. Pairing a leg
    /// as soon as every leg decided by its pairing time is here gives the same result as
    /// pairing it later: a leg decided later is not a candidate, and a leg written since
    /// was written after that time (writing comes after pairing, in `advance`).
    fn pair(&mut self, due: impl Fn(i64) -> bool) {
        const W: i64 = crate::classify::pairing::WINDOW;
        while let Some(&std::cmp::Reverse((at, _, id))) = self.network.peek() {
            if !due(at) {
                break;
            }
            self.network.pop();
            let Some(n) = self.held.get(id) else {
                continue;
            };
            let (start, server) = (n.out.record.first_ts.nanos(), n.out.record.server);
            let lo = (start.saturating_sub(W), 0, 0);
            let hi = (start.saturating_add(W), u64::MAX, u64::MAX);
            // Legs that cannot fit by time and endpoints are left out: `link_legs` would
            // not pair them, and most network legs then have no candidate at all.
            let mut cands: Vec<(u64, u64)> = self
                .pod_local
                .range(lo..=hi)
                .filter(|&(&(pstart, _, _), p)| {
                    p.decided <= at
                        && p.release >= at
                        && crate::classify::pairing::may_fit(start, server, pstart, p.server)
                })
                .map(|(&(_, pff, pid), _)| (pff, pid))
                .collect();
            if cands.is_empty() {
                continue;
            }
            cands.sort_unstable();
            // Lend the network leg and its candidates (by first frame) to `link_legs`.
            let ids = std::iter::once(id).chain(cands.iter().map(|c| c.1));
            let mut lent: Vec<(u64, Held)> = ids
                .filter_map(|i| self.held.take(i).map(|h| (i, h)))
                .collect();
            let mut records: Vec<&mut FlowRecord> =
                lent.iter_mut().map(|(_, h)| &mut *h.out.record).collect();
            report::link_legs(&mut records);
            for (i, mut h) in lent {
                if h.out.record.paired_with.is_some() {
                    // Pairing changed the record: its serialized line is stale up to its
                    // TLS part, which pairing does not change.
                    if let Some(line) = &mut h.out.line {
                        report::json::rewrite_before_tls(line, &h.out.record);
                    }
                    if !h.network {
                        let r = &h.out.record;
                        self.pod_local
                            .remove(&(r.first_ts.nanos(), r.first_frame, i));
                    }
                }
                self.held.put_back(i, h);
            }
        }
    }
}

/// Writes records and summaries in the chosen format.
struct Printer<'o> {
    out: &'o mut dyn Write,
    /// Keep the records instead of writing them (the `analyze` library call).
    collect: Option<Vec<FlowRecord>>,
    format: Format,
    table: Option<TableWriter>,
    width: Option<u16>,
    /// Table: explain each flow under its row.
    explain: bool,
    /// Flush after every group of records (streams), not only when the buffer fills.
    eager: bool,
    progress: Option<indicatif::ProgressBar>,
    /// stdout is the terminal the progress bar is drawn on.
    shares_terminal: bool,
}

impl<'o> Printer<'o> {
    /// JSON Lines to `out`, with no terminal, progress bar or stream behind it.
    fn jsonl(out: &'o mut dyn Write) -> Printer<'o> {
        Printer {
            out,
            collect: None,
            format: Format::Jsonl,
            table: None,
            width: None,
            explain: false,
            eager: false,
            progress: None,
            shares_terminal: false,
        }
    }

    fn record(&mut self, o: &Out) -> io::Result<()> {
        match (self.format, &o.line) {
            (_, Some(line)) => self.out.write_all(line),
            (Format::Jsonl, None) => {
                let mut line = Vec::with_capacity(2048);
                report::json::write_flow(&mut line, &o.record);
                line.push(b'\n');
                self.out.write_all(&line)
            }
            (Format::Table, None) => {
                let (width, explain) = (self.width, self.explain);
                self.table
                    .get_or_insert_with(|| TableWriter::new(width, explain))
                    .row(&mut *self.out, &o.record)
            }
        }
    }

    /// Writes whole lines, a group of them per vectored write: a group larger than the
    /// output's buffer goes from the lines to the file directly, neither copied into the
    /// buffer nor read by this thread (the lines were written by a worker, in its cache).
    fn lines<'a>(&mut self, lines: impl Iterator<Item = &'a [u8]>) -> io::Result<()> {
        let mut slices: Vec<io::IoSlice<'_>> = lines.map(io::IoSlice::new).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            // At most IOV_MAX (1024 on Linux) slices per call.
            let n = self.out.write_vectored(&rest[..rest.len().min(1024)])?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            io::IoSlice::advance_slices(&mut rest, n);
        }
        Ok(())
    }

    /// Writes what `write` writes; when a progress bar is drawn on the terminal stdout
    /// also goes to, the bar steps aside once for the whole group, not once per record.
    fn group(&mut self, write: impl FnOnce(&mut Self) -> io::Result<()>) -> io::Result<()> {
        match self.progress.clone() {
            Some(p) if self.shares_terminal && !p.is_hidden() => p.suspend(|| {
                write(self)?;
                self.out.flush()
            }),
            _ => write(self),
        }
    }

    fn summary(&mut self, s: &Summary) -> io::Result<()> {
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut *self.out, s)?;
                self.out.write_all(b"\n")?;
            }
            Format::Table => {
                report::table::summary(&mut *self.out, s)?;
                self.table = None;
            }
        }
        self.out.flush()
    }
}

/// A progress bar for a file: bytes read of the file's size; drawn only on a terminal
/// and only once reading has taken [`PROGRESS_AFTER`].
struct Progress {
    bar: indicatif::ProgressBar,
    read: Arc<AtomicU64>,
    started: Instant,
    shown: AtomicBool,
}

impl Progress {
    fn new(len: u64, read: Arc<AtomicU64>) -> Progress {
        let bar = indicatif::ProgressBar::hidden();
        bar.set_length(len);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        Progress {
            bar,
            read,
            started: Instant::now(),
            shown: AtomicBool::new(false),
        }
    }

    fn update(&self) {
        if !self.shown.load(Ordering::Relaxed) && self.started.elapsed() >= PROGRESS_AFTER {
            self.shown.store(true, Ordering::Relaxed);
            self.bar
                .set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
        }
        self.bar.set_position(self.read.load(Ordering::Relaxed));
    }
}

/// A reader that counts the bytes it read (for the progress bar).
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Runs the whole configuration, writing records to `out` and one-line errors to `err`.
pub fn run(cfg: &Config, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<Outcome> {
    if cfg.list_interfaces {
        return list_interfaces(out, err);
    }
    stop_flag();
    let mut failed = false;
    let mut rest = &cfg.inputs[..];
    while let Some(first) = rest.first() {
        if stopping() {
            break;
        }
        // Consecutive files run side by side; streams run alone, in their place.
        let files = rest
            .iter()
            .take_while(|i| matches!(i, Input::File(_)))
            .count();
        if files >= 2 && cfg.threads >= 2 {
            failed |= analyze_files(&rest[..files], cfg, out, err)?;
            rest = &rest[files..];
        } else {
            failed |= analyze_input(first, cfg, cfg.threads, out, err)?;
            rest = &rest[1..];
        }
    }
    Ok(if failed {
        Outcome::InputError
    } else {
        Outcome::Ok
    })
}

/// Bytes buffered per file while an earlier file is still being written.
const SPOOL_CHUNK: usize = 64 * 1024;
/// Chunks of [`SPOOL_CHUNK`] buffered per waiting file before its analysis pauses.
const SPOOL_DEPTH: usize = 64;

/// A `Write` that sends what it is given, in chunks, to whoever prints this file.
struct Spool {
    buf: Vec<u8>,
    tx: SyncSender<Vec<u8>>,
}

impl Write for Spool {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SPOOL_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(SPOOL_CHUNK));
        self.tx
            .send(chunk)
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

/// Analyzes several files side by side (up to `threads` at once, the threads shared
/// among them) and writes their output in the order given: the first unfinished file
/// streams to `out` while the next ones fill bounded spools, so memory stays bounded and
/// a file never waits for a later one. Rayon's work stealing is not used here on purpose:
/// it may start a later file before the first, which then waits on a full spool.
fn analyze_files(
    files: &[Input],
    cfg: &Config,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<bool> {
    let at_once = cfg.threads.min(files.len()).max(1);
    let per_file = (cfg.threads / at_once).max(1);
    let quiet = Config {
        progress: false,
        ..cfg.clone()
    };
    std::thread::scope(|scope| {
        let start = |input: &Input| {
            let (tx, rx) = sync_channel::<Vec<u8>>(SPOOL_DEPTH);
            let input = input.clone();
            let cfg = &quiet;
            let handle = std::thread::Builder::new()
                .name("file".into())
                .spawn_scoped(scope, move || {
                    let mut spool = Spool {
                        buf: Vec::with_capacity(SPOOL_CHUNK),
                        tx,
                    };
                    let mut messages = Vec::new();
                    let failed = analyze_input(&input, cfg, per_file, &mut spool, &mut messages);
                    let flushed = spool.flush();
                    (failed.and_then(|f| flushed.map(|()| f)), messages)
                });
            (rx, handle)
        };
        let mut running = std::collections::VecDeque::new();
        let mut next = files.iter();
        for input in next.by_ref().take(at_once) {
            running.push_back(start(input));
        }
        let mut failed = false;
        let mut result = Ok(());
        while let Some((rx, handle)) = running.pop_front() {
            for chunk in rx.iter() {
                if result.is_ok() {
                    result = out.write_all(&chunk);
                    if result.is_err() {
                        stop_flag().store(true, Ordering::Relaxed);
                    }
                }
            }
            match handle {
                Ok(h) => match h.join() {
                    Ok((status, messages)) => {
                        err.write_all(&messages)?;
                        failed |= status.unwrap_or(true);
                    }
                    Err(_) => failed = true,
                },
                Err(e) => {
                    writeln!(err, "mtlscope: cannot start a file's analysis: {e}")?;
                    failed = true;
                }
            }
            if let Some(input) = next.next().filter(|_| !stopping()) {
                running.push_back(start(input));
            }
        }
        result?;
        out.flush()?;
        Ok(failed)
    })
}

/// Prints the interfaces live capture can use.
fn list_interfaces(out: &mut dyn Write, err: &mut dyn Write) -> io::Result<Outcome> {
    #[cfg(feature = "live")]
    {
        match crate::capture::live::interfaces() {
            Ok(list) => {
                for i in list {
                    writeln!(out, "{}", i)?;
                }
                Ok(Outcome::Ok)
            }
            Err(e) => {
                writeln!(err, "mtlscope: {e}")?;
                Ok(Outcome::InputError)
            }
        }
    }
    #[cfg(not(feature = "live"))]
    {
        let _ = out;
        writeln!(err, "mtlscope: {NO_LIVE}")?;
        Ok(Outcome::InputError)
    }
}

/// Why `-i` fails in a build without the `live` feature.
#[cfg(not(feature = "live"))]
const NO_LIVE: &str = "this build has no live capture; rebuild with \
     `cargo build --release --features live` (needs libpcap)";

/// An opened input, ready to be read on the reader thread.
enum Source<'r> {
    Capture(CaptureReader<'r>),
    /// A classic pcap file, read by mapping; `read` follows the offset reached (for the
    /// progress bar).
    Mapped {
        file: MappedFile,
        read: Arc<AtomicU64>,
    },
    #[cfg(feature = "live")]
    Live(crate::capture::live::LiveCapture),
}

fn empty_summary(name: &str) -> Summary {
    Summary {
        kind: "summary",
        schema_version: SCHEMA_VERSION,
        capture: name.to_string(),
        ..Summary::default()
    }
}

/// Opens an input. Errors are one-line messages.
fn open(
    input: &Input,
    progress: &mut Option<Progress>,
    want_progress: bool,
) -> Result<Source<'static>, String> {
    match input {
        Input::File(p) => {
            let f = std::fs::File::open(p).map_err(|e| format!("cannot open: {e}"))?;
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let read = Arc::new(AtomicU64::new(0));
            if want_progress {
                *progress = Some(Progress::new(len, Arc::clone(&read)));
            }
            let f = match MappedFile::open(f) {
                Ok(file) => return Ok(Source::Mapped { file, read }),
                Err(f) => f,
            };
            // No BufReader: pcap-parser reads into its own buffer.
            let src = Counting { inner: f, read };
            CaptureReader::new(src)
                .map(Source::Capture)
                .map_err(|e| e.to_string())
        }
        Input::Stdin => {
            let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(16);
            // Detached on purpose: a read on stdin cannot be interrupted, and this thread
            // must not keep the process alive once the analysis is over.
            let pump = std::thread::Builder::new()
                .name("stdin".into())
                .spawn(move || pump_stdin(&tx));
            if let Err(e) = pump {
                return Err(format!("cannot read stdin: {e}"));
            }
            let chunks = ChunkReader::new(rx, IDLE_POLL, Arc::clone(stop_flag()));
            CaptureReader::new(chunks)
                .map(Source::Capture)
                .map_err(|e| e.to_string())
        }
        #[cfg(feature = "live")]
        Input::Live(l) => crate::capture::live::LiveCapture::open(
            &l.interface,
            l.filter.as_deref(),
            l.snaplen,
            IDLE_POLL,
        )
        .map(Source::Live)
        .map_err(|e| e.to_string()),
        #[cfg(not(feature = "live"))]
        Input::Live(_) => Err(NO_LIVE.into()),
    }
}

fn pump_stdin(tx: &SyncSender<io::Result<Vec<u8>>>) {
    let stdin = io::stdin();
    let mut lock = stdin.lock();
    loop {
        let mut buf = vec![0u8; STDIN_CHUNK];
        match lock.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if tx.send(Ok(buf)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

/// Analyzes one input with `threads` workers and writes its records and summary. Returns
/// whether the input had an error.
fn analyze_input(
    input: &Input,
    cfg: &Config,
    threads: usize,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<bool> {
    let name = input.name();
    let mut progress = None;
    let mut printer = Printer {
        out,
        collect: None,
        format: cfg.format,
        table: None,
        width: cfg.width,
        explain: cfg.explain,
        eager: input.is_stream(),
        progress: None,
        shares_terminal: io::stdout().is_terminal(),
    };
    let source = match open(input, &mut progress, cfg.progress && !input.is_stream()) {
        Ok(s) => s,
        // Interrupted before the stream said anything: nothing to report.
        Err(_) if stopping() => return Ok(false),
        Err(msg) => {
            writeln!(err, "mtlscope: {name}: {msg}")?;
            printer.summary(&Summary {
                error: Some(msg),
                ..empty_summary(&name)
            })?;
            return Ok(true);
        }
    };
    printer.progress = progress.as_ref().map(|p| p.bar.clone());
    let (read, printed) = pipeline(
        source,
        &name,
        cfg,
        threads,
        input.is_stream(),
        progress.as_ref(),
        &mut printer,
    );
    if let Some(p) = &progress {
        p.bar.finish_and_clear();
    }
    let (summary, messages) = summarize(&name, read, printed?, input.is_stream());
    for m in &messages {
        writeln!(err, "mtlscope: {name}: {m}")?;
    }
    printer.summary(&summary)?;
    Ok(summary.error.is_some())
}

/// The summary of one input from what the reader saw and what the printer counted, and
/// the one-line messages for stderr (warning, error, interruption, drops).
fn summarize(
    name: &str,
    read: ReadResult,
    printed: (Summary, ShardStats),
    stream: bool,
) -> (Summary, Vec<String>) {
    let (mut summary, stats) = printed;
    let mut messages = Vec::new();
    let ReadResult {
        counts,
        error,
        unsupported,
        legacy,
        interrupted,
    } = read;
    summary.capture = name.to_string();
    summary.packets = counts.packets;
    summary.decoded = counts.decoded;
    summary.undecoded = counts.undecoded;
    summary.link_types = counts.link_types;
    summary.dropped = counts.dropped;
    summary.evicted_flows = stats.evicted;
    summary.late_packets = stats.late;
    summary.interrupted = interrupted;
    // A pcap has one link type: if it is not decodable, the file cannot be analyzed.
    let error = match (error, unsupported) {
        (None, Some(l)) if legacy => Some(format!("unsupported link type {l}")),
        (Some(e), _) if e.is_truncation() && stream => {
            let msg = format!("{e} (the stream was cut; flows before the cut are reported)");
            messages.push(format!("warning: {msg}"));
            summary.warning = Some(msg);
            None
        }
        (e, _) => e.map(|e| e.to_string()),
    };
    if let Some(e) = &error {
        messages.push(e.clone());
    }
    summary.error = error;
    if interrupted {
        messages.push(format!(
            "interrupted after {} packets; the summary covers what was seen",
            summary.packets
        ));
    }
    if let Some(d) = summary.dropped.filter(|d| d.kernel + d.interface > 0) {
        messages.push(format!(
            "the capture lost {} packets in the kernel and {} at the interface",
            d.kernel, d.interface
        ));
    }
    (summary, messages)
}

/// Analyzes one capture read from `source` and returns its flow records (in output
/// order) and summary, without printing: for callers that work on records (`posture`).
/// It runs the same pipeline as `analyze` (`cfg.threads` workers, streaming), collecting
/// the records instead of writing them. A read error after some frames still returns
/// those frames' flows, with the error in the summary; `Err` when `source` is not a
/// capture at all.
pub fn analyze<R: Read + Send>(
    source: R,
    name: &str,
    cfg: &Config,
) -> Result<(Vec<FlowRecord>, Summary), String> {
    let reader = CaptureReader::new(source).map_err(|e| e.to_string())?;
    let mut sink = io::sink();
    let mut printer = Printer::jsonl(&mut sink);
    printer.collect = Some(Vec::new());
    let (read, printed) = pipeline(
        Source::Capture(reader),
        name,
        cfg,
        cfg.threads,
        false,
        None,
        &mut printer,
    );
    let printed = printed.map_err(|e| e.to_string())?;
    let (summary, _) = summarize(name, read, printed, false);
    Ok((printer.collect.take().unwrap_or_default(), summary))
}

/// What the reader counted.
#[derive(Default)]
struct ReadCounts {
    packets: u64,
    decoded: u64,
    undecoded: std::collections::BTreeMap<&'static str, u64>,
    link_types: std::collections::BTreeMap<u32, u64>,
    /// Frames of the same link type in a row, not yet added to `link_types` (a map
    /// update per frame showed in profiles; a capture rarely changes link type).
    link_run: Option<(u32, u64)>,
    dropped: Option<Drops>,
}

impl ReadCounts {
    /// Counts a frame of link type `link`.
    fn frame(&mut self, link: LinkType) {
        self.packets += 1;
        match &mut self.link_run {
            Some((l, n)) if *l == link.0 => *n += 1,
            _ => {
                self.close();
                self.link_run = Some((link.0, 1));
            }
        }
    }

    /// Adds the current run of one link type to the map.
    fn close(&mut self) {
        if let Some((l, n)) = self.link_run.take() {
            *self.link_types.entry(l).or_default() += n;
        }
    }
}

/// How reading one input went.
struct ReadResult {
    counts: ReadCounts,
    error: Option<CaptureError>,
    unsupported: Option<LinkType>,
    legacy: bool,
    interrupted: bool,
}

/// Runs reader, workers and printer over one opened source. Returns what the reader
/// saw, and the summary the printer counted (records) with the workers' counters. With
/// one thread (or when no worker thread could start), the calling thread reads, analyzes
/// and prints: `--threads 1` is one thread.
fn pipeline(
    source: Source<'_>,
    name: &str,
    cfg: &Config,
    threads: usize,
    stream: bool,
    progress: Option<&Progress>,
    printer: &mut Printer<'_>,
) -> (ReadResult, io::Result<(Summary, ShardStats)>) {
    let n = threads.max(1);
    let mut source = Some(source);
    let new_reader = |senders: Vec<SyncSender<Batch>>, spent: Option<Receiver<Batch>>| Reader {
        // One for the inline shard when there are no workers.
        batches: (0..senders.len().max(1))
            .map(|_| {
                Batch::with_room(if senders.is_empty() {
                    INLINE_FLUSH
                } else {
                    BATCH
                })
            })
            .collect(),
        spent,
        shards: senders.len().max(1),
        inline: senders.is_empty().then(|| Shard::new(cfg, 1, 0, name)),
        senders,
        sink: (),
        counts: ReadCounts::default(),
        unsupported: None,
        clock: Timestamp(i64::MIN),
        frames: 0,
        stream,
        last_data: Instant::now(),
        clock_at_data: Timestamp(i64::MIN),
        hung_up: false,
        progress,
    };
    let threaded = (n > 1).then(|| {
        std::thread::scope(|scope| {
            let (to_printer, from_workers) = sync_channel::<ToPrinter>(RECORD_CHANNEL_DEPTH);
            let mut senders = Vec::new();
            let (spent_tx, spent_rx) = sync_channel::<Batch>(2 * n * CHANNEL_DEPTH);
            let mut returns = Vec::new();
            for i in 0..n {
                let (tx, rx) = sync_channel::<Batch>(CHANNEL_DEPTH);
                let (back_tx, back_rx) = sync_channel::<Vec<Out>>(RETURN_DEPTH);
                // Shards are numbered by the threads that started, so that a record's
                // shard number finds its way back.
                let shard = Shard::new(cfg, n, senders.len(), name);
                let tp = to_printer.clone();
                let spent = spent_tx.clone();
                let channels = WorkerChannels {
                    batches: rx,
                    to_printer: tp,
                    spent,
                    returned: back_rx,
                };
                let spawned = std::thread::Builder::new()
                    .name(format!("shard-{i}"))
                    .spawn_scoped(scope, move || worker(channels, shard));
                if spawned.is_ok() {
                    senders.push(tx);
                    returns.push(back_tx);
                }
            }
            drop(to_printer);
            if senders.is_empty() {
                return None;
            }
            let source = source.take()?;
            let shards = senders.len();
            let reader = new_reader(senders, Some(spent_rx)).with_sink(|_: ToPrinter| false);
            let reading = std::thread::Builder::new()
                .name("reader".into())
                .spawn_scoped(scope, move || read_source(source, reader));
            let printed = match &reading {
                Ok(_) => print(from_workers, Returns::new(returns), shards, name, printer),
                Err(_) => Ok((empty_summary(name), ShardStats::default())),
            };
            if printed.is_err() {
                // Nobody will read the rest: stop the reader (it checks between frames).
                stop_flag().store(true, Ordering::Relaxed);
            }
            let read = match reading {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| failed_read("the reader stopped")),
                Err(e) => failed_read(&format!("cannot start the reader: {e}")),
            };
            Some((read, printed))
        })
    });
    if let Some(Some(done)) = threaded {
        return done;
    }
    // One thread: the reader hands its records straight to the printer.
    let Some(source) = source.take() else {
        return (
            failed_read("no source"),
            Ok((empty_summary(name), ShardStats::default())),
        );
    };
    let mut state = PrintState::new(1, name, Returns::new(Vec::new()));
    let mut failed: Option<io::Error> = None;
    let read = {
        let sink = |msg: ToPrinter| -> bool {
            if failed.is_some() {
                return false;
            }
            match state.handle(msg, printer) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    stop_flag().store(true, Ordering::Relaxed);
                    false
                }
            }
        };
        read_source(source, new_reader(Vec::new(), None).with_sink(sink))
    };
    let printed = match failed {
        Some(e) => Err(e),
        None => state.finish(printer),
    };
    (read, printed)
}

impl<'s> Reader<'s, ()> {
    /// The same reader, reporting its inline shard's records to `sink`.
    fn with_sink<K: FnMut(ToPrinter) -> bool>(self, sink: K) -> Reader<'s, K> {
        let Reader {
            senders,
            batches,
            spent,
            inline,
            sink: (),
            shards,
            counts,
            unsupported,
            clock,
            frames,
            stream,
            last_data,
            clock_at_data,
            hung_up,
            progress,
        } = self;
        Reader {
            senders,
            batches,
            spent,
            inline,
            sink,
            shards,
            counts,
            unsupported,
            clock,
            frames,
            stream,
            last_data,
            clock_at_data,
            hung_up,
            progress,
        }
    }
}

fn failed_read(why: &str) -> ReadResult {
    ReadResult {
        counts: ReadCounts::default(),
        error: Some(CaptureError::Io(format!("internal error: {why}"))),
        unsupported: None,
        legacy: false,
        interrupted: false,
    }
}

/// The reader thread's body: reads the source to its end (or a stop), then finishes.
fn read_source<K: FnMut(ToPrinter) -> bool>(
    source: Source<'_>,
    mut reader: Reader<'_, K>,
) -> ReadResult {
    let (error, legacy) = match source {
        Source::Mapped { file, read } => {
            let res = file.cursor(Some(read)).run(|ev| reader.event(ev));
            (res.err(), true)
        }
        Source::Capture(mut cr) => {
            let res = cr.run(|ev| reader.event(ev));
            (res.err(), cr.is_legacy_pcap())
        }
        #[cfg(feature = "live")]
        Source::Live(mut live) => {
            let res = live.run(|ev| reader.event(ev));
            reader.counts.dropped = live.drops().map(|d| Drops {
                kernel: d.kernel,
                interface: d.interface,
            });
            (res.err(), false)
        }
    };
    let interrupted = stopping() && !reader.hung_up;
    let (counts, unsupported) = reader.finish();
    ReadResult {
        counts,
        error,
        unsupported,
        legacy,
        interrupted,
    }
}

/// The printer's state: merges the workers' records in decision order, pairs legs,
/// writes them and counts them for the summary.
struct PrintState {
    merger: Merger,
    pairer: Pairer,
    ready: Vec<Out>,
    summary: Summary,
    stats: ShardStats,
    shards: usize,
    done: usize,
    returns: Returns,
}

impl PrintState {
    fn new(shards: usize, name: &str, returns: Returns) -> PrintState {
        PrintState {
            merger: Merger::new(shards),
            pairer: Pairer::new(),
            ready: Vec::new(),
            summary: empty_summary(name),
            stats: ShardStats::default(),
            shards,
            done: 0,
            returns,
        }
    }

    fn all_done(&self) -> bool {
        self.done >= self.shards
    }

    /// Takes one message from a worker and writes what became ready.
    fn handle(&mut self, msg: ToPrinter, printer: &mut Printer<'_>) -> io::Result<()> {
        match msg {
            ToPrinter::Progress {
                shard,
                records,
                upto,
            } => self.merger.add(shard, records, upto),
            ToPrinter::Done { stats } => {
                self.stats.evicted += stats.evicted;
                self.stats.late += stats.late;
                self.done += 1;
            }
        }
        while let Some(r) = self.merger.pop() {
            self.pairer.add(r);
        }
        // Every decision before this capture clock is known.
        let known = self.merger.upto.iter().min().map(|u| u.clock);
        self.pairer
            .advance(known.filter(|c| *c < i64::MAX), &mut self.ready);
        if !self.ready.is_empty() {
            let (ready, summary, returns) = (&mut self.ready, &mut self.summary, &mut self.returns);
            printer.group(|printer| {
                emit(printer, ready, summary, returns)?;
                if printer.eager {
                    printer.out.flush()?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Writes whatever is left (a vanished worker's records, legs still held) and returns
    /// the summary of the records written and the workers' counters.
    fn finish(mut self, printer: &mut Printer<'_>) -> io::Result<(Summary, ShardStats)> {
        self.merger.upto.iter_mut().for_each(|u| *u = Decided::END);
        while let Some(r) = self.merger.pop() {
            self.pairer.add(r);
        }
        self.pairer.advance(None, &mut self.ready);
        let (ready, summary, returns) = (&mut self.ready, &mut self.summary, &mut self.returns);
        printer.group(|printer| emit(printer, ready, summary, returns))?;
        returns.flush();
        Ok((self.summary, self.stats))
    }
}

/// Writes records and counts them (final records only, not `--early` ones).
fn emit(
    printer: &mut Printer<'_>,
    ready: &mut Vec<Out>,
    summary: &mut Summary,
    returns: &mut Returns,
) -> io::Result<()> {
    for o in ready.iter() {
        if o.record.end != EARLY_END {
            summary.count(&o.record);
        }
    }
    if let Some(kept) = &mut printer.collect {
        kept.extend(ready.drain(..).map(|o| *o.record));
        return Ok(());
    }
    if ready.iter().all(|o| o.line.is_some()) {
        printer.lines(ready.iter().filter_map(|o| o.line.as_deref()))?;
    } else {
        for o in ready.iter() {
            printer.record(o)?;
        }
    }
    for o in ready.drain(..) {
        returns.give_back(o);
    }
    Ok(())
}

/// The printer with worker threads: receives their messages until all are done.
fn print(
    rx: Receiver<ToPrinter>,
    returns: Returns,
    shards: usize,
    name: &str,
    printer: &mut Printer<'_>,
) -> io::Result<(Summary, ShardStats)> {
    let mut state = PrintState::new(shards, name, returns);
    while !state.all_done() {
        let Ok(msg) = rx.recv() else {
            break;
        };
        state.handle(msg, printer)?;
    }
    state.finish(printer)
}

// --------------------------------------------------------------------------------------
// posture
// --------------------------------------------------------------------------------------

/// Output formats of `posture`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostureFormat {
    /// Tables for people.
    Table,
    /// One JSON document (docs/posture.md).
    Json,
    /// Graphviz DOT.
    Dot,
    /// A self-contained HTML report.
    Html,
}

/// A validated `posture` configuration.
#[derive(Clone, Debug)]
pub struct PostureConfig {
    /// Captures and flow-record files, in order.
    pub inputs: Vec<Input>,
    /// `kubectl get pods -A -o json`.
    pub pods: Option<PathBuf>,
    /// `kubectl get svc -A -o json`.
    pub services: Option<PathBuf>,
    /// `kubectl get peerauthentications.security.istio.io -A -o json`.
    pub policies: Option<PathBuf>,
    /// Grouping, namespaces, gate.
    pub options: crate::posture::Options,
    /// Output format.
    pub format: PostureFormat,
    /// Shard workers for captures.
    pub threads: usize,
    /// Table width (None: the terminal's).
    pub width: Option<u16>,
    /// Colour the table.
    pub color: bool,
}

/// How a `posture` run ended (exit codes 0, 1, 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostureOutcome {
    /// Every input read, and the gate (if any) passed.
    Clean,
    /// The gate found forbidden flows.
    GateFailed,
    /// An input or context file could not be read, or only in part.
    InputError,
}

/// A reader with its first bytes put back.
type Peeked<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Reads up to `n` bytes for sniffing and gives back a reader that still yields them.
fn peek<R: Read>(mut r: R, n: usize) -> io::Result<(Vec<u8>, Peeked<R>)> {
    let mut head = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    Ok((head.clone(), io::Cursor::new(head).chain(r)))
}

/// Flow records of one posture input: a capture analyzed here, or JSON Lines.
fn posture_input<R: Read + Send>(
    source: R,
    name: &str,
    cfg: &PostureConfig,
) -> Result<(crate::posture::assess::Input, Vec<String>), String> {
    use crate::posture::doc::InputDoc;
    use crate::posture::input::{self, Flow, InputKind};
    let (head, reader) = peek(source, 512).map_err(|e| format!("read error: {e}"))?;
    let mut problems = Vec::new();
    let (kind, flows) = match input::sniff(&head) {
        InputKind::Capture => {
            let acfg = Config {
                inputs: Vec::new(),
                format: Format::Jsonl,
                threads: cfg.threads,
                table: TableConfig::default(),
                width: None,
                explain: false,
                early: false,
                progress: false,
                list_interfaces: false,
            };
            let (records, summary) = analyze(reader, name, &acfg)?;
            if let Some(e) = summary.error {
                problems.push(e);
            }
            let flows = records
                .iter()
                .map(|r| {
                    let v = serde_json::to_value(r).map_err(|e| e.to_string())?;
                    Flow::from_value(v)
                })
                .collect::<Result<Vec<_>, String>>()?;
            ("capture", flows)
        }
        InputKind::FlowRecords => {
            let records = input::read_records(io::BufReader::new(reader))?;
            for (capture, e) in records.capture_errors {
                problems.push(format!("the records of {capture} are partial: {e}"));
            }
            ("flow-records", records.flows)
        }
        InputKind::Empty => return Err("empty input".into()),
        InputKind::Unknown => {
            return Err(
                "neither a capture (pcap, pcapng) nor flow records (mtlscope analyze --format jsonl)".into(),
            );
        }
    };
    let doc = InputDoc {
        path: name.to_string(),
        kind,
        flows: flows.len() as u64,
        error: (!problems.is_empty()).then(|| problems.join("; ")),
    };
    Ok((crate::posture::assess::Input { doc, flows }, problems))
}

/// Reads a context file with `parse`, or says what is wrong with it.
fn context_file<T>(
    path: &Option<PathBuf>,
    parse: fn(&str) -> Result<Vec<T>, String>,
    err: &mut dyn Write,
    failed: &mut bool,
) -> io::Result<(Option<Vec<T>>, Option<crate::posture::doc::ContextFile>)> {
    let Some(p) = path else {
        return Ok((None, None));
    };
    let name = p.display().to_string();
    let parsed = std::fs::read_to_string(p)
        .map_err(|e| format!("cannot read: {e}"))
        .and_then(|text| parse(&text));
    match parsed {
        Ok(v) => {
            let file = crate::posture::doc::ContextFile {
                path: name,
                objects: v.len() as u64,
            };
            Ok((Some(v), Some(file)))
        }
        Err(e) => {
            writeln!(err, "mtlscope: {name}: {e}")?;
            *failed = true;
            Ok((None, None))
        }
    }
}

/// Runs `posture`: reads the context and the inputs, assesses, prints, gates.
pub fn posture(
    cfg: &PostureConfig,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<PostureOutcome> {
    use crate::posture::{assess, doc::ContextDoc, dot, html, k8s, table};
    let mut failed = false;
    let (pods, pods_doc) = context_file(&cfg.pods, k8s::parse_pods, err, &mut failed)?;
    let (services, services_doc) =
        context_file(&cfg.services, k8s::parse_services, err, &mut failed)?;
    let (policies, policies_doc) =
        context_file(&cfg.policies, k8s::parse_policies, err, &mut failed)?;
    if failed {
        // Without the context asked for, the verdicts would be wrong: no report.
        return Ok(PostureOutcome::InputError);
    }
    let cluster = k8s::Cluster::new(pods, services, policies);
    let mut inputs = Vec::with_capacity(cfg.inputs.len());
    for input in &cfg.inputs {
        let name = input.name();
        let result = match input {
            Input::File(p) => match std::fs::File::open(p) {
                Ok(f) => posture_input(io::BufReader::with_capacity(1 << 20, f), &name, cfg),
                Err(e) => Err(format!("cannot open: {e}")),
            },
            Input::Stdin => posture_input(io::stdin(), &name, cfg),
            Input::Live(_) => Err("posture reads captures and flow records, not interfaces".into()),
        };
        match result {
            Ok((i, problems)) => {
                for p in problems {
                    writeln!(err, "mtlscope: {name}: {p}")?;
                    failed = true;
                }
                inputs.push(i);
            }
            Err(e) => {
                writeln!(err, "mtlscope: {name}: {e}")?;
                failed = true;
                inputs.push(assess::Input {
                    doc: crate::posture::doc::InputDoc {
                        path: name,
                        kind: "unreadable",
                        flows: 0,
                        error: Some(e),
                    },
                    flows: Vec::new(),
                });
            }
        }
    }
    let context = ContextDoc {
        pods: pods_doc,
        services: services_doc,
        policies: policies_doc,
    };
    let doc = assess::assess(inputs, &cluster, context, &cfg.options);
    match cfg.format {
        PostureFormat::Table => table::write(out, &doc, cfg.width, cfg.color)?,
        PostureFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            out.write_all(b"\n")?;
        }
        PostureFormat::Dot => dot::write(out, &doc)?,
        PostureFormat::Html => html::write(out, &doc)?,
    }
    out.flush()?;
    let gate_failed = doc.gate.as_ref().is_some_and(|g| !g.passed);
    if let Some(g) = doc.gate.as_ref().filter(|g| !g.passed) {
        writeln!(
            err,
            "mtlscope: gate failed: {} flow{} of a forbidden class ({}){}",
            g.violations_total,
            if g.violations_total == 1 { "" } else { "s" },
            g.forbid.join(", "),
            if g.namespaces.is_empty() {
                String::new()
            } else {
                format!(" into {}", g.namespaces.join(", "))
            }
        )?;
        if cfg.format != PostureFormat::Table {
            for v in &g.violations {
                writeln!(err, "  {}", table::flow_line(v))?;
            }
        }
    }
    Ok(if failed {
        PostureOutcome::InputError
    } else if gate_failed {
        PostureOutcome::GateFailed
    } else {
        PostureOutcome::Clean
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_types_are_counted_across_runs() {
        let mut c = ReadCounts::default();
        for l in [1, 1, 113, 113, 1, 276, 1] {
            c.frame(LinkType(l));
        }
        c.close();
        assert_eq!(c.packets, 7);
        let got: Vec<(u32, u64)> = c.link_types.into_iter().collect();
        assert_eq!(got, [(1, 4), (113, 2), (276, 1)]);
    }

    /// Takes at most a few bytes per write, across slices, so that vectored writes end
    /// mid-slice.
    struct Stingy(Vec<u8>);

    impl Write for Stingy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[io::IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
            let mut room = 7usize;
            for b in bufs {
                let n = b.len().min(room);
                self.0.extend_from_slice(&b[..n]);
                room -= n;
            }
            Ok(7 - room)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_of_tail_hit_each_line_of_the_tail_once() {
        for base in 0..130 {
            for len in 0..300 {
                for tail in [0, 1, 63, 64, 65, 512] {
                    let got: Vec<usize> = lines_of_tail(base, len, tail).collect();
                    let lines: Vec<usize> = got.iter().map(|i| (base + i) / CACHE_LINE).collect();
                    let want: std::collections::BTreeSet<usize> = (len - tail.min(len)..len)
                        .map(|i| (base + i) / CACHE_LINE)
                        .collect();
                    assert!(got.iter().all(|&i| i < len), "{base} {len} {tail}: {got:?}");
                    assert_eq!(
                        lines,
                        want.into_iter().collect::<Vec<_>>(),
                        "{base} {len} {tail}"
                    );
                }
            }
        }
    }

    /// More lines than one vectored write takes (1024), each write ending mid-line: all
    /// are written, in order.
    #[test]
    fn lines_survive_short_vectored_writes() {
        let lines: Vec<Vec<u8>> = (0..2000)
            .map(|i| format!("{{\"n\":{i}}}\n").into_bytes())
            .collect();
        let mut stingy = Stingy(Vec::new());
        Printer::jsonl(&mut stingy)
            .lines(lines.iter().map(Vec::as_slice))
            .unwrap();
        assert_eq!(stingy.0, lines.concat());
    }
}
