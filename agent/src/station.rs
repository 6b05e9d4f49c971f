//! Station identity on disk: the boot counter that makes event ids (`station:boot:seq`)
//! unique forever.

use std::io::Write;
use std::path::{Path, PathBuf};

const BOOT_FILE: &str = "boot";

/// Why the boot counter cannot be advanced.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The file or directory cannot be read or written.
    #[error("boot counter {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The file holds something else than a number. It is not reset silently: a reset
    /// would reuse event ids that subscribers have already stored.
    #[error(
        "boot counter {path}: `{content}` is not a number; fix or remove it deliberately \
         (removing it restarts ids at boot 1)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What it holds (first 40 characters).
        content: String,
    },
}

/// Increments and durably stores the boot counter in `data_dir` (created if needed);
/// returns the new value (1 on first start). Written to a temporary file, synced and
/// renamed, so a power cut leaves either the old or the new value.
///
/// # Errors
/// [`BootError`].
pub fn next_boot(data_dir: &Path) -> Result<u64, BootError> {
    let path = data_dir.join(BOOT_FILE);
    let io = |p: &Path, e: std::io::Error| BootError::Io {
        path: p.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(data_dir).map_err(|e| io(data_dir, e))?;
    let previous = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| BootError::Corrupt {
            path: path.clone(),
            content: text.chars().take(40).collect(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io(&path, e)),
    };
    let next = previous + 1;
    let tmp = data_dir.join(format!("{BOOT_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    writeln!(file, "{next}").map_err(|e| io(&tmp, e))?;
    file.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(data_dir, e))?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_increments_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert_eq!(next_boot(&data).unwrap(), 1);
        assert_eq!(next_boot(&data).unwrap(), 2);
        assert_eq!(next_boot(&data).unwrap(), 3);
        assert_eq!(std::fs::read_to_string(data.join("boot")).unwrap(), "3\n");
        assert!(!data.join("boot.tmp").exists());
    }

    #[test]
    fn a_damaged_counter_is_refused_not_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("boot"), "12x").unwrap();
        let err = next_boot(dir.path()).unwrap_err();
        assert!(err.to_string().contains("`12x` is not a number"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("boot")).unwrap(),
            "12x"
        );
    }
}
