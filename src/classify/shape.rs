//! The shape of a TLS connection from its record headers: who sent which record when.
//!
//! Encrypted records still show their length and order. This module merges both
//! directions' record headers into one timeline of bursts and reads two things from it:
//! how a TLS 1.3 handshake ended (an alert-sized record followed by a close), and whether
//! the first application bursts look like a TLS handshake carried inside the connection.

use crate::analyzers::tls::RecordSig;

/// An encrypted record this short carries an alert (2 bytes + type + 16-byte tag = 19;
/// allow for padding), never a Finished (≥ 53) or a session ticket.
pub const ALERT_MAX: u16 = 32;

/// One record in the merged timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rec {
    /// Sent by the client.
    pub from_client: bool,
    /// Content type.
    pub content_type: u8,
    /// Body length.
    pub len: u16,
    /// Encrypted body.
    pub encrypted: bool,
    /// Frame of its header.
    pub frame: u64,
}

/// Both directions' records, ordered by frame (client first within a frame; each side's
/// records in their order within a frame).
pub fn timeline(client: &[RecordSig], server: &[RecordSig]) -> Vec<Rec> {
    let conv = |s: &RecordSig, from_client| Rec {
        from_client,
        content_type: s.content_type,
        len: s.len,
        encrypted: s.encrypted,
        frame: s.frame,
    };
    let by_frame = |v: &[RecordSig]| v.is_sorted_by_key(|s| s.frame);
    let mut out = Vec::with_capacity(client.len() + server.len());
    if by_frame(client) && by_frame(server) {
        // The usual case: each side's records come in frame order, so a merge gives what
        // the stable sort below would, without sorting.
        let (mut c, mut s) = (client.iter().peekable(), server.iter().peekable());
        loop {
            let from_client = match (c.peek(), s.peek()) {
                (Some(x), Some(y)) => x.frame <= y.frame,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if from_client { c.next() } else { s.next() };
            out.extend(next.map(|r| conv(r, from_client)));
        }
    } else {
        out.extend(client.iter().map(|s| conv(s, true)));
        out.extend(server.iter().map(|s| conv(s, false)));
        out.sort_by_key(|r| (r.frame, !r.from_client));
    }
    out
}

/// Consecutive records from one side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Burst<'a> {
    /// Sent by the client.
    pub from_client: bool,
    /// Its records (a run of the timeline).
    pub recs: &'a [Rec],
}

impl Burst<'_> {
    /// Plaintext bytes carried, given `overhead` bytes of encryption per record.
    pub fn inner_bytes(&self, overhead: u16) -> u32 {
        self.recs
            .iter()
            .map(|r| u32::from(r.len.saturating_sub(overhead)))
            .sum()
    }
}

/// Groups a timeline into bursts.
pub fn bursts(recs: &[Rec]) -> Vec<Burst<'_>> {
    recs.chunk_by(|a, b| a.from_client == b.from_client)
        .map(|run| Burst {
            from_client: run[0].from_client,
            recs: run,
        })
        .collect()
}

/// How a TLS 1.3 handshake ended, from record sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls13End {
    /// The client answered the server's flight with an alert-sized record.
    ClientAlert,
    /// The server answered the client's flight with an alert-sized record and nothing
    /// larger. `client_flight` is the encrypted bytes the client sent in its flight (small:
    /// no certificate; large: a certificate was sent).
    ServerAlert {
        /// Encrypted bytes of the client's second flight.
        client_flight: u32,
    },
    /// The client finished and the server did not answer with an alert.
    Finished,
    /// The client's second flight was not seen.
    NoClientFlight,
}

/// The burst holding the final ServerHello: the last server burst with a plaintext
/// handshake record (a HelloRetryRequest comes earlier).
fn server_flight(bs: &[Burst]) -> Option<usize> {
    bs.iter().rposition(|b| {
        !b.from_client && b.recs.iter().any(|r| r.content_type == 22 && !r.encrypted)
    })
}

/// The client's second flight: its first burst with an encrypted record after the server
/// flight (a lone compatibility ChangeCipherSpec may come earlier).
fn client_flight(bs: &[Burst], server_flight: usize) -> Option<usize> {
    bs.iter()
        .skip(server_flight + 1)
        .position(|b| b.from_client && b.recs.iter().any(|r| r.encrypted))
        .map(|i| i + server_flight + 1)
}

/// Reads the end of a TLS 1.3 handshake from the records and which sides closed.
pub fn tls13_end(recs: &[Rec], client_closed: bool, server_closed: bool) -> Tls13End {
    let bs = bursts(recs);
    let Some(sf) = server_flight(&bs) else {
        return Tls13End::NoClientFlight;
    };
    let Some(cf) = client_flight(&bs, sf) else {
        return Tls13End::NoClientFlight;
    };
    let mut flight = bs[cf].recs.iter().filter(|r| r.encrypted).peekable();
    if flight.peek().is_none() {
        return Tls13End::NoClientFlight;
    }
    // The client sent only alert-sized records after the server's flight, and left.
    let client_after = bs
        .iter()
        .skip(cf)
        .filter(|b| b.from_client)
        .flat_map(|b| b.recs)
        .filter(|r| r.encrypted);
    if client_closed && client_after.clone().all(|r| r.len <= ALERT_MAX) {
        return Tls13End::ClientAlert;
    }
    let mut after = bs
        .iter()
        .skip(cf + 1)
        .filter(|b| !b.from_client)
        .flat_map(|b| b.recs)
        .peekable();
    if server_closed && after.peek().is_some() && after.all(|r| r.encrypted && r.len <= ALERT_MAX) {
        let client_flight = flight.map(|r| u32::from(r.len)).sum();
        return Tls13End::ServerAlert { client_flight };
    }
    Tls13End::Finished
}

