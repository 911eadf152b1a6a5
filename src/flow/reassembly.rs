//! One direction's TCP byte stream, reassembled from segments in capture order.
//!
//! Policy, decided once and documented here:
//! * Bytes are delivered when they become contiguous (arrival order), not when they are
//!   acknowledged: an offline capture often lacks the ACK, and the analyzers only read the
//!   first kilobytes of a flow.
//! * Overlaps: the first copy wins. A later copy whose bytes differ is counted as a
//!   conflicting overlap. It can be compared while the earlier copy is still pending, or
//!   against the last run of delivered bytes that the consumer read (up to
//!   [`Limits::retransmit_window`] of them, [`DEFAULT_RETRANSMIT_WINDOW`] by default).
//!   Bytes the consumer skips unread (the bodies of encrypted TLS records) are not kept
//!   for comparison: a difference in them cannot change what the analyzers see, and
//!   copying them was most of reassembly's memory traffic.
//! * Sequence numbers are compared with wrapping (serial) arithmetic and turned into a
//!   64-bit stream offset once, at the boundary; offsets never wrap.
//! * Memory is bounded: at most `max_pending_bytes` and `max_pending_segments` wait for a
//!   hole to fill; beyond that the hole is declared a gap (missed bytes) and delivery
//!   resumes. Past `depth` bytes, or when the consumer says it has seen enough, the
//!   direction stops buffering and only counts.

use std::collections::BTreeMap;

use super::prefetch_line;

/// Default of [`Limits::retransmit_window`].
///
/// Each byte kept is copied into a line of the flow's that is cold by its next packet. A
/// window of 2 KiB cost about 8 % of the CPU of a whole-capture run with thousands of
/// flows open (each handshake segment copied whole, up to 23 lines); 512 bytes covers a
/// ClientHello and every TLS record header read after the handshake.
pub const DEFAULT_RETRANSMIT_WINDOW: usize = 512;

/// Largest [`Limits::retransmit_window`].
pub const MAX_RETRANSMIT_WINDOW: usize = 64 * 1024;

/// A TCP sequence number: arithmetic modulo 2^32. Deliberately not `Ord`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// `self + n`, wrapping.
    pub fn wrapping_add(self, n: u32) -> SeqNum {
        SeqNum(self.0.wrapping_add(n))
    }

    /// Signed distance `self - other`, meaningful while the two are within 2^31.
    pub fn distance_from(self, other: SeqNum) -> i64 {
        i64::from(self.0.wrapping_sub(other.0) as i32)
    }
}

/// What the reassembler hands to its consumer, in stream order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Contiguous bytes.
    Data(&'a [u8]),
    /// Bytes that were never captured (a hole, or a snaplen cut).
    Gap(u64),
}

/// What the consumer did with a chunk of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consumed {
    /// It read some of them (they are kept to compare retransmissions against).
    Read,
    /// It skipped them all unread.
    Skipped,
}

/// Bounds on one direction's reassembly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Stream bytes delivered before the direction switches to counting only.
    pub depth: u64,
    /// Out-of-order bytes buffered while waiting for a hole to fill.
    pub max_pending_bytes: usize,
    /// Out-of-order segments buffered while waiting for a hole to fill.
    pub max_pending_segments: usize,
    /// Bytes of the last run the consumer read that are kept to compare retransmissions
    /// against: a power of two, at most [`MAX_RETRANSMIT_WINDOW`], or 0 to keep none
    /// (see [`Limits::with_retransmit_window`]).
    pub retransmit_window: usize,
}

impl Limits {
    /// These limits with a retransmission window of `bytes`, rounded up to a power of two
    /// (the ring is indexed with a mask), at most [`MAX_RETRANSMIT_WINDOW`]; 0 keeps none.
    pub fn with_retransmit_window(self, bytes: usize) -> Limits {
        let window = match bytes {
            0 => 0,
            b => b.min(MAX_RETRANSMIT_WINDOW).next_power_of_two(),
        };
        Limits {
            retransmit_window: window,
            ..self
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            depth: 256 * 1024,
            max_pending_bytes: 256 * 1024,
            max_pending_segments: 512,
            retransmit_window: DEFAULT_RETRANSMIT_WINDOW,
        }
    }
}

