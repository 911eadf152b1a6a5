//! Flow identity: a direction-agnostic key and a symmetric shard function.

use crate::decode::Endpoint;

/// One direction of a flow, relative to the flow's first-seen packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From the sender of the first packet seen (`Flow::a`) to the other end.
    AtoB = 0,
    /// The reverse.
    BtoA = 1,
}

impl Dir {
    /// The other direction.
    pub fn rev(self) -> Dir {
        match self {
            Dir::AtoB => Dir::BtoA,
            Dir::BtoA => Dir::AtoB,
        }
    }

    /// Index into per-direction arrays.
    pub fn idx(self) -> usize {
        self as usize
    }
}

/// The two endpoints of a TCP connection, lowest first, so both directions map to one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    lo: Endpoint,
    hi: Endpoint,
}

impl FlowKey {
    /// The key of a segment from `src` to `dst`.
    pub fn new(src: Endpoint, dst: Endpoint) -> FlowKey {
        if src <= dst {
            FlowKey { lo: src, hi: dst }
        } else {
            FlowKey { lo: dst, hi: src }
        }
    }

    /// Which of `n` shards owns this flow. Deterministic across runs and machines
    /// (FNV-1a over the canonical endpoints), and equal for both directions.
    pub fn shard(&self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for ep in [self.lo, self.hi] {
            match ep.ip {
                std::net::IpAddr::V4(a) => eat(&a.octets()),
                std::net::IpAddr::V6(a) => eat(&a.octets()),
            }
            eat(&ep.port.to_be_bytes());
        }
        (h % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        let sa: std::net::SocketAddr = s.parse().unwrap();
        Endpoint {
            ip: sa.ip(),
            port: sa.port(),
        }
    }

    #[test]
    fn key_and_shard_are_symmetric() {
        let pairs = [
            ("10.0.0.1:1234", "10.0.0.2:443"),
            ("[fe80::1]:5", "[fe80::2]:6"),
            ("1.1.1.1:9", "1.1.1.1:8"),
        ];
        for (a, b) in pairs {
            let (a, b) = (ep(a), ep(b));
            assert_eq!(FlowKey::new(a, b), FlowKey::new(b, a));
            for n in 1..9 {
                assert_eq!(FlowKey::new(a, b).shard(n), FlowKey::new(b, a).shard(n));
            }
        }
    }

    #[test]
    fn shards_spread_flows() {
        let mut counts = [0usize; 4];
        for port in 1000..2000u16 {
            counts[FlowKey::new(
                ep("10.0.0.1:443"),
                Endpoint {
                    port,
                    ..ep("10.0.0.2:1")
                },
            )
            .shard(4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 150), "{counts:?}");
    }
}
