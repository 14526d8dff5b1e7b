//! pushgate-loadtest: load generator for WebSocket push gateways that speak
//! the pushgate / wserver protocol. See loadtest/README.md.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

mod clock;
mod fanout;
mod fleet;
mod idle;
mod load;
mod net;
mod procstat;
mod push;
mod report;
mod sink;
mod ws;

use fleet::{Ctx, WsTarget};
use net::Url;
use push::PushTarget;

#[derive(Parser, Debug)]
#[command(
    name = "pushgate-loadtest",
    version,
    about = "Load generator for WebSocket push gateways (pushgate / wserver protocol)"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Args, Debug)]
#[command(next_help_heading = "Common options (any mode)")]
struct Common {
    /// Base URL of the push endpoint.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8081")]
    url: String,
    /// WebSocket URL the clients connect to (ws:// only). Several, comma-separated
    /// (e.g. the nodes of a cluster): client i connects to URL i mod their number.
    /// With --url naming another node, pushes then cross the cluster.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8080/ws"
    )]
    ws_url: Vec<String>,
    /// Path of the push endpoint, appended to --url.
    #[arg(long, global = true, default_value = "/push")]
    push_path: String,
    /// Send `Authorization: Bearer KEY` with every push.
    #[arg(long, global = true, value_name = "KEY")]
    push_key: Option<String>,
    /// Server process to sample (/proc/PID/stat and status) for CPU and RSS.
    #[arg(long, global = true, value_name = "PID")]
    server_pid: Option<u32>,
    /// More processes to sample over the same measured window (load mode), e.g. the other
    /// nodes of a cluster and nats-server; each is reported as `process_PID`.
    #[arg(long, global = true, value_delimiter = ',', value_name = "PIDS")]
    other_pids: Vec<u32>,
    /// Comma-separated local addresses the client sockets bind to,
    /// round-robin (e.g. 127.0.0.1,127.0.0.2) for more ephemeral ports.
    #[arg(long, global = true, value_delimiter = ',', value_name = "IPS")]
    source_ips: Vec<IpAddr>,
    /// Runtime worker threads (1 = a single-threaded runtime).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// Never let the generator's thread sleep: it polls its sockets without blocking and
    /// takes a whole core. A server writing to a sleeping reader on the same machine pays
    /// for waking it (an inter-processor interrupt on a VM), which a server writing to
    /// clients on other machines never does; with this the figures leave that cost out.
    /// Needs `--threads 1`.
    #[arg(long, global = true)]
    busy_poll: bool,
    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Event name the clients register for and pushes target.
    #[arg(long, global = true, default_value = "lt")]
    event: String,
    /// Users are named PREFIX0, PREFIX1, ... (load, idle). Give each client
    /// process its own prefix when several run against one server.
    #[arg(long, global = true, default_value = "lt-u")]
    user_prefix: String,
    /// Connection attempts (TCP + WebSocket handshake) in flight at once.
    #[arg(long, global = true, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds allowed for one connection attempt.
    #[arg(long, global = true, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Seconds allowed to confirm every registration with warm-up pushes.
    #[arg(long, global = true, default_value_t = 30.0)]
    confirm_timeout: f64,
    /// Seconds a push may wait for its reply (connecting included) before it counts as
    /// failed.
    #[arg(long, global = true, default_value_t = 10.0)]
    request_timeout: f64,
    /// Hard limit on the whole run in seconds; the process exits with status
    /// 3 when it is reached. Default: computed from the other durations.
    #[arg(long, global = true, value_name = "SECS")]
    timeout: Option<f64>,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Throughput and end-to-end latency: C connections over U users, P pushers.
    Load(LoadArgs),
    /// One user with C connections; time to first and last delivery per push.
    Fanout(FanoutArgs),
    /// Hold C registered connections; server memory per connection.
    Idle(IdleArgs),
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// WebSocket connections.
    #[arg(short = 'c', long, default_value_t = 1000)]
    pub connections: usize,
    /// Distinct users (connection i is user i % U). Default: one per connection.
    #[arg(short = 'u', long)]
    pub users: Option<usize>,
    /// Keep-alive HTTP pushers (concurrent pushes in flight).
    #[arg(short = 'p', long, default_value_t = 4)]
    pub pushers: usize,
    /// Open loop at this aggregate rate (pushes/s); closed loop without it.
    #[arg(long, value_name = "PUSHES_PER_S")]
    pub rate: Option<f64>,
    /// Measured window in seconds.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before the measured window.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds to wait after the window for outstanding deliveries.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
    /// Size in bytes of each pushed message (not padded below ~32).
    #[arg(short = 's', long, default_value_t = 64)]
    pub message_size: usize,
}

