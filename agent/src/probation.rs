//! Probation: a new model runs on live audio with the previous one beside it (a shadow
//! whose detections are counted, not reported) until it has heard `length` of audio;
//! then it is committed or rolled back. The judge is pure: the recorder feeds it both
//! models' figures and acts on the outcome.
//!
//! A model is rolled back, at once, for an inference error or for NaN/infinite scores
//! (more windows of them than the previous model had); at the end, for inference slower
//! than half a hop per window (with the shadow beside it the station would fall behind),
//! or for a detection rate far from the previous model's over the same audio: fewer than
//! a quarter of its detecting windows, or more than four times as many, once the
//! previous model detected in at least [`MIN_COMPARED`] windows (or, for too many, at
//! least that many).

use std::time::Duration;

use warble_core::event::ModelRef;

/// Detecting windows below which two models' detection rates are not compared: a
/// quiet probation says nothing about either.
pub const MIN_COMPARED: u64 = 5;

/// A model to run on probation.
#[derive(Debug, Clone)]
pub struct Trial {
    /// Live audio it must hear.
    pub length: Duration,
    /// Where the outcome goes (the updater).
    pub verdicts: tokio::sync::mpsc::UnboundedSender<Verdict>,
}

/// How a probation ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The model that was on probation.
    pub candidate: ModelRef,
    /// Committed, or rolled back and why.
    pub outcome: Outcome,
    /// The candidate's figures.
    pub candidate_figures: Figures,
    /// The previous model's, over the same audio.
    pub previous_figures: Figures,
}

impl Verdict {
    /// The verdict on a model that never ran (refused or not switched to): no figures.
    pub fn before_running(candidate: ModelRef, outcome: Outcome) -> Self {
        Self {
            candidate,
            outcome,
            candidate_figures: Figures::default(),
            previous_figures: Figures::default(),
        }
    }
}

/// The end of a probation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The model stays.
    Commit,
    /// The previous model runs again, for this reason.
    RollBack(String),
}

/// One model's figures over a probation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// Audio analysed, seconds.
    pub audio_s: f64,
    /// Windows classified.
    pub windows: u64,
    /// Windows with NaN or infinite scores.
    pub non_finite: u64,
    /// Windows in which a reported species reached its threshold.
    pub detected: u64,
    /// Time inside the engine.
    pub inference: Duration,
}

impl Figures {
    /// The sum of two stretches' figures.
    #[must_use]
    pub fn plus(self, o: Self) -> Self {
        Self {
            audio_s: self.audio_s + o.audio_s,
            windows: self.windows + o.windows,
            non_finite: self.non_finite + o.non_finite,
            detected: self.detected + o.detected,
            inference: self.inference + o.inference,
        }
    }
}

/// Judges a probation from the figures so far.
#[derive(Debug, Clone, Copy)]
pub struct Judge {
    /// Audio the candidate must hear.
    pub length: Duration,
    /// The hop between windows: the time one window's analysis may take at most.
    pub hop: Duration,
}

