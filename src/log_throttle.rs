//! At most one log line per interval for a condition that, once it holds, holds for every
//! request (a token backend that is down, a NATS server whose `max_payload` is too small):
//! the operator needs to hear of it, not once per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Says when a throttled line may be logged again; shared by every task that may log it.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    started: Instant,
    /// When a line was last allowed, in ms after `started` (0: never).
    last_ms: AtomicU64,
}

impl LogThrottle {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// True for the first caller, then for the first caller after each `interval`.
    pub fn ready(&self) -> bool {
        let now_ms = (self.started.elapsed().as_millis() as u64).max(1);
        let last_ms = self.last_ms.load(Ordering::Relaxed);
        (last_ms == 0 || now_ms.saturating_sub(last_ms) >= self.interval.as_millis() as u64)
            && self
                .last_ms
                .compare_exchange(last_ms, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval() {
        let throttle = LogThrottle::new(Duration::from_millis(50));
        assert!(throttle.ready());
        assert!(!throttle.ready());
        // Not a synchronisation: waiting out the interval is the behaviour under test.
        std::thread::sleep(Duration::from_millis(60));
        assert!(throttle.ready());
        assert!(!throttle.ready());
    }
}