/// What the first application bursts after the outer handshake looked like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InnerShape {
    /// Plaintext bytes of the client's first application burst.
    pub client_first: u32,
    /// Plaintext bytes of the server's next burst.
    pub server_next: u32,
    /// Plaintext bytes of the client's burst after that (0 when there is none).
    pub client_next: u32,
}

/// Bands of an inner TLS handshake (mesh reference §6.3): a ClientHello of 200..2100
/// bytes (517 from OpenSSL clients, ~1.9 KB with post-quantum key shares), then a server
/// flight with a certificate (≥ 700 bytes), then the client's ChangeCipherSpec and
/// Finished (TLS 1.3: 6 + 53..74; TLS 1.2 with ClientKeyExchange: up to ~200).
pub fn looks_like_inner_handshake(s: &InnerShape) -> bool {
    (200..=2100).contains(&s.client_first)
        && s.server_next >= 700
        && (40..=200).contains(&s.client_next)
}

/// How the outer connection encrypts records, to find its end of handshake and overhead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outer {
    /// TLS 1.3 with a Finished record of this length (53 for SHA-256 suites, 69 for SHA-384).
    Tls13 {
        /// Length of the client's Finished record.
        finished_len: u16,
    },
    /// TLS 1.2 (AES-GCM: 24 bytes of explicit nonce and tag per record).
    Tls12,
}

