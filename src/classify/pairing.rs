//! Pairing the two legs of one request: the network flow and its pod-local hop.
//!
//! A capture taken with `-i any` in a pod holds both: outbound, the app's connection to
//! the sidecar (`→ 127.0.0.1:15001`) precedes the sidecar's connection out; inbound, the
//! sidecar's connection to the app (`127.0.0.6 → podIP:port`) follows the connection in.
//! Legs pair by time and port. A pod-local leg that carries a cleartext ClientHello next
//! to a mesh mTLS network leg proves TLS inside mTLS (double-wrapped, high confidence); a
//! pod-local plaintext leg next to a TLS network leg with a user SNI proves a sidecar
//! originated that TLS.

use super::{Class, Leg};
use crate::decode::Endpoint;

/// How far apart (ns of capture time) two legs of one request may start.
pub const WINDOW: i64 = 1_000_000_000;

/// What pairing needs to know of a flow.
#[derive(Clone, Debug)]
pub struct LegView {
    /// Capture time of the first packet (ns).
    pub first_ts: i64,
    /// Client endpoint.
    pub client: Endpoint,
    /// Server endpoint.
    pub server: Endpoint,
    /// Its leg.
    pub leg: Leg,
    /// Its class.
    pub class: Class,
    /// The client sent a ClientHello.
    pub client_hello: bool,
    /// Istio mTLS in TCP mode (ALPN `istio-peer-exchange`/`istio`, no HTTP ALPN).
    pub tcp_mode_mtls: bool,
    /// The TLS handshake completed (or resumed).
    pub handshake_ok: bool,
    /// A ClientHello answered with non-TLS bytes.
    pub tls_answered_in_clear: bool,
}

/// What a pair proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// The pod-local leg carries a cleartext ClientHello inside the network leg's mTLS.
    DoubleWrapped,
    /// The sidecar originated the network leg's TLS from the pod-local plaintext.
    SidecarOriginated,
    /// The pod-local plaintext is the decrypted side of the network leg's mesh mTLS.
    MeshHop,
    /// The app's own TLS reached a sidecar expecting plaintext, which originated TLS of
    /// its own on the network leg: "double TLS" (the app sees "wrong version number").
    DoubleTls,
    /// Network plaintext, or the app's own TLS, that the server's sidecar accepted and
    /// passed to the app unchanged (PERMISSIVE, or a port without mTLS).
    Passthrough,
}

/// A network leg, its pod-local leg, and what the pair proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    /// Index of the network leg.
    pub network: usize,
    /// Index of the pod-local leg.
    pub pod_local: usize,
    /// What it proves.
    pub link: Link,
}

/// Whether pod-local leg `p` can be the hop of network leg `n` by direction and time:
/// outbound (`p` to the capture port 15001 or to loopback, started before `n`) or inbound
/// (`p` to the same server endpoint as `n`, started after it).
fn fits(n: &LegView, p: &LegView) -> Option<i64> {
    may_fit(n.first_ts, n.server, p.first_ts, p.server).then(|| (p.first_ts - n.first_ts).abs())
}

/// Whether a pod-local leg (started at `p_start`, to `p_server`) fits a network leg
/// (`n_start`, `n_server`) by time and endpoints, before their classes are looked at: the
/// streaming pairer skips a network leg no untaken pod-local leg fits.
pub fn may_fit(n_start: i64, n_server: Endpoint, p_start: i64, p_server: Endpoint) -> bool {
    let inbound = p_server == n_server && p_start >= n_start && p_start - n_start <= WINDOW;
    let outbound = (p_server.port == 15001 || p_server.ip.is_loopback())
        && p_server != n_server
        && p_start <= n_start
        && n_start - p_start <= WINDOW;
    inbound || outbound
}

fn link_of(n: &LegView, p: &LegView) -> Option<Link> {
    let mesh = matches!(n.class, Class::IstioMtls | Class::DoubleWrapped);
    if mesh && n.tcp_mode_mtls && p.client_hello {
        Some(Link::DoubleWrapped)
    } else if mesh && p.class == Class::Plaintext {
        Some(Link::MeshHop)
    } else if n.class == Class::AppTls
        && n.handshake_ok
        && p.client_hello
        && p.tls_answered_in_clear
    {
        Some(Link::DoubleTls)
    } else if n.class == Class::AppTls && p.class == Class::Plaintext {
        Some(Link::SidecarOriginated)
    } else if matches!(n.class, Class::Plaintext | Class::AppTls)
        && p.class == n.class
        && p.server == n.server
    {
        Some(Link::Passthrough)
    } else {
        None
    }
}

