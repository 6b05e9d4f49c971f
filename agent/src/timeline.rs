//! Wall-clock times of stream samples.
//!
//! A live stream's samples are not evenly spaced in time: a device that stalls or is
//! reopened leaves a gap, samples dropped on an overrun were never seen, and a sound card
//! runs a little fast or slow against its nominal rate. "Start time plus sample count"
//! drifts further with each of these and never recovers. A [`Timeline`] instead anchors
//! the stream to the wall clock chunk by chunk: each captured chunk's start is observed
//! as "now minus its length" and compared with where the previous anchor predicts it; when
//! the two differ by more than [`TOLERANCE`] (a gap, an overrun, drift, a clock step),
//! a new anchor starts there. Samples dropped on an overrun are known exactly and shift
//! the following samples by exactly their duration. A file has one anchor: its start.
//!
//! Between anchors times follow the sample count, so jitter in when chunks are read (up to
//! one audio period, 25 ms) does not move event times; errors are bounded by the
//! tolerance.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

/// How far an observed chunk start may be from the predicted one before the timeline is
/// re-anchored: above the read jitter (one 25-ms period plus scheduling), below anything
/// a listener would call a wrong time.
pub const TOLERANCE: Duration = Duration::milliseconds(100);

/// Anchors kept (older ones are forgotten; samples before the oldest use it). Anchors
/// are rare (one per gap or drift correction), so this spans hours of normal audio and
/// at least 100 s even if every 25-ms chunk needed one.
const MAX_ANCHORS: usize = 4096;

/// Maps stream positions (samples at the stream's rate) to wall-clock times.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Samples per second of the positions.
    rate_hz: f64,
    /// Captured samples per stream sample (capture rate / stream rate).
    capture_per_sample: f64,
    /// (position, time of that position), positions increasing.
    anchors: VecDeque<(f64, DateTime<Utc>)>,
    /// Stream samples observed so far.
    position: f64,
    /// Expected time of the next observed sample (`None` before the first chunk).
    next: Option<DateTime<Utc>>,
}

impl Timeline {
    /// A recording whose first sample was taken at `start`, evenly sampled at `rate_hz`.
    pub fn starting_at(start: DateTime<Utc>, rate_hz: u32) -> Self {
        let mut timeline = Self::live(rate_hz, rate_hz);
        timeline.anchors.push_back((0.0, start));
        timeline
    }

    /// A live stream at `stream_rate_hz` fed from a capture at `capture_rate_hz`; times
    /// come from [`Timeline::observe`].
    pub fn live(capture_rate_hz: u32, stream_rate_hz: u32) -> Self {
        Self {
            rate_hz: f64::from(stream_rate_hz.max(1)),
            capture_per_sample: f64::from(capture_rate_hz.max(1))
                / f64::from(stream_rate_hz.max(1)),
            anchors: VecDeque::new(),
            position: 0.0,
            next: None,
        }
    }

    /// Notes a chunk of `captured` samples (at the capture rate) read at `now`, after
    /// which the capture dropped `dropped` samples (its overrun counter's increase since
    /// the previous chunk: a full ring refuses the newest samples, so they came after the
    /// ones just read).
    pub fn observe(&mut self, captured: usize, dropped: u64, now: DateTime<Utc>) {
        let length = captured as f64 / self.capture_per_sample;
        let observed = now - seconds(length / self.rate_hz);
        // After drops the observation misleads (the chunk was captured before them, not
        // just before `now`); the prediction is exact.
        let anchor = match self.next {
            None => true,
            Some(predicted) => dropped == 0 && (observed - predicted).abs() > TOLERANCE,
        };
        if anchor {
            self.anchor(self.position, observed);
        }
        self.position += length;
        let mut next = self.time_at(self.position);
        if dropped > 0 {
            next += seconds(dropped as f64 / self.capture_per_sample / self.rate_hz);
            self.anchor(self.position, next);
        }
        self.next = Some(next);
    }

    /// The wall-clock time of stream sample `sample`. Before any observation: the Unix
    /// epoch plus the sample's offset (a live stream's events come after observations).
    pub fn time_at(&self, sample: impl Into<f64>) -> DateTime<Utc> {
        let sample = sample.into();
        let i = self.anchors.partition_point(|&(p, _)| p <= sample);
        let (position, time) = match i {
            0 => self
                .anchors
                .front()
                .copied()
                .unwrap_or((0.0, DateTime::UNIX_EPOCH)),
            i => self.anchors[i - 1],
        };
        time + seconds((sample - position) / self.rate_hz)
    }

    /// Anchors held: the stream's first observation and each re-anchoring since (gaps,
    /// overruns, drift corrections), at most the last 4,096.
    pub fn anchors(&self) -> usize {
        self.anchors.len()
    }

    fn anchor(&mut self, position: f64, time: DateTime<Utc>) {
        if self.anchors.back().is_some_and(|&(p, _)| p == position) {
            self.anchors.pop_back();
        }
        self.anchors.push_back((position, time));
        if self.anchors.len() > MAX_ANCHORS {
            self.anchors.pop_front();
        }
    }
}

