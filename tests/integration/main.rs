//! Integration tests of the `mtlscope` binary. One test binary; each module covers one
//! concern:

#[path = "../support/mod.rs"]
mod support;

/// Exact facts on the captures in `captures/`, made with real TLS stacks and tcpdump.
mod captures;
/// Command-line behaviour: exit codes, errors that name the file, stdin, thread counts.
mod cli;
/// Hostile input: floods of half-open flows, random frames, TLS garbage.
mod hostile;
/// Live capture on `lo` (feature `live`; skipped without capture privileges).
#[cfg(feature = "live")]
mod live;
/// `posture`: verdicts, findings, merging, the gate and its exit codes on captures/posture/.
mod posture;
/// Agreement with tshark's ground truth on the public captures (score-truth).
mod public;
/// TCP reassembly edge cases on synthetic packets: reordering, wrap, overlap, gaps, reuse.
mod reassembly;
/// Mesh scenarios (captures/scenarios/expected.json): class, leg, handshake, diagnosis, pairing.
mod scenarios;
/// The JSON Lines contract: every field is documented and typed (docs/flow-record.md).
mod schema;
/// Streams: flows printed before the input ends, Ctrl-C, cut streams, `--early`, and the
/// same bytes for any thread count.
mod streaming;
