//! The one backoff: how long to wait before trying again something that failed (a broker
//! connection, an audio device). Doubling from `first` to `max`; optionally each wait
//! shortened by a random 0–50 % (jitter), so that a fleet that lost its broker at the
//! same moment does not reconnect in step.

use std::time::Duration;

use rand::RngExt;

/// Waits doubling from `first` to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
    jitter: bool,
}

impl Backoff {
    /// Doubling from `first` to `max`, without jitter.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max: max.max(first),
            next: first,
            jitter: false,
        }
    }

    /// Each wait shortened by a random 0–50 %.
    #[must_use]
    pub fn with_jitter(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// After a success: the next wait is `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// The next wait (and doubles the one after).
    pub fn take(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        if self.jitter {
            d.mul_f64(rand::rng().random_range(0.5..=1.0))
        } else {
            d
        }
    }

    /// The first wait.
    pub fn first(&self) -> Duration {
        self.first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_its_cap_with_jitter_and_resets() {
        let (first, max) = (Duration::from_millis(500), Duration::from_secs(30));
        let mut b = Backoff::new(first, max).with_jitter();
        for i in 0..10 {
            let w = b.take();
            let nominal = (first * 2u32.pow(i)).min(max);
            assert!(
                w <= nominal && w >= nominal / 2,
                "{i}: {w:?} vs {nominal:?}"
            );
        }
        b.reset();
        assert!(b.take() <= first);
    }

    #[test]
    fn without_jitter_the_waits_are_exact() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(35));
        let waits: Vec<_> = (0..4).map(|_| b.take().as_millis()).collect();
        assert_eq!(waits, [10, 20, 35, 35]);
    }
}
