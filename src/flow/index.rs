//! The flow table's index: from a flow key's hash to the flow's place in the table's
//! slab.
//!
//! An open-addressing table with linear probing. Where a hash's probe starts is known
//! from the hash alone, so a worker can ask for that line to be loaded a few segments
//! before it looks the flow up ([`Index::prefetch`]), then for the flow itself once its
//! place is known; a general-purpose map does not expose where an entry lies. Keys are
//! not stored: the caller compares a candidate place's key in the slab, where it reads
//! the flow next anyway. Removal shifts later entries of the probe sequence back instead
//! of leaving tombstones, so probe sequences stay as short as the load allows.

use prefetch_index::prefetch_index;

/// An entry: a hash and a place, or empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    hash: u64,
    at: u32,
}

const EMPTY: Entry = Entry {
    hash: 0,
    at: u32::MAX,
};

/// Slots of a new index.
const MIN_SLOTS: usize = 16;

/// A map from hashes to places (`u32`, below `u32::MAX`), several places per hash allowed.
#[derive(Debug)]
pub struct Index {
    /// A power of two of them, at most half full.
    slots: Vec<Entry>,
    len: usize,
}

impl Default for Index {
    fn default() -> Index {
        Index {
            slots: vec![EMPTY; MIN_SLOTS],
            len: 0,
        }
    }
}

impl Index {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Where the probe sequence of `hash` starts.
    #[inline]
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask()
    }

    /// Starts loading the line where the probe sequence of `hash` starts (a hint only).
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        prefetch_index(&self.slots, self.home(hash));
    }

    /// The slot of the first entry of `hash` whose place `is` accepts.
    #[inline(always)]
    fn slot(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<usize> {
        let mask = self.mask();
        let mut i = self.home(hash);
        loop {
            let e = self.slots[i];
            if e.at == EMPTY.at {
                return None;
            }
            if e.hash == hash && is(e.at) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The first place of `hash` that `is` accepts (`is` sees only places of `hash`).
    /// Inlined: it runs for every segment, up to three times (for the hints and the lookup).
    #[inline(always)]
    pub fn find(&self, hash: u64, is: impl FnMut(u32) -> bool) -> Option<u32> {
        self.slot(hash, is).map(|i| self.slots[i].at)
    }

    /// Adds place `at` for `hash`.
    pub fn insert(&mut self, hash: u64, at: u32) {
        debug_assert_ne!(at, EMPTY.at);
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        self.put(Entry { hash, at });
        self.len += 1;
    }

    fn put(&mut self, e: Entry) {
        let mask = self.mask();
        let mut i = self.home(e.hash);
        while self.slots[i].at != EMPTY.at {
            i = (i + 1) & mask;
        }
        self.slots[i] = e;
    }

    fn grow(&mut self) {
        let slots = vec![EMPTY; 2 * self.slots.len()];
        let old = std::mem::replace(&mut self.slots, slots);
        for e in old.into_iter().filter(|e| e.at != EMPTY.at) {
            self.put(e);
        }
    }

    /// Removes the first place of `hash` that `is` accepts, and returns it.
    pub fn remove(&mut self, hash: u64, is: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut hole = self.slot(hash, is)?;
        let at = self.slots[hole].at;
        // Entries after the hole, up to the next empty slot, move back into it when their
        // probe sequence passes over it (their home is not between the hole and them).
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = self.slots[j];
            if e.at == EMPTY.at {
                break;
            }
            let home = self.home(e.hash);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = e;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        Some(at)
    }

    /// Changes the place of `hash` that is `from` to `to`; whether there was one.
    pub fn replace(&mut self, hash: u64, from: u32, to: u32) -> bool {
        debug_assert_ne!(to, EMPTY.at);
        match self.slot(hash, |at| at == from) {
            Some(i) => {
                self.slots[i].at = to;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u32),
        Remove(u64, u32),
        Replace(u64, u32, u32),
    }

    /// Few distinct hashes, some sharing their low bits (one home), so that probe
    /// sequences run into each other, wrap around the end, and hold equal hashes.
    fn mix(hi: u64, lo: u64) -> u64 {
        (hi << 40) | (lo * 5 + 13) | ((hi & 1) * 15)
    }

    fn hash() -> impl Strategy<Value = u64> {
        (0u64..6, 0u64..4).prop_map(|(hi, lo)| mix(hi, lo))
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (hash(), 0u32..40).prop_map(|(h, a)| Op::Insert(h, a)),
            2 => (hash(), 0u32..40).prop_map(|(h, a)| Op::Remove(h, a)),
            1 => (hash(), 0u32..40, 0u32..40).prop_map(|(h, a, b)| Op::Replace(h, a, b)),
        ]
    }

    proptest! {
        /// The index answers as a set of (hash, place) pairs does, whatever the order of
        /// insertions, removals (with their backward shifts) and growth.
        #[test]
        fn the_index_behaves_as_a_set_of_pairs(ops in prop::collection::vec(op(), 0..300)) {
            let mut index = Index::default();
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(h, a) => {
                        if model.insert((h, a)) {
                            index.insert(h, a);
                        }
                    }
                    Op::Remove(h, a) => {
                        let removed = index.remove(h, |at| at == a);
                        prop_assert_eq!(removed.is_some(), model.remove(&(h, a)));
                        prop_assert!(removed.is_none_or(|at| at == a));
                    }
                    Op::Replace(h, a, b) => {
                        let fresh = !model.contains(&(h, b));
                        if fresh {
                            let had = model.remove(&(h, a));
                            if had {
                                model.insert((h, b));
                            }
                            prop_assert_eq!(index.replace(h, a, b), had);
                        }
                    }
                }
                prop_assert_eq!(index.len(), model.len());
                prop_assert!(2 * index.len() <= index.slots.len());
                for h in (0u64..6).flat_map(|hi| (0u64..4).map(move |lo| mix(hi, lo))) {
                    for a in 0u32..40 {
                        prop_assert_eq!(
                            index.find(h, |at| at == a).is_some(),
                            model.contains(&(h, a)),
                            "hash {:#x} place {}", h, a
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn find_sees_only_places_of_the_hash_and_in_insertion_order() {
        let mut index = Index::default();
        // Same home (low bits), different hashes: a probe passes over the other hash.
        index.insert(1 << 40 | 3, 7);
        index.insert(2 << 40 | 3, 8);
        index.insert(2 << 40 | 3, 9);
        let mut seen = Vec::new();
        let found = index.find(2 << 40 | 3, |at| {
            seen.push(at);
            at == 9
        });
        assert_eq!(found, Some(9));
        assert_eq!(seen, [8, 9]);
        assert_eq!(index.find(3 << 40 | 3, |_| true), None);
    }
}
