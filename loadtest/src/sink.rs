//! What the WebSocket read loops do with each received text message.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::net::parse_u64;

/// Latency histogram in nanoseconds, 1 ns .. 100 s, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

#[inline]
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.max(1));
}

/// State shared by every client connection of a run.
pub struct Shared {
    /// Per connection: highest warm-up round received (`{"w":R}` messages).
    pub warm: Vec<AtomicU32>,
    /// Connections whose read loop has ended (closed by peer or error).
    pub closed: AtomicU64,
    pub sink: Sink,
}

pub enum Sink {
    Load(LoadSink),
    Fanout(FanoutSink),
    Idle(IdleSink),
}

impl Shared {
    pub fn new(n_conns: usize, sink: Sink) -> Self {
        Shared {
            warm: (0..n_conns).map(|_| AtomicU32::new(0)).collect(),
            closed: AtomicU64::new(0),
            sink,
        }
    }

    /// Handle one complete text/binary message received at `now`.
    #[inline]
    pub fn on_message(&self, conn: usize, payload: &[u8], now: u64) {
        if let Some(rest) = payload.strip_prefix(b"{\"w\":") {
            if let Some((round, _)) = parse_u64(rest) {
                self.warm[conn].fetch_max(round.min(u32::MAX as u64) as u32, Relaxed);
                return;
            }
        }
        match &self.sink {
            Sink::Load(s) => s.on_message(conn, payload, now),
            Sink::Fanout(s) => s.on_message(payload, now),
            Sink::Idle(s) => {
                s.other.fetch_add(1, Relaxed);
            }
        }
    }

    pub fn load(&self) -> &LoadSink {
        match &self.sink {
            Sink::Load(s) => s,
            _ => unreachable!("not a load run"),
        }
    }

    pub fn fanout(&self) -> &FanoutSink {
        match &self.sink {
            Sink::Fanout(s) => s,
            _ => unreachable!("not a fanout run"),
        }
    }

    pub fn idle(&self) -> &IdleSink {
        match &self.sink {
            Sink::Idle(s) => s,
            _ => unreachable!("not an idle run"),
        }
    }
}

/// Parse the data message header `{"s":SEQ,"t":NS...`.
#[inline]
pub fn parse_data(p: &[u8]) -> Option<(u64, u64)> {
    let rest = p.strip_prefix(b"{\"s\":")?;
    let (seq, rest) = parse_u64(rest)?;
    let rest = rest.strip_prefix(b",\"t\":")?;
    let (t, _) = parse_u64(rest)?;
    Some((seq, t))
}

pub struct LoadShard {
    /// End-to-end latency of deliveries whose push was (scheduled to be)
    /// sent inside the measured window.
    pub hist: Histogram<u64>,
    /// Data messages whose push was sent outside the window (warm-up).
    pub outside: u64,
    /// Messages that were not recognised.
    pub unknown: u64,
}

pub struct LoadSink {
    shards: Vec<Mutex<LoadShard>>,
    win_start: AtomicU64,
    win_end: AtomicU64,
}

impl LoadSink {
    pub fn new(shards: usize) -> Self {
        LoadSink {
            shards: (0..shards.max(1))
                .map(|_| {
                    Mutex::new(LoadShard {
                        hist: new_hist(),
                        outside: 0,
                        unknown: 0,
                    })
                })
                .collect(),
            win_start: AtomicU64::new(u64::MAX),
            win_end: AtomicU64::new(u64::MAX),
        }
    }

    pub fn set_window(&self, start: u64, end: u64) {
        self.win_end.store(end, Relaxed);
        self.win_start.store(start, Relaxed);
    }

    #[inline]
    fn on_message(&self, conn: usize, payload: &[u8], now: u64) {
        let mut shard = self.shards[conn % self.shards.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match parse_data(payload) {
            Some((_, t)) => {
                if t >= self.win_start.load(Relaxed) && t < self.win_end.load(Relaxed) {
                    record(&mut shard.hist, now.saturating_sub(t));
                } else {
                    shard.outside += 1;
                }
            }
            None => shard.unknown += 1,
        }
    }

    /// Deliveries counted so far for the measured window.
    pub fn received(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).hist.len())
            .sum()
    }

    /// Merged histogram, outside-window count, unknown count.
    pub fn merged(&self) -> (Histogram<u64>, u64, u64) {
        let mut h = new_hist();
        let (mut outside, mut unknown) = (0, 0);
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            h.add(&s.hist).expect("same bounds");
            outside += s.outside;
            unknown += s.unknown;
        }
        (h, outside, unknown)
    }
}

pub struct FanoutSink {
    pub first: Vec<AtomicU64>,
    pub last: Vec<AtomicU64>,
    pub count: Vec<AtomicU64>,
    pub stray: AtomicU64,
}

impl FanoutSink {
    pub fn new(pushes: usize) -> Self {
        FanoutSink {
            first: (0..pushes).map(|_| AtomicU64::new(u64::MAX)).collect(),
            last: (0..pushes).map(|_| AtomicU64::new(0)).collect(),
            count: (0..pushes).map(|_| AtomicU64::new(0)).collect(),
            stray: AtomicU64::new(0),
        }
    }

    #[inline]
    fn on_message(&self, payload: &[u8], now: u64) {
        match parse_data(payload) {
            Some((seq, _)) if (seq as usize) < self.count.len() => {
                let k = seq as usize;
                self.first[k].fetch_min(now, Relaxed);
                self.last[k].fetch_max(now, Relaxed);
                self.count[k].fetch_add(1, Relaxed);
            }
            _ => {
                self.stray.fetch_add(1, Relaxed);
            }
        }
    }

    pub fn received(&self) -> u64 {
        self.count.iter().map(|c| c.load(Relaxed)).sum()
    }
}

#[derive(Default)]
pub struct IdleSink {
    /// Non-warm-up messages received while idling.
    pub other: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_data_messages() {
        assert_eq!(
            parse_data(b"{\"s\":12,\"t\":345,\"p\":\"xx\"}"),
            Some((12, 345))
        );
        assert_eq!(parse_data(b"{\"s\":12}"), None);
        assert_eq!(parse_data(b"hello"), None);
    }

    #[test]
    fn load_sink_counts_only_window() {
        let shared = Shared::new(2, Sink::Load(LoadSink::new(2)));
        shared.load().set_window(100, 200);
        shared.on_message(0, b"{\"s\":1,\"t\":150}", 170);
        shared.on_message(1, b"{\"s\":2,\"t\":50}", 170);
        shared.on_message(1, b"{\"w\":3}", 170);
        shared.on_message(1, b"junk", 170);
        let (h, outside, unknown) = shared.load().merged();
        assert_eq!((h.len(), outside, unknown), (1, 1, 1));
        assert_eq!(shared.warm[1].load(Relaxed), 3);
        assert_eq!(shared.warm[0].load(Relaxed), 0);
    }
}
