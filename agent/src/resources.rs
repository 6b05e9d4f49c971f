//! What the process costs: peak resident memory, CPU time and free disk, read from the
//! kernel.

/// Peak resident set size of this process in bytes (`VmHWM`), if the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (user + system) this process has used, in seconds, from `/proc/self/stat`
/// (clock ticks of 1/100 s, the value of `CLK_TCK` on Linux).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Bytes available to this (unprivileged) process on the filesystem holding `path`.
pub fn disk_free_bytes(path: &std::path::Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_rss_is_reported_on_linux() {
        let rss = super::peak_rss_bytes().expect("Linux reports VmHWM");
        assert!(rss > 1 << 20, "{rss} bytes");
    }

    #[test]
    fn free_disk_space_is_reported_and_plausible() {
        let dir = std::env::temp_dir();
        let free = super::disk_free_bytes(&dir).expect("statvfs works on the temp dir");
        assert!(free > 0);
        assert!(super::disk_free_bytes(std::path::Path::new("/no/such/dir")).is_none());
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let before = super::cpu_seconds().expect("Linux reports CPU time");
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed().as_millis() < 80 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = super::cpu_seconds().unwrap();
        assert!(after - before >= 0.03, "{before} → {after}");
    }
}
