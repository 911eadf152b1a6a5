//! The small printed values of a flow record — TLS code points (`"0x0304"`), RFC 3339
//! times and endpoints — formatted into fixed-size stack buffers instead of `String`s.
//!
//! A record holds the raw values ([`CodePoint`], [`UtcTime`], [`Endpoint`]); their text is
//! made only when the record is written, without allocating. Each type serializes as the
//! JSON string the contract (`docs/flow-record.md`) specifies, and displays as the same
//! text.

use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

use crate::capture::Timestamp;
use crate::decode::Endpoint;

/// An unsigned integer in decimal.
pub fn decimal(v: u64) -> StackText<20> {
    let mut t = StackText::new();
    t.push_decimal(v);
    t
}

/// `00`, `01`, ... `99`: decimal digits two at a time.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// `00`, `01`, ... `ff`: lowercase hex digits of a byte, two at a time.
const HEX_PAIRS: [u8; 512] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [0; 512];
    let mut i = 0;
    while i < 256 {
        t[2 * i] = HEX[i >> 4];
        t[2 * i + 1] = HEX[i & 0xf];
        i += 1;
    }
    t
};

/// The four lowercase hex digits of `v` (`0x%04x` without its `0x`).
pub fn hex4(v: u16) -> [u8; 4] {
    let [hi, lo] = v.to_be_bytes();
    let (hi, lo) = (usize::from(hi) * 2, usize::from(lo) * 2);
    [
        HEX_PAIRS[hi],
        HEX_PAIRS[hi + 1],
        HEX_PAIRS[lo],
        HEX_PAIRS[lo + 1],
    ]
}

/// Text of at most `N` bytes, built on the stack.
#[derive(Clone, Copy)]
pub struct StackText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    fn new() -> Self {
        StackText {
            buf: [0; N],
            len: 0,
        }
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// Appends `v` in decimal: the digit count first, then the digits from the right, two
    /// at a time from a table (an endpoint has five numbers, a record a dozen more).
    fn push_decimal(&mut self, v: u64) {
        let n = v.checked_ilog10().unwrap_or(0) as usize + 1;
        self.len += n;
        let mut i = self.len;
        let mut v = v;
        while v >= 100 {
            let r = (v % 100) as usize * 2;
            v /= 100;
            i -= 2;
            self.buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[r..r + 2]);
        }
        if v >= 10 {
            let r = v as usize * 2;
            self.buf[i - 2..i].copy_from_slice(&DIGIT_PAIRS[r..r + 2]);
        } else {
            self.buf[i - 1] = b'0' + v as u8;
        }
    }

    /// Appends the text to `out`: the whole buffer as one fixed-size copy (no `memcpy`
    /// call for a few bytes), then cut back to the text's length.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let end = out.len() + self.len;
        out.extend_from_slice(&self.buf);
        out.truncate(end);
    }

    /// Appends the text between double quotes (the text needs no escaping: digits, hex,
    /// `x.:-[]TZ`).
    pub fn write_quoted_to(&self, out: &mut Vec<u8>) {
        out.reserve(N + 2);
        out.push(b'"');
        self.write_to(out);
        out.push(b'"');
    }

    /// The text's bytes (ASCII, but for an IPv6 endpoint's: still UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII and whole `&str`s (from `fmt::Write`) are ever pushed.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl<const N: usize> fmt::Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > N {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A TLS code point (version, cipher suite, group), printed as lowercase hex with at least
/// four digits (`"0x1301"`), or six for an SSL 2.0 cipher kind (`"0x0700c0"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodePoint {
    value: u32,
    digits: u8,
}

impl CodePoint {
    /// A 16-bit code point: `0x%04x`.
    pub fn new(value: u16) -> CodePoint {
        CodePoint {
            value: u32::from(value),
            digits: 4,
        }
    }

    /// An SSL 2.0 cipher kind (24 bits): `0x%06x`.
    pub fn sslv2_cipher(value: u32) -> CodePoint {
        CodePoint { value, digits: 6 }
    }

    /// The four hex digits of the usual `0x%04x` form (a 16-bit code point); `None` for the
    /// longer SSL 2.0 form. Lets the JSON writer copy a code point as one fixed-size write.
    pub fn hex16(self) -> Option<[u8; 4]> {
        if self.digits != 4 || self.value > 0xffff {
            return None;
        }
        Some(hex4(self.value as u16))
    }

    /// Its text: `0x` and the hex digits (`0x%04x`, or `0x%06x` for SSL 2.0 kinds).
    pub fn text(self) -> StackText<10> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        // Significant digits, but never fewer than `digits` (at most 8 for a u32).
        let needed = (32 - self.value.leading_zeros()).div_ceil(4) as usize;
        let n = needed.max(usize::from(self.digits)).min(8);
        let mut buf = [0; 10];
        buf[0] = b'0';
        buf[1] = b'x';
        for (i, slot) in buf[2..2 + n].iter_mut().rev().enumerate() {
            *slot = HEX[(self.value >> (4 * i)) as usize & 0xf];
        }
        StackText { buf, len: 2 + n }
    }
}

/// `Display` and `Serialize` (as a string) through the type's stack-built `text()`.
macro_rules! shown_as_text {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.text().as_str())
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.text().as_str())
            }
        }
    };
}

shown_as_text!(CodePoint);