/// Pairs network legs with pod-local legs; each flow is in at most one pair, and each
/// network leg takes the closest fitting pod-local leg in time (ties: the earlier flow).
pub fn pair(views: &[LegView]) -> Vec<Pair> {
    let mut taken = vec![false; views.len()];
    let mut out = Vec::new();
    for (ni, n) in views
        .iter()
        .enumerate()
        .filter(|(_, v)| v.leg == Leg::Network)
    {
        let best = views
            .iter()
            .enumerate()
            .filter(|(pi, p)| p.leg == Leg::PodLocal && !taken[*pi])
            .filter_map(|(pi, p)| Some((fits(n, p)?, pi, link_of(n, p)?)))
            .min_by_key(|(dt, pi, _)| (*dt, *pi));
        if let Some((_, pi, link)) = best {
            taken[pi] = true;
            out.push(Pair {
                network: ni,
                pod_local: pi,
                link,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::decode::test_endpoint as ep;

    fn view(ms: i64, c: &str, s: &str, leg: Leg, class: Class, ch: bool, tcp: bool) -> LegView {
        LegView {
            first_ts: ms * 1_000_000,
            client: ep(c),
            server: ep(s),
            leg,
            class,
            client_hello: ch,
            tcp_mode_mtls: tcp,
            handshake_ok: true,
            tls_answered_in_clear: false,
        }
    }

    #[test]
    fn outbound_double_wrap_pairs_the_earlier_local_hello() {
        let v = [
            view(
                0,
                "127.0.0.1:40000",
                "127.0.0.1:15001",
                Leg::PodLocal,
                Class::AppTls,
                true,
                false,
            ),
            view(
                2,
                "10.244.1.10:41000",
                "10.244.2.20:443",
                Leg::Network,
                Class::IstioMtls,
                true,
                true,
            ),
            view(
                5000,
                "127.0.0.1:40002",
                "127.0.0.1:15001",
                Leg::PodLocal,
                Class::AppTls,
                true,
                false,
            ),
        ];
        assert_eq!(
            pair(&v),
            [Pair {
                network: 1,
                pod_local: 0,
                link: Link::DoubleWrapped
            }]
        );
    }

    #[test]
    fn inbound_hop_pairs_by_server_endpoint() {
        let v = [
            view(
                0,
                "10.244.1.10:41000",
                "10.244.2.20:443",
                Leg::Network,
                Class::IstioMtls,
                true,
                true,
            ),
            view(
                3,
                "127.0.0.6:50000",
                "10.244.2.20:443",
                Leg::PodLocal,
                Class::AppTls,
                true,
                false,
            ),
            view(
                4,
                "127.0.0.6:50001",
                "10.244.2.20:8080",
                Leg::PodLocal,
                Class::Plaintext,
                false,
                false,
            ),
        ];
        assert_eq!(
            pair(&v),
            [Pair {
                network: 0,
                pod_local: 1,
                link: Link::DoubleWrapped
            }]
        );
    }

    #[test]
    fn http_mode_mtls_is_a_mesh_hop_and_origination_is_recognized() {
        let v = [
            view(
                0,
                "127.0.0.1:40000",
                "127.0.0.1:15001",
                Leg::PodLocal,
                Class::Plaintext,
                false,
                false,
            ),
            view(
                1,
                "10.244.1.10:41000",
                "10.244.2.20:8080",
                Leg::Network,
                Class::IstioMtls,
                true,
                false,
            ),
            view(
                10,
                "127.0.0.1:40001",
                "127.0.0.1:15001",
                Leg::PodLocal,
                Class::Plaintext,
                false,
                false,
            ),
            view(
                11,
                "10.244.1.10:41001",
                "203.0.113.9:443",
                Leg::Network,
                Class::AppTls,
                true,
                false,
            ),
        ];
        assert_eq!(
            pair(&v),
            [
                Pair {
                    network: 1,
                    pod_local: 0,
                    link: Link::MeshHop
                },
                Pair {
                    network: 3,
                    pod_local: 2,
                    link: Link::SidecarOriginated
                }
            ]
        );
    }

    #[test]
    fn app_tls_refused_by_the_sidecar_then_originated_again_is_double_tls() {
        let mut local = view(
            0,
            "10.244.1.10:40000",
            "127.0.0.1:15001",
            Leg::PodLocal,
            Class::AppTls,
            true,
            false,
        );
        local.tls_answered_in_clear = true;
        let net = view(
            2,
            "10.244.1.10:41000",
            "203.0.113.10:443",
            Leg::Network,
            Class::AppTls,
            true,
            false,
        );
        assert_eq!(
            pair(&[local.clone(), net.clone()]),
            [Pair {
                network: 1,
                pod_local: 0,
                link: Link::DoubleTls
            }]
        );
        // The app's own TLS failing directly on the network is no such pair.
        let failed = LegView {
            handshake_ok: false,
            ..net
        };
        assert!(pair(&[local, failed]).is_empty());
    }

    #[test]
    fn accepted_plaintext_pairs_with_its_inbound_hop() {
        let v = [
            view(
                0,
                "10.244.3.30:40000",
                "10.244.2.20:8080",
                Leg::Network,
                Class::Plaintext,
                false,
                false,
            ),
            view(
                1,
                "127.0.0.6:50000",
                "10.244.2.20:8080",
                Leg::PodLocal,
                Class::Plaintext,
                false,
                false,
            ),
        ];
        assert_eq!(
            pair(&v),
            [Pair {
                network: 0,
                pod_local: 1,
                link: Link::Passthrough
            }]
        );
    }

    #[test]
    fn legs_too_far_apart_do_not_pair() {
        let v = [
            view(
                0,
                "127.0.0.1:40000",
                "127.0.0.1:15001",
                Leg::PodLocal,
                Class::AppTls,
                true,
                false,
            ),
            view(
                1500,
                "10.244.1.10:41000",
                "10.244.2.20:443",
                Leg::Network,
                Class::IstioMtls,
                true,
                true,
            ),
        ];
        assert!(pair(&v).is_empty());
    }
}
