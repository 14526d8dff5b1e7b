//! Opening, registering and confirming the client connections, plus the
//! pusher pool used for confirmation.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::clock;
use crate::net::{is_fd_exhaustion, tcp_connect};
use crate::procstat;
use crate::push::{write_body, write_warm_message, PushTarget, Pusher, Reply};
use crate::sink::{Shared, Sink};
use crate::ws;

/// Resolved settings shared by all modes.
/// Where clients connect; several targets (`--ws-url a,b`) are used round-robin.
#[derive(Debug, Clone)]
pub struct WsTarget {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
}

pub struct Ctx {
    /// Client i connects to `ws_targets[i % len]`.
    pub ws_targets: Vec<WsTarget>,
    pub push: Arc<PushTarget>,
    pub source_ips: Vec<IpAddr>,
    /// The event, as given and as a JSON string.
    pub event: String,
    pub event_json: String,
    /// `--push-key` was given: a 401 then means a wrong key rather than a missing one.
    pub push_key_given: bool,
    pub connect_concurrency: usize,
    pub connect_timeout: Duration,
    pub confirm_timeout: Duration,
    pub server_pid: Option<u32>,
    /// Sampled like the server over the measured window of `load` (`--other-pids`).
    pub other_pids: Vec<u32>,
    pub nofile: (u64, u64),
    pub threads: usize,
    /// The generator's thread never sleeps (`--busy-poll`).
    pub busy_poll: bool,
}

impl Ctx {
    pub fn pushers(&self, n: usize) -> Vec<Pusher> {
        (0..n.max(1))
            .map(|i| Pusher::new(self.push.clone(), i))
            .collect()
    }
}

/// Progress messages go to stderr so that `--json` stdout stays clean.
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[{:>8.3}s] {}", $crate::clock::now() as f64 / 1e9 - 1.0, format!($($arg)*))
    };
}

pub struct Fleet {
    pub shared: Arc<Shared>,
    pub n_conns: usize,
    /// JSON string literals of the user ids; connection i belongs to user
    /// `i % users.len()`.
    pub users: Arc<Vec<String>>,
    pub connect_s: f64,
    /// Last warm-up round used, so that a later [`confirm`] starts fresh.
    pub round: std::sync::atomic::AtomicU32,
}

impl Fleet {
    pub fn conns_of(&self, user: usize) -> usize {
        let u = self.users.len();
        self.n_conns / u + usize::from(user < self.n_conns % u)
    }

    fn user_confirmed(&self, user: usize, round: u32) -> bool {
        (user..self.n_conns)
            .step_by(self.users.len())
            .all(|c| self.shared.warm[c].load(Relaxed) >= round)
    }

    pub fn closed(&self) -> u64 {
        self.shared.closed.load(Relaxed)
    }
}

/// Descriptors kept free for everything that is not a client connection
/// (runtime, stdio, pushers, timerfds): `connections + FD_RESERVE` must fit
/// under RLIMIT_NOFILE.
const FD_RESERVE: u64 = 64;

/// Connections that fit under a descriptor limit, leaving [`FD_RESERVE`].
fn max_connections(limit: u64) -> u64 {
    limit.saturating_sub(FD_RESERVE)
}

/// What was known when a connection attempt failed for lack of descriptors.
#[derive(Debug, Clone, Copy)]
struct FdExhaustion {
    /// ENFILE (the system-wide file table is full) rather than EMFILE.
    system_wide: bool,
    requested: usize,
    /// Client connections whose handshake completed and that are still open.
    established: u64,
    /// Descriptors open when the error was reported (see
    /// [`procstat::count_fds_below`]); `sockets` excludes stdio.
    fds: procstat::FdCount,
    soft: u64,
    hard: u64,
}

