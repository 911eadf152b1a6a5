//! Cleartext protocol recognition from the first bytes of each direction.
//!
//! Only names the protocol; it never keeps or reports header values.

/// Bytes of each direction's stream start kept for recognition.
pub const HEAD_MAX: usize = 512;

fn starts_ci(b: &[u8], prefix: &[u8]) -> bool {
    b.len() >= prefix.len() && b[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Whether `needle` (ASCII, not empty) occurs in `b`, ignoring ASCII case. Only the
/// places where its first byte occurs (in either case) are compared, found with memchr:
/// a head is searched at memchr's speed instead of comparing a window at every byte.
fn contains_ci(b: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    memchr::memchr2_iter(lower, upper, b).any(|i| {
        b.get(i + 1..i + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(rest))
    })
}

/// The lines of `b` as `b.split(|&c| c == b'\n')` gives them, found with memchr.
fn lines(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(b);
    std::iter::from_fn(move || {
        let b = rest?;
        match memchr::memchr(b'\n', b) {
            Some(i) => {
                rest = Some(&b[i + 1..]);
                Some(&b[..i])
            }
            None => {
                rest = None;
                Some(b)
            }
        }
    })
}

const HTTP_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// The first line of `b` is an HTTP/1.x request.
///
/// The method is checked first: it rules out most heads (a TLS record, another
/// protocol) without looking for the end of the line in up to [`HEAD_MAX`] bytes.
pub fn is_http_request(b: &[u8]) -> bool {
    HTTP_METHODS.iter().any(|m| b.starts_with(m)) && {
        let line = lines(b).next().unwrap_or_default();
        contains_ci(line, b" HTTP/1.")
    }
}

/// HTTP/2 connection preface (prior knowledge).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Names the cleartext protocol of a connection from the heads of its two directions
/// (client first when known). Returns `None` when nothing matches.
pub fn detect(client: &[u8], server: &[u8]) -> Option<&'static str> {
    for (c, s) in [(client, server), (server, client)] {
        if c.starts_with(H2_PREFACE) {
            return Some("h2c");
        }
        if is_http_request(c) {
            if contains_ci(c, b"\r\nupgrade: h2c") && s.starts_with(b"HTTP/1.1 101") {
                return Some("h2c");
            }
            return Some("http/1.x");
        }
        if s.starts_with(b"HTTP/1.") && c.is_empty() {
            return Some("http/1.x");
        }
    }
    for (c, s) in [(client, server), (server, client)] {
        if s.starts_with(b"SSH-") || c.starts_with(b"SSH-") {
            return Some("ssh");
        }
        if s.starts_with(b"220")
            && (starts_ci(c, b"EHLO") || starts_ci(c, b"HELO") || contains_ci(s, b"SMTP"))
        {
            return Some("smtp");
        }
        if s.starts_with(b"220")
            && (starts_ci(c, b"USER ") || starts_ci(c, b"AUTH ") || contains_ci(s, b"FTP"))
        {
            return Some("ftp");
        }
        if s.starts_with(b"+OK") {
            return Some("pop3");
        }
        if s.starts_with(b"* OK") {
            return Some("imap");
        }
        if starts_ci(c, b"<?xml") || starts_ci(c, b"<stream:stream") {
            return Some("xmpp");
        }
        if starts_ci(c, b"NICK ") || starts_ci(c, b"CAP LS") || starts_ci(c, b"PASS ") {
            return Some("irc");
        }
        if c.starts_with(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])
            || (c.len() >= 8 && c[4..8] == [0, 3, 0, 0])
        {
            return Some("postgresql");
        }
        if s.len() >= 5
            && s[3] == 0
            && s[4] == 10
            && usize::from(s[0]) + 4 <= s.len() + 4
            && c.len() >= 4
        {
            return Some("mysql");
        }
        if c.first() == Some(&b'*') && c.get(1).is_some_and(u8::is_ascii_digit) {
            return Some("redis");
        }
    }
    None
}

/// What an HTTP/1.x exchange shows in its first lines. Only the request line's method
/// and path (query string removed), the Host header's value and the response status are
/// kept: other header values may carry credentials and are never read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpFacts {
    /// Request method.
    pub method: Option<String>,
    /// Request path, without query string or fragment.
    pub path: Option<String>,
    /// Host header value.
    pub host: Option<String>,
    /// Response status code.
    pub status: Option<u16>,
}

fn first_line(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .position(|&c| c == b'\r' || c == b'\n')
        .unwrap_or(b.len());
    &b[..end]
}

