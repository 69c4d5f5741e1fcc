//! The `process_*` metrics Prometheus client libraries export (CPU seconds, resident memory,
//! open and maximum file descriptors, start time), read from `/proc/self` when `/metrics` is
//! scraped; and `portcullis_build_info`. On a system without `/proc` the process series are
//! left out rather than exported as zeros.

use std::fmt::Write;
use std::sync::OnceLock;

/// The kernel's clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`: 100 on every Linux
/// architecture's ABI).
const USER_HZ: f64 = 100.0;

/// Writes the process and build series into `out`.
pub fn render(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP portcullis_build_info The running build: version and commit.\n\
         # TYPE portcullis_build_info gauge\n\
         portcullis_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        env!("PORTCULLIS_COMMIT"),
    );
    let Some(p) = read() else { return };
    let series: [(&str, &str, &str, f64); 5] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        ),
        ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", p.resident_bytes),
        ("process_open_fds", "gauge", "Number of open file descriptors.", p.open_fds),
        ("process_max_fds", "gauge", "Maximum number of open file descriptors.", p.max_fds),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        ),
    ];
    for (name, kind, help, v) in series {
        if v.is_finite() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
    }
}

/// What `/proc` says of this process; a field it could not read is NaN.
struct Process {
    cpu_seconds: f64,
    resident_bytes: f64,
    open_fds: f64,
    max_fds: f64,
    start_time_seconds: f64,
}

fn read() -> Option<Process> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime, stime are fields 14 and 15, starttime 22, rss 24 (1-based, counting pid and
    // comm): after the name, indexes 11, 12, 19 and 21.
    let num = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    let cpu_seconds = (num(11) + num(12)) / USER_HZ;
    let resident_bytes = num(21) * page_size();
    let start_time_seconds = boot_time().map_or(f64::NAN, |b| b + num(19) / USER_HZ);
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(f64::NAN, |d| d.count() as f64);
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN);
    Some(Process { cpu_seconds, resident_bytes, open_fds, max_fds, start_time_seconds })
}

/// The memory page size: `/proc/self/smaps`' `KernelPageSize` would need a walk of every
/// mapping; the `AT_PAGESZ` the kernel gave the process is in `/proc/self/auxv`.
fn page_size() -> f64 {
    static PAGE: OnceLock<f64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        const AT_PAGESZ: u64 = 6;
        let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
        auxv.chunks_exact(16)
            .find_map(|pair| {
                let key = u64::from_ne_bytes(pair[..8].try_into().ok()?);
                let value = u64::from_ne_bytes(pair[8..].try_into().ok()?);
                (key == AT_PAGESZ).then_some(value as f64)
            })
            .unwrap_or(4096.0)
    })
}

/// When the system booted, unix seconds (`btime` in `/proc/stat`).
fn boot_time() -> Option<f64> {
    static BOOT: OnceLock<Option<f64>> = OnceLock::new();
    *BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_series_are_read_from_proc() {
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("portcullis_build_info{version=\""), "{out}");
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in {out}"))
        };
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0, "{start} vs {now}");
        assert!(value("process_cpu_seconds_total") >= 0.0);
    }
}
