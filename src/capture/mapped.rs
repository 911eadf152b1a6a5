//! Classic pcap files read through memory maps, a window at a time.
//!
//! Reading a file with `read(2)` makes the kernel copy every byte into the reader's
//! buffer: a tenth of the analysis's time on a large capture (on the reader's thread),
//! most of it for bytes that nothing looks at (the bodies of encrypted records). A mapped
//! file is read where it lies in the page cache: only the lines the analysis touches are
//! loaded, and workers read the payloads they are handed from there too.
//!
//! The file is mapped a window at a time ([`WINDOW`] bytes, more for a larger record),
//! and a window is unmapped once nobody holds it: the process's resident memory follows
//! the windows in use, not the size of the file. The walk asks for the lines a few KiB
//! ahead of it, so that record headers are loaded before they are read (each header's
//! position depends on the one before, so they could not otherwise overlap).
//!
//! Mapping is used only for regular files that hold a classic pcap; everything else is
//! read as a stream. A mapped file that shrinks while it is read (truncated by another
//! process) makes the next access to a lost page raise SIGBUS: a handler installed with
//! the first map reports that in one line and exits with status 2, as any read error of
//! an input does, instead of the signal's crash.
//!
//! This is the crate's only `unsafe` code: creating a map, and installing that handler.

#![allow(unsafe_code)]

use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{Advice, Mmap, MmapOptions};

use super::legacy::{Header, record_len};
use super::{Bytes, CaptureError, Event, SharedBlock};

/// Bytes mapped at a time (unless a record needs more).
const WINDOW: usize = 8 << 20;
/// How far ahead of the record being read its lines are asked for.
const AHEAD: usize = 4096;
/// A cache line: the unit of a prefetch hint (here and in the workers).
pub const CACHE_LINE: usize = 64;

/// A mapped window of a file.
pub struct Window(Mmap);

impl std::ops::Deref for Window {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A regular file holding a classic pcap, to be read by mapping ([`MappedFile::cursor`]).
pub struct MappedFile {
    file: File,
    /// The file's length when it was opened: what is read.
    len: u64,
    header: Header,
    /// Bytes mapped at a time ([`WINDOW`]; tests use smaller ones).
    window: usize,
}

impl MappedFile {
    /// Takes `file` for mapping when it is a regular file that starts with a classic pcap
    /// header; gives it back otherwise (to be read as a stream: pcapng, a pipe, a device,
    /// an empty or unreadable file, whose errors the stream reader reports).
    pub fn open(file: File) -> Result<MappedFile, File> {
        let len = match file.metadata() {
            Ok(m) if m.is_file() => m.len(),
            _ => return Err(file),
        };
        let mut head = [0u8; Header::LEN];
        let header = match file.read_exact_at(&mut head, 0) {
            Ok(()) => Header::parse(&head),
            Err(_) => None,
        };
        match header {
            Some(header) => Ok(MappedFile {
                file,
                len,
                header,
                window: WINDOW,
            }),
            None => Err(file),
        }
    }

    /// The same file read in windows of `window` bytes (at least a record's).
    #[cfg(test)]
    pub(super) fn with_window(self, window: usize) -> MappedFile {
        MappedFile { window, ..self }
    }

    /// A cursor at the first record. `read`, when given, is kept at the file offset
    /// reached (for a progress bar).
    pub fn cursor(&self, read: Option<Arc<AtomicU64>>) -> MappedCursor<'_> {
        MappedCursor {
            file: self,
            window: Arc::new(Bytes::Read(Vec::new())),
            start: Header::LEN as u64,
            pos: Header::LEN as u64,
            asked: 0,
            frames: 0,
            read,
        }
    }