/// At most `max` bytes of `b`, each printable ASCII character kept and any other byte
/// shown as `?`: one byte of text per byte, so the string is allocated once, exactly.
fn printable(b: &[u8], max: usize) -> String {
    let ascii: Vec<u8> = b
        .iter()
        .take(max)
        .map(|&c| if (0x21..0x7f).contains(&c) { c } else { b'?' })
        .collect();
    // Printable ASCII and `?` only: always UTF-8.
    String::from_utf8(ascii).unwrap_or_default()
}

/// Reads the request line and Host of `client`, and the status of `server`.
pub fn http_facts(client: &[u8], server: &[u8]) -> HttpFacts {
    let mut f = HttpFacts::default();
    if is_http_request(client) {
        let mut parts = first_line(client).split(|&c| c == b' ');
        f.method = parts.next().map(|m| printable(m, 16));
        f.path = parts.next().map(|p| {
            let end = p
                .iter()
                .position(|&c| c == b'?' || c == b'#')
                .unwrap_or(p.len());
            printable(&p[..end], 256)
        });
        for line in lines(client).skip(1) {
            let line = first_line(line);
            if line.is_empty() {
                break;
            }
            if starts_ci(line, b"host:") {
                f.host = Some(printable(line[5..].trim_ascii(), 256));
            }
        }
    }
    if server.starts_with(b"HTTP/1.") {
        f.status = first_line(server)
            .split(|&c| c == b' ')
            .nth(1)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse().ok());
    }
    f
}

/// Whether `b` is mostly printable text (a hint that an unknown protocol is cleartext).
pub fn looks_textual(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .filter(|&&c| c == b'\r' || c == b'\n' || c == b'\t' || (0x20..0x7f).contains(&c))
            .count()
            * 10
            >= b.len() * 9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_match_the_plain_definitions() {
        let texts: [&[u8]; 8] = [
            b"",
            b"\n",
            b"a\n\nb\n",
            b"GET / HTTP/1.1\r\nUpgrade: H2C\r\n\r\n",
            b"\r\nupgrade: h2",
            b"220 mx esmtp\r\n",
            b"xx\r\nUPGRADE: h2c",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\r",
        ];
        for t in texts {
            for needle in [&b"\r\nupgrade: h2c"[..], b"SMTP", b" HTTP/1.", b"\r", b"x"] {
                let plain = t
                    .windows(needle.len())
                    .any(|w| w.eq_ignore_ascii_case(needle));
                assert_eq!(contains_ci(t, needle), plain, "{t:?} {needle:?}");
            }
            assert!(lines(t).eq(t.split(|&c| c == b'\n')), "{t:?}");
        }
    }

    #[test]
    fn recognizes() {
        assert_eq!(
            detect(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"HTTP/1.1 200 OK\r\n"),
            Some("http/1.x")
        );
        assert_eq!(
            detect(b"HTTP/1.1 200 OK\r\n", b"GET /x HTTP/1.0\r\n"),
            Some("http/1.x")
        );
        assert_eq!(detect(H2_PREFACE, b""), Some("h2c"));
        assert_eq!(
            detect(
                b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
                b"HTTP/1.1 101 Switching Protocols\r\n"
            ),
            Some("h2c")
        );
        assert_eq!(detect(b"EHLO me\r\n", b"220 mx ESMTP\r\n"), Some("smtp"));
        assert_eq!(detect(b"CAPA\r\n", b"+OK ready\r\n"), Some("pop3"));
        assert_eq!(detect(b"SSH-2.0-x\r\n", b""), Some("ssh"));
        assert_eq!(detect(&[0x16, 3, 1], &[0x16, 3, 3]), None);
        assert!(looks_textual(b"hello\r\n"));
        let f = http_facts(
            b"GET /api/items?token=secret HTTP/1.1\r\nAuthorization: Bearer x\r\nHost: web.shop.svc\r\n\r\n",
            b"HTTP/1.1 503 Service Unavailable\r\n",
        );
        assert_eq!(f.method.as_deref(), Some("GET"));
        assert_eq!(f.path.as_deref(), Some("/api/items"));
        assert_eq!(f.host.as_deref(), Some("web.shop.svc"));
        assert_eq!(f.status, Some(503));
        assert_eq!(
            http_facts(b"\x16\x03\x01", b"HTTP/1.1 400 Bad Request\r\n").status,
            Some(400)
        );
        assert!(!looks_textual(&[0, 1, 2, 3]));
    }
}
