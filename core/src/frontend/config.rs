//! The front-end configuration: every number that turns samples into model input.
//!
//! It is serialised into every checkpoint and every bundle, so a recorder can refuse a
//! model whose features it would not reproduce exactly.

use serde::{Deserialize, Serialize};

use super::FrontEndError;

/// Schema string written into every serialised [`FrontEndConfig`].
pub const FRONTEND_SCHEMA: &str = "warble.frontend/1";

/// Named parameter sets from the paper and BirdSet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The AudioProtoPNet / ConvNeXt-XCL front end of the paper: n_fft 2048, hop 256,
    /// 256 mel bands → (256, 626) for a 5-s clip.
    AudioProtoPNet,
    /// BirdSet's lighter default: n_fft 1024, hop 320, 128 mel bands → (128, 501).
    BirdSet,
    /// Parameters that match no named preset (small CPU models, experiments).
    Custom,
}

impl Preset {
    /// Parses a preset name as used on command lines (`audioprotopnet`, `birdset`).
    ///
    /// # Errors
    /// [`FrontEndError::UnknownPreset`] for any other name.
    pub fn from_name(name: &str) -> Result<Self, FrontEndError> {
        match name.to_ascii_lowercase().as_str() {
            "audioprotopnet" => Ok(Self::AudioProtoPNet),
            "birdset" => Ok(Self::BirdSet),
            _ => Err(FrontEndError::UnknownPreset(name.to_owned())),
        }
    }
}

/// Analysis window of the STFT. Only the periodic Hann window (torch's default) exists
/// today; the field is explicit so that a future window is a visible config change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// `0.5 − 0.5·cos(2πn/N)`, n = 0..N (periodic, as `torch.hann_window`).
    HannPeriodic,
}

/// Mel scale formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MelScale {
    /// `2595·log10(1 + f/700)`, filters without area normalisation.
    Htk,
}

/// All parameters of the log-mel front end.
///
/// Frames are centred (`center = true`): the signal is reflect-padded by `n_fft / 2` on
/// both sides, so a clip of `n` samples gives `1 + n / hop_length` frames. Power spectra
/// are mapped through the mel filterbank, converted to dB as `10·log10(max(S, amin))`,
/// floored at `max − top_db` **per clip** (per window in streaming mode) and standardised
/// as `(x − mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontEndConfig {
    /// Always [`FRONTEND_SCHEMA`].
    pub schema: String,
    /// Which named preset these parameters came from.
    pub preset: Preset,
    /// Input sample rate in Hz; audio is resampled to it before the front end.
    pub sample_rate_hz: u32,
    /// FFT size and window length in samples.
    pub n_fft: usize,
    /// Hop between frames in samples.
    pub hop_length: usize,
    /// Number of mel bands.
    pub n_mels: usize,
    /// Lowest filter edge in Hz.
    pub f_min_hz: f64,
    /// Highest filter edge in Hz (at most the Nyquist frequency).
    pub f_max_hz: f64,
    /// Dynamic range kept below the clip's maximum, in dB.
    pub top_db: f64,
    /// Power floor before the logarithm.
    pub amin: f64,
    /// Standardisation mean (in dB).
    pub mean: f64,
    /// Standardisation standard deviation (in dB).
    pub std: f64,
    /// STFT window.
    pub window: WindowKind,
    /// Mel scale.
    pub mel_scale: MelScale,
}

impl FrontEndConfig {
    /// The paper's AudioProtoPNet / ConvNeXt front end.
    pub fn audioprotopnet() -> Self {
        Self {
            schema: FRONTEND_SCHEMA.to_owned(),
            preset: Preset::AudioProtoPNet,
            sample_rate_hz: 32_000,
            n_fft: 2048,
            hop_length: 256,
            n_mels: 256,
            f_min_hz: 0.0,
            f_max_hz: 16_000.0,
            top_db: 80.0,
            amin: 1e-10,
            mean: -13.369,
            std: 13.162,
            window: WindowKind::HannPeriodic,
            mel_scale: MelScale::Htk,
        }
    }

    /// BirdSet's default front end (lighter; for edge models).
    pub fn birdset() -> Self {
        Self {
            preset: Preset::BirdSet,
            n_fft: 1024,
            hop_length: 320,
            n_mels: 128,
            mean: -4.268,
            std: 4.569,
            ..Self::audioprotopnet()
        }
    }

