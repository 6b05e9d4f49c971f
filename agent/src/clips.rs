//! Audio clips of live detections: the event's span with pre- and post-roll, as 16-bit WAV
//! files in the station's clip directory, under a disk quota and an optional retention.
//!
//! A clip is planned when its event closes and written once the stream has run past its
//! end plus post-roll plus one window — by then every window that overlaps it has been
//! classified, so a privacy class (human voice…) anywhere in the clip's span is known and
//! the clip is never written. The recent audio is kept as 16-bit samples in a ring long
//! enough for the longest clip ([`MAX_CLIP_S`]) and its rolls; clips are capped at that
//! length (the end of a longer event is kept).

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The longest clip kept, seconds (rolls excluded).
pub const MAX_CLIP_S: u64 = 30;

/// Extra history kept beyond the longest clip: how late an event may close.
const SLACK_S: u64 = 15;

/// Where and how clips are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipSettings {
    /// Folder of the clips (created if missing).
    pub dir: PathBuf,
    /// Sample rate of the stream, Hz.
    pub rate_hz: u32,
    /// Audio before an event, samples.
    pub pre_roll: u64,
    /// Audio after an event, samples.
    pub post_roll: u64,
    /// Length of one model window, samples (how far past a clip privacy is settled).
    pub window: u64,
    /// Disk space for all clips.
    pub quota_bytes: u64,
    /// Age after which clips are deleted.
    pub retention: Option<Duration>,
}

/// What became of clips so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClipStats {
    /// Written.
    pub written: u64,
    /// Not written: a privacy class was present in their span.
    pub suppressed: u64,
    /// Deleted to stay within the quota or retention.
    pub evicted: u64,
    /// Not written: larger than the whole quota, or the disk refused.
    pub failed: u64,
}

#[derive(Debug, Clone)]
struct Planned {
    name: String,
    start: u64,
    end: u64,
}

/// Clips of one station.
#[derive(Debug)]
pub struct Clips {
    s: ClipSettings,
    history: VecDeque<i16>,
    /// Stream sample index of `history[0]`.
    history_start: u64,
    planned: Vec<Planned>,
    privacy: Vec<(u64, u64)>,
    stats: ClipStats,
}

impl Clips {
    /// Clips into `s.dir`.
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn new(s: ClipSettings) -> io::Result<Self> {
        std::fs::create_dir_all(&s.dir)?;
        Ok(Self {
            s,
            history: VecDeque::new(),
            history_start: 0,
            planned: Vec::new(),
            privacy: Vec::new(),
            stats: ClipStats::default(),
        })
    }

    fn capacity(&self) -> usize {
        let rate = u64::from(self.s.rate_hz);
        (self.s.pre_roll + (MAX_CLIP_S + SLACK_S) * rate + self.s.post_roll + self.s.window)
            as usize
    }

    /// Counters so far.
    pub fn stats(&self) -> ClipStats {
        self.stats
    }

    /// One past the last stream sample seen.
    fn position(&self) -> u64 {
        self.history_start + self.history.len() as u64
    }

