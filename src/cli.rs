//! Command line: clap's raw flags, validated into an [`app::Config`](crate::app::Config).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::app::{Config, Format, Input, LiveOptions, PostureConfig, PostureFormat};
use crate::flow::reassembly::{DEFAULT_RETRANSMIT_WINDOW, MAX_RETRANSMIT_WINDOW};
use crate::flow::{Limits, TableConfig};
use crate::posture::{self, By, gate};

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
    /// Per namespace: is it really encrypted, and who would break under STRICT? Also a CI
    /// gate (--require mtls). Exit codes: 0 clean, 1 gate failed, 2 usage or input error.
    Posture(PostureArgs),
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
    /// Bytes of each direction's last run of read bytes (handshakes, record headers)
    /// kept to compare retransmissions against; a differing copy is an `overlap_conflict`.
    /// Rounded up to a power of two; 0 compares only out-of-order data.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RETRANSMIT_WINDOW as u32,
          value_parser = clap::value_parser!(u32).range(0..=MAX_RETRANSMIT_WINDOW as i64))]
    pub retransmit_window: u32,
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

/// Validates `--threads`: 1 to 1024, by default the available cores.
fn threads(flag: Option<usize>) -> Result<usize, String> {
    match flag {
        Some(0) => Err("--threads must be at least 1".into()),
        Some(n) if n > 1024 => Err("--threads must be at most 1024".into()),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

impl AnalyzeArgs {
    /// Validates flags into a configuration.
    pub fn into_config(self) -> Result<Config, String> {
        let threads = threads(self.threads)?;
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
                }
                .with_retransmit_window(self.retransmit_window as usize),
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

/// Output formats of `posture`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PostureFormatArg {
    /// Tables (default on a terminal).
    Table,
    /// One JSON document (default when stdout is not a terminal); see docs/posture.md.
    Json,
    /// Graphviz DOT: namespaces as clusters, workloads as nodes, edges coloured by class.
    Dot,
    /// A self-contained HTML report with the service graph.
    Html,
}

/// Grouping of `posture`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ByArg {
    /// One row per namespace.
    Namespace,
    /// One row per workload (Deployment, StatefulSet, ...).
    Workload,
    /// One row per Service.
    Service,
}

/// What the gate requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RequireArg {
    /// Network-leg flows into the selected namespaces must be mesh mTLS.
    Mtls,
}

/// Flags of `posture`.
#[derive(Debug, clap::Args)]
pub struct PostureArgs {
    /// Captures (pcap, pcapng) and flow records (`mtlscope analyze --format jsonl`
    /// output), in any mix; `-` reads either from standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// `kubectl get pods -A -o json`: IPs to namespaces, pods, workloads, sidecars.
    #[arg(long, value_name = "FILE")]
    pub pods: Option<PathBuf>,
    /// `kubectl get svc -A -o json`: ClusterIPs and ports to services.
    #[arg(long, value_name = "FILE")]
    pub services: Option<PathBuf>,
    /// `kubectl get peerauthentications.security.istio.io -A -o json`.
    #[arg(long, value_name = "FILE")]
    pub policies: Option<PathBuf>,
    /// Group flows by namespace, workload or service.
    #[arg(long, value_enum, default_value_t = ByArg::Namespace)]
    pub by: ByArg,
    /// Output format [default: table on a terminal, else json].
    #[arg(long, value_enum)]
    pub format: Option<PostureFormatArg>,
    /// Only these namespaces (repeat, or separate with commas); the gate checks flows into them.
    #[arg(
        long = "namespace",
        short = 'n',
        value_name = "NS",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// CI gate: exit 1 when a network-leg flow into the selected namespaces is of a forbidden class.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub require: Option<RequireArg>,
    /// Classes the gate forbids: plaintext, app-tls, double-wrapped, failed, unknown, telemetry.
    #[arg(
        long,
        value_name = "CLASSES",
        default_value = "plaintext",
        requires = "require"
    )]
    pub forbid: String,
    /// Flows the gate lets through: a client or server in CIDR, or namespace/workload (or namespace/*).
    #[arg(
        long,
        value_name = "CIDR|NS/WORKLOAD",
        value_delimiter = ',',
        requires = "require"
    )]
    pub allow: Vec<String>,
    /// Shard workers per capture [default: available cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Colour only for a terminal, and never when NO_COLOR is set to a non-empty value.