#[derive(Args, Debug)]
pub struct FanoutArgs {
    /// WebSocket connections, all registered as the same user.
    #[arg(short = 'c', long, default_value_t = 1000)]
    pub connections: usize,
    /// Number of sequential pushes (K).
    #[arg(short = 'k', long, default_value_t = 100)]
    pub pushes: usize,
    /// User id all connections register as.
    #[arg(long, default_value = "lt-fan")]
    pub user: String,
    /// Pause between a push's reply and the next push, in milliseconds.
    #[arg(long, default_value_t = 0.0)]
    pub interval_ms: f64,
    /// Seconds to wait after the last push for outstanding deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Size in bytes of each pushed message.
    #[arg(short = 's', long, default_value_t = 64)]
    pub message_size: usize,
}

#[derive(Args, Debug)]
pub struct IdleArgs {
    /// WebSocket connections.
    #[arg(short = 'c', long, default_value_t = 1000)]
    pub connections: usize,
    /// Distinct users (connection i is user i % U). Default: one per connection.
    #[arg(short = 'u', long)]
    pub users: Option<usize>,
    /// Seconds to hold the connections after they are confirmed.
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
    /// Pushers used for the registration warm-up pushes.
    #[arg(short = 'p', long, default_value_t = 4)]
    pub pushers: usize,
    /// Skip the warm-up round after the hold that checks every connection
    /// is still served.
    #[arg(long)]
    pub no_recheck: bool,
}

/// Longest duration any flag may ask for: 30 days. Beyond it a run is a typo, and the
/// arithmetic on nanosecond timestamps would overflow.
const MAX_SECONDS: f64 = 30.0 * 24.0 * 3600.0;

/// A duration flag in seconds: finite, within [`MAX_SECONDS`], and positive (or, with
/// `zero_ok`, not negative).
fn seconds(name: &str, v: f64, zero_ok: bool) -> Result<()> {
    let low_ok = if zero_ok { v >= 0.0 } else { v > 0.0 };
    if !(v.is_finite() && low_ok && v <= MAX_SECONDS) {
        bail!(
            "{name} must be a number of seconds {} and at most {MAX_SECONDS} (30 days), got {v}",
            if zero_ok { ">= 0" } else { "> 0" }
        );
    }
    Ok(())
}

fn at_least_one(name: &str, v: usize) -> Result<()> {
    if v == 0 {
        bail!("{name} must be at least 1");
    }
    Ok(())
}

/// Users are connection i % U: more users than connections would leave some with none.
fn users_within(users: Option<usize>, connections: usize) -> Result<()> {
    if let Some(u) = users {
        at_least_one("--users", u)?;
        if u > connections {
            bail!(
                "--users ({u}) cannot exceed --connections ({connections}): every user needs a \
                 connection"
            );
        }
    }
    Ok(())
}

/// A pid to sample must name a running process now, not after minutes of setup.
fn process_exists(flag: &str, pid: u32) -> Result<()> {
    if !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() {
        bail!("{flag}: no process {pid} on this machine");
    }
    Ok(())
}

