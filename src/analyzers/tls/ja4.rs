//! JA4 TLS client fingerprint.
//!
//! JA4 is FoxIO's successor to JA3: a fingerprint of a TLS (or QUIC / DTLS)
//! ClientHello of the form `a_b_c`, for example
//! `t13d1516h2_8daaf6152771_e5627efa2ab1`:
//!
//! * `a` (10 chars, human readable): transport (`t`/`q`/`d`), TLS version
//!   (2 chars), `d` if an SNI host name is present else `i`, cipher count
//!   (2 digits), extension count (2 digits), and the first and last character
//!   of the first ALPN value (`00` when there is none).
//! * `b`: first 12 hex chars of the SHA-256 of the sorted cipher list.
//! * `c`: first 12 hex chars of the SHA-256 of the sorted extension list
//!   (without SNI and ALPN), followed by `_` and the signature algorithms in
//!   wire order.
//!
//! This follows the "JA4: TLS Client Fingerprint" section of the FoxIO JA4+
//! technical details (`technical_details/JA4.md` in the FoxIO-LLC/ja4
//! repository). JA4 itself is published under the BSD 3-Clause licence; the
//! rest of the JA4+ family is under the FoxIO licence and is *not*
//! implemented here.
//!
//! This module owns only the pure computation from already-extracted
//! ClientHello facts ([`Ja4Input`]) to the fingerprint string. It refuses to
//! parse packets or TLS records (callers do that), and it does not implement
//! the raw/original variants (`JA4_r`, `JA4_o`, `JA4_ro`) nor any other JA4+
//! fingerprint (JA4S, JA4H, JA4X, JA4T, ...).
//!
//! One interpretation worth knowing: "highest version in supported_versions"
//! is taken numerically for TLS, but DTLS code points count *down*
//! (`0xfeff` = DTLS 1.0, `0xfefd` = 1.2, `0xfefc` = 1.3), so among DTLS
//! values the numerically lowest is treated as the highest version.

use std::cell::RefCell;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::memo::Memo;

/// Twelve zeros: the value of parts `b` and `c` when their list is empty.
const EMPTY_HASH: &str = "000000000000";
/// Extension type of server_name (SNI).
const EXT_SERVER_NAME: u16 = 0x0000;
/// Extension type of application_layer_protocol_negotiation (ALPN).
const EXT_ALPN: u16 = 0x0010;

/// Facts from one ClientHello needed for JA4. All code points as on the wire,
/// GREASE included ([`ja4`] removes GREASE itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ja4Input<'a> {
    /// 't' for TCP, 'q' for QUIC, 'd' for DTLS.
    pub transport: char,
    /// ClientHello legacy_version (e.g. 0x0303).
    pub legacy_version: u16,
    /// supported_versions extension contents if present (in order, GREASE included).
    pub supported_versions: Option<&'a [u16]>,
    /// true when an SNI extension with a host_name is present (JA4 uses 'd'), false -> 'i'.
    pub has_sni: bool,
    /// cipher suites in wire order, GREASE included.
    pub ciphers: &'a [u16],
    /// extension types in wire order, GREASE included.
    pub extensions: &'a [u16],
    /// first ALPN protocol value if the ALPN extension is present and non-empty.
    pub first_alpn: Option<&'a [u8]>,
    /// signature_algorithms extension contents in wire order, if present.
    pub signature_algorithms: &'a [u16],
}

/// Computes the JA4 fingerprint (`a_b_c`, always 36 characters when
/// `transport` is ASCII) of one ClientHello.
pub fn ja4(input: &Ja4Input<'_>) -> String {
    let ciphers = cipher_list(input.ciphers);
    let extension_count = input.extensions.iter().filter(|&&e| !is_grease(e)).count();
    let mut fp = String::with_capacity(36);
    fp.push(input.transport);
    fp.push_str(version_code(selected_version(input)));
    fp.push(if input.has_sni { 'd' } else { 'i' });
    push_two_digits(&mut fp, ciphers.len().min(99));
    push_two_digits(&mut fp, extension_count.min(99));
    fp.push_str(&alpn_code(input.first_alpn));
    fp.push('_');
    if ciphers.is_empty() {
        fp.push_str(EMPTY_HASH);
    } else {
        fp.push_str(&hash12(&join_hex(&ciphers)));
    }
    fp.push('_');
    match extension_string(input.extensions, input.signature_algorithms) {
        Some(raw) => fp.push_str(&hash12(&raw)),
        None => fp.push_str(EMPTY_HASH),
    }
    fp
}

