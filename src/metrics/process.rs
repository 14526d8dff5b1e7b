//! Process figures operators watch first: resident memory, open and maximum file
//! descriptors, CPU time split into user and system. Read from `/proc/self` when scraped
//! (nothing to keep up to date in between) and rendered in the same exposition.

#![allow(unsafe_code)]

use std::fmt::Write;

/// A snapshot of the process, from `/proc/self`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub user_seconds: f64,
    pub system_seconds: f64,
}

impl ProcessStats {
    /// Reads the current figures; a figure that cannot be read is reported as 0.
    pub fn read() -> Self {
        let mut stats = Self::default();
        // SAFETY: sysconf has no preconditions; it only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name, which is in parentheses and may hold spaces.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
                let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
                stats.user_seconds = field(11).unwrap_or(0.0) / ticks;
                stats.system_seconds = field(12).unwrap_or(0.0) / ticks;
                // rss (in pages) is field 24 of the whole line: 21 here.
                stats.resident_bytes = field(21).map_or(0, |pages| pages as u64 * page);
            }
        }
        stats.open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|dir| dir.count() as u64)
            .unwrap_or(0);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the rlimit we own and pass by valid pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            stats.max_fds = limit.rlim_cur;
        }
        stats
    }

    /// Appends the figures in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric(
            "pushgate_process_resident_memory_bytes",
            "gauge",
            "Resident set size of the gateway process.",
            &[("", self.resident_bytes as f64)],
        );
        metric(
            "pushgate_process_open_fds",
            "gauge",
            "Open file descriptors (sockets included).",
            &[("", self.open_fds as f64)],
        );
        metric(
            "pushgate_process_max_fds",
            "gauge",
            "Soft limit on open file descriptors.",
            &[("", self.max_fds as f64)],
        );
        metric(
            "pushgate_process_cpu_seconds_total",
            "counter",
            "CPU time consumed by the process, by mode.",
            &[
                ("{mode=\"user\"}", self.user_seconds),
                ("{mode=\"system\"}", self.system_seconds),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plausible_figures() {
        let stats = ProcessStats::read();
        assert!(stats.resident_bytes > 1 << 20, "{stats:?}");
        assert!(stats.open_fds >= 3, "{stats:?}");
        assert!(stats.max_fds >= stats.open_fds, "{stats:?}");
        let mut out = String::new();
        stats.render(&mut out);
        assert!(out.contains("# TYPE pushgate_process_cpu_seconds_total counter"));
        assert!(out.contains("pushgate_process_cpu_seconds_total{mode=\"system\"} "));
    }
}