/// Counters of what reassembly saw; they become anomalies in the flow record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes never captured (holes declared gaps, snaplen cuts).
    pub missed_bytes: u64,
    /// Number of holes declared gaps.
    pub gaps: u64,
    /// Segments that overlapped earlier data with different bytes.
    pub overlap_conflicts: u64,
    /// Payload bytes that repeated already-seen stream bytes.
    pub retransmitted_bytes: u64,
    /// Segments that arrived ahead of a hole.
    pub out_of_order: u64,
    /// Segments whose payload the snaplen cut.
    pub truncated: u64,
    /// Holes given up because the pending buffer hit its bounds.
    pub overflows: u64,
}

#[derive(Debug)]
enum Piece {
    Bytes(Vec<u8>),
    Missing(u64),
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::Missing(n) => *n,
        }
    }
}

/// Reassembler for one direction of a TCP connection.
#[derive(Debug)]
pub struct Reassembler {
    limits: Limits,
    /// Sequence number of stream offset 0.
    base: Option<SeqNum>,
    /// Next offset to deliver.
    next: u64,
    /// Non-overlapping pieces, each starting at or after `next`.
    pending: BTreeMap<u64, Piece>,
    pending_bytes: usize,
    /// The last run of delivered bytes that the consumer read, `[recent_start,
    /// recent_end)`: a ring of [`Limits::retransmit_window`] bytes indexed by stream
    /// offset (empty until the first such delivery, then as long as the highest position
    /// written).
    recent: Vec<u8>,
    recent_start: u64,
    recent_end: u64,
    active: bool,
    stats: Stats,
}

impl Reassembler {
    /// Starts loading into the cache what a segment reads of this direction: the lines
    /// of its state (a hint only).
    #[inline]
    pub fn prefetch(&self) {
        prefetch_line(self);
        prefetch_line(&self.base);
        prefetch_line(&self.next);
        prefetch_line(&self.pending);
        prefetch_line(&self.recent_end);
        prefetch_line(&self.active);
        prefetch_line(&self.stats);
    }

    /// A direction that has seen nothing yet.
    pub fn new(limits: Limits) -> Reassembler {
        Reassembler {
            // The ring is indexed with a mask: a window set directly in the struct, not
            // through `with_retransmit_window`, is made a power of two here.
            limits: limits.with_retransmit_window(limits.retransmit_window),
            base: None,
            next: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            recent: Vec::new(),
            recent_start: 0,
            recent_end: 0,
            active: true,
            stats: Stats::default(),
        }
    }

