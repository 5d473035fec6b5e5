//! The file receiver's decisions, apart from its IO.
//!
//! Pure: [`accept`] decides whether to take a transfer (a safe file name, a valid dataset id,
//! this node's jurisdiction allowed by the dataset) and names its temporary and final files;
//! [`Incoming`] counts and hashes the data as it arrives and checks size and SHA-256 at the
//! end. Each backend's receiver does the IO these decide on: create the temporary file, write,
//! fsync, rename, and reply.

use sha2::{Digest, Sha256};
use sovra_fabric::Jurisdiction;

use crate::frame::{TransferHeader, NAME_BYTES_MAX};
use crate::policy::check_dataset_id;

/// Largest file one transfer may carry.
pub const FILE_BYTES_MAX: u64 = 1 << 40;
/// Prefix of temporary files; final names may not start with a dot, so they never collide.
pub const PARTIAL_PREFIX: &str = ".sovra-partial-";

/// An accepted transfer: where its bytes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The temporary file name, unique per transfer and connection.
    pub partial_name: String,
    /// The name the file is renamed to once complete and verified.
    pub final_name: String,
}

/// Whether this node (in `here`) takes the transfer described by `header` on connection
/// `connection_id`; `Err` is the refusal sent back, before any data moves.
pub fn accept(
    header: &TransferHeader,
    here: Jurisdiction,
    connection_id: u64,
) -> Result<Accepted, String> {
    check_file_name(&header.name)?;
    check_dataset_id(&header.dataset)?;
    if header.size_bytes > FILE_BYTES_MAX {
        return Err(format!(
            "file {}: {} bytes, more than the {FILE_BYTES_MAX} allowed",
            header.name, header.size_bytes
        ));
    }
    if !header.allowed.contains(&here) {
        let allowed: Vec<&str> = header.allowed.iter().map(|c| c.as_str()).collect();
        return Err(format!(
            "this node is in {here}; dataset {} allows only [{}]",
            header.dataset,
            allowed.join(", ")
        ));
    }
    Ok(Accepted {
        partial_name: format!(
            "{PARTIAL_PREFIX}{:016x}-{connection_id}",
            header.transfer_id
        ),
        final_name: header.name.clone(),
    })
}

/// A file name the receiver will create: one path component, not hidden, printable.
pub fn check_file_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\\')
        && !name.chars().any(|c| c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "file name {name:?}: use 1 to {NAME_BYTES_MAX} bytes, one path component, not \
             starting with '.'"
        ))
    }
}

/// A transfer in progress: bytes counted and hashed as they arrive.
pub struct Incoming {
    size_bytes: u64,
    received: u64,
    hasher: Sha256,
}

impl Incoming {
    /// A transfer of `size_bytes` bytes.
    pub fn new(size_bytes: u64) -> Incoming {
        Incoming {
            size_bytes,
            received: 0,
            hasher: Sha256::new(),
        }
    }

    /// Bytes so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Takes the next data bytes; `Err` when they overrun the announced size.
    pub fn handle_data(&mut self, bytes: &[u8]) -> Result<(), String> {
        let received = self.received + bytes.len() as u64;
        if received > self.size_bytes {
            return Err(format!(
                "sender sent more than the {} bytes it announced",
                self.size_bytes
            ));
        }
        self.hasher.update(bytes);
        self.received = received;
        Ok(())
    }

    /// The end of the data: `Ok` when the size and the sender's SHA-256 match.
    pub fn handle_end(self, digest: [u8; 32]) -> Result<(), String> {
        if self.received != self.size_bytes {
            return Err(format!(
                "sender announced {} bytes and sent {}",
                self.size_bytes, self.received
            ));
        }
        let ours: [u8; 32] = self.hasher.finalize().into();
        if ours != digest {
            return Err(format!(
                "sha256 mismatch: received {}, sender has {}",
                hex(&ours),
                hex(&digest)
            ));
        }
        Ok(())
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(code: &str) -> Jurisdiction {
        Jurisdiction::parse(code).unwrap()
    }

    fn header(name: &str, allowed: &[&str]) -> TransferHeader {
        TransferHeader {
            transfer_id: 0xabc,
            size_bytes: 3,
            dataset: "ds".into(),
            name: name.into(),
            allowed: allowed.iter().map(|c| j(c)).collect(),
        }
    }

    fn check(name: &str, allowed: &[&str], here: &str) -> String {
        match accept(&header(name, allowed), j(here), 7) {
            Ok(a) => format!("{} -> {}", a.partial_name, a.final_name),
            Err(e) => e,
        }
    }

    #[test]
    fn accepts_or_refuses() {
        expect_test::expect![".sovra-partial-0000000000000abc-7 -> ckpt-1.bin"].assert_eq(&check(
            "ckpt-1.bin",
            &["AU"],
            "AU",
        ));
        expect_test::expect!["this node is in JP; dataset ds allows only [AU, SG]"]
            .assert_eq(&check("ckpt-1.bin", &["AU", "SG"], "JP"));
        expect_test::expect!["this node is in AU; dataset ds allows only []"].assert_eq(&check(
            "ckpt-1.bin",
            &[],
            "AU",
        ));
        for name in ["", ".", "..", ".hidden", "a/b", "../x", "a\\b", "a\nb"] {
            let out = check(name, &["AU"], "AU");
            assert!(out.starts_with("file name"), "{name:?}: {out}");
        }
    }

    #[test]
    fn incoming_checks_size_and_digest() {
        let digest: [u8; 32] = Sha256::digest(b"abc").into();
        let mut ok = Incoming::new(3);
        ok.handle_data(b"ab").unwrap();
        ok.handle_data(b"c").unwrap();
        assert_eq!(ok.received(), 3);
        assert_eq!(ok.handle_end(digest), Ok(()));

        let mut over = Incoming::new(2);
        assert!(over.handle_data(b"abc").is_err());

        let mut short = Incoming::new(3);
        short.handle_data(b"ab").unwrap();
        expect_test::expect!["sender announced 3 bytes and sent 2"]
            .assert_eq(&short.handle_end(digest).unwrap_err());

        let mut wrong = Incoming::new(3);
        wrong.handle_data(b"abd").unwrap();
        let err = wrong.handle_end(digest).unwrap_err();
        assert!(err.starts_with("sha256 mismatch: received "), "{err}");
    }
}
