//! The boot number that makes event ids (`station:boot:seq`) unique forever.
//!
//! A boot is the time the run started, in milliseconds since the Unix epoch, raised above
//! the previous boot stored in the data folder when the clock went back (or two runs
//! started in the same millisecond). The file keeps boots increasing; the clock keeps them
//! unique when the file is gone — a replaced SD card or a wiped data folder must not
//! reuse ids a collector already holds. A clock that was never set (a recorder without a
//! real-time clock, before NTP) gives no such guarantee, so then the boot is drawn at
//! random from 2^62 up, far above any time-based one.

use std::path::{Path, PathBuf};

use warble_core::event::MAX_COUNTER;

const BOOT_FILE: &str = "boot";

/// 2025-01-01T00:00:00Z in ms: a clock before it has not been set.
const PLAUSIBLE_MS: u64 = 1_735_689_600_000;

/// Where random boots start (a time-based boot reaches it in the year 146 million).
const RANDOM_FROM: u64 = 1 << 62;

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
    #[error("boot counter {path}: `{content}` is not a boot number; fix or remove it deliberately")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What it holds (first 40 characters).
        content: String,
    },
}

/// Takes the next boot number for `data_dir` (created if needed) and stores it durably:
/// written to a temporary file, synced and renamed, so a power cut leaves either the old
/// or the new value. Runs on one data folder at once (`analyze --config` beside `run`)
/// take turns under a file lock.
///
/// # Errors
/// [`BootError`].
pub fn next_boot(data_dir: &Path) -> Result<u64, BootError> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64);
    next_boot_at(data_dir, now_ms)
}

fn next_boot_at(data_dir: &Path, now_ms: u64) -> Result<u64, BootError> {
    let path = data_dir.join(BOOT_FILE);
    let io = |p: &Path, e: std::io::Error| BootError::Io {
        path: p.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(data_dir).map_err(|e| io(data_dir, e))?;
    let lock_path = data_dir.join(format!("{BOOT_FILE}.lock"));
    let lock = std::fs::File::create(&lock_path).map_err(|e| io(&lock_path, e))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io(&lock_path, e.into()))?;
    let previous = match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&b| b < MAX_COUNTER)
            .ok_or_else(|| BootError::Corrupt {
                path: path.clone(),
                content: text.chars().take(40).collect(),
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io(&path, e)),
    };
    let candidate = if now_ms >= PLAUSIBLE_MS {
        now_ms
    } else {
        RANDOM_FROM + rand::random_range(0..RANDOM_FROM / 2)
    };
    let next = candidate.max(previous + 1).min(MAX_COUNTER);
    write_durably(&path, format!("{next}\n").as_bytes()).map_err(|e| io(&path, e))?;
    Ok(next)
}

/// Writes `bytes` to `path` so that after a crash or power cut it holds either its old
/// content or all of the new: a temporary file beside it, synced, renamed over it, and
/// the directory synced.
///
/// # Errors
/// The I/O error.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    std::fs::create_dir_all(&dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_796_150_400_000; // 2026-12-01T20:00:00Z

    #[test]
    fn boots_are_start_times_that_only_increase() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert_eq!(next_boot_at(&data, T).unwrap(), T);
        assert_eq!(next_boot_at(&data, T + 5_000).unwrap(), T + 5_000);
        // The same millisecond, or a clock that went back: one above the last.
        assert_eq!(next_boot_at(&data, T + 5_000).unwrap(), T + 5_001);
        assert_eq!(next_boot_at(&data, T - 60_000).unwrap(), T + 5_002);
        assert_eq!(
            std::fs::read_to_string(data.join("boot")).unwrap(),
            format!("{}\n", T + 5_002)
        );
        assert!(!data.join("boot.tmp").exists());
        // The real clock works too.
        assert!(next_boot(&data).unwrap() > T + 5_002);
    }

    #[test]
    fn a_wiped_data_folder_does_not_reuse_boots() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let old = next_boot_at(&data, T).unwrap();
        std::fs::remove_dir_all(&data).unwrap();
        // A new SD card, a minute later.
        assert!(next_boot_at(&data, T + 60_000).unwrap() > old);
        // A clock never set: a random boot far above any time-based one, and boots
        // increase from there.
        std::fs::remove_dir_all(&data).unwrap();
        let unset = next_boot_at(&data, 12_000).unwrap();
        assert!(unset >= RANDOM_FROM, "{unset}");
        assert_eq!(next_boot_at(&data, T + 120_000).unwrap(), unset + 1);
        std::fs::remove_dir_all(&data).unwrap();
        assert_ne!(next_boot_at(&data, 12_000).unwrap(), unset);
    }

    #[test]
    fn concurrent_runs_on_one_folder_take_different_boots() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let runs: Vec<_> = (0..8)
            .map(|_| {
                let data = data.clone();
                std::thread::spawn(move || next_boot_at(&data, T).unwrap())
            })
            .collect();
        let mut boots: Vec<u64> = runs.into_iter().map(|r| r.join().unwrap()).collect();
        boots.sort_unstable();
        assert_eq!(boots, (T..T + 8).collect::<Vec<_>>());
    }

    #[test]
    fn a_damaged_counter_is_refused_not_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("boot"), "12x").unwrap();
        let err = next_boot(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("`12x` is not a boot number"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("boot")).unwrap(),
            "12x"
        );
    }
}