    /// Appends the stream's next samples (the ones the model reads, at `rate_hz`), and
    /// writes the clips that are settled.
    pub fn push(&mut self, samples: &[f32]) {
        self.history.extend(
            samples
                .iter()
                .map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16),
        );
        let excess = self.history.len().saturating_sub(self.capacity());
        self.history.drain(..excess);
        self.history_start += excess as u64;
        let oldest = self.history_start;
        self.privacy.retain(|&(_, end)| end > oldest);
        self.settle(false);
    }

    /// Notes windows in which a privacy class was present.
    pub fn note_privacy(&mut self, spans: &[(u64, u64)]) {
        self.privacy.extend_from_slice(spans);
    }

    /// Plans the clip of an event spanning stream samples `start..end`, saved as `name`
    /// (a file name); returns the name, for the event's `clip` field.
    pub fn plan(&mut self, start: u64, end: u64, name: &str) -> String {
        let max = MAX_CLIP_S * u64::from(self.s.rate_hz);
        let start = start.max(end.saturating_sub(max));
        self.planned.push(Planned {
            name: name.to_owned(),
            start: start.saturating_sub(self.s.pre_roll),
            end: end + self.s.post_roll,
        });
        name.to_owned()
    }

    /// Writes every planned clip with the audio there is (the stream ends).
    pub fn finish(&mut self) {
        self.settle(true);
        self.history.clear();
        self.privacy.clear();
        self.history_start = 0;
    }

    fn settle(&mut self, all: bool) {
        let position = self.position();
        let window = self.s.window;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.planned)
            .into_iter()
            .partition(|c| all || position >= c.end + window);
        self.planned = waiting;
        for clip in ready {
            if self
                .privacy
                .iter()
                .any(|&(a, b)| a < clip.end && clip.start < b)
            {
                self.stats.suppressed += 1;
                continue;
            }
            match self.write(&clip) {
                Ok(true) => self.stats.written += 1,
                Ok(false) | Err(_) => self.stats.failed += 1,
            }
        }
    }

    /// Writes one clip, then enforces retention and quota; `false` if it cannot fit.
    fn write(&mut self, clip: &Planned) -> io::Result<bool> {
        let from = clip.start.max(self.history_start);
        let to = clip.end.min(self.position());
        if to <= from {
            return Ok(false);
        }
        let size = 44 + 2 * (to - from);
        if size > self.s.quota_bytes {
            return Ok(false);
        }
        let path = self.s.dir.join(&clip.name);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: self.s.rate_hz,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        // Written beside its name, synced, then renamed: a power cut or a full disk leaves
        // either the whole clip or none (an event names it), never a truncated WAV.
        let tmp = self.s.dir.join(format!(".{}.partial", clip.name));
        let written = (|| {
            let mut w = hound::WavWriter::create(&tmp, spec).map_err(io::Error::other)?;
            let skip = (from - self.history_start) as usize;
            for &x in self.history.iter().skip(skip).take((to - from) as usize) {
                w.write_sample(x).map_err(io::Error::other)?;
            }
            w.finalize().map_err(io::Error::other)?;
            // (fsync of the inode, through a descriptor of our own: hound keeps its own.)
            std::fs::OpenOptions::new()
                .write(true)
                .open(&tmp)?
                .sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.s.dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.stats.evicted += evict(&self.s.dir, self.s.quota_bytes, self.s.retention, &path)?;
        Ok(true)
    }
}

/// Deletes clips older than `retention`, then the oldest until the folder is within
/// `quota` bytes (never `keep`, the clip just written); returns how many were deleted.
fn evict(dir: &Path, quota: u64, retention: Option<Duration>, keep: &Path) -> io::Result<u64> {
    let mut clips: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wav") {
            continue;
        }
        let meta = entry.metadata()?;
        clips.push((meta.modified()?, meta.len(), path));
    }
    clips.sort();
    let now = SystemTime::now();
    let mut total: u64 = clips.iter().map(|c| c.1).sum();
    let mut deleted = 0;
    for (modified, len, path) in clips {
        if path == keep {
            continue;
        }
        let expired =
            retention.is_some_and(|r| now.duration_since(modified).is_ok_and(|age| age > r));
        if expired || total > quota {
            std::fs::remove_file(&path)?;
            total -= len;
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, quota: u64) -> ClipSettings {
        ClipSettings {
            dir: dir.to_owned(),
            rate_hz: 1000,
            pre_roll: 100,
            post_roll: 200,
            window: 300,
            quota_bytes: quota,
            retention: None,
        }
    }

    fn samples(dir: &Path, name: &str) -> Vec<i16> {
        hound::WavReader::open(dir.join(name))
            .unwrap()
            .samples::<i16>()
            .map(Result::unwrap)
            .collect()
    }

    /// A ramp: sample i has value i (so a clip shows which samples it holds).
    fn ramp(from: u64, to: u64) -> Vec<f32> {
        (from..to).map(|i| i as f32 / 32768.0).collect()
    }

    #[test]
    fn a_clip_holds_its_event_with_pre_and_post_roll_once_settled() {
        let dir = tempfile::tempdir().unwrap();
        let mut clips = Clips::new(settings(dir.path(), 1 << 20)).unwrap();
        clips.push(&ramp(0, 1999));
        assert_eq!(clips.plan(1000, 1500, "a.wav"), "a.wav");
        // Settled at end + post-roll + one window = 2000.
        clips.push(&[]);
        assert!(
            !dir.path().join("a.wav").exists(),
            "not before it is settled"
        );
        clips.push(&ramp(1999, 2001));
        let got = samples(dir.path(), "a.wav");
        assert_eq!(got.len(), 100 + 500 + 200);
        assert_eq!((got[0], got[got.len() - 1]), (900, 1699));
        assert_eq!(clips.stats().written, 1);
    }

    #[test]
    fn a_privacy_window_anywhere_in_the_span_suppresses_the_clip() {
        let dir = tempfile::tempdir().unwrap();
        let mut clips = Clips::new(settings(dir.path(), 1 << 20)).unwrap();
        clips.push(&ramp(0, 1600));
        clips.plan(1000, 1500, "voice.wav");
        clips.plan(100, 200, "clean.wav");
        // Someone speaks in the post-roll of the first clip only.
        clips.note_privacy(&[(1600, 1900)]);
        clips.push(&ramp(1600, 2100));
        assert!(!dir.path().join("voice.wav").exists());
        assert!(dir.path().join("clean.wav").exists());
        assert_eq!((clips.stats().suppressed, clips.stats().written), (1, 1));
    }

    #[test]
    fn the_quota_deletes_the_oldest_clips_and_long_events_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        // Room for two clips of 800 samples (1,644 bytes each), not three.
        let mut clips = Clips::new(settings(dir.path(), 3500)).unwrap();
        clips.push(&ramp(0, 1000));
        for (i, name) in ["1.wav", "2.wav", "3.wav"].iter().enumerate() {
            let start = 1000 + i as u64 * 1000;
            clips.plan(start, start + 500, name);
            clips.push(&ramp(start, start + 1000));
            std::thread::sleep(Duration::from_millis(20)); // distinct modification times
        }
        clips.finish();
        assert!(!dir.path().join("1.wav").exists(), "the oldest went");
        assert!(dir.path().join("2.wav").exists() && dir.path().join("3.wav").exists());
        assert_eq!((clips.stats().written, clips.stats().evicted), (3, 1));
        // An event longer than MAX_CLIP_S keeps its last MAX_CLIP_S seconds.
        let mut clips = Clips::new(settings(dir.path(), 1 << 30)).unwrap();
        let long = (MAX_CLIP_S + 10) * 1000;
        clips.push(&ramp(0, long + 600));
        clips.plan(0, long, "long.wav");
        clips.finish();
        let got = samples(dir.path(), "long.wav");
        assert_eq!(got.len() as u64, 100 + MAX_CLIP_S * 1000 + 200);
        // Written to a temporary name and renamed: none is left behind.
        let partial = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".partial")
            })
            .count();
        assert_eq!(partial, 0);
    }

    #[test]
    fn a_clip_larger_than_the_quota_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut clips = Clips::new(settings(dir.path(), 100)).unwrap();
        clips.push(&ramp(0, 1000));
        clips.plan(200, 700, "big.wav");
        clips.finish();
        assert!(!dir.path().join("big.wav").exists());
        assert_eq!(clips.stats().failed, 1);
    }
}
