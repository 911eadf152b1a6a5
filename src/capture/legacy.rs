//! Classic pcap, read by our own record splitter into shared blocks.
//!
//! A classic pcap is a 24-byte header and then records, each a 16-byte header (time,
//! captured length, length on the wire) and the captured bytes. Reading it is a walk over
//! record headers, so it is done here rather than through pcap-parser's general reader:
//! records are read straight into reference-counted blocks ([`SharedBlock`]), and every
//! frame says which block it lies in, so that a consumer can pass frames on to other
//! threads by holding the block instead of copying the bytes. A block is refilled in
//! place when nobody holds it any more, and otherwise a spare one (or a new one) takes
//! over; memory follows what consumers hold, not the size of the input.

use std::io::{self, Read};
use std::ops::ControlFlow;
use std::sync::Arc;

use super::{
    Bytes, CaptureError, Event, Frame, LinkType, MAX_RECORD, SharedBlock, Timestamp, is_idle,
};

/// Bytes read at a time (a block's usual size).
const BLOCK: usize = super::INITIAL_BUFFER;
/// Blocks kept for reuse once the reader has moved past them.
const SPARES: usize = 256;
/// A record header's length.
const RECORD_HEADER: usize = 16;

/// The fields of a classic pcap header that matter here.
#[derive(Clone, Copy, Debug)]
pub(super) struct Header {
    big_endian: bool,
    /// Timestamp units per second.
    resolution: u64,
    link: LinkType,
}

impl Header {
    /// Bytes of a classic pcap header.
    pub(super) const LEN: usize = 24;

    /// Recognizes the 24-byte header of a classic pcap (either byte order, microsecond or
    /// nanosecond resolution). The "modified" format and anything else is not ours.
    pub(super) fn parse(b: &[u8]) -> Option<Header> {
        let head = b.get(..Header::LEN)?;
        let (big_endian, resolution) = match [head[0], head[1], head[2], head[3]] {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, 1_000_000),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, 1_000_000_000),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, 1_000_000),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, 1_000_000_000),
            _ => return None,
        };
        let link = word(&head[20..24], big_endian);
        Some(Header {
            big_endian,
            resolution,
            link: LinkType(link),
        })
    }

    /// The frame of the record at the start of `rest`, numbered `number`, lying in
    /// `block`; or how many bytes from `rest`'s start the record needs when `rest` holds
    /// only part of it (its header, then header and data).
    #[inline]
    pub(super) fn frame<'b>(
        &self,
        rest: &'b [u8],
        number: u64,
        block: &'b SharedBlock,
    ) -> Result<Result<Frame<'b>, usize>, CaptureError> {
        let Some(h) = rest.first_chunk::<RECORD_HEADER>() else {
            return Ok(Err(RECORD_HEADER));
        };
        let [secs, frac, caplen, orig_len] = record_words(h, self.big_endian);
        let caplen = caplen as usize;
        if caplen > MAX_RECORD {
            return Err(CaptureError::RecordTooLarge { frames: number - 1 });
        }
        let end = RECORD_HEADER + caplen;
        let Some(data) = rest.get(RECORD_HEADER..end) else {
            return Ok(Err(end));
        };
        Ok(Ok(Frame {
            number,
            ts: Timestamp::from_parts(i64::from(secs), u64::from(frac), self.resolution),
            link: self.link,
            interface: 0,
            data,
            orig_len,
            block: Some(block),
        }))
    }
}

/// A record's length in the file: its header and captured bytes.
pub(super) fn record_len(frame: &Frame<'_>) -> usize {
    RECORD_HEADER + frame.data.len()
}

/// The four words of a record header (seconds, fraction, captured and original length),
/// read in one go: one test of the byte order per record, not one per word.
fn record_words(h: &[u8; RECORD_HEADER], big_endian: bool) -> [u32; 4] {
    let le = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let w = [le(0), le(4), le(8), le(12)];
    if big_endian {
        w.map(u32::swap_bytes)
    } else {
        w
    }
}

fn word(b: &[u8], big_endian: bool) -> u32 {
    let w = [b[0], b[1], b[2], b[3]];
    if big_endian {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    }
}

