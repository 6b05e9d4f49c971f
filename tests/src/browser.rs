//! A real browser for the tests of web pages: Debian's `chromium`, headless, run once per
//! page (its DOM after the page's scripts ran, or a screenshot).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::broker::{HarnessError, io_err};

/// The browser's command (Debian's package `chromium`, installed by `scripts/install-deps`).
pub const CHROMIUM: &str = "chromium";

/// How long one page may take, its scripts and fetches included.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs headless Chromium on `url` with `extra` arguments and returns its stdout.
fn chromium(url: &str, extra: &[String]) -> Result<String, HarnessError> {
    let failed = |reason: String| HarnessError::Browser {
        url: url.to_owned(),
        reason,
    };
    let profile = tempfile::tempdir().map_err(io_err("a browser profile"))?;
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            // The tests run as root on CI machines, where the sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(HarnessError::BrowserNotInstalled)?;
    // Read while it runs: a page larger than a pipe's buffer would block it otherwise.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + PAGE_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io_err("waiting for chromium"))? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            // (A page that opens a dialog, an alert say, waits for a click forever.)
            return Err(failed(format!(
                "no result after {PAGE_TIMEOUT:?} (a dialog open?)"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let joined = |h: std::thread::JoinHandle<String>| h.join().unwrap_or_default();
    let (out, err) = (joined(stdout), joined(stderr));
    if !status.success() {
        return Err(failed(format!("{status}\n{err}")));
    }
    Ok(out)
}

/// The DOM of `url` as its scripts left it after `settle` of the page's (virtual) time —
/// the browser waits for the fetches the scripts make.
///
/// # Errors
/// Chromium is missing, failed or took longer than a minute.
pub fn dom(url: &str, settle: Duration) -> Result<String, HarnessError> {
    chromium(
        url,
        &[
            "--dump-dom".into(),
            format!("--virtual-time-budget={}", settle.as_millis()),
        ],
    )
}

/// A PNG screenshot of `url` at `width`×`height` after `settle`, written to `out`.
///
/// # Errors
/// Chromium is missing, failed, took longer than a minute or wrote no PNG.
pub fn screenshot(
    url: &str,
    out: &Path,
    (width, height): (u32, u32),
    settle: Duration,
) -> Result<(), HarnessError> {
    chromium(
        url,
        &[
            format!("--screenshot={}", out.display()),
            format!("--window-size={width},{height}"),
            format!("--virtual-time-budget={}", settle.as_millis()),
        ],
    )?;
    let png = std::fs::read(out).map_err(io_err(format!("reading {}", out.display())))?;
    if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(HarnessError::Browser {
            url: url.to_owned(),
            reason: format!("no PNG in {}", out.display()),
        });
    }
    Ok(())
}
