//! Criterion benches of the pipeline stages on the committed captures, loaded into memory
//! first so the disk is not measured. Run: `cargo bench --bench stages`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mtlscope::analyzers::ConnAnalyzer;
use mtlscope::analyzers::tls::TlsAnalyzer;
use mtlscope::capture::{CaptureReader, LinkType, Timestamp};
use mtlscope::decode;
use mtlscope::flow::{
    Chunk, Consumed, Ctx, Dir, FlowTable, Limits, Reassembler, SeqNum, TableConfig,
};

struct Frame {
    number: u64,
    ts: Timestamp,
    link: LinkType,
    data: Vec<u8>,
}

/// The committed captures' bytes, and their frames.
fn load() -> (Vec<Vec<u8>>, Vec<Frame>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("captures/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    paths.sort();
    let (mut files, mut frames) = (Vec::new(), Vec::new());
    for p in paths {
        let bytes = std::fs::read(&p).expect("read capture");
        {
            let mut r = CaptureReader::new(&bytes[..]).expect("capture");
            let _ = r.for_each_frame(|f| {
                frames.push(Frame {
                    number: frames.len() as u64 + 1,
                    ts: f.ts,
                    link: f.link,
                    data: f.data.to_vec(),
                })
            });
        }
        files.push(bytes);
    }
    (files, frames)
}

fn stages(c: &mut Criterion) {
    let (files, frames) = load();
    let bytes: u64 = frames.iter().map(|f| f.data.len() as u64).sum();
    let views: Vec<mtlscope::capture::Frame<'_>> = frames
        .iter()
        .map(|f| mtlscope::capture::Frame {
            number: f.number,
            ts: f.ts,
            link: f.link,
            interface: 0,
            data: &f.data,
            orig_len: f.data.len() as u32,
            block: None,
        })
        .collect();

    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("read", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for bytes in &files {
                let mut r = CaptureReader::new(black_box(&bytes[..])).expect("capture");
                let _ = r.for_each_frame(|f| n += f.data.len());
            }
            n
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            views
                .iter()
                .filter(|f| decode::decode(black_box(f)).is_ok())
                .count()
        })
    });
    g.bench_function("flows+reassembly+tls", |b| {
        b.iter(|| {
            let mut t: FlowTable<ConnAnalyzer> = FlowTable::new(TableConfig::default());
            for f in &views {
                if let Ok(seg) = decode::decode(f) {
                    t.process(
                        &seg,
                        &Ctx {
                            frame: f.number,
                            ts: f.ts,
                        },
                        f.ts,
                    );
                }
            }
            t.finish_all().count()
        })
    });
    g.finish();

    // The TLS analyzer alone on every TCP payload, in order, as one stream per direction.
    let payloads: Vec<&[u8]> = views
        .iter()
        .filter_map(|f| decode::decode(f).ok())
        .map(|s| s.payload)
        .filter(|p| p.first() == Some(&0x16))
        .collect();
    let hello_bytes: u64 = payloads.iter().map(|p| p.len() as u64).sum();
    let mut g = c.benchmark_group("tls");
    g.throughput(Throughput::Bytes(hello_bytes));
    g.bench_function("handshake_records", |b| {
        b.iter(|| {
            let mut n = 0;
            for p in &payloads {
                let mut t = TlsAnalyzer::default();
                t.on_chunk(
                    Dir::AtoB,
                    Chunk::Data(black_box(p)),
                    &Ctx {
                        frame: 1,
                        ts: Timestamp(0),
                    },
                );
                n += usize::from(t.is_tls());
            }
            n
        })
    });
    g.finish();
}

/// TCP reassembly alone: one direction of 256 KiB in 1448-byte segments, in order and with
/// every pair of segments swapped, delivered to a consumer that only counts.
fn reassembly(c: &mut Criterion) {
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7) as u8).collect();
    let segs: Vec<(u32, &[u8])> = data
        .chunks(1448)
        .enumerate()
        .map(|(i, s)| (1000 + (i * 1448) as u32, s))
        .collect();
    let mut swapped = segs.clone();
    for pair in swapped.chunks_mut(2) {
        pair.reverse();
    }
    let mut g = c.benchmark_group("reassembly");
    g.throughput(Throughput::Bytes(data.len() as u64));
    for (name, order) in [("in_order", &segs), ("out_of_order", &swapped)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut r = Reassembler::new(Limits {
                    depth: u64::MAX,
                    ..Limits::default()
                });
                r.syn(SeqNum(999));
                let mut n = 0usize;
                for (seq, bytes) in order.iter() {
                    r.segment(
                        SeqNum(*seq),
                        bytes.len() as u32,
                        black_box(bytes),
                        &mut |c| {
                            if let Chunk::Data(d) = c {
                                n += d.len();
                            }
                            Consumed::Read
                        },
                    );
                }
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, stages, reassembly);
criterion_main!(benches);