/// The EMFILE/ENFILE error text. A pure function of the numbers so that the
/// advice, which depends on them, can be tested: it must name the limits
/// this process really has, not those of the machines the tool was written
/// on. No pusher is connected while the fleet connects, so every socket
/// besides stdio is a client connection, established or still connecting.
fn fd_exhaustion_message(f: &FdExhaustion) -> String {
    let (what, errno) = if f.system_wide {
        ("too many open files in the system", "ENFILE")
    } else {
        ("too many open files", "EMFILE")
    };
    let connecting = f.fds.sockets.saturating_sub(f.established);
    let mut m = format!(
        "{what} ({errno}) while opening {} WebSocket connections: when the error was \
         reported {} file descriptors were open, {} of them client sockets ({} connections \
         established, {connecting} still connecting); RLIMIT_NOFILE soft {} / hard {}. ",
        f.requested, f.fds.in_use, f.fds.sockets, f.established, f.soft, f.hard
    );
    if f.system_wide {
        m.push_str(
            "The system-wide open-file table is full (see /proc/sys/fs/file-nr and \
             fs.file-max), not this process's limit: close descriptors elsewhere on the \
             machine or open fewer connections",
        );
    } else if f.soft == 0 && f.hard == 0 {
        m.push_str("RLIMIT_NOFILE could not be read: check `ulimit -n` and `ulimit -Hn`");
    } else if f.soft < f.hard {
        m.push_str(&format!(
            "The soft limit is below the hard limit and the tool could not raise it: raise \
             it with `ulimit -n {}` before starting; then ~{} connections fit in one process",
            f.hard,
            max_connections(f.hard)
        ));
    } else {
        m.push_str(&format!(
            "This process is at its hard limit, which only a privileged user can raise (if \
             the system allows it): use at most ~{} connections per process, or spread them \
             over several pushgate-loadtest processes, each with its own --user-prefix \
             (see loadtest/README.md)",
            max_connections(f.hard)
        ));
    }
    m
}

fn fd_error(e: &io::Error, requested: usize, established: u64, ctx: &Ctx) -> anyhow::Error {
    anyhow!(fd_exhaustion_message(&FdExhaustion {
        system_wide: e.raw_os_error() == Some(libc::ENFILE),
        requested,
        established,
        fds: procstat::count_fds_below(ctx.nofile.0),
        soft: ctx.nofile.0,
        hard: ctx.nofile.1,
    }))
}

