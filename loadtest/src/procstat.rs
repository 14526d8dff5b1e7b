//! CPU and memory figures for the server (`/proc/PID/stat`, `/proc/PID/status`)
//! and for the load generator itself (`getrusage`).

use anyhow::{anyhow, Context, Result};

use crate::clock;
use crate::report::Obj;

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub user_us: u64,
    pub sys_us: u64,
    pub rss_kb: u64,
    pub at_ns: u64,
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

fn vm_rss_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// (utime, stime) in clock ticks from the text of `/proc/PID/stat`.
fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    // The command name (field 2) may contain spaces; fields after the last
    // ')' start with field 3 (state). utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

pub fn sample_pid(pid: u32) -> Result<Sample> {
    let at_ns = clock::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (has process {pid} exited?)"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let (ut, st) = parse_stat(&stat).ok_or_else(|| anyhow!("unparsable /proc/{pid}/stat"))?;
    let tck = clk_tck();
    Ok(Sample {
        user_us: ut * 1_000_000 / tck,
        sys_us: st * 1_000_000 / tck,
        rss_kb: vm_rss_kb(&status).unwrap_or(0),
        at_ns,
    })
}

pub fn sample_self() -> Sample {
    let at_ns = clock::now();
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let rss_kb = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| vm_rss_kb(&s))
        .unwrap_or(0);
    Sample {
        user_us: tv(ru.ru_utime),
        sys_us: tv(ru.ru_stime),
        rss_kb,
        at_ns,
    }
}

/// Optional server sample: `None` without `--server-pid`.
pub fn sample_server(pid: Option<u32>) -> Result<Option<Sample>> {
    pid.map(sample_pid).transpose()
}

/// CPU used between two samples, per delivered message when `messages` > 0.
pub fn cpu_obj(before: &Sample, after: &Sample, messages: u64) -> Obj {
    let user = after.user_us.saturating_sub(before.user_us);
    let sys = after.sys_us.saturating_sub(before.sys_us);
    let wall_us = (after.at_ns.saturating_sub(before.at_ns)) as f64 / 1000.0;
    let mut o = Obj::new();
    o.put("window_s", wall_us / 1e6);
    o.put("cpu_user_ms", user as f64 / 1000.0);
    o.put("cpu_sys_ms", sys as f64 / 1000.0);
    o.put(
        "cpu_cores_used",
        if wall_us > 0.0 {
            (user + sys) as f64 / wall_us
        } else {
            0.0
        },
    );
    // Per message: null when nothing was delivered (the report keeps its shape).
    let per_msg = |us: u64| (messages > 0).then(|| us as f64 / messages as f64);
    o.put("user_us_per_msg", per_msg(user));
    o.put("sys_us_per_msg", per_msg(sys));
    o.put("total_us_per_msg", per_msg(user + sys));
    o.put("rss_before_kb", before.rss_kb);
    o.put("rss_after_kb", after.rss_kb);
    o
}

/// Open file descriptors of this process, counted with `fstat` on each
/// number in a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdCount {
    pub in_use: u64,
    pub sockets: u64,
}

/// Count the open descriptors among `fds`. This is the count we need right
/// after `EMFILE`, when every descriptor is taken: reading `/proc/self/fd`
/// would need one more descriptor and fail, while `fstat` needs none.
pub fn count_fds(fds: std::ops::Range<i32>) -> FdCount {
    let mut n = FdCount {
        in_use: 0,
        sockets: 0,
    };
    for fd in fds {
        // SAFETY: fstat only writes into the zeroed struct we pass; an fd
        // that is not open just returns EBADF.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } == 0 {
            n.in_use += 1;
            if st.st_mode & libc::S_IFMT == libc::S_IFSOCK {
                n.sockets += 1;
            }
        }
    }
    n
}

/// Upper bound of the scan in [`count_fds_below`]: past it the scan would
/// cost more than the error it explains is worth.
const FD_SCAN_MAX: u64 = 1 << 20;

/// Count this process's descriptors below `soft` (RLIMIT_NOFILE: the kernel
/// hands out no descriptor numbered at or above it). `sockets` leaves out
/// stdio (fds 0-2), which a supervisor may have made sockets: the sockets
/// counted are the ones this process opened.
pub fn count_fds_below(soft: u64) -> FdCount {
    let end = if soft == 0 {
        FD_SCAN_MAX
    } else {
        soft.min(FD_SCAN_MAX)
    };
    let stdio = count_fds(0..3);
    let ours = count_fds(3..i32::try_from(end).unwrap_or(i32::MAX));
    FdCount {
        in_use: stdio.in_use + ours.in_use,
        sockets: ours.sockets,
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard).
pub fn raise_nofile() -> (u64, u64) {
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return (0, 0);
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
        (rl.rlim_cur, rl.rlim_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (my (odd) prog) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0 20 0 4";
        assert_eq!(parse_stat(stat), Some((111, 222)));
        assert_eq!(vm_rss_kb("Name:\tx\nVmRSS:\t  5120 kB\n"), Some(5120));
    }

    #[test]
    fn counts_open_sockets_and_files() {
        // Only look at the numbers we just opened: other tests open and
        // close descriptors concurrently in this process.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let (s, f) = (listener.as_raw_fd(), file.as_raw_fd());
        assert_eq!(
            count_fds(s..s + 1),
            FdCount {
                in_use: 1,
                sockets: 1
            }
        );
        assert_eq!(
            count_fds(f..f + 1),
            FdCount {
                in_use: 1,
                sockets: 0
            }
        );
        // Far above anything this test process opens.
        assert_eq!(count_fds(1 << 29..(1 << 29) + 8).in_use, 0);
    }

    #[test]
    fn samples_self() {
        crate::clock::init();
        let me = std::process::id();
        let s = sample_pid(me).unwrap();
        assert!(s.rss_kb > 0);
        assert!(sample_self().rss_kb > 0);
    }
}
