//! Live audio capture. One thread owns the cpal input stream (it is not `Send` on every
//! backend); its callback mixes each frame to mono, applies the gain and pushes the sample
//! into a lock-free single-producer ring (`ringbuf`), counting the samples it had to drop
//! when the ring was full. The callback allocates nothing, takes no lock and logs nothing:
//! the analysis side pops from the ring at its own pace, and capture never waits for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use warble_core::backoff::Backoff;

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

/// What the capture thread and the stream's callbacks share with the reader.
#[derive(Debug, Default)]
struct Shared {
    /// Samples dropped because the ring was full.
    overruns: AtomicU64,
    /// Times the device failed (error callback) or could not be reopened.
    failures: AtomicU64,
    /// Recoverable stream errors (xruns, reroutes).
    glitches: AtomicU64,
    /// Set by the stream's error callback: the stream is dead, reopen the device.
    failed: std::sync::atomic::AtomicBool,
    /// The last device error, for reports.
    last_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, reason: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(reason);
        }
        self.failed.store(true, Ordering::Relaxed);
    }
}

/// How long to wait before reopening a failed device: 1 s doubling to 60 s, so an
/// unplugged microphone costs a wake-up a minute, not a busy loop.
fn device_backoff() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
}

/// A running capture.
pub struct Capture {
    consumer: HeapCons<f32>,
    /// Rings of reopened streams, in order.
    next: mpsc::Receiver<HeapCons<f32>>,
    shared: Arc<Shared>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("overruns", &self.overruns())
            .field("device_failures", &self.device_failures())
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Opens the device and starts capturing. If the device fails later (unplugged, a
    /// driver error), the capture thread reports it and reopens it with backoff; reading
    /// goes on from the new stream.
    ///
    /// # Errors
    /// [`CaptureError`] naming the device, when it cannot be opened at the start.
    pub fn start(
        cfg: &CaptureConfig,
        keep_waiting: impl FnMut() -> bool,
    ) -> Result<Self, CaptureError> {
        let thread_cfg = cfg.clone();
        Self::supervised(
            cfg,
            device_backoff(),
            keep_waiting,
            move |producer, shared| open_stream(&thread_cfg, producer, shared),
        )
    }

    /// Opens the device, waiting for it while it cannot be opened (a USB microphone that
    /// enumerates after boot, a hub glitch): retries after 1 s doubling to 60 s, calling
    /// `waiting` with the error and the wait before each. Exiting instead would have the
    /// service restarted until systemd gives up for good. `keep_waiting` is asked every
    /// 100 ms (for a stop request, and to ping a watchdog), also while an open is under
    /// way (a driver's open can block: a busy device, a FIFO nobody writes); `None` when
    /// it said stop.
    pub fn start_when_present(
        cfg: &CaptureConfig,
        keep_waiting: impl FnMut() -> bool,
        waiting: impl FnMut(&CaptureError, Duration),
    ) -> Option<Self> {
        Self::retry_until_open(device_backoff(), keep_waiting, waiting, |keep_waiting| {
            Self::start(cfg, keep_waiting)
        })
    }

    fn retry_until_open<T>(
        mut backoff: Backoff,
        mut keep_waiting: impl FnMut() -> bool,
        mut waiting: impl FnMut(&CaptureError, Duration),
        mut open: impl FnMut(&mut dyn FnMut() -> bool) -> Result<T, CaptureError>,
    ) -> Option<T> {
        loop {
            if !keep_waiting() {
                return None;
            }
            let wait = backoff.take();
            match open(&mut keep_waiting) {
                Ok(opened) => return Some(opened),
                Err(_) if !keep_waiting() => return None,
                Err(e) => waiting(&e, wait),
            }
            let until = std::time::Instant::now() + wait;
            while std::time::Instant::now() < until {
                if !keep_waiting() {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(100).min(wait));
            }
        }
    }

    /// Runs `open` on a capture thread that keeps the stream alive and reopens it when
    /// its error callback fires. While the first open is under way `keep_waiting` is
    /// asked every 100 ms; when it says stop, the thread is left to its open (its result
    /// then goes nowhere, and the stream it may yet open is dropped) and this returns.
    fn supervised<S: 'static>(
        cfg: &CaptureConfig,
        mut backoff: Backoff,
        mut keep_waiting: impl FnMut() -> bool,
        mut open: impl FnMut(HeapProd<f32>, Arc<Shared>) -> Result<S, CaptureError> + Send + 'static,
    ) -> Result<Self, CaptureError> {
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), CaptureError>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (rings_tx, rings_rx) = mpsc::channel::<HeapCons<f32>>();
        let ring = cfg.ring_samples.max(1024);
        let device = cfg.device.clone();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("warble-capture".into())
            .spawn(move || {
                let shared = thread_shared;
                let mut ready = Some(ready_tx);
                loop {
                    let (producer, consumer) = HeapRb::<f32>::new(ring).split();
                    shared.failed.store(false, Ordering::Relaxed);
                    match open(producer, shared.clone()) {
                        Ok(stream) => {
                            if rings_tx.send(consumer).is_err() {
                                return;
                            }
                            match ready.take() {
                                Some(tx) => {
                                    let _ = tx.send(Ok(()));
                                }
                                None => tracing::info!("audio device `{device}` reopened"),
                            }
                            backoff.reset();
                            // Owns the stream until told to stop, or until it fails.
                            loop {
                                match stop_rx.recv_timeout(Duration::from_millis(200)) {
                                    Err(mpsc::RecvTimeoutError::Timeout)
                                        if !shared.failed.load(Ordering::Relaxed) => {}
                                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                                    _ => return,
                                }
                            }
                            drop(stream);
                            let reason = shared
                                .last_error
                                .lock()
                                .ok()
                                .and_then(|l| l.clone())
                                .unwrap_or_default();
                            tracing::warn!("audio device `{device}` failed: {reason}");
                        }
                        Err(e) => {
                            if let Some(tx) = ready.take() {
                                let _ = tx.send(Err(e));
                                return;
                            }
                            shared.fail(e.to_string());
                        }
                    }
                    let wait = backoff.take();
                    tracing::warn!(
                        "audio device `{device}`: reopening in {:.0} s",
                        wait.as_secs_f64()
                    );
                    match stop_rx.recv_timeout(wait) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })
            .map_err(|e| CaptureError::Device {
                device: cfg.device.clone(),
                reason: format!("starting the capture thread: {e}"),
            })?;
        let first = loop {
            match ready_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(())) => break rings_rx.recv().ok(),
                Ok(Err(e)) => {
                    let _ = thread.join();
                    return Err(e);
                }
                Err(mpsc::RecvTimeoutError::Timeout) if keep_waiting() => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(CaptureError::Device {
                        device: cfg.device.clone(),
                        reason: "stopped while the device was still opening".into(),
                    });
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break None,
            }
        };
        let Some(consumer) = first else {
            return Err(CaptureError::Device {
                device: cfg.device.clone(),
                reason: "the capture thread ended".into(),
            });
        };
        Ok(Self {
            consumer,
            next: rings_rx,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Moves every captured sample into `out` (appended); returns how many.
    pub fn read(&mut self, out: &mut Vec<f32>) -> usize {
        let before = out.len();
        out.extend(self.consumer.pop_iter());
        // A reopened stream writes into a new ring: finish the old one, then switch.
        while let Ok(next) = self.next.try_recv() {
            out.extend(self.consumer.pop_iter());
            self.consumer = next;
            out.extend(self.consumer.pop_iter());
        }
        out.len() - before
    }

    /// Samples dropped because analysis fell behind and the ring was full.
    pub fn overruns(&self) -> u64 {
        self.shared.overruns.load(Ordering::Relaxed)
    }

    /// Times the device failed or could not be reopened.
    pub fn device_failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// The last device error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().ok().and_then(|l| l.clone())
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
    mut producer: HeapProd<f32>,
    shared: Arc<Shared>,
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
    let shared_data = shared.clone();
    let stream = device
        .build_input_stream::<f32, _, _>(
            config,
            move |data: &[f32], _: &cpal::InputCallbackInfo| {
                for frame in data.chunks_exact(channels) {
                    let mono = frame.iter().sum::<f32>() / channels as f32 * gain;
                    if producer.try_push(mono).is_err() {
                        shared_data.overruns.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
            // Not the real-time path: cpal calls this from its thread when the stream
            // breaks (device gone, driver error); the capture thread then reopens it.
            move |e| match e.kind() {
                // Glitches and reroutes leave the stream running: counted, not reopened.
                cpal::ErrorKind::Xrun
                | cpal::ErrorKind::DeviceChanged
                | cpal::ErrorKind::RealtimeDenied => {
                    shared.glitches.fetch_add(1, Ordering::Relaxed);
                }
                _ => shared.fail(e.to_string()),
            },
            None,
        )
        .map_err(|e| err(e.to_string()))?;
    stream.play().map_err(|e| err(e.to_string()))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_missing_at_the_start_is_waited_for_with_backoff() {
        let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(40));
        let mut attempts = 0;
        let mut waits = Vec::new();
        let opened = Capture::retry_until_open(
            backoff.clone(),
            || true,
            |e, wait| waits.push((e.to_string(), wait)),
            |_| {
                attempts += 1;
                if attempts < 5 {
                    Err(CaptureError::NoDevice("usb-mic".into()))
                } else {
                    Ok(attempts)
                }
            },
        );
        assert_eq!(opened, Some(5));
        let ms: Vec<u128> = waits.iter().map(|(_, w)| w.as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 40], "doubling to its cap");
        assert!(waits[0].0.contains("no input device `usb-mic`"));
        // A stop request ends the wait.
        let mut asked = 0;
        let never = Capture::retry_until_open(
            backoff,
            || {
                asked += 1;
                asked < 3
            },
            |_, _| {},
            |_| Err::<(), _>(CaptureError::NoDevice("usb-mic".into())),
        );
        assert_eq!(never, None);
    }
    use std::sync::Mutex;
    use std::time::Instant;

    /// A device that works, is unplugged, is missing for two attempts, then works again.
    #[test]
    fn a_failed_device_is_reopened_with_backoff_and_reading_goes_on() {
        #[derive(Default)]
        struct Fake {
            opens: usize,
            producer: Option<HeapProd<f32>>,
            shared: Option<Arc<Shared>>,
        }
        let fake = Arc::new(Mutex::new(Fake::default()));
        let device = fake.clone();
        let cfg = CaptureConfig {
            device: "fake".into(),
            sample_rate_hz: 32_000,
            channels: 1,
            gain_db: 0.0,
            ring_samples: 4096,
        };
        let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(40));
        let mut capture = Capture::supervised(
            &cfg,
            backoff,
            || true,
            move |producer, shared| {
                let mut d = device.lock().unwrap();
                d.opens += 1;
                if matches!(d.opens, 2 | 3) {
                    return Err(CaptureError::NoDevice("fake".into()));
                }
                d.producer = Some(producer);
                d.shared = Some(shared);
                Ok(())
            },
        )
        .unwrap();
        let push = |values: &[f32]| {
            let mut d = fake.lock().unwrap();
            for &v in values {
                d.producer.as_mut().unwrap().try_push(v).unwrap();
            }
        };
        push(&[1.0, 2.0, 3.0]);
        let mut out = Vec::new();
        assert_eq!(capture.read(&mut out), 3);

        // Unplugged: the error callback fires; two reopening attempts fail, the third works.
        push(&[4.0]);
        let shared = fake.lock().unwrap().shared.clone().unwrap();
        shared.fail("device gone".into());
        let started = Instant::now();
        while fake.lock().unwrap().opens < 4 {
            assert!(started.elapsed() < Duration::from_secs(5), "never reopened");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Backoff, not a busy loop: 10 + 20 + 40 ms of waiting at least.
        assert!(started.elapsed() >= Duration::from_millis(70));
        push(&[5.0, 6.0]);
        std::thread::sleep(Duration::from_millis(20));
        capture.read(&mut out);
        assert_eq!(
            out,
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "nothing captured is lost"
        );
        assert_eq!(
            capture.device_failures(),
            3,
            "the failure and two failed reopenings"
        );
        assert_eq!(
            capture.last_error().as_deref(),
            Some("no input device `fake` (see `warble-agent devices`)")
        );
    }

    /// `start` reports a first open that fails (the stream thread does not retry it);
    /// `start_when_present` is what waits for the device.
    #[test]
    fn a_first_open_that_fails_is_returned_to_the_caller() {
        let cfg = CaptureConfig {
            device: "nowhere".into(),
            sample_rate_hz: 32_000,
            channels: 1,
            gain_db: 0.0,
            ring_samples: 4096,
        };
        let err = Capture::supervised(
            &cfg,
            device_backoff(),
            || true,
            |_, _| -> Result<(), CaptureError> { Err(CaptureError::NoDevice("nowhere".into())) },
        )
        .unwrap_err();
        assert!(err.to_string().contains("nowhere"), "{err}");
    }

    /// A driver whose open blocks (a busy device; in tests, a FIFO nobody writes) does
    /// not hold a stop request: the wait for it ends when `keep_waiting` says stop.
    #[test]
    fn a_stop_request_ends_the_wait_for_an_open_that_blocks() {
        let cfg = CaptureConfig {
            device: "stuck".into(),
            sample_rate_hz: 32_000,
            channels: 1,
            gain_db: 0.0,
            ring_samples: 4096,
        };
        let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = release.clone();
        let mut asked = 0;
        let started = Instant::now();
        let err = Capture::supervised(
            &cfg,
            device_backoff(),
            || {
                asked += 1;
                asked < 5
            },
            move |_, _| -> Result<(), CaptureError> {
                while !held.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(())
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("stopped while"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(asked, 5, "asked every 100 ms until it said stop");
        // The open that finally returns goes nowhere.
        release.store(true, Ordering::Relaxed);
    }
}