/// ClientHello shapes whose fingerprint is remembered per thread.
const MEMO_ENTRIES: usize = 64;
/// Longest [`memo_key`] remembered (code points); longer ones are fingerprinted
/// every time.
const MEMO_MAX_KEY: usize = 1024;

/// Fingerprints remembered, and the vector keys are written into.
type MemoAndKey = (Memo<u16, Arc<str>>, Vec<u16>);

thread_local! {
    /// The memo, and a vector [`memo_key`] writes keys into (so that a lookup allocates
    /// nothing: the memo copies a key only when it remembers it).
    static MEMO: RefCell<MemoAndKey> =
        RefCell::new((Memo::new(MEMO_ENTRIES, MEMO_MAX_KEY), Vec::new()));
}

/// [`ja4`], remembered per thread for the last ClientHello shapes seen (in a mesh
/// the same few clients make thousands of connections). The fingerprint is shared
/// with the memo and with the other flows of the same shape, not copied into each.
pub fn ja4_cached(input: &Ja4Input<'_>) -> Arc<str> {
    let lists = [input.ciphers, input.extensions, input.signature_algorithms];
    let len = lists.iter().map(|l| l.len()).sum::<usize>()
        + input.supported_versions.map_or(0, <[u16]>::len)
        + input.first_alpn.map_or(0, <[u8]>::len);
    if len > MEMO_MAX_KEY {
        return ja4(input).into();
    }
    MEMO.with_borrow_mut(|(memo, key)| {
        key.clear();
        memo_key(input, key);
        memo.get(key, || ja4(input).into())
    })
}

/// Everything [`ja4`] reads from `input`, as one sequence that two inputs share only
/// if they have the same fingerprint inputs (each list is prefixed with its length,
/// and each optional one with whether it is present), appended to `key`.
fn memo_key(input: &Ja4Input<'_>, key: &mut Vec<u16>) {
    fn list(key: &mut Vec<u16>, values: &[u16]) {
        key.push(values.len() as u16);
        key.extend_from_slice(values);
    }
    let transport = u32::from(input.transport);
    key.extend_from_slice(&[
        (transport >> 16) as u16,
        transport as u16,
        input.legacy_version,
        u16::from(input.has_sni),
    ]);
    list(key, input.ciphers);
    list(key, input.extensions);
    list(key, input.signature_algorithms);
    key.push(u16::from(input.supported_versions.is_some()));
    list(key, input.supported_versions.unwrap_or_default());
    key.push(u16::from(input.first_alpn.is_some()));
    let alpn = input.first_alpn.unwrap_or_default();
    key.push(alpn.len() as u16);
    key.extend(alpn.iter().map(|&b| u16::from(b)));
}

/// Appends `n` (< 100) as two decimal digits.
fn push_two_digits(s: &mut String, n: usize) {
    s.push(char::from(b'0' + (n / 10) as u8));
    s.push(char::from(b'0' + (n % 10) as u8));
}

/// True for the 16 GREASE code points of RFC 8701 (`0x0a0a`, `0x1a1a`, ...,
/// `0xfafa`), which JA4 ignores everywhere.
pub fn is_grease(v: u16) -> bool {
    (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0x00ff)
}

/// The version JA4 reports: the highest non-GREASE entry of
/// supported_versions when that yields one, else legacy_version.
fn selected_version(input: &Ja4Input<'_>) -> u16 {
    input
        .supported_versions
        .and_then(|versions| {
            versions
                .iter()
                .copied()
                .filter(|&v| !is_grease(v))
                .max_by_key(|&v| version_order_key(v))
        })
        .unwrap_or(input.legacy_version)
}

/// Sort key making "max" mean "highest protocol version": DTLS code points
/// (`0xfeXX`) decrease as the version increases, so they are inverted within
/// their own range; everything else compares numerically.
fn version_order_key(v: u16) -> u16 {
    if v >> 8 == 0xfe {
        0xfe00 | (0x00ff - (v & 0x00ff))
    } else {
        v
    }
}

/// Two-character version code of JA4 part `a`.
fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// First and last character of the first ALPN value; when either is not
/// ASCII alphanumeric, the first hex digit of the first byte and the last hex
/// digit of the last byte instead; `00` when there is no ALPN value.
fn alpn_code(first_alpn: Option<&[u8]>) -> String {
    let Some(value) = first_alpn else {
        return "00".to_owned();
    };
    let (Some(&first), Some(&last)) = (value.first(), value.last()) else {
        return "00".to_owned();
    };
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        format!("{}{}", char::from(first), char::from(last))
    } else {
        format!("{:x}{:x}", first >> 4, last & 0x0f)
    }
}

