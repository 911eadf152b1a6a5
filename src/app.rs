//! The pipeline: one reader, N shard workers, one printer. The only module with threads.
//!
//! The reader (the calling thread) reads frames, decodes them, and sends each TCP
//! segment, with its payload copied once into a per-batch arena, to the worker that owns
//! its flow (`FlowKey::shard`, symmetric). Channels are bounded, so a slow worker slows
//! the reader instead of growing memory. Each worker owns its flow table outright (no
//! locks), and returns its finished flow records at the end of input. Records are sorted
//! by first frame before printing, so output is byte-identical for any thread count.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::analyzers::ConnAnalyzer;
use crate::capture::{CaptureReader, Frame, LinkType, Timestamp};
use crate::decode::{self, Endpoint, TcpFlags, TcpSegment};
use crate::flow::{Ctx, FlowKey, FlowTable, TableConfig};
use crate::report::{self, FlowRecord, SCHEMA_VERSION, Summary};

/// Segments per batch sent to a worker.
const BATCH: usize = 512;
/// Batches in flight per worker.
const CHANNEL_DEPTH: usize = 8;

/// Where packets come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A pcap or pcapng file.
    File(PathBuf),
    /// A pcap or pcapng stream on standard input.
    Stdin,
}

impl Input {
    /// The name used in records and messages.
    pub fn name(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "-".to_string(),
        }
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
    /// Inputs, analyzed in order.
    pub inputs: Vec<Input>,
    /// Output format.
    pub format: Format,
    /// Shard workers per capture.
    pub threads: usize,
    /// Flow table bounds and timeouts.
    pub table: TableConfig,
    /// Table width (None: the terminal's, or unbounded).
    pub width: Option<u16>,
    /// Table output: print each flow's evidence and diagnosis under the table.
    pub explain: bool,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every input was read to its end.
    Ok,
    /// At least one input could not be read (or only in part).
    InputError,
}

/// Segment metadata; the payload lives in the batch arena.
#[derive(Clone, Copy, Debug)]
struct SegMeta {
    src: Endpoint,
    dst: Endpoint,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    wire_len: u32,
    ifindex: Option<u32>,
    frame: u64,
    ts: Timestamp,
    start: usize,
    len: usize,
}

#[derive(Default)]
struct Batch {
    segs: Vec<SegMeta>,
    data: Vec<u8>,
}

impl Batch {
    fn push(&mut self, seg: &TcpSegment<'_>, frame: &Frame<'_>) {
        let start = self.data.len();
        self.data.extend_from_slice(seg.payload);
        self.segs.push(SegMeta {
            src: seg.src,
            dst: seg.dst,
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags,
            wire_len: seg.wire_len,
            ifindex: seg.ifindex,
            frame: frame.number,
            ts: frame.ts,
            start,
            len: seg.payload.len(),
        });
    }
}