/// Checks every flag before anything starts; returns the hard timeout in seconds.
fn validate(cli: &Cli) -> Result<f64> {
    let c = &cli.common;
    seconds("--connect-timeout", c.connect_timeout, false)?;
    seconds("--confirm-timeout", c.confirm_timeout, false)?;
    seconds("--request-timeout", c.request_timeout, false)?;
    at_least_one("--threads", c.threads)?;
    if c.busy_poll && c.threads != 1 {
        bail!("--busy-poll needs --threads 1 (each thread would take a core)");
    }
    at_least_one("--connect-concurrency", c.connect_concurrency)?;
    if let Some(pid) = c.server_pid {
        process_exists("--server-pid", pid)?;
    }
    for &pid in &c.other_pids {
        process_exists("--other-pids", pid)?;
    }
    if !c.other_pids.is_empty() && !matches!(cli.mode, Mode::Load(_)) {
        bail!("--other-pids is only sampled by the load mode");
    }
    // Rough upper bound on the run, for the hard timeout.
    let mut budget = 60.0 + c.connect_timeout + 2.0 * c.confirm_timeout + c.request_timeout;
    match &cli.mode {
        Mode::Load(a) => {
            seconds("--duration", a.duration, false)?;
            seconds("--warmup", a.warmup, true)?;
            seconds("--drain", a.drain, true)?;
            at_least_one("--connections", a.connections)?;
            at_least_one("--pushers", a.pushers)?;
            users_within(a.users, a.connections)?;
            if let Some(r) = a.rate {
                if !(r.is_finite() && r > 0.0) {
                    bail!("--rate must be positive");
                }
            }
            budget += a.duration + 2.0 * a.drain.max(1.0) + a.warmup + a.connections as f64 / 500.0;
        }
        Mode::Fanout(a) => {
            at_least_one("--connections", a.connections)?;
            at_least_one("--pushes", a.pushes)?;
            seconds("--drain", a.drain, true)?;
            if !(a.interval_ms.is_finite()
                && a.interval_ms >= 0.0
                && a.interval_ms <= MAX_SECONDS * 1000.0)
            {
                bail!(
                    "--interval-ms must be a number of milliseconds >= 0 and at most {} (30 \
                     days), got {}",
                    MAX_SECONDS * 1000.0,
                    a.interval_ms
                );
            }
            budget += a.drain
                + a.connections as f64 / 500.0
                + a.pushes as f64 * (a.interval_ms / 1000.0 + 0.05);
        }
        Mode::Idle(a) => {
            seconds("--hold", a.hold, false)?;
            at_least_one("--connections", a.connections)?;
            at_least_one("--pushers", a.pushers)?;
            users_within(a.users, a.connections)?;
            budget += a.hold + a.connections as f64 / 500.0;
        }
    }
    let hard = c.timeout.unwrap_or(budget);
    seconds("--timeout", hard, false)?;
    Ok(hard)
}

async fn build_ctx(c: &Common, nofile: (u64, u64)) -> Result<Ctx> {
    let mut ws_targets = Vec::with_capacity(c.ws_url.len());
    for url in &c.ws_url {
        let ws = Url::parse(url.trim(), "ws", 80).with_context(|| format!("--ws-url {url}"))?;
        ws_targets.push(WsTarget {
            addr: ws.resolve().await?,
            host: ws.host_header(),
            path: ws.path.clone(),
        });
    }
    if ws_targets.is_empty() {
        bail!("--ws-url needs at least one URL");
    }
    let http = Url::parse(&c.url, "http", 80).context("--url")?;
    let push_addr = http.resolve().await?;
    let base = http.path.trim_end_matches('/');
    let push_path = if c.push_path.starts_with('/') {
        format!("{base}{}", c.push_path)
    } else {
        format!("{base}/{}", c.push_path)
    };
    let push = PushTarget::new(
        push_addr,
        &http.host_header(),
        &push_path,
        c.push_key.as_deref(),
        c.source_ips.clone(),
        Duration::from_secs_f64(c.request_timeout),
    );
    Ok(Ctx {
        ws_targets,
        push: Arc::new(push),
        source_ips: c.source_ips.clone(),
        event: c.event.clone(),
        event_json: serde_json::to_string(&c.event)?,
        push_key_given: c.push_key.is_some(),
        connect_concurrency: c.connect_concurrency,
        connect_timeout: Duration::from_secs_f64(c.connect_timeout),
        confirm_timeout: Duration::from_secs_f64(c.confirm_timeout),
        server_pid: c.server_pid,
        other_pids: {
            // Each process once, in the order given.
            let mut pids = c.other_pids.clone();
            let mut seen = std::collections::HashSet::new();
            pids.retain(|pid| seen.insert(*pid));
            pids
        },
        nofile,
        threads: c.threads,
        busy_poll: c.busy_poll,
    })
}