    /// The parameters of a named preset.
    ///
    /// # Errors
    /// [`FrontEndError::InvalidConfig`] for [`Preset::Custom`], which has no fixed values.
    pub fn from_preset(preset: Preset) -> Result<Self, FrontEndError> {
        match preset {
            Preset::AudioProtoPNet => Ok(Self::audioprotopnet()),
            Preset::BirdSet => Ok(Self::birdset()),
            Preset::Custom => Err(FrontEndError::InvalidConfig {
                field: "preset",
                reason: "`custom` has no fixed parameters; give them explicitly".to_owned(),
            }),
        }
    }

    /// Number of frequency bins of the one-sided spectrum.
    pub fn n_freqs(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Number of frames for a clip of `n_samples` samples (centred framing).
    pub fn frames_for(&self, n_samples: usize) -> usize {
        1 + n_samples / self.hop_length
    }

    /// Smallest clip the reflect padding accepts: more than `n_fft / 2` samples.
    pub fn min_samples(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Checks the parameters once, so the DSP code can rely on them.
    ///
    /// # Errors
    /// [`FrontEndError::InvalidConfig`] naming the first offending field.
    pub fn validate(&self) -> Result<(), FrontEndError> {
        let bad = |field: &'static str, reason: String| {
            Err(FrontEndError::InvalidConfig { field, reason })
        };
        if self.schema != FRONTEND_SCHEMA {
            return bad(
                "schema",
                format!(
                    "`{}` is not supported (expected `{FRONTEND_SCHEMA}`)",
                    self.schema
                ),
            );
        }
        if self.sample_rate_hz == 0 {
            return bad("sample_rate_hz", "must be positive".to_owned());
        }
        if self.n_fft < 4 || !self.n_fft.is_multiple_of(2) {
            return bad(
                "n_fft",
                format!("{} must be even and at least 4", self.n_fft),
            );
        }
        if self.hop_length == 0 || self.hop_length > self.n_fft {
            return bad(
                "hop_length",
                format!("{} must be in 1..={}", self.hop_length, self.n_fft),
            );
        }
        if self.n_mels == 0 {
            return bad("n_mels", "must be positive".to_owned());
        }
        let nyquist = f64::from(self.sample_rate_hz) / 2.0;
        if !(self.f_min_hz >= 0.0 && self.f_min_hz < self.f_max_hz && self.f_max_hz <= nyquist) {
            return bad(
                "f_max_hz",
                format!(
                    "need 0 <= f_min ({}) < f_max ({}) <= Nyquist ({nyquist})",
                    self.f_min_hz, self.f_max_hz
                ),
            );
        }
        if !(self.top_db.is_finite() && self.top_db > 0.0) {
            return bad(
                "top_db",
                format!("{} must be finite and positive", self.top_db),
            );
        }
        if !(self.amin.is_finite() && self.amin > 0.0) {
            return bad("amin", format!("{} must be finite and positive", self.amin));
        }
        if !self.mean.is_finite() {
            return bad("mean", format!("{} must be finite", self.mean));
        }
        if !(self.std.is_finite() && self.std > 0.0) {
            return bad("std", format!("{} must be finite and positive", self.std));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_papers_shapes() {
        let apn = FrontEndConfig::audioprotopnet();
        assert_eq!((apn.n_freqs(), apn.frames_for(160_000)), (1025, 626));
        let bs = FrontEndConfig::birdset();
        assert_eq!((bs.n_mels, bs.frames_for(160_000)), (128, 501));
        apn.validate().unwrap();
        bs.validate().unwrap();
    }

    #[test]
    fn config_round_trips_through_json() {
        let cfg = FrontEndConfig::birdset();
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(json.contains("\"schema\":\"warble.frontend/1\""));
        assert_eq!(serde_json::from_str::<FrontEndConfig>(&json).unwrap(), cfg);
    }

    #[test]
    fn invalid_values_name_their_field() {
        let mut cfg = FrontEndConfig::birdset();
        cfg.f_max_hz = 20_000.0;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("f_max_hz"), "{err}");
        let mut cfg = FrontEndConfig::birdset();
        cfg.schema = "warble.frontend/9".into();
        assert!(cfg.validate().unwrap_err().to_string().contains("schema"));
        let mut cfg = FrontEndConfig::birdset();
        cfg.std = 0.0;
        assert!(cfg.validate().unwrap_err().to_string().contains("std"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let mut v = serde_json::to_value(FrontEndConfig::birdset()).unwrap();
        v["n_ftt"] = serde_json::json!(512);
        assert!(serde_json::from_value::<FrontEndConfig>(v).is_err());
    }

    #[test]
    fn preset_names_parse() {
        assert_eq!(Preset::from_name("BirdSet").unwrap(), Preset::BirdSet);
        assert!(Preset::from_name("birdnet").is_err());
    }
}
