//! Jurisdictions: the first-class key of sovereignty.
//!
//! A [`Jurisdiction`] is a short upper-case code (`AU`, `JP`, `SG`, `MY`, `EU`, …). It is a value,
//! not a free-form label: it is validated once at the edge and compared as bytes afterwards.
//! A topology interns the jurisdictions its sites belong to, so a set of them is a bitmask
//! ([`JurisdictionMask`]). Sets are fail-closed: a code the topology does not know maps to no
//! sites, and an empty set places nothing.

use std::fmt;

/// Maximum number of distinct jurisdictions in one topology (the mask is a `u64`).
pub const JURISDICTIONS_MAX: usize = 64;
/// Maximum length of a jurisdiction code.
pub const JURISDICTION_CODE_LEN_MAX: usize = 8;

/// A validated jurisdiction code: 2 to 8 characters of `A-Z`, `0-9` or `-`, starting with a letter.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Jurisdiction {
    code: [u8; JURISDICTION_CODE_LEN_MAX],
    len: u8,
}

impl Jurisdiction {
    /// Parses a code; lower-case letters are accepted and upper-cased.
    pub fn parse(text: &str) -> Result<Jurisdiction, String> {
        let bytes = text.as_bytes();
        if bytes.len() < 2 || bytes.len() > JURISDICTION_CODE_LEN_MAX {
            return Err(format!(
                "invalid jurisdiction {text:?}: expected 2 to {} characters",
                JURISDICTION_CODE_LEN_MAX
            ));
        }
        let mut code = [0u8; JURISDICTION_CODE_LEN_MAX];
        for (i, b) in bytes.iter().enumerate() {
            let b = b.to_ascii_uppercase();
            let ok = b.is_ascii_uppercase() || (i > 0 && (b.is_ascii_digit() || b == b'-'));
            if !ok {
                return Err(format!(
                    "invalid jurisdiction {text:?}: use letters, digits and '-', \
                     starting with a letter"
                ));
            }
            code[i] = b;
        }
        Ok(Jurisdiction {
            code,
            len: bytes.len() as u8,
        })
    }

    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.code[..self.len as usize]).expect("validated ascii")
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of a topology's interned jurisdictions. Bit `i` is the topology's jurisdiction `i`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct JurisdictionMask(pub u64);

impl JurisdictionMask {
    /// The empty set: places nothing.
    pub const EMPTY: JurisdictionMask = JurisdictionMask(0);

    /// Whether the set holds jurisdiction number `idx`.
    #[inline]
    pub fn contains(self, idx: u8) -> bool {
        assert!((idx as usize) < JURISDICTIONS_MAX);
        self.0 & (1u64 << idx) != 0
    }

    /// Adds jurisdiction number `idx`.
    #[inline]
    pub fn insert(&mut self, idx: u8) {
        assert!((idx as usize) < JURISDICTIONS_MAX);
        self.0 |= 1u64 << idx;
    }

    /// Whether the set is empty.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Set intersection.
    #[inline]
    pub fn intersect(self, other: JurisdictionMask) -> JurisdictionMask {
        JurisdictionMask(self.0 & other.0)
    }

    /// Whether every member of `self` is in `other`.
    #[inline]
    pub fn is_subset_of(self, other: JurisdictionMask) -> bool {
        self.0 & !other.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_codes() {
        assert_eq!(Jurisdiction::parse("au").unwrap().as_str(), "AU");
        assert_eq!(Jurisdiction::parse("EU-WEST").unwrap().as_str(), "EU-WEST");
        assert!(Jurisdiction::parse("A").is_err());
        assert!(Jurisdiction::parse("1A").is_err());
        assert!(Jurisdiction::parse("toolongcode").is_err());
        assert!(Jurisdiction::parse("A U").is_err());
    }

    #[test]
    fn mask_ops() {
        let mut m = JurisdictionMask::EMPTY;
        assert!(m.is_empty());
        m.insert(3);
        assert!(m.contains(3));
        assert!(!m.contains(2));
        assert!(m.is_subset_of(JurisdictionMask(0b1000)));
        assert!(!JurisdictionMask(0b1100).is_subset_of(m));
    }
}