/// Finds the client's first application burst after the outer handshake, the server
/// burst after it, and the client burst after that. Server records that arrive between
/// the client's Finished and its first application record (session tickets) are skipped.
pub fn inner_shape(recs: &[Rec], outer: Outer) -> Option<InnerShape> {
    let overhead = match outer {
        Outer::Tls13 { .. } => 17,
        Outer::Tls12 => 24,
    };
    let sh = recs
        .iter()
        .rposition(|r| !r.from_client && r.content_type == 22 && !r.encrypted)?;
    let fin = match outer {
        Outer::Tls13 { finished_len } => recs[sh..]
            .iter()
            .position(|r| r.from_client && r.encrypted && r.len == finished_len)
            .or_else(|| {
                // Finished coalesced with the certificate: the end of the client's first frame.
                let first = recs[sh..]
                    .iter()
                    .position(|r| r.from_client && r.encrypted)?;
                let frame = recs[sh + first].frame;
                recs[sh..]
                    .iter()
                    .rposition(|r| r.from_client && r.frame == frame)
            })?,
        Outer::Tls12 => recs[sh..]
            .iter()
            .position(|r| r.from_client && r.content_type == 22 && r.encrypted)?,
    } + sh;
    let rest = &recs[fin + 1..];
    let start = rest
        .iter()
        .position(|r| r.from_client && r.content_type == 23)?;
    let sum = |rs: &[Rec]| {
        rs.iter()
            .map(|r| u32::from(r.len.saturating_sub(overhead)))
            .sum::<u32>()
    };
    let run = |from: usize, client: bool| {
        let n = rest[from..]
            .iter()
            .take_while(|r| r.from_client == client)
            .count();
        (&rest[from..from + n], from + n)
    };
    let (b1, next) = run(start, true);
    if b1.len() > 3 {
        return None;
    }
    let (b2, next) = run(next, false);
    if b2.is_empty() {
        return None;
    }
    let (b3, _) = run(next, true);
    Some(InnerShape {
        client_first: sum(b1),
        server_next: sum(b2),
        client_next: sum(b3),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(from_client: bool, content_type: u8, len: u16, frame: u64) -> Rec {
        Rec {
            from_client,
            content_type,
            len,
            encrypted: content_type == 23,
            frame,
        }
    }

    /// The loopback lab's double-wrapped TLS 1.3 mTLS connection (mesh reference §6.2).
    fn lab(first_app: u16, server_next: u16) -> Vec<Rec> {
        vec![
            rec(true, 22, 512, 1),
            rec(false, 22, 122, 2),
            rec(false, 20, 1, 2),
            rec(false, 23, 2278 - 5, 2),
            rec(true, 20, 1, 3),
            rec(true, 23, 2030 - 5, 3),
            rec(false, 23, 1114, 4),
            rec(false, 23, 1114, 4),
            rec(true, 23, first_app, 5),
            rec(false, 23, server_next, 6),
            rec(true, 23, 97, 7),
        ]
    }

    const OUTER: Outer = Outer::Tls13 { finished_len: 69 };

    #[test]
    fn double_wrapped_shape_matches_and_plain_http_does_not() {
        let s = inner_shape(&lab(534, 1445), OUTER).unwrap();
        assert_eq!(
            s,
            InnerShape {
                client_first: 517,
                server_next: 1428,
                client_next: 80
            }
        );
        assert!(looks_like_inner_handshake(&s));
        let plain = inner_shape(&lab(89, 1258), OUTER).unwrap();
        assert!(!looks_like_inner_handshake(&plain));
    }

    #[test]
    fn inner_hello_in_the_same_burst_as_the_client_finished() {
        // Outer mTLS client flight (certificate, verify, finished) and the inner ClientHello
        // back to back, then tickets and the inner server flight together.
        let recs = vec![
            rec(true, 22, 512, 4),
            rec(false, 22, 122, 6),
            rec(false, 23, 1695, 6),
            rec(true, 20, 1, 10),
            rec(true, 23, 1693, 10),
            rec(true, 23, 281, 11),
            rec(true, 23, 69, 11),
            rec(true, 23, 534, 13),
            rec(false, 23, 1130, 14),
            rec(false, 23, 1518, 15),
            rec(true, 23, 97, 18),
        ];
        let s = inner_shape(&recs, OUTER).unwrap();
        assert_eq!((s.client_first, s.client_next), (517, 80));
        assert!(looks_like_inner_handshake(&s));
    }

    #[test]
    fn tls13_endings() {
        let ok = lab(89, 1258);
        assert_eq!(tls13_end(&ok, true, true), Tls13End::Finished);
        // Client rejects the server's certificate: a 19-byte record instead of Finished.
        let client_alert = vec![
            rec(true, 22, 512, 1),
            rec(false, 22, 122, 2),
            rec(false, 23, 900, 2),
            rec(true, 20, 1, 3),
            rec(true, 23, 19, 3),
        ];
        assert_eq!(tls13_end(&client_alert, true, true), Tls13End::ClientAlert);
        // An empty client Certificate in its own 25-byte record, then Finished: not an alert.
        let empty_cert = vec![
            rec(true, 22, 512, 1),
            rec(false, 22, 122, 2),
            rec(false, 23, 900, 2),
            rec(true, 23, 25, 3),
            rec(true, 23, 69, 3),
        ];
        assert_eq!(tls13_end(&empty_cert, true, true), Tls13End::Finished);
        // A HelloRetryRequest first: the flight that counts follows the second ServerHello.
        let hrr = vec![
            rec(true, 22, 512, 1),
            rec(false, 22, 88, 2),
            rec(true, 22, 540, 3),
            rec(false, 22, 122, 4),
            rec(false, 23, 900, 4),
            rec(true, 23, 53, 5),
        ];
        assert_eq!(tls13_end(&hrr, true, true), Tls13End::Finished);
        // The client's compatibility CCS lands inside the server's flight.
        let split = vec![
            rec(true, 22, 394, 8),
            rec(false, 22, 155, 9),
            rec(true, 20, 1, 11),
            rec(false, 23, 2168, 13),
            rec(true, 23, 69, 18),
        ];
        assert_eq!(tls13_end(&split, true, false), Tls13End::Finished);
        // Server requires a certificate the client did not send: small flight, 19-byte answer, close.
        let cert_required = vec![
            rec(true, 22, 512, 1),
            rec(false, 22, 122, 2),
            rec(false, 23, 900, 2),
            rec(true, 20, 1, 3),
            rec(true, 23, 61, 3),
            rec(false, 23, 19, 4),
        ];
        assert_eq!(
            tls13_end(&cert_required, false, true),
            Tls13End::ServerAlert { client_flight: 61 }
        );
        assert_eq!(tls13_end(&cert_required, false, false), Tls13End::Finished);
        assert_eq!(
            tls13_end(&cert_required[..3], true, true),
            Tls13End::NoClientFlight
        );
    }

    #[test]
    fn timeline_merges_as_a_stable_sort_by_frame_client_first() {
        let sig = |frame: u64, len: u16| RecordSig {
            content_type: 23,
            len,
            encrypted: true,
            frame,
            ts: crate::capture::Timestamp(0),
        };
        let by_sort = |c: &[RecordSig], s: &[RecordSig]| {
            let mut v: Vec<Rec> = c
                .iter()
                .map(|x| rec(true, 23, x.len, x.frame))
                .chain(s.iter().map(|x| rec(false, 23, x.len, x.frame)))
                .collect();
            v.sort_by_key(|r| (r.frame, !r.from_client));
            v
        };
        let sorted_c = [sig(1, 1), sig(3, 2), sig(3, 3), sig(7, 4)];
        let sorted_s = [sig(2, 5), sig(3, 6), sig(3, 7), sig(9, 8)];
        let unsorted = [sig(5, 9), sig(3, 10), sig(5, 11), sig(1, 12)];
        for (c, s) in [
            (&sorted_c[..], &sorted_s[..]),
            (&sorted_c[..], &unsorted[..]),
            (&unsorted[..], &sorted_s[..]),
            (&[][..], &sorted_s[..]),
            (&sorted_c[..], &[][..]),
        ] {
            assert_eq!(timeline(c, s), by_sort(c, s));
        }
    }
}