    /// Back to a direction that has seen nothing, keeping the ring's allocation (emptied).
    pub fn reset(&mut self, limits: Limits) {
        let mut recent = std::mem::take(&mut self.recent);
        recent.clear();
        *self = Reassembler::new(limits);
        if recent.capacity() >= self.limits.retransmit_window {
            self.recent = recent;
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Stream offset delivered up to (bytes and gaps).
    pub fn delivered(&self) -> u64 {
        self.next
    }

    /// Whether delivery stopped at the depth limit.
    pub fn depth_reached(&self) -> bool {
        self.next >= self.limits.depth
    }

    /// Whether bytes are still buffered and delivered.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Records the SYN's sequence number: the stream starts one past it. Ignored once
    /// data has been placed, so a late or repeated SYN cannot move the stream.
    pub fn syn(&mut self, seq: SeqNum) {
        if self.next == 0 && self.pending.is_empty() && self.recent.is_empty() {
            self.base = Some(seq.wrapping_add(1));
        }
    }

    /// Stops buffering: the consumer has what it needs. Counting continues elsewhere.
    pub fn stop(&mut self) {
        self.active = false;
        self.pending = BTreeMap::new();
        self.pending_bytes = 0;
        self.recent = Vec::new();
    }

    /// Adds a segment of `wire_len` stream bytes starting at `seq`, of which `data` (a
    /// prefix) was captured, and delivers whatever became contiguous.
    pub fn segment(
        &mut self,
        seq: SeqNum,
        wire_len: u32,
        data: &[u8],
        out: &mut impl FnMut(Chunk<'_>) -> Consumed,
    ) {
        if wire_len == 0 || !self.active {
            return;
        }
        let base = *self.base.get_or_insert(seq);
        let expected = base.wrapping_add(self.next as u32);
        let start = self.next as i64 + seq.distance_from(expected);
        let wire_len = u64::from(wire_len).max(data.len() as u64);
        let end = start + wire_len as i64;
        if (data.len() as u64) < wire_len {
            self.stats.truncated += 1;
        }
        let next = self.next as i64;
        if end <= next {
            self.stats.retransmitted_bytes += wire_len;
            self.compare_recent(start, data);
            return;
        }
        // Trim what was already delivered.
        let (start, data) = if start < next {
            let cut = (next - start) as usize;
            self.stats.retransmitted_bytes += cut as u64;
            self.compare_recent(start, &data[..cut.min(data.len())]);
            (self.next, data.get(cut..).unwrap_or(&[]))
        } else {
            (start as u64, data)
        };
        let missing = end as u64 - start - data.len() as u64;
        if start == self.next && self.pending.is_empty() {
            self.deliver(data, out);
            if missing > 0 && self.active {
                self.deliver_gap(missing, out);
            }
            return;
        }
        if start > self.next {
            self.stats.out_of_order += 1;
        }
        if !data.is_empty() {
            self.insert(start, Some(data), data.len() as u64);
        }
        if missing > 0 {
            self.insert(start + data.len() as u64, None, missing);
        }
        self.drain(out);
        while self.active
            && (self.pending_bytes > self.limits.max_pending_bytes
                || self.pending.len() > self.limits.max_pending_segments)
        {
            self.stats.overflows += 1;
            self.skip_to_first_pending(out);
        }
    }

    /// End of capture: every remaining hole is a gap; deliver what waits behind them.
    pub fn flush(&mut self, out: &mut impl FnMut(Chunk<'_>) -> Consumed) {
        while self.active && !self.pending.is_empty() {
            self.skip_to_first_pending(out);
        }
    }

    fn skip_to_first_pending(&mut self, out: &mut impl FnMut(Chunk<'_>) -> Consumed) {
        if let Some((&first, _)) = self.pending.iter().next() {
            if first > self.next {
                self.deliver_gap(first - self.next, out);
            }
            self.drain(out);
        }
    }

    /// Inserts `[start, start + len)` (bytes, or a known-missing range when `data` is
    /// `None`) into the pending map, keeping pieces that are already there.
    fn insert(&mut self, start: u64, data: Option<&[u8]>, len: u64) {
        let end = start + len;
        let lo = match self.pending.range(..=start).next_back() {
            Some((&s, p)) if s + p.len() > start => s,
            _ => start,
        };
        let overlapping: Vec<(u64, u64)> = self
            .pending
            .range(lo..end)
            .map(|(&s, p)| (s, s + p.len()))
            .collect();
        let mut cursor = start;
        for (ps, pe) in overlapping {
            if cursor < ps {
                self.put(cursor, ps, start, data);
            }
            let (os, oe) = (ps.max(start), pe.min(end));
            if let (Some(new), Some(Piece::Bytes(old))) = (data, self.pending.get(&ps)) {
                let a = &new[(os - start) as usize..(oe - start) as usize];
                let b = &old[(os - ps) as usize..(oe - ps) as usize];
                if a != b {
                    self.stats.overlap_conflicts += 1;
                }
            }
            cursor = cursor.max(pe);
        }
        if cursor < end {
            self.put(cursor, end, start, data);
        }
    }

    fn put(&mut self, from: u64, to: u64, start: u64, data: Option<&[u8]>) {
        let piece = match data {
            Some(d) => {
                let bytes = d[(from - start) as usize..(to - start) as usize].to_vec();
                self.pending_bytes += bytes.len();
                Piece::Bytes(bytes)
            }
            None => Piece::Missing(to - from),
        };
        self.pending.insert(from, piece);
    }

    fn drain(&mut self, out: &mut impl FnMut(Chunk<'_>) -> Consumed) {
        while self.active {
            let Some(entry) = self.pending.first_entry() else {
                break;
            };
            if *entry.key() != self.next {
                break;
            }
            match entry.remove() {
                Piece::Bytes(b) => {
                    self.pending_bytes -= b.len();
                    self.deliver(&b, out);
                }
                Piece::Missing(n) => self.deliver_gap(n, out),
            }
        }
    }

    fn deliver(&mut self, data: &[u8], out: &mut impl FnMut(Chunk<'_>) -> Consumed) {
        let room = self.limits.depth.saturating_sub(self.next);
        let data = &data[..data.len().min(room as usize)];
        if !data.is_empty() {
            if out(Chunk::Data(data)) == Consumed::Read {
                let window = self.limits.retransmit_window;
                let kept = &data[data.len().saturating_sub(window)..];
                let at = self.next + (data.len() - kept.len()) as u64;
                self.keep(at, kept);
                if self.recent_end != self.next {
                    // Skipped bytes came between: a new run starts here.
                    self.recent_start = self.next;
                }
                self.recent_end = self.next + data.len() as u64;
                self.recent_start = self
                    .recent_start
                    .max(self.recent_end.saturating_sub(window as u64));
            }
            self.next += data.len() as u64;
        }
        if self.next >= self.limits.depth {
            self.stop();
        }
    }

    fn deliver_gap(&mut self, len: u64, out: &mut impl FnMut(Chunk<'_>) -> Consumed) {
        self.stats.gaps += 1;
        self.stats.missed_bytes += len;
        out(Chunk::Gap(len));
        self.next += len;
        self.recent_start = self.next;
        self.recent_end = self.next;
        if self.next >= self.limits.depth {
            self.stop();
        }
    }

    /// Compares a retransmitted copy of delivered bytes with what was delivered.
    /// Copies `kept` (at most a window's bytes, from stream offset `at`) into the
    /// ring. The ring grows as it is first written rather than being allocated zeroed:
    /// most directions deliver less than a ring's worth, and zeroing what is then
    /// overwritten (or never read) cost a cold write per line.
    fn keep(&mut self, at: u64, kept: &[u8]) {
        if self.recent.capacity() == 0 {
            if kept.is_empty() {
                // A window of 0: nothing is kept, and there is no ring to index.
                return;
            }
            self.recent.reserve_exact(self.limits.retransmit_window);
        }
        let (head, tail) = ring_split(self.limits.retransmit_window, at, kept.len());
        let (a_head, a_tail) = kept.split_at(head.len());
        for (range, bytes) in [(head, a_head), (tail, a_tail)] {
            let ring = &mut self.recent;
            if range.end <= ring.len() {
                ring[range].copy_from_slice(bytes);
            } else {
                // Positions below the range's start that were never written (after a gap)
                // are never compared: only `[recent_start, recent_end)` is.
                if ring.len() < range.start {
                    ring.resize(range.start, 0);
                }
                let (old, new) = bytes.split_at(ring.len() - range.start);
                ring[range.start..].copy_from_slice(old);
                ring.extend_from_slice(new);
            }
        }
    }

    fn compare_recent(&mut self, start: i64, data: &[u8]) {
        let (rs, re) = (self.recent_start as i64, self.recent_end as i64);
        let (os, oe) = (start.max(rs), (start + data.len() as i64).min(re));
        if os < oe {
            let a = &data[(os - start) as usize..(oe - start) as usize];
            let (head, tail) = ring_split(self.limits.retransmit_window, os as u64, a.len());
            let (a_head, a_tail) = a.split_at(head.len());
            if *a_head != self.recent[head] || *a_tail != self.recent[tail] {
                self.stats.overlap_conflicts += 1;
            }
        }
    }
}

/// Where `len` (at most `window`, a power of two) bytes from stream offset `at` sit in
/// the ring of recent bytes: a range up to the ring's end, then one from its start.
fn ring_split(
    window: usize,
    at: u64,
    len: usize,
) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let pos = (at & (window as u64 - 1)) as usize;
    let first = len.min(window - pos);
    (pos..pos + first, 0..len - first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `(seq, bytes)` segments and returns the delivered stream with gaps as `None`.
    fn run(limits: Limits, isn: Option<u32>, segs: &[(u32, &[u8])]) -> (Vec<Option<u8>>, Stats) {
        let mut r = Reassembler::new(limits);
        if let Some(isn) = isn {
            r.syn(SeqNum(isn));
        }
        let mut got = Vec::new();
        let mut sink = |c: Chunk<'_>| {
            match c {
                Chunk::Data(d) => got.extend(d.iter().map(|&b| Some(b))),
                Chunk::Gap(n) => got.extend(std::iter::repeat_n(None, n as usize)),
            }
            Consumed::Read
        };
        for (seq, data) in segs {
            r.segment(SeqNum(*seq), data.len() as u32, data, &mut sink);
        }
        r.flush(&mut sink);
        (got, r.stats())
    }

    fn bytes(v: &[Option<u8>]) -> Vec<u8> {
        v.iter().map(|b| b.unwrap_or(b'?')).collect()
    }

    /// A reset direction (a finished flow's, reused) is a new one, with the ring's room
    /// kept: same state, and the same result for the same segments (retransmissions
    /// compared with the ring included).
    #[test]
    fn reset_is_new() {
        let segs: &[(u32, &[u8])] = &[(100, b"hel"), (106, b"wor"), (103, b"lo "), (100, b"hex")];
        let feed = |r: &mut Reassembler| {
            r.syn(SeqNum(99));
            let mut got = Vec::new();
            for (seq, data) in segs {
                r.segment(SeqNum(*seq), data.len() as u32, data, &mut |c| {
                    if let Chunk::Data(d) = c {
                        got.extend_from_slice(d);
                    }
                    Consumed::Read
                });
            }
            (got, r.stats())
        };
        let mut r = Reassembler::new(Limits::default());
        let first = feed(&mut r);
        assert_eq!(first.1.overlap_conflicts, 1);
        r.reset(Limits::default());
        assert_eq!(
            format!("{r:?}"),
            format!("{:?}", Reassembler::new(Limits::default()))
        );
        assert!(r.recent.capacity() > 0, "the ring's room is kept");
        assert_eq!(feed(&mut r), first);
    }

    #[test]
    fn seq_distance_wraps() {
        assert_eq!(SeqNum(5).distance_from(SeqNum(u32::MAX - 4)), 10);
        assert_eq!(SeqNum(u32::MAX - 4).distance_from(SeqNum(5)), -10);
    }

    #[test]
    fn in_order_and_out_of_order() {
        let (got, st) = run(
            Limits::default(),
            Some(99),
            &[(100, b"hel"), (106, b"wor"), (103, b"lo "), (109, b"ld")],
        );
        assert_eq!(bytes(&got), b"hello world");
        assert_eq!(st.out_of_order, 1);
        assert_eq!(st.missed_bytes, 0);
    }

    #[test]
    fn wraps_around_zero() {
        let isn = u32::MAX - 2;
        let (got, _) = run(
            Limits::default(),
            Some(isn),
            &[(u32::MAX - 1, b"ab"), (0, b"cd"), (2, b"ef")],
        );
        assert_eq!(bytes(&got), b"abcdef");
    }

    #[test]
    fn first_copy_wins_and_conflicts_are_counted() {
        // Pending copy first, then a conflicting one covering it.
        let (got, st) = run(Limits::default(), Some(0), &[(4, b"XY"), (1, b"abcdef")]);
        assert_eq!(bytes(&got), b"abcXYf");
        assert_eq!(st.overlap_conflicts, 1);
        // Delivered copy first, then a conflicting retransmission.
        let (got, st) = run(
            Limits::default(),
            Some(0),
            &[(1, b"abc"), (1, b"abX"), (1, b"abc")],
        );
        assert_eq!(bytes(&got), b"abc");
        assert_eq!((st.overlap_conflicts, st.retransmitted_bytes), (1, 6));
    }

    #[test]
    fn retransmissions_are_compared_across_the_ring_of_recent_bytes() {
        // 3000 bytes delivered: a ring of 2048 holds the last 2048 of them and wraps.
        let limits = Limits::default().with_retransmit_window(2048);
        let stream: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (first, second) = stream.split_at(1900);
        // A faithful retransmission straddling the ring's wrap point (offset 2048).
        let same = &stream[2000..2100];
        let mut changed = stream[2000..2100].to_vec();
        changed[60] ^= 0xff;
        let segs = |retx: &[u8]| -> Vec<(u32, Vec<u8>)> {
            vec![
                (1, first.to_vec()),
                (1901, second.to_vec()),
                (2001, retx.to_vec()),
                // Older than the ring: not comparable, never a conflict.
                (1, vec![0xee; 100]),
            ]
        };
        for (retx, conflicts) in [(same, 0), (&changed[..], 1)] {
            let segs = segs(retx);
            let refs: Vec<(u32, &[u8])> = segs.iter().map(|(s, d)| (*s, &d[..])).collect();
            let (got, st) = run(limits, Some(0), &refs);
            assert_eq!(bytes(&got), stream, "first copy wins");
            assert_eq!(st.overlap_conflicts, conflicts);
            assert_eq!(st.retransmitted_bytes, 200);
        }
    }

    #[test]
    fn the_retransmission_window_bounds_what_is_compared() {
        // 1448 bytes read, then a retransmission of all of them with one byte changed at
        // `at`: a conflict only when that byte is within the window's last bytes.
        let stream: Vec<u8> = (0..1448u32).map(|i| (i * 13 % 251) as u8).collect();
        let conflicts = |window: usize, at: usize| {
            let mut changed = stream.clone();
            changed[at] ^= 0xff;
            let segs = [(1, &stream[..]), (1, &changed[..])];
            let limits = Limits::default().with_retransmit_window(window);
            let (got, st) = run(limits, Some(0), &segs);
            assert_eq!(bytes(&got), stream, "first copy wins");
            st.overlap_conflicts
        };
        let w = DEFAULT_RETRANSMIT_WINDOW;
        assert_eq!(
            conflicts(w, 1448 - w),
            1,
            "first byte inside the default window"
        );
        assert_eq!(conflicts(w, 1447 - w), 0, "last byte before it");
        assert_eq!(
            conflicts(2048, 0),
            1,
            "a window larger than the run covers it all"
        );
        assert_eq!(conflicts(0, 1447), 0, "no window, no comparison");
        // Rounded up to a power of two: 1000 keeps 1024.
        assert_eq!(conflicts(1000, 1448 - 1024), 1);
        assert_eq!(conflicts(1000, 1447 - 1024), 0);
    }

    #[test]
    fn retransmit_windows_are_powers_of_two_within_bounds() {
        let w = |b| {
            Limits::default()
                .with_retransmit_window(b)
                .retransmit_window
        };
        assert_eq!(w(0), 0);
        assert_eq!(w(1), 1);
        assert_eq!(w(512), 512);
        assert_eq!(w(513), 1024);
        assert_eq!(w(usize::MAX), MAX_RETRANSMIT_WINDOW);
        assert!(DEFAULT_RETRANSMIT_WINDOW.is_power_of_two());
        // Set directly in the struct, a window is still made a power of two.
        let direct = Limits {
            retransmit_window: 1000,
            ..Limits::default()
        };
        assert_eq!(Reassembler::new(direct).limits.retransmit_window, 1024);
    }

    /// Feeds `(seq, bytes)` segments to a consumer that skips every chunk starting with
    /// `b's'` unread; returns the conflicts counted.
    fn conflicts_with_skipping(segs: &[(u32, &[u8])]) -> u64 {
        let mut r = Reassembler::new(Limits::default());
        r.syn(SeqNum(0));
        let mut sink = |c: Chunk<'_>| match c {
            Chunk::Data([b's', ..]) => Consumed::Skipped,
            _ => Consumed::Read,
        };
        for (seq, data) in segs {
            r.segment(SeqNum(*seq), data.len() as u32, data, &mut sink);
        }
        r.stats().overlap_conflicts
    }

    #[test]
    fn skipped_bytes_are_not_kept_and_the_last_read_run_still_is() {
        // Read "abc", skipped "sssss", then retransmissions.
        let base: [(u32, &[u8]); 2] = [(1, b"abc"), (4, b"sssss")];
        let with = |retx: (u32, &'static [u8])| {
            let mut v = base.to_vec();
            v.push(retx);
            conflicts_with_skipping(&v)
        };
        // A different copy of skipped bytes: not compared.
        assert_eq!(with((5, b"XX")), 0);
        // A different copy of read bytes before the skipped ones: still compared.
        assert_eq!(with((2, b"bX")), 1);
        assert_eq!(with((2, b"bc")), 0);
        // Across both: only the read part is compared.
        assert_eq!(with((3, b"cXX")), 0);
        assert_eq!(with((3, b"XXX")), 1);
        // A later read run replaces the earlier one: "abc" is no longer comparable, the
        // new run is.
        let later: [(u32, &[u8]); 3] = [(1, b"abc"), (4, b"sssss"), (9, b"def")];
        let mut v = later.to_vec();
        v.push((1, b"aXc"));
        assert_eq!(conflicts_with_skipping(&v), 0);
        v.push((10, b"eX"));
        assert_eq!(conflicts_with_skipping(&v), 1);
    }

    #[test]
    fn holes_become_gaps_at_the_end() {
        let (got, st) = run(Limits::default(), Some(0), &[(1, b"ab"), (6, b"fg")]);
        assert_eq!(bytes(&got), b"ab???fg");
        assert_eq!((st.gaps, st.missed_bytes), (1, 3));
    }

    #[test]
    fn midstream_starts_at_first_segment() {
        let (got, _) = run(Limits::default(), None, &[(5000, b"mid"), (5003, b"dle")]);
        assert_eq!(bytes(&got), b"middle");
    }

    #[test]
    fn pending_overflow_declares_a_gap() {
        let limits = Limits {
            depth: 1 << 20,
            max_pending_bytes: 4,
            max_pending_segments: 100,
            ..Limits::default()
        };
        let (got, st) = run(
            limits,
            Some(0),
            &[(11, b"abc"), (14, b"def"), (1, b"0123456789")],
        );
        assert_eq!(bytes(&got), b"??????????abcdef");
        assert_eq!(st.overflows, 1);
        assert_eq!(got.len(), 16);
    }

    #[test]
    fn depth_bounds_delivery() {
        let limits = Limits {
            depth: 4,
            ..Limits::default()
        };
        let (got, _) = run(limits, Some(0), &[(1, b"abcdef"), (7, b"gh")]);
        assert_eq!(bytes(&got), b"abcd");
    }

    #[test]
    fn snaplen_cut_is_a_gap_then_delivery_resumes() {
        let mut r = Reassembler::new(Limits::default());
        r.syn(SeqNum(0));
        let mut got = Vec::new();
        let mut sink = |c: Chunk<'_>| {
            got.push(format!("{c:?}"));
            Consumed::Read
        };
        r.segment(SeqNum(1), 10, b"abcd", &mut sink);
        r.segment(SeqNum(11), 2, b"yz", &mut sink);
        assert_eq!(
            got,
            ["Data([97, 98, 99, 100])", "Gap(6)", "Data([121, 122])"]
        );
        assert_eq!(r.stats().truncated, 1);
    }

    proptest! {
        /// Any segmentation of a stream, delivered in any order with duplicates, reassembles
        /// to the stream itself.
        #[test]
        fn reassembles_any_segmentation(
            stream in proptest::collection::vec(any::<u8>(), 1..3000),
            cuts in proptest::collection::vec(1usize..400, 1..40),
            order in proptest::collection::vec(any::<u32>(), 0..80),
            dups in proptest::collection::vec(any::<u32>(), 0..10),
            isn in any::<u32>(),
        ) {
            let mut segs: Vec<(u32, &[u8])> = Vec::new();
            let mut at = 0usize;
            let mut i = 0;
            while at < stream.len() {
                let n = cuts[i % cuts.len()].min(stream.len() - at);
                segs.push((isn.wrapping_add(1).wrapping_add(at as u32), &stream[at..at + n]));
                at += n;
                i += 1;
            }
            for d in &dups {
                let s = segs[*d as usize % segs.len()];
                segs.push(s);
            }
            for (k, o) in order.iter().enumerate() {
                let (a, b) = (k % segs.len(), *o as usize % segs.len());
                segs.swap(a, b);
            }
            // Within its bounds: up to 3000 one-byte segments may wait at once here (the
            // bound itself is pinned by `pending_overflow_declares_a_gap`).
            let limits = Limits { max_pending_segments: 4096, ..Limits::default() };
            let (got, st) = run(limits, Some(isn), &segs);
            prop_assert_eq!(bytes(&got), stream);
            prop_assert_eq!(st.missed_bytes, 0);
            prop_assert_eq!(st.overlap_conflicts, 0);
        }
    }
}
