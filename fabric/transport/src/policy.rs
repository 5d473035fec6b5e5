//! Which jurisdictions a dataset may be moved to: the check both ends of a transfer make.
//!
//! Pure: a [`DatasetPolicy`] names a dataset and the jurisdictions its bytes may live in, and
//! [`DatasetPolicy::check_destination`] says whether a node in a given jurisdiction may
//! receive it. The check fails closed, like placement: a policy with no allowed jurisdiction
//! allows nothing.

use std::fmt;

use sovra_fabric::Jurisdiction;

use crate::frame::{ALLOWED_MAX, NAME_BYTES_MAX};

/// A dataset and where its bytes may go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetPolicy {
    dataset: String,
    allowed: Vec<Jurisdiction>,
}

impl DatasetPolicy {
    /// A policy for `dataset` (1 to 255 bytes, no control characters) that allows the given
    /// jurisdictions (at most 64, duplicates dropped, kept sorted).
    pub fn new(
        dataset: &str,
        allowed: impl IntoIterator<Item = Jurisdiction>,
    ) -> Result<DatasetPolicy, String> {
        check_dataset_id(dataset)?;
        let mut allowed: Vec<Jurisdiction> = allowed.into_iter().collect();
        allowed.sort();
        allowed.dedup();
        if allowed.len() > ALLOWED_MAX {
            return Err(format!(
                "dataset {dataset}: {} allowed jurisdictions, at most {ALLOWED_MAX}",
                allowed.len()
            ));
        }
        Ok(DatasetPolicy {
            dataset: dataset.to_string(),
            allowed,
        })
    }

    /// The dataset's id.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// The allowed jurisdictions, sorted.
    pub fn allowed(&self) -> &[Jurisdiction] {
        &self.allowed
    }

    /// `Ok` when a node in `destination` may hold this dataset, else why not.
    pub fn check_destination(&self, destination: Jurisdiction) -> Result<(), Refusal> {
        if self.allowed.contains(&destination) {
            return Ok(());
        }
        Err(Refusal {
            dataset: self.dataset.clone(),
            destination,
            allowed: self.allowed.clone(),
        })
    }
}

/// A dataset id: 1 to 255 bytes, printable, no path separators (it names temporary files).
pub(crate) fn check_dataset_id(dataset: &str) -> Result<(), String> {
    if dataset.is_empty() || dataset.len() > NAME_BYTES_MAX {
        return Err(format!(
            "dataset id {dataset:?}: expected 1 to {NAME_BYTES_MAX} bytes"
        ));
    }
    if dataset.chars().any(|c| c.is_control()) {
        return Err(format!(
            "dataset id {dataset:?}: contains control characters"
        ));
    }
    Ok(())
}

/// Why a dataset may not go to a node: its jurisdiction is not among the allowed ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The dataset.
    pub dataset: String,
    /// The destination node's jurisdiction.
    pub destination: Jurisdiction,
    /// What the dataset allows (possibly nothing).
    pub allowed: Vec<Jurisdiction>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dataset {} may not move to a node in {}: ",
            self.dataset, self.destination
        )?;
        if self.allowed.is_empty() {
            return f.write_str("it allows no jurisdiction");
        }
        f.write_str("it allows only ")?;
        for (i, code) in self.allowed.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{code}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(code: &str) -> Jurisdiction {
        Jurisdiction::parse(code).unwrap()
    }

    fn check(allowed: &[&str], destination: &str) -> String {
        let policy = DatasetPolicy::new("ds", allowed.iter().map(|c| j(c))).unwrap();
        match policy.check_destination(j(destination)) {
            Ok(()) => "allowed".to_string(),
            Err(refusal) => refusal.to_string(),
        }
    }

    #[test]
    fn destinations() {
        expect_test::expect!["allowed"].assert_eq(&check(&["AU"], "AU"));
        expect_test::expect!["allowed"].assert_eq(&check(&["SG", "AU", "AU"], "AU"));
        expect_test::expect!["dataset ds may not move to a node in JP: it allows only AU"]
            .assert_eq(&check(&["AU"], "JP"));
        expect_test::expect!["dataset ds may not move to a node in JP: it allows only AU, SG"]
            .assert_eq(&check(&["SG", "AU"], "JP"));
        expect_test::expect!["dataset ds may not move to a node in AU: it allows no jurisdiction"]
            .assert_eq(&check(&[], "AU"));
    }

    #[test]
    fn dataset_ids() {
        assert!(DatasetPolicy::new("", [j("AU")]).is_err());
        assert!(DatasetPolicy::new("a\nb", [j("AU")]).is_err());
        assert!(DatasetPolicy::new(&"x".repeat(256), [j("AU")]).is_err());
        assert!(DatasetPolicy::new(&"x".repeat(255), [j("AU")]).is_ok());
    }
}
