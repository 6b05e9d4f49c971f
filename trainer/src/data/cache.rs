//! An on-disk cache of decoded, resampled recordings, memory-mapped on use.
//!
//! Training reads a random window of every recording every epoch; decoding and resampling
//! it again each time would dominate an epoch on a small machine. The first read of a
//! recording writes its samples (32 kHz mono `f32`, little-endian) to the cache folder
//! under a name derived from the source path, size and modification time; later reads map
//! that file and copy the window out. A changed source gets a new cache entry.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use memmap2::Mmap;
use warble_core::audio::decode_file;
use warble_core::{AudioError, SampleRate};

/// Cache failures: the source could not be decoded, or the cache could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Decoding the source failed.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// The cache file could not be written or mapped.
    #[error("audio cache {}: {source}", path.display())]
    Io {
        /// The cache file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The cache: a folder of `.f32` files and the maps opened so far.
#[derive(Debug)]
pub struct AudioCache {
    dir: PathBuf,
    rate: SampleRate,
    open: Mutex<std::collections::HashMap<PathBuf, Arc<Mmap>>>,
}

impl AudioCache {
    /// A cache in `dir` (created if needed) for audio at `rate`.
    ///
    /// # Errors
    /// [`CacheError::Io`] if the folder cannot be created.
    pub fn new(dir: impl Into<PathBuf>, rate: SampleRate) -> Result<Self, CacheError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| CacheError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            rate,
            open: Mutex::default(),
        })
    }

    fn entry_name(&self, source: &Path) -> Result<PathBuf, CacheError> {
        let meta = fs::metadata(source).map_err(|e| {
            CacheError::Audio(AudioError {
                path: source.to_owned(),
                kind: warble_core::audio::AudioErrorKind::Io(e),
            })
        })?;
        let mut h = DefaultHasher::new();
        source.hash(&mut h);
        meta.len().hash(&mut h);
        meta.modified().ok().hash(&mut h);
        self.rate.hz().hash(&mut h);
        Ok(self.dir.join(format!("{:016x}.f32", h.finish())))
    }

    /// Samples `[first, first + len)` of `source` (zero-padded past its end).
    ///
    /// # Errors
    /// The source's [`AudioError`] on first use, or a cache I/O error.
    pub fn window(&self, source: &Path, first: usize, len: usize) -> Result<Vec<f32>, CacheError> {
        let map = self.map(source)?;
        let total = map.len() / 4;
        let mut out = vec![0.0f32; len];
        for (i, o) in out.iter_mut().enumerate().take(total.saturating_sub(first)) {
            let at = (first + i) * 4;
            *o = f32::from_le_bytes([map[at], map[at + 1], map[at + 2], map[at + 3]]);
        }
        Ok(out)
    }

    fn map(&self, source: &Path) -> Result<Arc<Mmap>, CacheError> {
        if let Some(map) = self.open.lock().ok().and_then(|m| m.get(source).cloned()) {
            return Ok(map);
        }
        let entry = self.entry_name(source)?;
        let io = |source| CacheError::Io {
            path: entry.clone(),
            source,
        };
        if !entry.is_file() {
            let audio = decode_file(source, self.rate)?;
            // Write to a temporary name, then rename: a reader never maps a partial file.
            // Unique per process and call: two threads may decode the same source at once.
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let unique = NEXT.fetch_add(1, Ordering::Relaxed);
            let partial = entry.with_extension(format!("partial-{}-{unique}", std::process::id()));
            let mut file = fs::File::create(&partial).map_err(io)?;
            let bytes: Vec<u8> = audio.samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            file.write_all(&bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
            fs::rename(&partial, &entry).map_err(io)?;
        }
        let file = fs::File::open(&entry).map_err(io)?;
        // SAFETY: cache entries are written once under a temporary name and renamed into
        // place; nothing writes to or truncates an entry afterwards, so the mapped bytes
        // do not change while mapped.
        #[allow(unsafe_code)]
        let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(io)?);
        if let Ok(mut open) = self.open.lock() {
            open.insert(source.to_owned(), Arc::clone(&map));
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(wav: &Path) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 32_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(wav, spec).unwrap();
        for i in 0..1000i16 {
            w.write_sample(i * 8).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn windows_come_from_the_decoded_file_and_are_padded() {
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("a.wav");
        write_wav(&wav);
        let cache = AudioCache::new(dir.path().join("cache"), SampleRate::HZ_32000).unwrap();
        let a = cache.window(&wav, 990, 20).unwrap();
        assert_eq!(a[0], 990.0 * 8.0 / 32_768.0);
        assert!(a[10..].iter().all(|&v| v == 0.0));
        // The entry exists on disk and a second cache instance reuses it.
        let entries = fs::read_dir(dir.path().join("cache")).unwrap().count();
        assert_eq!(entries, 1);
        let again = AudioCache::new(dir.path().join("cache"), SampleRate::HZ_32000).unwrap();
        assert_eq!(again.window(&wav, 990, 20).unwrap(), a);
    }

    #[test]
    fn concurrent_first_reads_of_one_source_all_succeed() {
        // Regression: threads filling the same entry once shared a temporary file name.
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("a.wav");
        write_wav(&wav);
        let cache = AudioCache::new(dir.path().join("cache"), SampleRate::HZ_32000).unwrap();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| cache.window(&wav, 0, 10)))
                .collect();
            for h in handles {
                assert!(h.join().unwrap().is_ok());
            }
        });
    }
}