impl Judge {
    /// `None` while the probation goes on.
    pub fn judge(&self, candidate: &Figures, previous: Option<&Figures>) -> Option<Outcome> {
        let old_non_finite = previous.map_or(0, |p| p.non_finite);
        if candidate.non_finite > old_non_finite {
            return Some(Outcome::RollBack(format!(
                "NaN or infinite scores in {} of {} windows on live audio (the previous model: {old_non_finite})",
                candidate.non_finite, candidate.windows
            )));
        }
        if candidate.audio_s < self.length.as_secs_f64() {
            return None;
        }
        if candidate.windows > 0 {
            let per_window = candidate.inference / candidate.windows as u32;
            if per_window > self.hop / 2 {
                return Some(Outcome::RollBack(format!(
                    "inference takes {:.1} ms per window, more than half the {:.0}-ms hop: the station would fall behind",
                    per_window.as_secs_f64() * 1e3,
                    self.hop.as_secs_f64() * 1e3
                )));
            }
        }
        let Some(previous) = previous else {
            return Some(Outcome::Commit);
        };
        let (new, old) = (candidate.detected, previous.detected);
        let minutes = candidate.audio_s / 60.0;
        if old >= MIN_COMPARED && new.saturating_mul(4) < old {
            return Some(Outcome::RollBack(format!(
                "detected in {new} windows where the previous model detected in {old} over the same {minutes:.1} min of audio (less than a quarter)"
            )));
        }
        if new > 4 * old.max(MIN_COMPARED) {
            return Some(Outcome::RollBack(format!(
                "detected in {new} windows where the previous model detected in {old} over the same {minutes:.1} min of audio (more than four times as many)"
            )));
        }
        Some(Outcome::Commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge() -> Judge {
        Judge {
            length: Duration::from_secs(60),
            hop: Duration::from_secs(1),
        }
    }

    fn figures(audio_s: f64, detected: u64) -> Figures {
        Figures {
            audio_s,
            windows: audio_s as u64,
            non_finite: 0,
            detected,
            inference: Duration::from_millis(20) * audio_s as u32,
        }
    }

    #[test]
    fn a_model_like_the_previous_one_is_committed_after_its_length() {
        let j = judge();
        assert_eq!(j.judge(&figures(30.0, 10), Some(&figures(30.0, 11))), None);
        assert_eq!(
            j.judge(&figures(60.0, 20), Some(&figures(60.0, 22))),
            Some(Outcome::Commit)
        );
        // Nothing to compare on a quiet probation, or without the previous model.
        assert_eq!(
            j.judge(&figures(60.0, 0), Some(&figures(60.0, 4))),
            Some(Outcome::Commit)
        );
        assert_eq!(j.judge(&figures(60.0, 0), None), Some(Outcome::Commit));
    }

    #[test]
    fn nan_scores_roll_back_at_once() {
        let mut nan = figures(3.0, 0);
        nan.non_finite = 2;
        let Some(Outcome::RollBack(why)) = judge().judge(&nan, Some(&figures(3.0, 0))) else {
            panic!("not rolled back");
        };
        assert!(
            why.contains("NaN or infinite scores in 2 of 3 windows"),
            "{why}"
        );
        // The previous model had as many: the audio, not the model.
        let mut old = figures(3.0, 0);
        old.non_finite = 2;
        assert_eq!(judge().judge(&nan, Some(&old)), None);
    }

    #[test]
    fn a_model_far_from_the_previous_detection_rate_is_rolled_back() {
        let j = judge();
        let Some(Outcome::RollBack(why)) = j.judge(&figures(60.0, 0), Some(&figures(60.0, 30)))
        else {
            panic!("a deaf model committed");
        };
        assert!(
            why.contains("detected in 0 windows where the previous model detected in 30"),
            "{why}"
        );
        assert!(matches!(
            j.judge(&figures(60.0, 7), Some(&figures(60.0, 30))),
            Some(Outcome::RollBack(_))
        ));
        assert_eq!(
            j.judge(&figures(60.0, 8), Some(&figures(60.0, 30))),
            Some(Outcome::Commit)
        );
        let Some(Outcome::RollBack(why)) = j.judge(&figures(60.0, 21), Some(&figures(60.0, 1)))
        else {
            panic!("a model firing everywhere committed");
        };
        assert!(why.contains("more than four times"), "{why}");
    }

    #[test]
    fn a_model_too_slow_for_the_hop_is_rolled_back() {
        let mut slow = figures(60.0, 10);
        slow.inference = Duration::from_millis(600) * 60;
        let Some(Outcome::RollBack(why)) = judge().judge(&slow, Some(&figures(60.0, 10))) else {
            panic!("a slow model committed");
        };
        assert!(why.contains("600.0 ms per window"), "{why}");
    }
}