/// Ciphers with GREASE removed, sorted ascending.
fn cipher_list(ciphers: &[u16]) -> Vec<u16> {
    let mut list: Vec<u16> = ciphers.iter().copied().filter(|&c| !is_grease(c)).collect();
    list.sort_unstable();
    list
}

/// The pre-hash string of part `c`: sorted extensions without GREASE, SNI and
/// ALPN, then `_` and the signature algorithms in wire order (GREASE removed)
/// when there are any. `None` when no extension is left.
fn extension_string(extensions: &[u16], signature_algorithms: &[u16]) -> Option<String> {
    let mut list: Vec<u16> = extensions
        .iter()
        .copied()
        .filter(|&e| !is_grease(e) && e != EXT_SERVER_NAME && e != EXT_ALPN)
        .collect();
    if list.is_empty() {
        return None;
    }
    list.sort_unstable();
    let mut raw = String::with_capacity((list.len() + signature_algorithms.len()) * 5);
    push_join_hex(&mut raw, &list);
    list.clear();
    list.extend(
        signature_algorithms
            .iter()
            .copied()
            .filter(|&s| !is_grease(s)),
    );
    if !list.is_empty() {
        raw.push('_');
        push_join_hex(&mut raw, &list);
    }
    Some(raw)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Comma-joined 4-digit lowercase hex.
fn join_hex(values: &[u16]) -> String {
    let mut out = String::with_capacity(values.len() * 5);
    push_join_hex(&mut out, values);
    out
}

/// Appends `values` as comma-joined 4-digit lowercase hex.
fn push_join_hex(out: &mut String, values: &[u16]) {
    for (i, &v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for shift in [12, 8, 4, 0] {
            out.push(char::from(HEX[usize::from((v >> shift) & 0xf)]));
        }
    }
}

/// First 12 lowercase hex characters (6 bytes) of SHA-256 of `s`.
fn hash12(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(12);
    for b in &digest[..6] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ClientHello of the JA4 example in the FoxIO documentation (a
    /// Chrome hello), reconstructed in wire order, with GREASE values added
    /// the way Chrome sends them (first cipher, first and last extension,
    /// first supported version).
    const EXAMPLE_CIPHERS: &[u16] = &[
        0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
        0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
    ];
    const EXAMPLE_EXTENSIONS: &[u16] = &[
        0x5a5a, 0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023,
        0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015, 0xbaba,
    ];
    const EXAMPLE_SIGALGS: &[u16] = &[
        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
    ];
    const EXAMPLE_VERSIONS: &[u16] = &[0x7a7a, 0x0304, 0x0303];

    fn example() -> Ja4Input<'static> {
        Ja4Input {
            transport: 't',
            legacy_version: 0x0303,
            supported_versions: Some(EXAMPLE_VERSIONS),
            has_sni: true,
            ciphers: EXAMPLE_CIPHERS,
            extensions: EXAMPLE_EXTENSIONS,
            first_alpn: Some(b"h2"),
            signature_algorithms: EXAMPLE_SIGALGS,
        }
    }

    #[test]
    fn spec_example_fingerprint() {
        assert_eq!(ja4(&example()), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn remembered_fingerprints_are_the_fingerprints() {
        let mut inputs = vec![example()];
        let mut other = example();
        other.first_alpn = None;
        inputs.push(other);
        other.supported_versions = None;
        inputs.push(other);
        other.first_alpn = Some(b"");
        inputs.push(other);
        // The same code points, moved from one list to the next.
        other.ciphers = &EXAMPLE_CIPHERS[..15];
        other.extensions = &EXAMPLE_CIPHERS[15..];
        inputs.push(other);
        other.ciphers = &EXAMPLE_CIPHERS[..14];
        other.extensions = &EXAMPLE_CIPHERS[14..];
        inputs.push(other);
        for _ in 0..2 {
            for input in &inputs {
                assert_eq!(*ja4_cached(input), *ja4(input));
            }
        }
        let keys: std::collections::HashSet<_> = inputs
            .iter()
            .map(|input| {
                let mut key = Vec::new();
                memo_key(input, &mut key);
                key
            })
            .collect();
        assert_eq!(keys.len(), inputs.len());
    }

    #[test]
    fn spec_example_raw_strings_and_hashes() {
        // The raw (JA4_r) strings documented by the spec, and their hashes.
        let ciphers = join_hex(&cipher_list(EXAMPLE_CIPHERS));
        assert_eq!(
            ciphers,
            "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"
        );
        assert_eq!(hash12(&ciphers), "8daaf6152771");
        let exts = extension_string(EXAMPLE_EXTENSIONS, EXAMPLE_SIGALGS);
        assert_eq!(
            exts.as_deref(),
            Some(
                "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_\
                 0403,0804,0401,0503,0805,0501,0806,0601"
            )
        );
        assert_eq!(hash12(&exts.unwrap_or_default()), "e5627efa2ab1");
    }

    #[test]
    fn grease_detection() {
        let grease: Vec<u16> = (0..16u16)
            .map(|i| (i << 12) | 0x0a00 | (i << 4) | 0x0a)
            .collect();
        assert_eq!(grease[0], 0x0a0a);
        assert_eq!(grease[15], 0xfafa);
        assert!(grease.iter().all(|&g| is_grease(g)));
        let grease_count = (0..=u16::MAX).filter(|&v| is_grease(v)).count();
        assert_eq!(grease_count, 16);
        for v in [
            0x0a1a, 0x1a0a, 0x0a0b, 0x0b0b, 0xabab, 0x0000, 0x1301, 0xfefd,
        ] {
            assert!(!is_grease(v), "{v:#06x}");
        }
    }

    #[test]
    fn grease_does_not_change_the_fingerprint() {
        let no_grease_ciphers: Vec<u16> = EXAMPLE_CIPHERS
            .iter()
            .copied()
            .filter(|&c| !is_grease(c))
            .collect();
        let no_grease_exts: Vec<u16> = EXAMPLE_EXTENSIONS
            .iter()
            .copied()
            .filter(|&e| !is_grease(e))
            .collect();
        let mut sigs_with_grease = vec![0xdada];
        sigs_with_grease.extend_from_slice(EXAMPLE_SIGALGS);
        let with = ja4(&Ja4Input {
            signature_algorithms: &sigs_with_grease,
            ..example()
        });
        let without = ja4(&Ja4Input {
            ciphers: &no_grease_ciphers,
            extensions: &no_grease_exts,
            supported_versions: Some(&[0x0304, 0x0303]),
            ..example()
        });
        assert_eq!(with, without);
        assert_eq!(without, "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn order_of_ciphers_and_extensions_does_not_matter_but_sigalg_order_does() {
        let mut ciphers = EXAMPLE_CIPHERS.to_vec();
        ciphers.reverse();
        let mut exts = EXAMPLE_EXTENSIONS.to_vec();
        exts.reverse();
        let shuffled = ja4(&Ja4Input {
            ciphers: &ciphers,
            extensions: &exts,
            ..example()
        });
        assert_eq!(shuffled, "t13d1516h2_8daaf6152771_e5627efa2ab1");

        let mut sigs = EXAMPLE_SIGALGS.to_vec();
        sigs.reverse();
        let reordered = ja4(&Ja4Input {
            signature_algorithms: &sigs,
            ..example()
        });
        assert!(reordered.starts_with("t13d1516h2_8daaf6152771_"));
        assert_ne!(reordered, "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn counts_are_capped_at_99() {
        let ciphers: Vec<u16> = (0x0100..0x0100 + 150).collect();
        let mut exts: Vec<u16> = (0x0100..0x0100 + 120).collect();
        exts.extend_from_slice(&[0x0a0a, 0x1a1a]);
        let fp = ja4(&Ja4Input {
            ciphers: &ciphers,
            extensions: &exts,
            ..example()
        });
        assert!(fp.starts_with("t13d9999h2_"), "{fp}");

        let fp = ja4(&Ja4Input {
            ciphers: &ciphers[..99],
            extensions: &exts[..98],
            ..example()
        });
        assert!(fp.starts_with("t13d9998h2_"), "{fp}");

        // Single digits are zero-padded; GREASE is not counted.
        let fp = ja4(&Ja4Input {
            ciphers: &[0x0a0a, 0x1301],
            extensions: &[0x0a0a, 0x0000, 0x002b],
            ..example()
        });
        assert!(fp.starts_with("t13d0102h2_"), "{fp}");
    }

    #[test]
    fn alpn_codes() {
        assert_eq!(alpn_code(None), "00");
        assert_eq!(alpn_code(Some(b"")), "00");
        assert_eq!(alpn_code(Some(b"h2")), "h2");
        assert_eq!(alpn_code(Some(b"http/1.1")), "h1");
        assert_eq!(alpn_code(Some(b"h3")), "h3");
        assert_eq!(alpn_code(Some(b"x")), "xx");
        // Non-alphanumeric first or last character: hex of the value.
        assert_eq!(alpn_code(Some(&[0xab, 0xcd])), "ad");
        assert_eq!(alpn_code(Some(b"h2-")), "6d"); // hex "68322d"
        assert_eq!(alpn_code(Some(b"-h2")), "22"); // hex "2d6832"
        assert_eq!(alpn_code(Some(&[0x30, 0x00, 0x7a])), "0z");
        assert_eq!(alpn_code(Some(&[0x09])), "09");
        let fp = ja4(&Ja4Input {
            first_alpn: Some(&[0xab, 0xcd]),
            ..example()
        });
        assert!(fp.starts_with("t13d1516ad_"), "{fp}");
        let fp = ja4(&Ja4Input {
            first_alpn: None,
            ..example()
        });
        assert!(fp.starts_with("t13d151600_"), "{fp}");
    }

    #[test]
    fn sni_flag_and_transport() {
        let fp = ja4(&Ja4Input {
            has_sni: false,
            ..example()
        });
        assert_eq!(fp, "t13i1516h2_8daaf6152771_e5627efa2ab1");
        let fp = ja4(&Ja4Input {
            transport: 'q',
            first_alpn: Some(b"h3"),
            ..example()
        });
        assert_eq!(fp, "q13d1516h3_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn version_mapping() {
        let cases: &[(u16, &str)] = &[
            (0x0304, "13"),
            (0x0303, "12"),
            (0x0302, "11"),
            (0x0301, "10"),
            (0x0300, "s3"),
            (0x0002, "s2"),
            (0xfeff, "d1"),
            (0xfefd, "d2"),
            (0xfefc, "d3"),
            (0x7f1c, "00"),
            (0x0305, "00"),
            (0x0000, "00"),
        ];
        for &(v, code) in cases {
            let fp = ja4(&Ja4Input {
                legacy_version: v,
                supported_versions: None,
                ..example()
            });
            assert_eq!(&fp[1..3], code, "{v:#06x}");
        }
    }

    #[test]
    fn version_selection() {
        let code = |legacy: u16, sv: Option<&[u16]>| {
            let fp = ja4(&Ja4Input {
                legacy_version: legacy,
                supported_versions: sv,
                ..example()
            });
            fp[1..3].to_owned()
        };
        // supported_versions wins over legacy_version, highest value, any order.
        assert_eq!(code(0x0303, Some(&[0x0303, 0x0304])), "13");
        assert_eq!(code(0x0303, Some(&[0x0304, 0x0303])), "13");
        assert_eq!(code(0x0301, Some(&[0x0302])), "11");
        // GREASE is ignored; only GREASE or empty falls back to legacy_version.
        assert_eq!(code(0x0303, Some(&[0xfafa, 0x0303])), "12");
        assert_eq!(code(0x0303, Some(&[0xfafa])), "12");
        assert_eq!(code(0x0301, Some(&[])), "10");
        assert_eq!(code(0x0303, None), "12");
        // DTLS code points count down: 0xfefc (1.3) is above 0xfefd (1.2).
        assert_eq!(code(0xfefd, Some(&[0xfefd, 0xfefc])), "d3");
        assert_eq!(code(0xfefd, Some(&[0xfeff, 0xfefd])), "d2");
    }

    #[test]
    fn empty_lists_give_zero_hashes() {
        let fp = ja4(&Ja4Input {
            transport: 't',
            legacy_version: 0x0303,
            supported_versions: None,
            has_sni: false,
            ciphers: &[0x0a0a],
            extensions: &[0x0000, 0x0010, 0x1a1a],
            first_alpn: None,
            signature_algorithms: &[0x0403],
        });
        assert_eq!(fp, "t12i000200_000000000000_000000000000");
    }

    #[test]
    fn no_signature_algorithms_means_no_underscore() {
        assert_eq!(
            extension_string(&[0x002b, 0x000a, 0x0000], &[]).as_deref(),
            Some("000a,002b")
        );
        assert_eq!(
            extension_string(&[0x002b, 0x000a], &[0x0804]).as_deref(),
            Some("000a,002b_0804")
        );
        let fp = ja4(&Ja4Input {
            extensions: &[0x002b, 0x000a],
            signature_algorithms: &[],
            ..example()
        });
        assert!(fp.ends_with(&format!("_{}", hash12("000a,002b"))), "{fp}");
    }

    #[test]
    fn fingerprint_shape() {
        let fp = ja4(&example());
        assert_eq!(fp.len(), 36);
        let parts: Vec<&str> = fp.split('_').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].len(), 10);
        assert!(
            parts[1..]
                .iter()
                .all(|p| p.len() == 12 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }
}
