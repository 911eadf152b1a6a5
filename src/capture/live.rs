//! Live capture from a network interface through libpcap (the `live` cargo feature).
//!
//! Frames come out as from a file, with the interface's link type (`-i any` is asked for
//! Linux cooked v2, which carries the interface index, and falls back to v1). The capture
//! is non-blocking (libpcap's read timeout never expires on Linux while no packet comes):
//! when nothing is waiting it reports [`Event::Idle`] and sleeps [`POLL`] before looking
//! again, so the caller can hand on what it holds, let idle flows expire and notice
//! Ctrl-C. libpcap's statistics give the packets the
//! kernel and the interface dropped. Opening fails with a message that says what to do
//! when the interface does not exist or the user may not capture.

use std::ops::ControlFlow;
use std::time::Duration;

use super::{CaptureError, Event, Frame, LinkType, Timestamp};

/// Kernel buffer for captured packets: room for bursts while the analysis catches up.
const BUFFER_BYTES: i32 = 32 * 1024 * 1024;
/// Sleep between two looks at a quiet interface.
const POLL: Duration = Duration::from_millis(10);

/// Why live capture could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    /// No interface has that name.
    #[error("no interface named {0:?} (see `mtlscope analyze --list-interfaces`)")]
    NoSuchInterface(String),
    /// The user lacks the privilege to capture.
    #[error(
        "no permission to capture on {0}: run as root, or give the binary the capabilities \
         (sudo setcap cap_net_raw,cap_net_admin=eip /path/to/mtlscope)"
    )]
    Permission(String),
    /// The BPF filter does not compile.
    #[error("bad capture filter {filter:?}: {detail}")]
    Filter {
        /// The filter as given.
        filter: String,
        /// libpcap's message.
        detail: String,
    },
    /// Anything else libpcap reported.
    #[error("cannot capture on {interface}: {detail}")]
    Other {
        /// The interface.
        interface: String,
        /// libpcap's message.
        detail: String,
    },
}

/// Packets lost before analysis, from libpcap's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveDrops {
    /// Dropped by the kernel (capture buffer full).
    pub kernel: u64,
    /// Dropped by the interface or its driver.
    pub interface: u64,
}

fn is_permission(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("permission") || m.contains("not permitted")
}

/// An open live capture.
pub struct LiveCapture {
    cap: pcap::Capture<pcap::Active>,
    link: LinkType,
    frames: u64,
    idle_every: Duration,
}

impl LiveCapture {
    /// Opens `interface` with a snaplen and an optional BPF filter; a quiet interface
    /// reports [`Event::Idle`] at once, then every `idle_every`.
    pub fn open(
        interface: &str,
        filter: Option<&str>,
        snaplen: u32,
        idle_every: Duration,
    ) -> Result<LiveCapture, LiveError> {
        let other = |e: pcap::Error| {
            let detail = e.to_string();
            if is_permission(&detail) {
                LiveError::Permission(interface.to_string())
            } else if detail.contains("No such device") {
                LiveError::NoSuchInterface(interface.to_string())
            } else {
                LiveError::Other {
                    interface: interface.to_string(),
                    detail,
                }
            }
        };
        if let Ok(list) = pcap::Device::list()
            && !list.iter().any(|d| d.name == interface)
        {
            return Err(LiveError::NoSuchInterface(interface.to_string()));
        }
        let ms = i32::try_from(idle_every.as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        let mut cap = pcap::Capture::from_device(interface)
            .map_err(other)?
            .snaplen(i32::try_from(snaplen).unwrap_or(i32::MAX))
            .timeout(ms)
            .buffer_size(BUFFER_BYTES)
            .open()
            .map_err(other)?
            .setnonblock()
            .map_err(other)?;
        if interface == "any" {
            // Linux cooked v2 keeps the interface index (loopback tells pod-local legs).
            let _ = cap.set_datalink(pcap::Linktype(276));
        }
        if let Some(f) = filter {
            cap.filter(f, true).map_err(|e| LiveError::Filter {
                filter: f.to_string(),
                detail: e.to_string(),
            })?;
        }
        let link = LinkType(cap.get_datalink().0 as u32);
        Ok(LiveCapture {
            cap,
            link,
            frames: 0,
            idle_every,
        })
    }

    /// The link type frames come with.
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// Reports every frame, and [`Event::Idle`] when nothing is waiting (at once, then
    /// every `idle_every` while it stays so), until `on` breaks or the capture fails.
    pub fn run(
        &mut self,
        mut on: impl FnMut(Event<'_, '_>) -> ControlFlow<()>,
    ) -> Result<(), CaptureError> {
        let mut last_idle: Option<std::time::Instant> = None;
        loop {
            let flow = match self.cap.next_packet() {
                Ok(p) => {
                    self.frames += 1;
                    // time_t is 32 bits on some platforms.
                    #[allow(clippy::useless_conversion)]
                    let ts = Timestamp::from_parts(
                        i64::from(p.header.ts.tv_sec),
                        u64::try_from(p.header.ts.tv_usec).unwrap_or(0),
                        1_000_000,
                    );
                    let frame = Frame {
                        number: self.frames,
                        ts,
                        link: self.link,
                        interface: 0,
                        data: p.data,
                        orig_len: p.header.len,
                        block: None,
                    };
                    last_idle = None;
                    on(Event::Frame(&frame))
                }
                Err(pcap::Error::TimeoutExpired) => {
                    let due = last_idle.is_none_or(|t| t.elapsed() >= self.idle_every);
                    let flow = if due {
                        last_idle = Some(std::time::Instant::now());
                        on(Event::Idle)
                    } else {
                        ControlFlow::Continue(())
                    };
                    if flow.is_continue() {
                        std::thread::sleep(POLL);
                    }
                    flow
                }
                Err(pcap::Error::NoMorePackets) => return Ok(()),
                Err(e) => return Err(CaptureError::Io(e.to_string())),
            };
            if flow.is_break() {
                return Ok(());
            }
        }
    }

    /// Packets dropped so far by the kernel and by the interface.
    pub fn drops(&mut self) -> Option<LiveDrops> {
        self.cap.stats().ok().map(|s| LiveDrops {
            kernel: u64::from(s.dropped),
            interface: u64::from(s.if_dropped),
        })
    }
}

/// One line per interface live capture can use: name, state, addresses, description.
pub fn interfaces() -> Result<Vec<String>, LiveError> {
    let list = pcap::Device::list().map_err(|e| LiveError::Other {
        interface: "(list)".into(),
        detail: e.to_string(),
    })?;
    Ok(list
        .into_iter()
        .map(|d| {
            let mut flags = Vec::new();
            if d.flags.is_up() {
                flags.push("up");
            }
            if d.flags.is_running() {
                flags.push("running");
            }
            if d.flags.is_loopback() {
                flags.push("loopback");
            }
            let addrs: Vec<String> = d.addresses.iter().map(|a| a.addr.to_string()).collect();
            let mut line = format!("{:<16} [{}]", d.name, flags.join(","));
            if !addrs.is_empty() {
                line.push_str(&format!(" {}", addrs.join(" ")));
            }
            if let Some(desc) = d.desc {
                line.push_str(&format!("  ({desc})"));
            }
            line
        })
        .collect())
}
