//! Helpers shared by the agent's integration tests.
#![allow(dead_code, reason = "each test binary uses some of the helpers")]

use std::path::PathBuf;
use std::process::Command;

/// A file of the repository, from its root.
pub fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// Runs `warble-agent` with `args`: exit code, stdout, stderr.
pub fn agent(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .args(args)
        .output()
        .expect("warble-agent runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
