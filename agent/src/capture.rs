//! Live audio capture. One thread owns the cpal input stream (it is not `Send` on every
//! backend); its callback mixes each frame to mono, applies the gain and pushes the sample
//! into a lock-free single-producer ring (`ringbuf`), counting the samples it had to drop
//! when the ring was full. The callback allocates nothing, takes no lock and logs nothing:
//! the analysis side pops from the ring at its own pace, and capture never waits for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapRb};

/// What to capture.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureConfig {
    /// Device id as `warble-agent devices` lists it (`alsa:hw:1,0`), its name, or
    /// `default`.
    pub device: String,
    /// Rate to ask the device for, Hz.
    pub sample_rate_hz: u32,
    /// Channels to capture (mixed down to mono).
    pub channels: u16,
    /// Gain, dB.
    pub gain_db: f32,
    /// Ring capacity, samples.
    pub ring_samples: usize,
}

/// Why capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// No such input device.
    #[error("no input device `{0}` (see `warble-agent devices`)")]
    NoDevice(String),
    /// The device refused the configuration or the stream.
    #[error("input device `{device}`: {reason}")]
    Device {
        /// The device.
        device: String,
        /// cpal's message.
        reason: String,
    },
}

/// An input device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// Id to put in `audio.device`.
    pub id: String,
    /// Description.
    pub description: String,
    /// Default configuration, if the device reports one.
    pub default_config: Option<String>,
}

/// Lists the input devices.
///
/// # Errors
/// The audio host cannot enumerate devices.
pub fn devices() -> Result<Vec<DeviceInfo>, CaptureError> {
    let host = cpal::default_host();
    let list = host.input_devices().map_err(|e| CaptureError::Device {
        device: "(host)".into(),
        reason: e.to_string(),
    })?;
    Ok(list
        .map(|d| DeviceInfo {
            id: d.id().map(|i| i.to_string()).unwrap_or_default(),
            description: d.description().map(|x| x.to_string()).unwrap_or_default(),
            default_config: d.default_input_config().ok().map(|c| {
                format!(
                    "{} Hz, {} channel(s), {:?}",
                    c.sample_rate(),
                    c.channels(),
                    c.sample_format()
                )
            }),
        })
        .collect())
}

fn find_device(host: &cpal::Host, wanted: &str) -> Option<cpal::Device> {
    if wanted.is_empty() || wanted == "default" {
        return host.default_input_device();
    }
    if let Ok(id) = wanted.parse::<cpal::DeviceId>()
        && let Some(d) = host.device_by_id(&id)
    {
        return Some(d);
    }
    host.input_devices().ok()?.find(|d| {
        d.id()
            .is_ok_and(|i| i.to_string() == wanted || i.id() == wanted)
            || d.description().is_ok_and(|x| x.to_string() == wanted)
    })
}

/// A running capture.
pub struct Capture {
    consumer: HeapCons<f32>,
    overruns: Arc<AtomicU64>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("overruns", &self.overruns())
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Opens the device and starts capturing.
    ///
    /// # Errors
    /// [`CaptureError`] naming the device.
    pub fn start(cfg: &CaptureConfig) -> Result<Self, CaptureError> {
        let (producer, consumer) = HeapRb::<f32>::new(cfg.ring_samples.max(1024)).split();
        let overruns = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), CaptureError>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread_cfg = cfg.clone();
        let thread_overruns = overruns.clone();
        let thread = std::thread::Builder::new()
            .name("warble-capture".into())
            .spawn(move || {
                let stream = match open_stream(&thread_cfg, producer, thread_overruns) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                // Owns the stream until told to stop (or the owner is gone).
                let _ = stop_rx.recv();
                drop(stream);
            })
            .map_err(|e| CaptureError::Device {
                device: cfg.device.clone(),
                reason: format!("starting the capture thread: {e}"),
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                consumer,
                overruns,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(CaptureError::Device {
                device: cfg.device.clone(),
                reason: "the capture thread ended".into(),
            }),
        }
    }

    /// Moves every captured sample into `out` (appended); returns how many.
    pub fn read(&mut self, out: &mut Vec<f32>) -> usize {
        let before = out.len();
        out.extend(self.consumer.pop_iter());
        out.len() - before
    }

    /// Samples dropped because analysis fell behind and the ring was full.
    pub fn overruns(&self) -> u64 {
        self.overruns.load(Ordering::Relaxed)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Audio periods per second asked of the driver: 25-ms periods wake the capture thread 40
/// times a second (drivers' defaults can be far smaller periods, hundreds of wake-ups a
/// second on a recorder that should sleep), and add at most 25 ms to a detection's latency.
const PERIODS_PER_SECOND: u32 = 40;

fn open_stream(
    cfg: &CaptureConfig,
    mut producer: ringbuf::HeapProd<f32>,
    overruns: Arc<AtomicU64>,
) -> Result<cpal::Stream, CaptureError> {
    let err = |reason: String| CaptureError::Device {
        device: cfg.device.clone(),
        reason,
    };
    let host = cpal::default_host();
    let device = find_device(&host, &cfg.device)
        .ok_or_else(|| CaptureError::NoDevice(cfg.device.clone()))?;
    // The period asked for, if the device says it can do it; else the driver's default.
    let period = cfg.sample_rate_hz / PERIODS_PER_SECOND;
    let buffer_size = match device.default_input_config().map(|c| *c.buffer_size()) {
        Ok(cpal::SupportedBufferSize::Range { min, max }) if (min..=max).contains(&period) => {
            cpal::BufferSize::Fixed(period)
        }
        _ => cpal::BufferSize::Default,
    };
    let config = cpal::StreamConfig {
        channels: cfg.channels.max(1),
        sample_rate: cfg.sample_rate_hz,
        buffer_size,
    };
    let channels = usize::from(config.channels);
    let gain = 10f32.powf(cfg.gain_db / 20.0);
    let stream = device
        .build_input_stream::<f32, _, _>(
            config,
            move |data: &[f32], _: &cpal::InputCallbackInfo| {
                for frame in data.chunks_exact(channels) {
                    let mono = frame.iter().sum::<f32>() / channels as f32 * gain;
                    if producer.try_push(mono).is_err() {
                        overruns.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
            |_e| {},
            None,
        )
        .map_err(|e| err(e.to_string()))?;
    stream.play().map_err(|e| err(e.to_string()))?;
    Ok(stream)
}
