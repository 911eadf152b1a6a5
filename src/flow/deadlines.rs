//! When each flow (or tombstone) of a table may expire: a priority queue that is cheap
//! for the order deadlines are actually pushed in.
//!
//! A deadline is a capture time plus a fixed wait of one of a few kinds (a flow's idle
//! timeout, its close linger or close grace, a tombstone's linger). The capture clock only
//! moves forward and most timestamps follow it, so within one kind deadlines are pushed
//! almost always in time order. Those go to a FIFO per kind (push and pop in O(1), and
//! sequential in memory); the rare one pushed earlier than its FIFO's last (a timestamp
//! that went back) goes to a binary heap. The earliest deadline is the least of the FIFOs'
//! fronts and the heap's top, so the queue pops exactly what one heap would, and a table
//! with tens of thousands of tombstones no longer sifts a heap of them per flow.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::FlowKey;

/// A flow's (or a tombstone's) expiry, checked against the flow when it comes due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Deadline {
    pub at: i64,
    pub first_frame: u64,
    pub key: FlowKey,
    pub tomb: bool,
}

/// The wait a deadline counts: deadlines of one kind arrive nearly in time order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A flow's idle timeout.
    Idle = 0,
    /// A closed flow waiting for its final ACK.
    Linger = 1,
    /// A flow whose close is complete.
    Grace = 2,
    /// A tombstone absorbing a closed connection's late packets.
    Tomb = 3,
}

const KINDS: usize = 4;

/// Deadlines, earliest first.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    fifos: [VecDeque<Deadline>; KINDS],
    heap: BinaryHeap<Reverse<Deadline>>,
    /// `at` of the earliest deadline (`i64::MAX` when empty): one compare per packet.
    next_at: i64,
}

impl Deadlines {
    pub fn new() -> Deadlines {
        Deadlines {
            next_at: i64::MAX,
            ..Deadlines::default()
        }
    }

    pub fn push(&mut self, kind: Kind, d: Deadline) {
        let fifo = &mut self.fifos[kind as usize];
        if fifo.back().is_none_or(|last| *last <= d) {
            fifo.push_back(d);
        } else {
            self.heap.push(Reverse(d));
        }
        self.next_at = self.next_at.min(d.at);
    }

    /// `at` of the earliest deadline, `i64::MAX` when there is none.
    pub fn next_at(&self) -> i64 {
        self.next_at
    }

    /// Removes and returns the earliest deadline.
    pub fn pop(&mut self) -> Option<Deadline> {
        let mut best: Option<(Deadline, Option<usize>)> =
            self.heap.peek().map(|Reverse(d)| (*d, None));
        for (i, fifo) in self.fifos.iter().enumerate() {
            if let Some(&d) = fifo.front()
                && best.is_none_or(|(b, _)| d < b)
            {
                best = Some((d, Some(i)));
            }
        }
        let (d, from) = best?;
        match from {
            Some(i) => {
                self.fifos[i].pop_front();
            }
            None => {
                self.heap.pop();
            }
        }
        self.next_at = self.earliest();
        Some(d)
    }

    fn earliest(&self) -> i64 {
        let fronts = self.fifos.iter().filter_map(|f| f.front().map(|d| d.at));
        let top = self.heap.peek().map(|Reverse(d)| d.at);
        fronts.chain(top).min().unwrap_or(i64::MAX)
    }

    pub fn len(&self) -> usize {
        self.fifos.iter().map(VecDeque::len).sum::<usize>() + self.heap.len()
    }

    pub fn clear(&mut self) {
        self.fifos.iter_mut().for_each(VecDeque::clear);
        self.heap.clear();
        self.next_at = i64::MAX;
    }

    /// Replaces every deadline with `entries`, keeping the allocations.
    pub fn rebuild(&mut self, mut entries: Vec<(Kind, Deadline)>) {
        self.clear();
        entries.sort_unstable_by_key(|&(_, d)| d);
        for (kind, d) in entries {
            self.push(kind, d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Endpoint;

    fn key(port: u16) -> FlowKey {
        let ep = |port| Endpoint {
            ip: std::net::IpAddr::from([10, 0, 0, 1]),
            port,
        };
        FlowKey::new(ep(port), ep(1))
    }

    /// Pops in the same order as one binary heap, whatever mix of in-order and
    /// out-of-order pushes of several kinds, interleaved with pops.
    #[test]
    fn pops_what_a_heap_pops() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let kinds = [Kind::Idle, Kind::Linger, Kind::Grace, Kind::Tomb];
        let mut q = Deadlines::new();
        let mut heap = BinaryHeap::new();
        let mut clock = 0i64;
        for i in 0..20_000u64 {
            let r = next();
            // Mostly forward in time, sometimes back a little, per kind a fixed wait.
            clock += (r % 7) as i64;
            let kind = kinds[(r >> 8) as usize % 4];
            let back = if r >> 20 & 15 == 0 {
                (r >> 24 & 63) as i64
            } else {
                0
            };
            let d = Deadline {
                at: clock - back + 1000 * kind as i64,
                first_frame: i,
                key: key((r >> 32) as u16),
                tomb: kind == Kind::Tomb,
            };
            q.push(kind, d);
            heap.push(Reverse(d));
            if r >> 40 & 1 == 0 {
                assert_eq!(q.pop(), heap.pop().map(|Reverse(d)| d));
            }
            assert_eq!(q.len(), heap.len());
            assert_eq!(q.next_at(), heap.peek().map_or(i64::MAX, |Reverse(d)| d.at));
        }
        assert!(q.heap.len() < q.len() / 4, "most pushes are in order");
        while let Some(Reverse(d)) = heap.pop() {
            assert_eq!(q.pop(), Some(d));
        }
        assert_eq!(q.pop(), None);
        assert_eq!(q.next_at(), i64::MAX);
    }
}
