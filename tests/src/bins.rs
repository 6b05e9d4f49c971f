//! The workspace's binaries for tests of another crate: the agent's end-to-end tests run
//! the collector's binary (Cargo hands a test only its own package's binaries). They are
//! found beside the test executable, and refused when missing or older than their sources
//! (an old binary would test old code): `cargo test --workspace` builds them all.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> Option<SystemTime> {
    let mut latest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest(&path)
        } else {
            entry.metadata().ok().and_then(|m| m.modified().ok())
        };
        latest = latest.max(t);
    }
    latest
}

/// The path of the workspace binary `name` (e.g. `warble-collect`), built from the crate
/// folders `sources` (relative to the workspace root; e.g. `["collector", "mqtt",
/// "core", "firmware-config"]`).
///
/// # Panics
/// When it is not built, or older than a file of `sources`: with the command that builds
/// it. A test must not run an old binary, nor pass for lack of one.
pub fn workspace_bin(name: &str, sources: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let path = dir.join(name);
    let build = format!("cargo build -p {name} (or run the whole suite: cargo test --workspace)");
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is not built: {build}", path.display()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for src in sources {
        if let Some(t) = newest(&root.join(src))
            && t > built
        {
            panic!(
                "{} is older than the sources in {src}/: {build}",
                path.display()
            );
        }
    }
    path
}
