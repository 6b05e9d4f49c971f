//! Finding ONNX Runtime's shared library before `ort` touches it (a missing library is a
//! panic inside `ort` if it is left to look on its own).

use std::path::{Path, PathBuf};

use crate::InferError;

/// Environment variable naming the library (the same one `ort` reads).
pub const ORT_PATH_ENV: &str = "ORT_DYLIB_PATH";

/// The file `scripts/install-deps` writes with the installed library's path.
fn installed_marker() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("warble").join("ort-dylib-path"))
}

/// Where ONNX Runtime is, in this order: the configured path, `$ORT_DYLIB_PATH`, the path
/// recorded by `scripts/install-deps`, then the system library directories.
///
/// # Errors
/// [`InferError::OrtNotFound`] listing every place searched.
pub fn locate_onnxruntime(configured: Option<&Path>) -> Result<PathBuf, InferError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = configured {
        candidates.push(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(ORT_PATH_ENV).filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(p));
    }
    if let Some(text) = installed_marker().and_then(|m| std::fs::read_to_string(m).ok()) {
        candidates.push(PathBuf::from(text.trim()));
    }
    for dir in [
        "/usr/local/lib",
        "/usr/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
    ] {
        candidates.push(Path::new(dir).join("libonnxruntime.so"));
    }
    // An explicitly configured path that is missing is an error, not a reason to look
    // elsewhere: the operator asked for that library.
    if let Some(p) = configured.filter(|p| !p.is_file()) {
        return Err(InferError::OrtNotFound {
            searched: p.display().to_string(),
        });
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| InferError::OrtNotFound {
            searched: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}