pub fn color_enabled(stdout_tty: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stdout_tty && no_color.is_none_or(|v| v.is_empty())
}

fn inputs(files: Vec<PathBuf>) -> Result<Vec<Input>, String> {
    let stdin_count = files.iter().filter(|f| f.as_os_str() == "-").count();
    if stdin_count > 1 {
        return Err("`-` (standard input) can be given only once".into());
    }
    Ok(files
        .into_iter()
        .map(|f| {
            if f.as_os_str() == "-" {
                Input::Stdin
            } else {
                Input::File(f)
            }
        })
        .collect())
}

impl PostureArgs {
    /// Validates flags into a configuration.
    pub fn into_config(self) -> Result<PostureConfig, String> {
        let threads = threads(self.threads)?;
        let mut namespaces: Vec<String> = self
            .namespaces
            .into_iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        namespaces.sort();
        namespaces.dedup();
        let gate = match self.require {
            None => None,
            Some(RequireArg::Mtls) => {
                let forbid = gate::parse_forbid(&self.forbid)?;
                let allow_text: Vec<String> = self
                    .allow
                    .into_iter()
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect();
                let allow = allow_text
                    .iter()
                    .map(|a| gate::Allow::parse(a))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(gate::Gate {
                    forbid,
                    namespaces: namespaces.clone(),
                    allow,
                    allow_text,
                })
            }
        };
        let stdout_tty = std::io::stdout().is_terminal();
        let format = match self.format {
            Some(PostureFormatArg::Table) => PostureFormat::Table,
            Some(PostureFormatArg::Json) => PostureFormat::Json,
            Some(PostureFormatArg::Dot) => PostureFormat::Dot,
            Some(PostureFormatArg::Html) => PostureFormat::Html,
            None if stdout_tty => PostureFormat::Table,
            None => PostureFormat::Json,
        };
        Ok(PostureConfig {
            inputs: inputs(self.files)?,
            pods: self.pods,
            services: self.services,
            policies: self.policies,
            options: posture::Options {
                by: match self.by {
                    ByArg::Namespace => By::Namespace,
                    ByArg::Workload => By::Workload,
                    ByArg::Service => By::Service,
                },
                namespaces,
                gate,
            },
            format,
            threads,
            width: if stdout_tty { None } else { Some(160) },
            color: color_enabled(stdout_tty, std::env::var_os("NO_COLOR").as_deref()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        use std::ffi::OsStr;
        assert!(color_enabled(true, None));
        assert!(!color_enabled(false, None));
        assert!(!color_enabled(true, Some(OsStr::new("1"))));
        assert!(
            color_enabled(true, Some(OsStr::new(""))),
            "an empty NO_COLOR does not count"
        );
    }

    #[test]
    fn posture_flags_validate() {
        let parse = |args: &[&str]| {
            let mut v = vec!["mtlscope", "posture"];
            v.extend_from_slice(args);
            match Args::try_parse_from(v).map_err(|e| e.to_string())?.command {
                Command::Posture(p) => p.into_config(),
                Command::Analyze(_) => unreachable!("posture was given"),
            }
        };
        let c = parse(&[
            "a.pcap",
            "--require",
            "mtls",
            "-n",
            "shop,payments",
            "--namespace",
            "shop",
            "--forbid",
            "plaintext,failed",
            "--allow",
            "10.0.0.0/8,legacy/batch",
        ])
        .unwrap();
        let g = c.options.gate.unwrap();
        assert_eq!(g.namespaces, vec!["payments", "shop"]);
        assert_eq!(
            g.forbid,
            vec![posture::PClass::Plaintext, posture::PClass::Failed]
        );
        assert_eq!(g.allow.len(), 2);
        assert!(
            parse(&["a.pcap", "--forbid", "failed"])
                .unwrap_err()
                .contains("--require")
        );
        assert!(
            parse(&["a.pcap", "--require", "mtls", "--allow", "nope"])
                .unwrap_err()
                .contains("--allow")
        );
        assert!(parse(&["a.pcap", "--require", "tls"]).is_err());
        assert!(parse(&["-", "-"]).unwrap_err().contains("only once"));
        assert!(parse(&["a.pcap", "--threads", "0"]).is_err());
        let c = parse(&["a.pcap", "--by", "workload", "--format", "dot"]).unwrap();
        assert_eq!((c.options.by, c.format), (By::Workload, PostureFormat::Dot));
        assert!(c.options.gate.is_none());
    }
}