    /// Maps `len` bytes from `offset` (both within the file).
    fn map(&self, offset: u64, len: usize) -> Result<Mmap, CaptureError> {
        exit_on_sigbus();
        // SAFETY: the map is read-only, and this process never writes the file. Another
        // process may still change or truncate it meanwhile, which no lock can prevent
        // (the caveat of every tool that maps its input; ripgrep documents the same). A
        // truncation raises SIGBUS on the next access to a lost page, which
        // `exit_on_sigbus` turns into an error exit. Bytes rewritten in place would
        // change under the slices the parsers hold: they check every byte they read as
        // untrusted input, but Rust promises nothing in that case.
        let map = unsafe { MmapOptions::new().offset(offset).len(len).map(&self.file) };
        let map = map.map_err(|e| CaptureError::Io(format!("cannot map the file: {e}")))?;
        // Read ahead generously when the file is not in the page cache.
        let _ = map.advise(Advice::Sequential);
        Ok(map)
    }
}

/// A walk over the records of a [`MappedFile`].
pub struct MappedCursor<'f> {
    file: &'f MappedFile,
    /// The current window, from file offset `start`.
    window: SharedBlock,
    start: u64,
    /// File offset of the next record.
    pos: u64,
    /// Offset in the window up to which lines were asked for.
    asked: usize,
    frames: u64,
    read: Option<Arc<AtomicU64>>,
}

impl MappedCursor<'_> {
    /// Reports every frame until the end of the file (as it was when opened) or until
    /// `on` breaks. Frames lie in the current window, a shared block. Returns `Ok(())` at
    /// a clean end or a break, else the error that stopped reading (frames before it were
    /// delivered).
    pub fn run(
        &mut self,
        mut on: impl FnMut(Event<'_, '_>) -> ControlFlow<()>,
    ) -> Result<(), CaptureError> {
        loop {
            // The record at `pos`, if the window holds all of it; else how many bytes it
            // needs from `pos` on.
            let at = (self.pos - self.start) as usize;
            let rest = &self.window[at..];
            let need = match self
                .file
                .header
                .frame(rest, self.frames + 1, &self.window)?
            {
                Ok(frame) => {
                    let len = record_len(&frame);
                    let ahead = (at + len + AHEAD).min(self.window.len());
                    while self.asked < ahead {
                        prefetch_index::prefetch_index(&self.window[..], self.asked);
                        self.asked += CACHE_LINE;
                    }
                    self.frames += 1;
                    let flow = on(Event::Frame(&frame));
                    self.pos += len as u64;
                    if flow.is_break() {
                        return Ok(());
                    }
                    continue;
                }
                Err(need) => need,
            };
            let mapped_to = self.start + self.window.len() as u64;
            if mapped_to >= self.file.len {
                return if self.pos == self.file.len {
                    Ok(())
                } else {
                    Err(CaptureError::Truncated {
                        frames: self.frames,
                    })
                };
            }
            // The next window starts at this record; the old one is unmapped once the
            // frames that consumers hold in it are let go.
            let len = (self.file.len - self.pos).min(self.file.window.max(need) as u64) as usize;
            let map = self.file.map(self.pos, len)?;
            self.window = Arc::new(Bytes::Mapped(Window(map)));
            self.start = self.pos;
            self.asked = 0;
            if let Some(read) = &self.read {
                read.store(self.pos, Ordering::Relaxed);
            }
        }
    }
}

/// Installs, once, a SIGBUS handler that reports a file that shrank while it was mapped
/// and exits with status 2 (an input that could not be read).
fn exit_on_sigbus() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        const MSG: &[u8] = b"mtlscope: an input file shrank while it was being read \
            (truncated by another process?); stopping\n";
        // SAFETY: the action only calls async-signal-safe functions (`write`, `_exit`).
        // SIGBUS from anything but a lost page of a map is a fault this process cannot
        // continue from anyway.
        let _ = unsafe {
            signal_hook::low_level::register(signal_hook::consts::SIGBUS, || {
                libc::write(2, MSG.as_ptr().cast(), MSG.len());
                signal_hook::low_level::exit(2)
            })
        };
    });
}
