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
    parse_stat(&stat).map(|(_, seconds)| seconds)
}

/// CPU time (user + system) of each of this process's threads, by thread id: its name
/// and seconds. Lets a run tell its own processing apart from, say, the audio driver's
/// thread.
pub fn thread_cpu_seconds() -> std::collections::BTreeMap<u32, (String, f64)> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        if let Some(parsed) = parse_stat(&stat) {
            out.insert(tid, parsed);
        }
    }
    out
}

/// The name and user + system seconds of a `/proc/…/stat` line.
fn parse_stat(stat: &str) -> Option<(String, f64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / 100.0))
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
    fn stat_lines_with_odd_thread_names_parse() {
        let line = "4242 (cpal (alsa) in) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 1 0";
        assert_eq!(
            super::parse_stat(line),
            Some(("cpal (alsa) in".to_owned(), 3.25))
        );
        assert_eq!(super::parse_stat("garbage"), None);
    }

    #[test]
    fn each_thread_is_listed_by_name() {
        let handle = std::thread::Builder::new()
            .name("warble-probe".into())
            .spawn(|| {
                let names: Vec<String> = super::thread_cpu_seconds()
                    .into_values()
                    .map(|(n, _)| n)
                    .collect();
                names
            })
            .unwrap();
        let names = handle.join().unwrap();
        assert!(names.iter().any(|n| n == "warble-probe"), "{names:?}");
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
