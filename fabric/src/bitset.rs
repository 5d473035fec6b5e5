//! A fixed-size bit set with fast iteration over a range of set bits.

/// A fixed-capacity set of indices `0..len`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitset {
    words: Vec<u64>,
    len: usize,
}

impl Bitset {
    /// An empty set able to hold `0..len`.
    pub fn new(len: usize) -> Bitset {
        Bitset {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// Capacity.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the capacity is zero.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `idx` is in the set.
    #[inline]
    pub fn contains(&self, idx: usize) -> bool {
        assert!(idx < self.len);
        self.words[idx / 64] & (1u64 << (idx % 64)) != 0
    }

    /// Sets or clears `idx`.
    #[inline]
    pub fn set(&mut self, idx: usize, value: bool) {
        assert!(idx < self.len);
        let bit = 1u64 << (idx % 64);
        if value {
            self.words[idx / 64] |= bit;
        } else {
            self.words[idx / 64] &= !bit;
        }
    }

    /// The first set index in `start..end`, if any.
    #[inline]
    pub fn next_in(&self, start: usize, end: usize) -> Option<usize> {
        assert!(end <= self.len);
        if start >= end {
            return None;
        }
        let mut word_idx = start / 64;
        let mut word = self.words[word_idx] & (!0u64 << (start % 64));
        loop {
            if word != 0 {
                let idx = word_idx * 64 + word.trailing_zeros() as usize;
                return if idx < end { Some(idx) } else { None };
            }
            word_idx += 1;
            if word_idx * 64 >= end {
                return None;
            }
            word = self.words[word_idx];
        }
    }

    /// Iterates the set indices in `start..end`, ascending.
    pub fn iter_range(&self, start: usize, end: usize) -> impl Iterator<Item = usize> + '_ {
        let mut cursor = start;
        std::iter::from_fn(move || {
            let idx = self.next_in(cursor, end)?;
            cursor = idx + 1;
            Some(idx)
        })
    }

    /// Number of set indices in `start..end`.
    pub fn count_range(&self, start: usize, end: usize) -> usize {
        self.iter_range(start, end).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_iteration() {
        let mut b = Bitset::new(200);
        for i in [0, 5, 63, 64, 65, 127, 128, 199] {
            b.set(i, true);
        }
        let all: Vec<usize> = b.iter_range(0, 200).collect();
        assert_eq!(all, vec![0, 5, 63, 64, 65, 127, 128, 199]);
        let mid: Vec<usize> = b.iter_range(6, 128).collect();
        assert_eq!(mid, vec![63, 64, 65, 127]);
        b.set(64, false);
        assert_eq!(b.next_in(64, 200), Some(65));
        assert_eq!(b.next_in(129, 199), None);
        assert_eq!(b.count_range(0, 200), 7);
    }
}
