//! Run-local monotonic clock and a precise (timerfd based) sleep.
//!
//! Every timestamp in the tool, including the `t` carried inside pushed
//! messages, is nanoseconds since [`init`] on `CLOCK_MONOTONIC`. Senders and
//! receivers live in the same process, so no clock synchronisation is needed.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

static EPOCH: AtomicU64 = AtomicU64::new(0);

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Fix the run-local epoch. Call once, before anything reads [`now`].
pub fn init() {
    // Start one second "before" so that `now()` is never 0 and never wraps.
    EPOCH.store(mono_ns().saturating_sub(1_000_000_000), Ordering::Relaxed);
}

/// Nanoseconds since the run-local epoch.
#[inline]
pub fn now() -> u64 {
    mono_ns() - EPOCH.load(Ordering::Relaxed)
}

pub fn secs(s: f64) -> u64 {
    (s * 1e9) as u64
}

/// A sleep with sub-millisecond precision (tokio's timer wheel has 1 ms
/// granularity, which would add up to 1 ms of fake latency to every
/// open-loop push). One timerfd per pusher.
pub struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
}

impl PreciseTimer {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the OwnedFd is owned by the AsyncFd, so the descriptor
        // stays open and unchanged for the AsyncFd's whole lifetime.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// Sleep until run-local time `t` (ns).
    pub async fn sleep_until(&self, t: u64) -> io::Result<()> {
        let abs = t + EPOCH.load(Ordering::Relaxed);
        if mono_ns() >= abs {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (abs / 1_000_000_000) as libc::time_t,
                tv_nsec: (abs % 1_000_000_000) as libc::c_long,
            },
        };
        let fd = self.fd.get_ref().as_raw_fd();
        // SAFETY: valid fd and a fully initialised itimerspec.
        let rc = unsafe {
            libc::timerfd_settime(fd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut())
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let res = guard.try_io(|inner| {
                let mut expirations = [0u8; 8];
                // SAFETY: reading 8 bytes into an 8-byte buffer.
                let n = unsafe {
                    libc::read(
                        inner.get_ref().as_raw_fd(),
                        expirations.as_mut_ptr().cast(),
                        8,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match res {
                Ok(r) => {
                    r?;
                    if mono_ns() >= abs {
                        return Ok(());
                    }
                }
                Err(_would_block) => continue,
            }
        }
    }
}