/// A classic pcap after its header: the current block, `buf[pos..len]` not yet handed
/// out, and the blocks it has moved past.
pub(super) struct LegacyReader<R> {
    source: R,
    header: Header,
    buf: SharedBlock,
    pos: usize,
    len: usize,
    spares: Vec<SharedBlock>,
    eof: bool,
    frames: u64,
}

impl<R: Read> LegacyReader<R> {
    /// Reads records from `source`, the first of them already read into `first` at
    /// `unread` (the first block).
    pub(super) fn new(
        source: R,
        header: Header,
        first: Vec<u8>,
        unread: std::ops::Range<usize>,
    ) -> LegacyReader<R> {
        LegacyReader {
            source,
            header,
            buf: Arc::new(Bytes::Read(first)),
            pos: unread.start,
            len: unread.end,
            spares: Vec::new(),
            eof: false,
            frames: 0,
        }
    }

    pub(super) fn frames(&self) -> u64 {
        self.frames
    }

    /// Reports every frame (and [`Event::Idle`] when the source has nothing waiting)
    /// until the end of input or until `on` breaks.
    pub(super) fn run(
        &mut self,
        on: &mut impl FnMut(Event<'_, '_>) -> ControlFlow<()>,
    ) -> Result<(), CaptureError> {
        loop {
            let need = match self.deliver(on)? {
                ControlFlow::Break(()) => return Ok(()),
                ControlFlow::Continue(need) => need,
            };
            if self.eof {
                return if self.pos == self.len {
                    Ok(())
                } else {
                    Err(CaptureError::Truncated {
                        frames: self.frames,
                    })
                };
            }
            self.make_room(need);
            match self
                .source
                .read(&mut Arc::make_mut(&mut self.buf).vec_mut()[self.len..])
            {
                Ok(0) => self.eof = true,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_idle(&e) => {
                    if on(Event::Idle).is_break() {
                        return Ok(());
                    }
                }
                Err(e) => return Err(CaptureError::Io(e.to_string())),
            }
        }
    }

    /// Hands out every whole record in the block. Continues with the bytes the next
    /// record needs in all (its header, then header and data).
    fn deliver(
        &mut self,
        on: &mut impl FnMut(Event<'_, '_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<(), usize>, CaptureError> {
        loop {
            let rest = &self.buf[self.pos..self.len];
            let frame = match self.header.frame(rest, self.frames + 1, &self.buf)? {
                Ok(frame) => frame,
                Err(need) => return Ok(ControlFlow::Continue(need)),
            };
            self.frames += 1;
            let flow = on(Event::Frame(&frame));
            self.pos += record_len(&frame);
            if flow.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
    }

    /// Makes room after `len` for the `need` bytes that the pending record takes from
    /// `pos` on, and for a good read besides: in place when no one else holds the block
    /// (moving the pending bytes to its start if little room is left), else in a spare or
    /// new block.
    fn make_room(&mut self, need: usize) {
        let size = BLOCK.max(need);
        let pending = self.pos..self.len;
        let free = self.buf.len() - self.len;
        match Arc::get_mut(&mut self.buf) {
            Some(Bytes::Read(block)) if block.len() >= size => {
                if free >= need.saturating_sub(pending.len()).max(BLOCK / 4) {
                    return;
                }
                block.copy_within(pending.clone(), 0);
            }
            _ => {
                let mut next = self.spare(size);
                Arc::make_mut(&mut next).vec_mut()[..pending.len()]
                    .copy_from_slice(&self.buf[pending.clone()]);
                let old = std::mem::replace(&mut self.buf, next);
                if self.spares.len() < SPARES && old.len() == BLOCK {
                    self.spares.push(old);
                }
            }
        }
        self.len = pending.len();
        self.pos = 0;
    }

    /// A block of at least `size` bytes that no one else holds: of the spares, the one
    /// pushed last that is free again (the most recently used, so the likeliest still in
    /// a cache when the kernel copies the next read into it).
    fn spare(&mut self, size: usize) -> SharedBlock {
        if size == BLOCK
            && let Some(i) = self
                .spares
                .iter_mut()
                .rposition(|b| Arc::get_mut(b).is_some())
        {
            return self.spares.swap_remove(i);
        }
        Arc::new(Bytes::Read(vec![0; size]))
    }
}
