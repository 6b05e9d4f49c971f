//! Reading the files a configuration names, bounded: a path that names `/dev/zero`, a FIFO
//! or a huge file must give a clear error, not exhaust memory or block forever.

use std::io::{self, Read};
use std::path::Path;

/// The largest small file (keys, credentials, certificates, station and fleet files).
pub const SMALL_FILE_LIMIT: u64 = 1 << 20;

/// The bytes of the regular file at `path`, refusing anything else (devices, FIFOs,
/// directories: checked before opening, which would block on a FIFO) and anything over
/// `limit` bytes, whatever its metadata claims.
///
/// # Errors
/// The OS error, or an `InvalidInput` error saying what is wrong.
pub fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a device, FIFO or directory)",
        ));
    }
    let too_large = |size: u64| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{size} bytes, more than the {limit} allowed"),
        )
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read_limited`] at [`SMALL_FILE_LIMIT`], as UTF-8 text.
///
/// # Errors
/// As [`read_limited`], or `InvalidData` for text that is not UTF-8.
pub fn read_small_text(path: &Path) -> io::Result<String> {
    String::from_utf8(read_limited(path, SMALL_FILE_LIMIT)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_oversized_files_are_refused() {
        for dev in ["/dev/zero", "/dev/null", "/tmp"] {
            let err = read_limited(Path::new(dev), 1024).unwrap_err();
            assert!(
                err.to_string().contains("not a regular file"),
                "{dev}: {err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        // Refused without blocking on the FIFO (no writer ever opens it).
        assert!(read_limited(&fifo, 1024).is_err());
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2048]).unwrap();
        let err = read_limited(&big, 1024).unwrap_err();
        assert!(
            err.to_string().contains("2048 bytes, more than the 1024"),
            "{err}"
        );
        assert_eq!(read_limited(&big, 2048).unwrap().len(), 2048);
        std::fs::write(&big, [0xff, 0xfe]).unwrap();
        assert!(read_small_text(&big).is_err());
    }
}
