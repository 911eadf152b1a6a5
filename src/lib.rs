//! mtlscope: from packets to an answer about mesh encryption.
//!
//! Data flows one way, and a module imports only from stages to its left:
//!
//! ```text
//! capture ─Frame─▶ decode ─Segment─▶ flow (table + TCP reassembly)
//!         ─bytes per direction─▶ analyzers (TLS, plaintext) ─facts─▶ classify ─▶ report
//!         ─flow records─▶ posture
//! ```
//!
//! * [`capture`] reads frames (pcap, pcapng, a stream on stdin) with their link type and time.
//! * [`decode`] turns a frame into a borrowed TCP segment view, counting what it cannot decode.
//! * [`flow`] keys segments by a canonical 5-tuple, shards them by a symmetric hash and
//!   reassembles each direction with wrapping sequence arithmetic under a byte budget.
//! * [`analyzers`] consume each direction's reassembled bytes and keep owned facts.
//! * [`classify`] is a pure function from facts to a class with its evidence.
//! * [`report`] renders flow records as JSON Lines or a table.
//! * [`posture`] turns flow records (from this process or from earlier runs' JSON Lines)
//!   and optional Kubernetes context into per-namespace verdicts, findings and a CI gate.
//!
//! [`app`] wires the stages together (one reader, N shard workers); `main` is thin.
//!
//! No `unsafe` code outside `capture/mapped.rs` (mapping a file, and a SIGBUS handler).
#![deny(unsafe_code)]

pub mod analyzers;
pub mod app;
pub mod capture;
pub mod classify;
pub mod cli;
pub mod decode;
pub mod flow;
pub mod posture;
pub mod report;
