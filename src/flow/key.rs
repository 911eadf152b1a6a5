//! Flow identity: a direction-agnostic key and a symmetric shard function.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

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
/// Hashed as one 128-bit word when both ends are IPv4 (see its `Hash`): a key is hashed
/// for every packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    lo: Endpoint,
    hi: Endpoint,
}

impl FlowKey {
    /// The key of a segment from `src` to `dst`.
    pub fn new(src: Endpoint, dst: Endpoint) -> FlowKey {
        FlowKey::with_side(src, dst).0
    }

    /// The key of a segment from `src` to `dst`, and whether `src` is its low end.
    #[inline]
    pub fn with_side(src: Endpoint, dst: Endpoint) -> (FlowKey, bool) {
        // `src <= dst`, by integers when both are IPv4 (the usual case; the derived
        // order goes through the address enum and its octets).
        let src_is_lo = match (src.ip, dst.ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (s.to_bits(), src.port) <= (d.to_bits(), dst.port),
            _ => src <= dst,
        };
        if src_is_lo {
            (FlowKey { lo: src, hi: dst }, true)
        } else {
            (FlowKey { lo: dst, hi: src }, false)
        }
    }

    /// The (source, destination) of a segment with this key, given whether its source is
    /// the low end (see [`FlowKey::with_side`]).
    pub fn endpoints(&self, src_is_lo: bool) -> (Endpoint, Endpoint) {
        if src_is_lo {
            (self.lo, self.hi)
        } else {
            (self.hi, self.lo)
        }
    }

    /// Which of `n` shards owns this flow. Deterministic across runs and machines (a
    /// multiply-xorshift mix of the canonical endpoints, a word at a time: the reader
    /// computes it for every packet), and equal for both directions.
    pub fn shard(&self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        let word = |ep: Endpoint| -> u64 {
            let ip = match ep.ip {
                std::net::IpAddr::V4(a) => u64::from(a.to_bits()),
                std::net::IpAddr::V6(a) => {
                    let b = a.to_bits();
                    (b as u64) ^ ((b >> 64) as u64).rotate_left(29)
                }
            };
            ip.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(ep.port)
        };
        let mut h = word(self.lo) ^ word(self.hi).rotate_left(32);
        h ^= h >> 29;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 32;
        // The high word of h·n: a uniform pick from a well-mixed hash without a division.
        ((u128::from(h) * n as u128) >> 64) as usize
    }
}

impl Hash for FlowKey {
    /// Equal keys write equal words: two IPv4 endpoints are one 128-bit word (addresses
    /// and ports), others are hashed field by field.
    #[inline]
    fn hash<S: Hasher>(&self, state: &mut S) {
        let word =
            |ip: std::net::Ipv4Addr, port: u16| u64::from(ip.to_bits()) << 16 | u64::from(port);
        match (self.lo.ip, self.hi.ip) {
            (IpAddr::V4(lo), IpAddr::V4(hi)) => state.write_u128(
                u128::from(word(lo, self.lo.port)) << 64 | u128::from(word(hi, self.hi.port)),
            ),
            _ => {
                self.lo.hash(state);
                self.hi.hash(state);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::decode::test_endpoint as ep;

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
            let (k, side) = FlowKey::with_side(a, b);
            assert_eq!(k.endpoints(side), (a, b));
            let (k, side) = FlowKey::with_side(b, a);
            assert_eq!(k.endpoints(side), (b, a));
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

    fn endpoint() -> impl proptest::strategy::Strategy<Value = Endpoint> {
        use proptest::prelude::*;
        // Few addresses and ports, so that equal ones and ties on the address come up.
        let v4 =
            (0u32..4).prop_map(|a| IpAddr::from(std::net::Ipv4Addr::from_bits(0x0a00_0000 + a)));
        let v6 = (0u128..3).prop_map(|a| IpAddr::from(std::net::Ipv6Addr::from_bits(a)));
        (prop_oneof![3 => v4, 1 => v6], 440u16..444).prop_map(|(ip, port)| Endpoint { ip, port })
    }

    proptest::proptest! {
        /// The fast paths agree with the derived order and equality: the low end is the
        /// lesser endpoint, and equal keys hash alike.
        #[test]
        fn key_order_and_hash_follow_the_endpoints(a in endpoint(), b in endpoint()) {
            let (k, a_is_lo) = FlowKey::with_side(a, b);
            proptest::prop_assert_eq!(a_is_lo, a <= b);
            proptest::prop_assert_eq!(k.endpoints(a_is_lo), (a, b));
            let seeded = foldhash::fast::FixedState::with_seed(7);
            let h = |k: FlowKey| std::hash::BuildHasher::hash_one(&seeded, k);
            let (k2, _) = FlowKey::with_side(b, a);
            proptest::prop_assert_eq!(k, k2);
            proptest::prop_assert_eq!(h(k), h(k2));
            let other = FlowKey::new(a, Endpoint { port: b.port ^ 1, ..b });
            proptest::prop_assert!(k != other);
        }
    }
}