/// Runs the whole configuration, writing records to `out` and one-line errors to `err`.
pub fn run(cfg: &Config, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<Outcome> {
    let mut outcome = Outcome::Ok;
    for input in &cfg.inputs {
        let name = input.name();
        let result = match input {
            Input::File(p) => match std::fs::File::open(p) {
                Ok(f) => analyze(io::BufReader::with_capacity(1 << 20, f), &name, cfg),
                Err(e) => Err(format!("cannot open: {e}")),
            },
            Input::Stdin => analyze(io::stdin(), &name, cfg),
        };
        let (records, summary) = match result {
            Ok(v) => v,
            Err(msg) => {
                writeln!(err, "mtlscope: {name}: {msg}")?;
                outcome = Outcome::InputError;
                (
                    Vec::new(),
                    Summary {
                        error: Some(msg),
                        ..empty_summary(&name)
                    },
                )
            }
        };
        if let Some(e) = summary
            .error
            .as_ref()
            .filter(|_| !records.is_empty() || summary.packets > 0)
        {
            writeln!(err, "mtlscope: {name}: {e}")?;
            outcome = Outcome::InputError;
        }
        write_records(cfg, out, &records, &summary)?;
    }
    Ok(outcome)
}

fn write_records(
    cfg: &Config,
    out: &mut dyn Write,
    records: &[FlowRecord],
    summary: &Summary,
) -> io::Result<()> {
    match cfg.format {
        Format::Jsonl => {
            for r in records {
                serde_json::to_writer(&mut *out, r)?;
                out.write_all(b"\n")?;
            }
            serde_json::to_writer(&mut *out, summary)?;
            out.write_all(b"\n")?;
        }
        Format::Table => report::table::write(out, records, summary, cfg.width, cfg.explain)?,
    }
    out.flush()
}

/// Flow records and summary of a capture, or why it could not be opened at all.
type Analyzed = Result<(Vec<FlowRecord>, Summary), String>;

fn empty_summary(name: &str) -> Summary {
    Summary {
        kind: "summary",
        schema_version: SCHEMA_VERSION,
        capture: name.to_string(),
        ..Summary::default()
    }
}

/// Analyzes one capture. A read error after some frames still reports those frames'
/// flows, with the error in the summary.
pub fn analyze<R: Read + Send>(source: R, name: &str, cfg: &Config) -> Analyzed {
    let mut summary = empty_summary(name);
    let mut reader = CaptureReader::new(source).map_err(|e| e.to_string())?;
    let n = cfg.threads.max(1);
    let table_cfg = cfg.table;
    let (read_result, mut records, evicted) = std::thread::scope(|scope| {
        let mut senders: Vec<SyncSender<Batch>> = Vec::with_capacity(n);
        let mut workers = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = sync_channel::<Batch>(CHANNEL_DEPTH);
            senders.push(tx);
            workers.push(scope.spawn(move || worker(rx, table_cfg, name)));
        }
        let mut batches: Vec<Batch> = (0..n).map(|_| Batch::default()).collect();
        let mut unsupported: Option<LinkType> = None;
        let read_result = reader.for_each_frame(|frame| {
            summary.packets += 1;
            *summary.link_types.entry(frame.link.0).or_default() += 1;
            if !decode::supports(frame.link) {
                unsupported.get_or_insert(frame.link);
            }
            match decode::decode(frame) {
                Ok(seg) => {
                    summary.decoded += 1;
                    let shard = FlowKey::new(seg.src, seg.dst).shard(n);
                    let b = &mut batches[shard];
                    b.push(&seg, frame);
                    if b.segs.len() >= BATCH {
                        let full = std::mem::take(b);
                        // A worker only hangs up by panicking, which scope will report.
                        let _ = senders[shard].send(full);
                    }
                }
                Err(e) => *summary.undecoded.entry(e.name()).or_default() += 1,
            }
        });
        for (shard, b) in batches.into_iter().enumerate() {
            if !b.segs.is_empty() {
                let _ = senders[shard].send(b);
            }
        }
        drop(senders);
        let mut records = Vec::new();
        let mut evicted = 0;
        for w in workers {
            if let Ok((r, e)) = w.join() {
                records.extend(r);
                evicted += e;
            }
        }
        // A pcap has one link type: if it is not decodable, the file cannot be analyzed.
        let read_result = match (read_result, unsupported) {
            (Ok(()), Some(l)) if reader.is_legacy_pcap() => {
                Err(format!("unsupported link type {l}"))
            }
            (r, _) => r.map_err(|e| e.to_string()),
        };
        (read_result, records, evicted)
    });
    records.sort_by_key(|r| r.first_frame);
    report::link_legs(&mut records);
    for r in &records {
        summary.count(r);
    }
    summary.evicted_flows = evicted;
    summary.error = read_result.err();
    Ok((records, summary))
}

/// One shard: owns a flow table, returns the finished records and the eviction count.
fn worker(rx: Receiver<Batch>, cfg: TableConfig, name: &str) -> (Vec<FlowRecord>, u64) {
    let mut table: FlowTable<ConnAnalyzer> = FlowTable::new(cfg);
    let mut records = Vec::new();
    for batch in rx {
        for m in &batch.segs {
            let seg = TcpSegment {
                src: m.src,
                dst: m.dst,
                seq: m.seq,
                ack: m.ack,
                flags: m.flags,
                payload: &batch.data[m.start..m.start + m.len],
                wire_len: m.wire_len,
                ifindex: m.ifindex,
            };
            table.process(
                &seg,
                &Ctx {
                    frame: m.frame,
                    ts: m.ts,
                },
            );
        }
        records.extend(
            table
                .take_finished()
                .iter()
                .map(|f| report::flow_record(f, name)),
        );
    }
    records.extend(
        table
            .finish_all()
            .iter()
            .map(|f| report::flow_record(f, name)),
    );
    (records, table.evicted())
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
