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
}