/// A run that got as far as a report. `failure` is set when the run must
/// still exit with status 1: the report is printed first, because it shows
/// what went wrong (e.g. `idle`'s `recheck_error`).
pub struct Outcome {
    pub report: report::Obj,
    pub failure: Option<anyhow::Error>,
}

async fn run(cli: &Cli, nofile: (u64, u64)) -> Result<Outcome> {
    let ctx = build_ctx(&cli.common, nofile).await?;
    match &cli.mode {
        Mode::Load(a) => load::run(&ctx, a, &cli.common.user_prefix).await,
        Mode::Fanout(a) => fanout::run(&ctx, a).await,
        Mode::Idle(a) => idle::run(&ctx, a, &cli.common.user_prefix).await,
    }
}

fn main() {
    clock::init();
    let cli = Cli::parse();
    let code = match real_main(&cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("pushgate-loadtest: error: {e:#}");
            1
        }
    };
    // Exit without tearing down thousands of connection tasks one by one.
    std::process::exit(code);
}

fn real_main(cli: &Cli) -> Result<()> {
    let hard = validate(cli)?;
    let nofile = procstat::raise_nofile();
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(hard));
            eprintln!("pushgate-loadtest: error: hard timeout of {hard}s reached, exiting");
            std::process::exit(3);
        })?;

    let rt = if cli.common.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.common.threads)
            .enable_all()
            .build()?
    };
    if cli.common.busy_poll {
        // A task that always yields keeps the current-thread scheduler from parking: with
        // work deferred it polls the I/O driver with a zero timeout instead of sleeping in
        // epoll_wait, so a server's write finds no sleeper to wake.
        rt.spawn(async {
            loop {
                tokio::task::yield_now().await;
            }
        });
    }
    let outcome = rt.block_on(run(cli, nofile))?;
    let text = if cli.common.json {
        outcome.report.to_json() + "\n"
    } else {
        outcome.report.to_table()
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    match outcome.failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: &str) -> Result<f64> {
        let cli = Cli::try_parse_from(args.split_whitespace())?;
        validate(&cli)
    }

    #[test]
    fn durations_beyond_thirty_days_or_not_finite_are_refused_before_anything_runs() {
        for args in [
            "lt load --timeout 1e20",
            "lt load -d 2e10",
            "lt load --drain inf",
            "lt idle --hold 1e20",
            "lt load --connect-timeout 1e20",
            "lt load --request-timeout 0",
        ] {
            let error = check(args).unwrap_err().to_string();
            assert!(
                error.contains("must be a number of seconds"),
                "{args}: {error}"
            );
        }
        let error = check("lt fanout --interval-ms 1e20")
            .unwrap_err()
            .to_string();
        assert!(error.contains("milliseconds"), "{error}");
        assert!(check("lt load -d 10 --drain 0 --warmup 0").is_ok());
        assert!(check("lt load --busy-poll").is_ok());
    }

    #[test]
    fn counts_that_would_be_changed_silently_are_refused() {
        let error = check("lt load -c 5 -u 50").unwrap_err().to_string();
        assert!(error.contains("cannot exceed --connections"), "{error}");
        for (args, flag) in [
            ("lt load -u 0", "--users"),
            ("lt idle -u 0", "--users"),
            ("lt load --connect-concurrency 0", "--connect-concurrency"),
            ("lt idle -p 0", "--pushers"),
            ("lt fanout --busy-poll --threads 2", "--busy-poll"),
        ] {
            let error = check(args).unwrap_err().to_string();
            assert!(error.starts_with(flag), "{args}: {error}");
        }
    }

    #[test]
    fn pids_to_sample_must_exist_and_other_pids_belong_to_load() {
        let error = check("lt load --other-pids 4294967295")
            .unwrap_err()
            .to_string();
        assert_eq!(error, "--other-pids: no process 4294967295 on this machine");
        let error = check("lt load --server-pid 4294967295")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("--server-pid"), "{error}");
        let me = std::process::id();
        assert!(check(&format!("lt load --other-pids {me}")).is_ok());
        let error = check(&format!("lt fanout --other-pids {me}"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("only sampled by the load mode"), "{error}");
    }
}