/// Open `n_conns` WebSocket connections, connection i registering as user
/// `user_names[i % len]`. Returns once all are open and registration frames
/// are sent (not yet confirmed: see [`confirm`]).
pub async fn connect_fleet(
    ctx: &Ctx,
    n_conns: usize,
    user_names: &[String],
    sink: Sink,
) -> Result<Fleet> {
    if n_conns == 0 || user_names.is_empty() {
        bail!("need at least one connection and one user");
    }
    let budget = n_conns as u64 + FD_RESERVE;
    if budget > ctx.nofile.0 {
        progress!(
            "warning: {n_conns} connections need about {budget} file descriptors but \
             RLIMIT_NOFILE is soft {} / hard {} (~{} connections fit): expect EMFILE",
            ctx.nofile.0,
            ctx.nofile.1,
            max_connections(ctx.nofile.0)
        );
    }
    let started = clock::now();
    let shared = Arc::new(Shared::new(n_conns, sink));
    let users: Arc<Vec<String>> = Arc::new(
        user_names
            .iter()
            .map(|u| serde_json::to_string(u).expect("string serialises"))
            .collect(),
    );
    // Handshakes completed, counted by the connection tasks themselves: the
    // results below arrive later, so an EMFILE error can overtake them.
    let established = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(Semaphore::new(ctx.connect_concurrency.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Result<()>)>();
    let targets: Vec<Arc<WsTarget>> = ctx.ws_targets.iter().cloned().map(Arc::new).collect();
    let event_json = Arc::new(ctx.event_json.clone());
    for i in 0..n_conns {
        let (sem, tx, shared, users) = (sem.clone(), tx.clone(), shared.clone(), users.clone());
        let (target, event_json) = (targets[i % targets.len()].clone(), event_json.clone());
        let established = established.clone();
        let src = if ctx.source_ips.is_empty() {
            None
        } else {
            Some(ctx.source_ips[i % ctx.source_ips.len()])
        };
        let timeout = ctx.connect_timeout;
        tokio::spawn(async move {
            let Ok(permit) = sem.acquire_owned().await else {
                return;
            };
            let registration = format!(
                "{{\"token\":{},\"event\":{}}}",
                users[i % users.len()],
                event_json
            );
            let seed = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ clock::now();
            let opened = tokio::time::timeout(timeout, async {
                let stream = tcp_connect(target.addr, src).await?;
                ws::open(
                    stream,
                    &target.host,
                    &target.path,
                    registration.as_bytes(),
                    seed | 1,
                )
                .await
            })
            .await
            .unwrap_or_else(|_| Err(anyhow!("timed out after {timeout:?}")));
            drop(permit);
            match opened {
                Ok(conn) => {
                    established.fetch_add(1, Relaxed);
                    let _ = tx.send((i, Ok(())));
                    drop(tx);
                    ws::read_loop(conn, i, shared.clone()).await;
                    shared.closed.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    let _ = tx.send((i, Err(e)));
                }
            }
        });
    }
    drop(tx);

    let mut ok = 0usize;
    let mut last_report = clock::now();
    while ok < n_conns {
        let Some((i, res)) = rx.recv().await else {
            bail!("connection tasks ended early ({ok} of {n_conns} connected)");
        };
        match res {
            Ok(()) => ok += 1,
            Err(e) => {
                if let Some(io_err) = e
                    .downcast_ref::<io::Error>()
                    .filter(|e| is_fd_exhaustion(e))
                {
                    // Still open: established minus those the server already closed.
                    let open = established
                        .load(Relaxed)
                        .saturating_sub(shared.closed.load(Relaxed));
                    return Err(fd_error(io_err, n_conns, open, ctx));
                }
                let hint = if e
                    .downcast_ref::<io::Error>()
                    .is_some_and(|e| e.raw_os_error() == Some(libc::EADDRNOTAVAIL))
                {
                    if ctx.source_ips.is_empty() {
                        " (out of ephemeral ports? add source addresses with --source-ips)"
                    } else {
                        " (is every --source-ips address one of this machine's? or out of \
                         ephemeral ports: add more source addresses)"
                    }
                } else {
                    ""
                };
                bail!(
                    "WebSocket connection #{i} to {} failed: {e:#}{hint} ({ok} of {n_conns} \
                     connections were open)",
                    ctx.ws_targets[i % ctx.ws_targets.len()].addr
                );
            }
        }
        if clock::now() - last_report > 2_000_000_000 {
            last_report = clock::now();
            progress!("connected {ok}/{n_conns}");
        }
    }
    let connect_s = (clock::now() - started) as f64 / 1e9;
    progress!("{n_conns} connections open in {connect_s:.2}s");
    Ok(Fleet {
        shared,
        n_conns,
        users,
        connect_s,
        round: Default::default(),
    })
}

/// Run one push per job over the pusher pool (one task per pusher, each
/// sending its share of the jobs sequentially). `fill(job, body)` writes the
/// request body. No push waits for its reply past `deadline` (a clock time).
pub async fn push_many<F>(
    pushers: &mut Vec<Pusher>,
    jobs: Vec<usize>,
    deadline: u64,
    fill: F,
) -> Vec<(usize, io::Result<Reply>)>
where
    F: Fn(usize, &mut Vec<u8>) + Send + Sync + 'static,
{
    let n = pushers.len().min(jobs.len());
    if n == 0 {
        return Vec::new();
    }
    let mut chunks: Vec<Vec<usize>> = vec![Vec::new(); n];
    let total = jobs.len();
    for (k, j) in jobs.into_iter().enumerate() {
        chunks[k % n].push(j);
    }
    let fill = Arc::new(fill);
    let mut set = JoinSet::new();
    for chunk in chunks {
        let mut p = pushers.pop().expect("enough pushers");
        let fill = fill.clone();
        set.spawn(async move {
            let mut out = Vec::with_capacity(chunk.len());
            for job in chunk {
                fill(job, &mut p.body);
                let left = Duration::from_nanos(deadline.saturating_sub(clock::now()));
                let r = p.send_within(left).await;
                out.push((job, r));
            }
            (p, out)
        });
    }
    let mut results = Vec::with_capacity(total);
    while let Some(joined) = set.join_next().await {
        let (p, out) = joined.expect("push task panicked");
        pushers.push(p);
        results.extend(out);
    }
    results
}

/// Why a run that reached its report must still exit with status 1: its figures do not
/// describe the run that was asked for. Non-200 answers and lost deliveries are results
/// (see [`warn_about_answers`]); these are not.
pub fn run_failure(fleet: &Fleet, failed_pushes: u64, accepted: u64) -> Option<anyhow::Error> {
    let closed = fleet.closed();
    if closed > 0 {
        return Some(anyhow!(
            "the server closed {closed} of the {} connections during the run: the figures \
             describe fewer connections than were asked for",
            fleet.n_conns
        ));
    }
    if failed_pushes > 0 {
        return Some(anyhow!(
            "{failed_pushes} measured pushes got no HTTP reply (connection errors, or no \
             answer within --request-timeout): see io_errors and unanswered"
        ));
    }
    if accepted == 0 {
        return Some(anyhow!(
            "no measured push was accepted (no 200 reply): see pushes.status"
        ));
    }
    None
}

/// Says on stderr what the report shows but a reader may miss: pushes answered with
/// something other than 200 (an overloaded or refusing server), and lost deliveries.
pub fn warn_about_answers(status: &std::collections::BTreeMap<u16, u64>, lost: u64) {
    let refused: u64 = status
        .iter()
        .filter(|(code, _)| **code != 200)
        .map(|(_, n)| n)
        .sum();
    if refused > 0 {
        progress!("warning: {refused} measured pushes were answered with a status other than 200: see pushes.status");
    }
    if lost > 0 {
        progress!("warning: {lost} deliveries the server counted in its replies never arrived");
    }
}

pub struct Confirmed {
    pub rounds: u32,
    pub pushes: u64,
    pub seconds: f64,
}

/// Registration has no acknowledgement, so prove it: push a warm-up message
/// `{"w":ROUND}` to every unconfirmed user and wait until the reply reports
/// exactly that user's connection count and every one of its connections
/// received the message. Unconfirmed users are retried with a new round
/// until `ctx.confirm_timeout`.
/// The "setup" section every mode reports: how long connecting and confirming took.
pub fn setup_report(fleet: &Fleet, conf: &Confirmed) -> crate::report::Obj {
    let mut s = crate::report::Obj::new();
    s.put("connect_s", fleet.connect_s);
    s.put("confirm_s", conf.seconds);
    s.put("confirm_rounds", conf.rounds);
    s.put("confirm_pushes", conf.pushes);
    s
}

pub async fn confirm(ctx: &Ctx, fleet: &Fleet, pushers: &mut Vec<Pusher>) -> Result<Confirmed> {
    let started = clock::now();
    let deadline = started + ctx.confirm_timeout.as_nanos() as u64;
    let n_users = fleet.users.len();
    let mut pending: Vec<usize> = (0..n_users).collect();
    let first_round = fleet.round.load(Relaxed);
    let mut round = first_round;
    let mut pushes = 0u64;
    let mut last_problem = String::from("none");
    while !pending.is_empty() {
        if fleet.closed() >= fleet.n_conns as u64 {
            bail!(
                "all {} connections were closed by the server; nothing left to confirm",
                fleet.n_conns
            );
        }
        if clock::now() > deadline {
            let unconfirmed_conns: usize = pending.iter().map(|&u| fleet.conns_of(u)).sum();
            bail!(
                "registration not confirmed within {:?}: {} of {n_users} users ({} of {} \
                 connections) unconfirmed after {} rounds; {} connections were closed \
                 by the server; last problem: {last_problem}",
                ctx.confirm_timeout,
                pending.len(),
                unconfirmed_conns,
                fleet.n_conns,
                round - first_round,
                fleet.closed()
            );
        }
        round += 1;
        fleet.round.store(round, Relaxed);
        let users = fleet.users.clone();
        let event_json = ctx.event_json.clone();
        let replies = push_many(pushers, pending.clone(), deadline, move |u, body| {
            write_body(body, &users[u], &event_json, |o| {
                write_warm_message(o, round)
            })
        })
        .await;
        pushes += replies.len() as u64;
        let mut retry = Vec::new();
        let mut waiting = Vec::new();
        for (u, res) in replies {
            let want = fleet.conns_of(u) as u64;
            match res {
                Ok(Reply {
                    status: 200,
                    delivered,
                }) if delivered.is_none() || delivered == Some(want) => waiting.push(u),
                Ok(r) if matches!(r.status, 400 | 401 | 403 | 404 | 405 | 413) => {
                    let hint = match r.status {
                        401 | 403 if ctx.push_key_given => " (is --push-key right?)",
                        401 | 403 => " (does the server need --push-key?)",
                        404 | 405 => " (check --url and --push-path)",
                        _ => "",
                    };
                    bail!(
                        "warm-up push for user {} was refused with HTTP {}{hint}",
                        fleet.users[u],
                        r.status
                    );
                }
                Ok(r) => {
                    last_problem = match r.delivered {
                        Some(n) if r.status == 200 => format!(
                            "user {} has {n} connections registered at the server, expected {want}",
                            fleet.users[u]
                        ),
                        _ => format!(
                            "warm-up push for user {} got HTTP {}",
                            fleet.users[u], r.status
                        ),
                    };
                    retry.push(u);
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    bail!(
                        "nothing accepts connections at the push address {} (connection \
                         refused): check --url",
                        ctx.push.addr
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    last_problem = format!(
                        "warm-up push for user {} got no reply in time (--request-timeout \
                         {:?}, or the end of --confirm-timeout)",
                        fleet.users[u], ctx.push.request_timeout
                    );
                    retry.push(u);
                }
                Err(e) => {
                    last_problem = format!("push for user {} failed: {e}", fleet.users[u]);
                    retry.push(u);
                }
            }
        }
        // Give deliveries up to 2 s (bounded by the deadline) to arrive.
        let wait_until = deadline.min(clock::now() + 2_000_000_000);
        loop {
            waiting.retain(|&u| !fleet.user_confirmed(u, round));
            if waiting.is_empty() || clock::now() >= wait_until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !waiting.is_empty() {
            last_problem = format!(
                "{} users had warm-up round {round} accepted but not delivered to all \
                 their connections",
                waiting.len()
            );
        }
        retry.extend(waiting);
        pending = retry;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let seconds = (clock::now() - started) as f64 / 1e9;
    progress!(
        "registration of {} connections / {n_users} users confirmed in {seconds:.2}s \
         ({} rounds, {pushes} warm-up pushes)",
        fleet.n_conns,
        round - first_round
    );
    Ok(Confirmed {
        rounds: round - first_round,
        pushes,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exhausted(soft: u64, hard: u64) -> FdExhaustion {
        FdExhaustion {
            system_wide: false,
            requested: 400,
            established: 3,
            fds: procstat::FdCount {
                in_use: 256,
                sockets: 250,
            },
            soft,
            hard,
        }
    }

    #[test]
    fn fd_message_counts_every_open_socket_not_just_established_ones() {
        let m = fd_exhaustion_message(&exhausted(256, 256));
        assert!(
            m.starts_with("too many open files (EMFILE) while opening 400"),
            "{m}"
        );
        assert!(
            m.contains(
                "256 file descriptors were open, 250 of them client sockets \
                 (3 connections established, 247 still connecting)"
            ),
            "{m}"
        );
        assert!(m.contains("RLIMIT_NOFILE soft 256 / hard 256"), "{m}");
    }

    #[test]
    fn fd_advice_at_the_hard_limit_comes_from_that_limit() {
        let m = fd_exhaustion_message(&exhausted(256, 256));
        assert!(m.contains("at its hard limit"), "{m}");
        assert!(
            m.contains("use at most ~192 connections per process"),
            "{m}"
        );
        assert!(!m.contains("20,000") && !m.contains("19,900"), "{m}");
        assert!(!m.contains("ulimit -n"), "{m}");

        let m = fd_exhaustion_message(&exhausted(20_000, 20_000));
        assert!(
            m.contains("use at most ~19936 connections per process"),
            "{m}"
        );
    }

    #[test]
    fn fd_advice_below_the_hard_limit_is_to_raise_the_soft_limit() {
        let m = fd_exhaustion_message(&exhausted(256, 20_000));
        assert!(m.contains("`ulimit -n 20000`"), "{m}");
        assert!(m.contains("~19936 connections fit in one process"), "{m}");
        assert!(!m.contains("at its hard limit"), "{m}");
    }

    #[test]
    fn fd_message_for_enfile_blames_the_system_table() {
        let m = fd_exhaustion_message(&FdExhaustion {
            system_wide: true,
            ..exhausted(256, 256)
        });
        assert!(
            m.starts_with("too many open files in the system (ENFILE)"),
            "{m}"
        );
        assert!(m.contains("fs.file-max"), "{m}");
        assert!(
            !m.contains("ulimit -n") && !m.contains("at its hard limit"),
            "{m}"
        );
    }

    #[test]
    fn fd_message_survives_unknown_limits_and_closed_connections() {
        let m = fd_exhaustion_message(&FdExhaustion {
            established: 300,
            ..exhausted(0, 0)
        });
        assert!(m.contains("0 still connecting"), "{m}");
        assert!(m.contains("could not be read"), "{m}");
    }
}