/// A packet time, printed as RFC 3339 UTC with microseconds
/// (`"2026-01-01T00:00:00.071200Z"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcTime(pub Timestamp);

impl UtcTime {
    /// Nanoseconds since the Unix epoch.
    pub fn nanos(self) -> i64 {
        (self.0).0
    }

    /// Its text. Always 27 bytes: a nanosecond `i64` spans the years 1677 to 2262, so the
    /// year has four digits.
    pub fn text(self) -> StackText<27> {
        let ns = self.nanos();
        let secs = ns.div_euclid(1_000_000_000);
        let micros = (ns.rem_euclid(1_000_000_000) / 1000) as usize;
        let (days, tod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as usize);
        let (y, m, d) = crate::capture::civil_from_days(days);
        // Every part is non-negative and fits its width (see above), so each is written
        // as digit pairs at fixed places of a template: two records' times are a sixth
        // of the digits a record writes.
        let mut buf = *b"0000-00-00T00:00:00.000000Z";
        let mut pair = |at: usize, v: usize| {
            let i = v % 100 * 2;
            buf[at] = DIGIT_PAIRS[i];
            buf[at + 1] = DIGIT_PAIRS[i + 1];
        };
        let y = y.unsigned_abs() as usize;
        pair(0, y / 100);
        pair(2, y);
        pair(5, m.unsigned_abs() as usize);
        pair(8, d.unsigned_abs() as usize);
        pair(11, tod / 3600);
        pair(14, tod % 3600 / 60);
        pair(17, tod % 60);
        pair(20, micros / 10_000);
        pair(22, micros / 100);
        pair(24, micros);
        StackText { buf, len: 27 }
    }
}

shown_as_text!(UtcTime);

/// Bytes of the longest endpoint text: `[`, an IPv6 address (at most 39), `]:`, a port.
const ENDPOINT_MAX: usize = 1 + 39 + 2 + 5;

/// An endpoint's text, as its `Display` writes it: `ip:port`, or `[ip]:port` for IPv6.
pub fn endpoint_text(ep: &Endpoint) -> StackText<ENDPOINT_MAX> {
    let mut t = StackText::new();
    match ep.ip {
        IpAddr::V4(a) => {
            // Octets are most of the endpoints a record writes: each is 1 to 3 digits
            // from the pair table, without the general number path.
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    t.push(b'.');
                }
                let o = usize::from(o);
                if o >= 100 {
                    t.push(b'0' + (o / 100) as u8);
                }
                if o >= 10 {
                    t.push(DIGIT_PAIRS[o % 100 * 2]);
                }
                t.push(DIGIT_PAIRS[o % 100 * 2 + 1]);
            }
        }
        IpAddr::V6(a) => {
            // std's compressed form (RFC 5952); rare enough to go through `fmt`. It always
            // fits, so the write cannot fail.
            let _ = fmt::Write::write_fmt(&mut t, format_args!("[{a}]"));
        }
    }
    t.push(b':');
    t.push_decimal(u64::from(ep.port));
    t
}

/// Serializes an endpoint as its text (`serialize_with` of the record's endpoints).
pub fn serialize_endpoint<S: Serializer>(ep: &Endpoint, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(endpoint_text(ep).as_str())
}

/// Serializes 16-bit code points (a ClientHello's lists, kept as the hello parsed them) as
/// the list of their texts, as a list of [`CodePoint`]s would be.
pub fn serialize_code_points<S: Serializer>(v: &[u16], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|&c| CodePoint::new(c)))
}

/// [`serialize_code_points`] for a list that may be absent (`null`).
pub fn serialize_opt_code_points<S: Serializer>(
    v: &Option<Vec<u16>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => serialize_code_points(v, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_points_as_format_prints_them() {
        for v in [0u16, 1, 0x0304, 0x1301, 0xabcd, 0xffff, 0x0a0a] {
            assert_eq!(CodePoint::new(v).to_string(), format!("0x{v:04x}"));
        }
        for v in [0u32, 0x0700c0, 0x010080, 0xffffff, 0x1234567, u32::MAX] {
            assert_eq!(CodePoint::sslv2_cipher(v).to_string(), format!("0x{v:06x}"));
        }
    }

    #[test]
    fn times_are_rfc3339_micros() {
        let cases = [
            (0, "1970-01-01T00:00:00.000000Z"),
            (1_795_843_703_123_456_789, "2026-11-28T05:28:23.123456Z"),
            (951_782_400 * 1_000_000_000, "2000-02-29T00:00:00.000000Z"),
            (-1, "1969-12-31T23:59:59.999999Z"),
            (i64::MIN, "1677-09-21T00:12:43.145224Z"),
            (i64::MAX, "2262-04-11T23:47:16.854775Z"),
        ];
        for (ns, text) in cases {
            assert_eq!(UtcTime(Timestamp(ns)).to_string(), text);
        }
    }

    #[test]
    fn endpoints_as_their_display() {
        let eps = [
            "10.64.0.89:37559",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[fd00::2]:80",
            "[::ffff:10.0.0.1]:443",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[2001:db8::1:0:0:1]:8080",
        ];
        for s in eps {
            let sa: std::net::SocketAddr = s.parse().unwrap();
            let ep = Endpoint {
                ip: sa.ip(),
                port: sa.port(),
            };
            assert_eq!(endpoint_text(&ep).as_str(), ep.to_string());
            assert_eq!(endpoint_text(&ep).as_str(), s);
        }
    }
}
