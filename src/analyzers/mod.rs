//! Analyzers: consume a connection's reassembled bytes per direction, keep owned facts.
//!
//! [`ConnAnalyzer`] is the flow table's [`StreamHandler`]: it hands each direction's bytes
//! to the TLS analyzer and keeps the first bytes of each direction for cleartext
//! recognition. It knows nothing of packets or of classification.

pub mod plain;
pub mod tls;

use crate::flow::{Chunk, Consumed, Ctx, Dir, StreamHandler, prefetch_line};
use tls::TlsAnalyzer;

/// All analyzers of one connection.
#[derive(Debug, Default)]
pub struct ConnAnalyzer {
    /// TLS facts.
    pub tls: TlsAnalyzer,
    /// First bytes of each direction (never reported; used to name the protocol).
    heads: [Vec<u8>; 2],
    /// The head of a direction is complete (full, or broken by a gap).
    head_done: [bool; 2],
}

impl ConnAnalyzer {
    /// First bytes of a direction's stream.
    pub fn head(&self, dir: Dir) -> &[u8] {
        &self.heads[dir.idx()]
    }
}

/// Makes room for `add` more bytes in `head`: at once for [`plain::HEAD_MAX`] bytes, when
/// the direction has sent a few dozen. A head lives as long as its flow, and room beyond
/// the maximum would never be used; nearly every direction that sends more than a record
/// header fills it, and growing by doubling (a server's head: its hello, then a record
/// header at a time) took two or three reallocations, each a copy.
#[cold]
fn grow_head(head: &mut Vec<u8>, add: usize) {
    const SMALL: usize = 32;
    let want = head.len() + add;
    let cap = if want <= SMALL && head.capacity() < SMALL {
        SMALL
    } else {
        plain::HEAD_MAX
    };
    head.reserve_exact(cap - head.len());
}

impl StreamHandler for ConnAnalyzer {
    #[inline]
    fn prefetch(&self, dir: Dir) {
        prefetch_line(&self.heads[dir.idx()]);
        self.tls.prefetch(dir);
    }

    #[inline]
    fn on_chunk(&mut self, dir: Dir, chunk: Chunk<'_>, ctx: &Ctx) -> Consumed {
        let i = dir.idx();
        let head_read = !self.head_done[i];
        if !self.head_done[i] {
            match chunk {
                Chunk::Data(d) => {
                    let head = &mut self.heads[i];
                    let add = &d[..d.len().min(plain::HEAD_MAX - head.len())];
                    if head.len() + add.len() > head.capacity() {
                        grow_head(head, add.len());
                    }
                    head.extend_from_slice(add);
                    self.head_done[i] = head.len() >= plain::HEAD_MAX;
                }
                Chunk::Gap(_) => {
                    self.head_done[i] = !self.heads[i].is_empty();
                    if self.head_done[i] {
                        // Complete: the room for more is no longer needed.
                        self.heads[i].shrink_to_fit();
                    }
                }
            }
        }
        match self.tls.on_chunk(dir, chunk, ctx) {
            Consumed::Skipped if !head_read => Consumed::Skipped,
            _ => Consumed::Read,
        }
    }

    fn wants(&self, dir: Dir) -> bool {
        !self.head_done[dir.idx()] || self.tls.wants(dir)
    }

    /// Starts afresh but keeps the heads' room (emptied): most directions fill one.
    fn reset(&mut self) {
        // Every field by name, so that a field added later cannot be forgotten here.
        let ConnAnalyzer {
            tls,
            heads,
            head_done,
        } = self;
        tls.reset();
        heads.iter_mut().for_each(Vec::clear);
        *head_done = [false; 2];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Timestamp;

    /// Feeds a ClientHello split across two records and two chunks, cut mid-message,
    /// and most of a server record: every buffer of both directions is in use, and the
    /// server's head is complete.
    fn feed(a: &mut ConnAnalyzer) {
        let mut hello = vec![1, 0, 0, 41, 3, 3];
        hello.extend_from_slice(&[7; 32]);
        hello.extend_from_slice(&[0, 0, 2, 0x13, 0x01]);
        let mut stream = Vec::new();
        for part in hello.chunks(30) {
            stream.extend_from_slice(&[0x16, 3, 1, 0, part.len() as u8]);
            stream.extend_from_slice(part);
        }
        let ctx = Ctx {
            frame: 1,
            ts: Timestamp(0),
        };
        let (first, rest) = stream.split_at(20);
        a.on_chunk(Dir::AtoB, Chunk::Data(first), &ctx);
        a.on_chunk(Dir::AtoB, Chunk::Data(&rest[..rest.len() - 2]), &ctx);
        // A server record of 600 bytes, all but its last: the head (512 bytes) is full.
        let mut server = vec![0x16, 3, 3, 2, 0x58, 2];
        server.resize(5 + 599, 0);
        a.on_chunk(Dir::BtoA, Chunk::Data(&server), &ctx);
    }

    /// A reset analyzer (a finished flow's, reused) is a new one: the same state (the
    /// debug form shows every field and each buffer's content, not the room kept), and
    /// it reads a stream as a new one does.
    #[test]
    fn reset_is_new() {
        let new = format!("{:?}", ConnAnalyzer::default());
        let mut fresh = ConnAnalyzer::default();
        feed(&mut fresh);
        let fed = format!("{fresh:?}");
        assert_ne!(fed, new);
        let mut reused = fresh;
        reused.reset();
        assert_eq!(format!("{reused:?}"), new);
        assert!(reused.heads.iter().all(|h| h.capacity() > 0), "room kept");
        assert!(reused.tls.kept_room() > 0, "room kept");
        feed(&mut reused);
        assert_eq!(format!("{reused:?}"), fed);
    }
}
