//! The bundle's tar container: flat regular files only, bounded in count and size.
//!
//! Nothing is ever extracted to disk: entries are read into memory after their header has
//! been checked, so a hostile archive cannot write outside anything, and limits are
//! enforced before the bytes are read.

use std::collections::BTreeMap;
use std::io::Read;

use tar::{Archive, Builder, EntryType, Header};

use super::BundleError;

/// Size limits applied while reading a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bundle file, bytes.
    pub max_bundle_bytes: u64,
    /// Largest single entry, bytes.
    pub max_entry_bytes: u64,
    /// Most entries in the tar.
    pub max_entries: usize,
}

impl Default for Limits {
    /// 256 MiB bundles (ConvNeXt-Base is ~350 MB in f32 and belongs on a GPU host, not a
    /// recorder), 16 entries.
    fn default() -> Self {
        Self {
            max_bundle_bytes: 256 << 20,
            max_entry_bytes: 256 << 20,
            max_entries: 16,
        }
    }
}

impl Limits {
    pub(super) fn check_bundle_size(&self, size: u64) -> Result<(), BundleError> {
        if size > self.max_bundle_bytes {
            return Err(BundleError::Oversize {
                what: "the bundle".into(),
                size,
                limit: self.max_bundle_bytes,
            });
        }
        Ok(())
    }
}

/// Why an entry name is not a plain file name, if it is not.
fn unsafe_name(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty name");
    }
    if name.starts_with(b"/") {
        return Some("absolute path");
    }
    if name.split(|&b| b == b'/' || b == b'\\').any(|c| c == b"..") {
        return Some("path traversal (`..`)");
    }
    if name.contains(&b'/') || name.contains(&b'\\') {
        return Some("directories are not allowed in a bundle");
    }
    if name.starts_with(b".") {
        return Some("hidden file");
    }
    if !name
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Some("name must be ASCII letters, digits, `.`, `_` or `-`");
    }
    None
}

/// Reads every entry into memory, rejecting anything but flat regular files.
pub(super) fn read_entries(
    bytes: &[u8],
    limits: &Limits,
) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
    let malformed = |e: std::io::Error| BundleError::Archive(e.to_string());
    // Bundles are written as ustar/GNU tar: say so plainly for anything else (a WAV, a
    // README, an HTML error page saved by mistake) rather than quote a header parser.
    if bytes.get(257..262) != Some(b"ustar".as_slice()) {
        return Err(BundleError::Archive(
            "not a Warble bundle (no tar header at the start of the file)".into(),
        ));
    }
    let mut archive = Archive::new(bytes);
    let mut files = BTreeMap::new();
    for entry in archive.entries().map_err(malformed)? {
        let mut entry = entry.map_err(malformed)?;
        let raw_name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_name).into_owned();
        let kind = entry.header().entry_type();
        if kind != EntryType::Regular {
            let what = match kind {
                EntryType::Symlink => "symbolic link",
                EntryType::Link => "hard link",
                EntryType::Directory => "directory",
                EntryType::Char | EntryType::Block => "device node",
                EntryType::Fifo => "FIFO",
                _ => "not a regular file",
            };
            return Err(BundleError::UnsafeEntry {
                name: shown,
                reason: what.into(),
            });
        }
        if let Some(reason) = unsafe_name(&raw_name) {
            return Err(BundleError::UnsafeEntry {
                name: shown,
                reason: reason.into(),
            });
        }
        if files.len() >= limits.max_entries {
            return Err(BundleError::Oversize {
                what: "the number of entries".into(),
                size: files.len() as u64 + 1,
                limit: limits.max_entries as u64,
            });
        }
        let size = entry.size();
        if size > limits.max_entry_bytes {
            return Err(BundleError::Oversize {
                what: shown,
                size,
                limit: limits.max_entry_bytes,
            });
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        (&mut entry)
            .take(size)
            .read_to_end(&mut data)
            .map_err(malformed)?;
        if data.len() as u64 != size {
            return Err(BundleError::Archive(format!(
                "`{shown}` is truncated: {} of {size} bytes",
                data.len()
            )));
        }
        if files.insert(shown.clone(), data).is_some() {
            return Err(BundleError::DuplicateEntry(shown));
        }
    }
    Ok(files)
}

/// Writes a deterministic tar (fixed mtime, owner and mode) of flat files.
pub(super) fn write_entries(entries: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    let mut builder = Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        builder.append_data(&mut header, name, *data)?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_flat_and_plain() {
        assert_eq!(unsafe_name(b"model.onnx"), None);
        assert_eq!(unsafe_name(b"../etc/passwd"), Some("path traversal (`..`)"));
        assert_eq!(unsafe_name(b"/etc/passwd"), Some("absolute path"));
        assert!(unsafe_name(b"a/b").is_some());
        assert!(unsafe_name(b".hidden").is_some());
        assert!(unsafe_name(b"caf\xc3\xa9").is_some());
    }

    #[test]
    fn written_entries_read_back() {
        let tar = write_entries(&[("a.txt", b"alpha"), ("b.bin", &[0, 1, 2])]).unwrap();
        let files = read_entries(&tar, &Limits::default()).unwrap();
        assert_eq!(files["a.txt"], b"alpha");
        assert_eq!(files["b.bin"], [0, 1, 2]);
        assert_eq!(
            tar,
            write_entries(&[("a.txt", b"alpha"), ("b.bin", &[0, 1, 2])]).unwrap()
        );
    }
}
