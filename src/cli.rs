//! Command line: clap's raw flags, validated into an [`app::Config`](crate::app::Config).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::app::{Config, Format, Input, LiveOptions};
use crate::flow::{Limits, TableConfig};

/// mtlscope: is my service-mesh traffic really encrypted? Answers from packets.
#[derive(Debug, Parser)]
#[command(name = "mtlscope", version, about)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read captures and print one record per TCP flow with its TLS facts.
    Analyze(AnalyzeArgs),
}

/// Output formats on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// A table (default on a terminal).
    Table,
    /// JSON Lines (default when stdout is not a terminal); see docs/flow-record.md.
    Jsonl,
}

/// Flags of `analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// pcap or pcapng files; `-` reads a capture stream on standard input (printed as
    /// flows are decided).
    #[arg(value_name = "FILE", required_unless_present_any = ["interface", "list_interfaces"])]
    pub files: Vec<PathBuf>,
    /// Capture live from this interface (`any`: all of them) [needs the `live` feature
    /// and CAP_NET_RAW/CAP_NET_ADMIN].
    #[arg(short = 'i', long, value_name = "IFACE", conflicts_with = "files")]
    pub interface: Option<String>,
    /// BPF capture filter for `-i`, as for tcpdump (e.g. 'tcp port 8080').
    #[arg(short = 'f', long, value_name = "BPF", requires = "interface")]
    pub filter: Option<String>,
    /// Bytes captured of each packet with `-i`.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 262_144,
        requires = "interface"
    )]
    pub snaplen: u32,
    /// List the interfaces `-i` can capture from, and exit.
    #[arg(long)]
    pub list_interfaces: bool,
    /// Also print a flow when its handshake is decided (`end: "handshake"`); its final
    /// record follows when it ends (JSON Lines; the table shows the first only).
    #[arg(long)]
    pub early: bool,
    /// Output format [default: table on a terminal, else jsonl].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Shard workers [default: available cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Bytes reassembled per flow direction before only counting.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().depth)]
    pub reassembly_depth: u64,
    /// Out-of-order bytes buffered per flow direction while waiting for a hole.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_pending_bytes)]
    pub max_pending_bytes: usize,
    /// Flows held at once (all workers together); the least recently active are evicted
    /// beyond it, and counted in the summary.
    #[arg(long, value_name = "N", default_value_t = TableConfig::default().max_flows)]
    pub max_flows: usize,
    /// Under each table row, print the flow's evidence, pairing and diagnosis with its fix.
    #[arg(long)]
    pub explain: bool,
    /// Seconds without packets after which a flow ends (capture time; on a quiet stream
    /// or interface, wall time).
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub idle_timeout: u64,
}

impl AnalyzeArgs {
    /// Validates flags into a configuration.
    pub fn into_config(self) -> Result<Config, String> {
        let threads = match self.threads {
            Some(0) => return Err("--threads must be at least 1".into()),
            Some(n) if n > 1024 => return Err("--threads must be at most 1024".into()),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if self.max_flows == 0 {
            return Err("--max-flows must be at least 1".into());
        }
        if self.idle_timeout == 0 {
            return Err("--idle-timeout must be at least 1 second".into());
        }
        if self.snaplen < 64 {
            return Err("--snaplen must be at least 64 bytes".into());
        }
        let stdin_count = self.files.iter().filter(|f| f.as_os_str() == "-").count();
        if stdin_count > 1 {
            return Err("`-` (standard input) can be given only once".into());
        }
        let stdout_tty = std::io::stdout().is_terminal();
        let format = match self.format {
            Some(FormatArg::Table) => Format::Table,
            Some(FormatArg::Jsonl) => Format::Jsonl,
            None if stdout_tty => Format::Table,
            None => Format::Jsonl,
        };
        let width = if stdout_tty { None } else { Some(160) };
        let defaults = TableConfig::default();
        let mut inputs: Vec<Input> = self
            .files
            .into_iter()
            .map(|f| {
                if f.as_os_str() == "-" {
                    Input::Stdin
                } else {
                    Input::File(f)
                }
            })
            .collect();
        if let Some(interface) = self.interface {
            inputs.push(Input::Live(LiveOptions {
                interface,
                filter: self.filter,
                snaplen: self.snaplen,
            }));
        }
        Ok(Config {
            inputs,
            list_interfaces: self.list_interfaces,
            early: self.early,
            progress: std::io::stderr().is_terminal(),
            format,
            threads,
            table: TableConfig {
                limits: Limits {
                    depth: self.reassembly_depth,
                    max_pending_bytes: self.max_pending_bytes,
                    ..Limits::default()
                },
                max_flows: self.max_flows,
                idle_timeout: i64::try_from(self.idle_timeout.saturating_mul(1_000_000_000))
                    .unwrap_or(i64::MAX),
                ..defaults
            },
            width,
            explain: self.explain,
        })
    }
}
