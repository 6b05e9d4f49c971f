//! The `[log]` section applied: every message a Warble program says goes through
//! `tracing` to standard error (journald under systemd), filtered at `log.level` and
//! written as text or, with `log.format = "json"`, one JSON object per line. `RUST_LOG`,
//! when set, wins over the level (a technician debugging one module).

use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Text as a command-line tool speaks: information as it is, the rest after its level
/// (`warning: …`, `error: …`, `debug: …`).
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        match *event.metadata().level() {
            Level::INFO => {}
            Level::WARN => write!(writer, "warning: ")?,
            Level::ERROR => write!(writer, "error: ")?,
            Level::DEBUG => write!(writer, "debug: ")?,
            Level::TRACE => write!(writer, "trace: ")?,
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// How to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `error`, `warn`, `info`, `debug` or `trace` (checked by the station file).
    pub level: String,
    /// One JSON object per line instead of text.
    pub json: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            json: false,
        }
    }
}

impl LogSettings {
    /// The `[log]` section of a station file.
    pub fn of(st: &crate::StationConfig) -> Self {
        Self {
            level: st.log_level.clone(),
            json: st.log_json,
        }
    }

    /// Installs the process's logger; later calls do nothing (the first wins).
    pub fn install(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&self.level));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let _ = if self.json {
            // Timestamps for machines; the level and message as fields.
            builder.json().with_current_span(false).try_init()
        } else {
            // For people and journald (which stamps the time itself).
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .event_format(Plain)
                .try_init()
        };
    }

    /// Whether a logger is installed (errors are then said through it).
    pub fn installed() -> bool {
        tracing::dispatcher::has_been_set()
    }
}
