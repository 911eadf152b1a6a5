//! A small bounded memo of a pure function of a slice.
//!
//! In a mesh the same certificates and the same ClientHello shapes come back in
//! thousands of connections; what is derived from them (a certificate summary, a JA4
//! fingerprint) is remembered for the next connection. Keys are compared in full (a
//! hash only picks the candidates), so a hit is exact. At most `capacity` keys of at
//! most `max_key` elements are held (longer keys are never remembered), the least
//! recently used going first: memory stays bounded whatever the input.

use std::hash::{BuildHasher, Hash};

/// Remembered values of a pure function, keyed by the slice it is computed from.
#[derive(Debug)]
pub struct Memo<T, V> {
    entries: Vec<Entry<T, V>>,
    capacity: usize,
    max_key: usize,
    /// Lookups so far: the clock of `Entry::used`.
    clock: u64,
}

#[derive(Debug)]
struct Entry<T, V> {
    hash: u64,
    key: Box<[T]>,
    value: V,
    used: u64,
}

impl<T: Hash + Eq + Clone, V: Clone> Memo<T, V> {
    /// An empty memo of at most `capacity` keys of at most `max_key` elements.
    pub fn new(capacity: usize, max_key: usize) -> Memo<T, V> {
        Memo {
            entries: Vec::new(),
            capacity,
            max_key,
            clock: 0,
        }
    }

    /// The value remembered for `key`, else `compute()` (remembered when `key` is not
    /// too long). `compute` must be a pure function of `key`.
    pub fn get(&mut self, key: &[T], compute: impl FnOnce() -> V) -> V {
        if key.len() > self.max_key {
            return compute();
        }
        self.clock += 1;
        let hash = foldhash::fast::FixedState::default().hash_one(key);
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.hash == hash && *e.key == *key)
        {
            e.used = self.clock;
            return e.value.clone();
        }
        let entry = Entry {
            hash,
            key: key.into(),
            value: compute(),
            used: self.clock,
        };
        let value = entry.value.clone();
        if self.entries.len() < self.capacity {
            self.entries.push(entry);
        } else if let Some(lru) = self.entries.iter_mut().min_by_key(|e| e.used) {
            *lru = entry;
        }
        value
    }

    /// Keys held.
    #[cfg(test)]
    fn holds(&self, key: &[T]) -> bool {
        self.entries.iter().any(|e| *e.key == *key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_exactly_and_stays_bounded() {
        let mut memo: Memo<u8, usize> = Memo::new(4, 8);
        let computed = std::cell::Cell::new(0);
        let len = |m: &mut Memo<u8, usize>, key: &[u8]| {
            m.get(key, || {
                computed.set(computed.get() + 1);
                key.len()
            })
        };
        assert_eq!(len(&mut memo, b"abc"), 3);
        assert_eq!(len(&mut memo, b"abc"), 3);
        // Same length, other bytes: another key.
        assert_eq!(len(&mut memo, b"abd"), 3);
        assert_eq!(len(&mut memo, b""), 0);
        // Longer keys are computed every time, never held.
        assert_eq!(len(&mut memo, b"0123456789"), 10);
        assert_eq!(len(&mut memo, b"0123456789"), 10);
        assert_eq!(computed.get(), 5);
        assert!(!memo.holds(b"0123456789"));
        // Many keys: at most `capacity`, and the recently used one stays.
        for i in 0..40u8 {
            len(&mut memo, &[i, i]);
            len(&mut memo, b"abc");
            assert!(memo.entries.len() <= 4);
        }
        assert!(memo.holds(b"abc"));
        assert!(!memo.holds(b"abd"));
        assert_eq!(memo.entries.len(), 4);
    }
}