/// The earliest plausible time: when this agent was built. A recorder without a
/// battery-backed clock boots at its last shutdown time or at 1970 until the network
/// time arrives; detections stamped then would be filed under the wrong day forever.
pub fn not_before() -> DateTime<Utc> {
    env!("WARBLE_BUILD_UNIX")
        .parse::<i64>()
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// Waits until `now()` reaches `not_before`, calling `waiting` with the clock's time when
/// the wait starts and every minute after; `keep_waiting` is asked every 100 ms (for a
/// stop request, a watchdog ping). Whether the clock got there (`false`: told to stop).
pub fn wait_for_clock(
    not_before: DateTime<Utc>,
    mut now: impl FnMut() -> DateTime<Utc>,
    mut keep_waiting: impl FnMut() -> bool,
    mut waiting: impl FnMut(DateTime<Utc>),
) -> bool {
    let mut told: Option<std::time::Instant> = None;
    loop {
        let clock = now();
        if clock >= not_before {
            return true;
        }
        if !keep_waiting() {
            return false;
        }
        if told.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60)) {
            waiting(clock);
            told = Some(std::time::Instant::now());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn seconds(s: f64) -> Duration {
    Duration::microseconds((s * 1e6).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-01T04:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn ms(x: i64) -> Duration {
        Duration::milliseconds(x)
    }

    /// Reads 25-ms chunks of a 32-kHz device for `seconds`, each read `jitter(i)` ms late.
    fn feed(t: &mut Timeline, start: DateTime<Utc>, seconds: i64, jitter: impl Fn(i64) -> i64) {
        for i in 0..seconds * 40 {
            t.observe(800, 0, start + ms(25 * (i + 1) + jitter(i)));
        }
    }

    #[test]
    fn stamping_waits_for_a_clock_past_the_build_time() {
        assert!(not_before() > t0() - Duration::days(365), "built this wave");
        assert!(not_before() <= Utc::now());
        // A clock that reads 1970 for three checks, then is set.
        let mut checks = 0;
        let mut said = Vec::new();
        let set = wait_for_clock(
            t0(),
            || {
                checks += 1;
                if checks <= 3 {
                    DateTime::UNIX_EPOCH
                } else {
                    t0()
                }
            },
            || true,
            |clock| said.push(clock),
        );
        assert!(set);
        assert_eq!(checks, 4);
        assert_eq!(said, [DateTime::UNIX_EPOCH], "said once, not every check");
        // Told to stop while waiting.
        let stopped = wait_for_clock(t0(), || DateTime::UNIX_EPOCH, || false, |_| {});
        assert!(!stopped);
    }

    #[test]
    fn a_file_is_its_start_plus_the_sample_offset() {
        let t = Timeline::starting_at(t0(), 32_000);
        assert_eq!(t.time_at(0u32), t0());
        assert_eq!(t.time_at(48_000u32), t0() + ms(1500));
    }

    #[test]
    fn read_jitter_does_not_move_times_or_add_anchors() {
        let mut t = Timeline::live(32_000, 32_000);
        feed(&mut t, t0(), 60, |i| (i * 7) % 30);
        assert_eq!(t.anchors(), 1);
        assert_eq!(t.time_at(0u32), t0());
        assert_eq!(t.time_at(32_000u32 * 59), t0() + ms(59_000));
    }

    #[test]
    fn samples_after_a_stalled_device_carry_the_later_time() {
        let mut t = Timeline::live(32_000, 32_000);
        feed(&mut t, t0(), 10, |_| 0);
        // The device delivers nothing for 10 s, then resumes.
        feed(&mut t, t0() + ms(20_000), 10, |_| 0);
        assert_eq!(t.time_at(32_000u32 * 5), t0() + ms(5_000));
        // Sample 12 s into the stream was captured 22 s after the start.
        assert_eq!(t.time_at(32_000u32 * 12), t0() + ms(22_000));
        assert_eq!(t.anchors(), 2);
    }

    #[test]
    fn dropped_samples_shift_what_follows_by_exactly_their_length() {
        let mut t = Timeline::live(32_000, 32_000);
        feed(&mut t, t0(), 10, |_| 0);
        // The ring was full: the chunk read now was captured before 0.5 s of drops.
        t.observe(800, 16_000, t0() + ms(10_525));
        feed(&mut t, t0() + ms(10_525), 1, |_| 0);
        assert_eq!(
            t.time_at(320_000u32),
            t0() + ms(10_000),
            "the last chunk before"
        );
        assert_eq!(t.time_at(320_800u32), t0() + ms(10_525), "after the drops");
        assert_eq!(t.time_at(320_800u32 + 32_000), t0() + ms(11_525));
        assert_eq!(
            t.anchors(),
            2,
            "the drops are exact: no correction needed after"
        );
    }

    #[test]
    fn a_card_running_slow_is_corrected_within_the_tolerance() {
        // Nominal 32 kHz, really 31,968 Hz (0.1 % slow): a 25-ms period of 800 samples
        // takes 25.025 ms of wall time.
        let mut t = Timeline::live(32_000, 32_000);
        let mut worst = Duration::zero();
        for i in 0..40 * 600 {
            let true_end = t0() + Duration::microseconds((i + 1) * 25_025);
            t.observe(800, 0, true_end);
            let true_start = true_end - Duration::microseconds(25_025);
            worst = worst.max((t.time_at((i * 800) as u32) - true_start).abs());
        }
        assert!(worst <= TOLERANCE + ms(1), "{worst:?}");
        // 600 s at 0.1 %: 600 ms of drift, corrected in steps.
        assert!(t.anchors() >= 5, "{}", t.anchors());
    }

    #[test]
    fn positions_at_the_model_rate_map_through_the_capture_rate() {
        // 48 kHz capture resampled to 32 kHz: 1200 captured samples per 25 ms.
        let mut t = Timeline::live(48_000, 32_000);
        for i in 0..400 {
            t.observe(1200, 0, t0() + ms(25 * (i + 1)));
        }
        assert_eq!(t.time_at(32_000u32 * 3), t0() + ms(3_000));
        assert_eq!(t.anchors(), 1);
    }
}
