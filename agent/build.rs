//! Records when the agent was built: a recorder whose clock says earlier has not set its
//! clock yet (no battery-backed clock, time not yet synchronised), and the agent will not
//! stamp detections with such times. `SOURCE_DATE_EPOCH` (reproducible builds, Debian
//! packaging) takes precedence over the build machine's clock.

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    println!("cargo:rustc-env=WARBLE_BUILD_UNIX={epoch}");
}
