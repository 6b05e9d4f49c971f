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

/// Where Warble's package installs the ONNX Runtime library of the pinned wheel: found
/// without any environment variable, as a service under systemd needs.
pub const PACKAGED: &str = "/usr/lib/warble/libonnxruntime.so";

/// The places searched, in order: the configured path, `$ORT_DYLIB_PATH` (a deliberate
/// override beats what is installed), the packaged library, the path recorded by
/// `scripts/install-deps`, then the system library directories.
fn candidates(
    configured: Option<&Path>,
    env: Option<PathBuf>,
    recorded: Option<PathBuf>,
) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    candidates.extend(configured.map(Path::to_path_buf));
    candidates.extend(env);
    candidates.push(PathBuf::from(PACKAGED));
    candidates.extend(recorded);
    for dir in [
        "/usr/local/lib",
        "/usr/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
    ] {
        candidates.push(Path::new(dir).join("libonnxruntime.so"));
    }
    candidates
}

/// Where ONNX Runtime is: the first of [`candidates`] that is a file.
///
/// # Errors
/// [`InferError::OrtNotFound`] listing every place searched.
pub fn locate_onnxruntime(configured: Option<&Path>) -> Result<PathBuf, InferError> {
    let env = std::env::var_os(ORT_PATH_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let recorded = installed_marker()
        .and_then(|m| std::fs::read_to_string(m).ok())
        .map(|text| PathBuf::from(text.trim()));
    let candidates = candidates(configured, env, recorded);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_library_comes_first_then_the_environment_then_the_package() {
        let found = candidates(
            Some(Path::new("/etc/warble/ort.so")),
            Some(PathBuf::from("/opt/ort.so")),
            Some(PathBuf::from("/home/me/.cache/ort.so")),
        );
        assert_eq!(
            found[..4],
            [
                PathBuf::from("/etc/warble/ort.so"),
                PathBuf::from("/opt/ort.so"),
                PathBuf::from(PACKAGED),
                PathBuf::from("/home/me/.cache/ort.so"),
            ]
        );
        // Under systemd: no configuration, no environment, no home cache.
        assert_eq!(candidates(None, None, None)[0], PathBuf::from(PACKAGED));
    }
}
