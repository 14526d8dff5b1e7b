//! `load`: many connections over many users, P keep-alive pushers in closed
//! or open loop, end-to-end latency and loss.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use hdrhistogram::Histogram;

use crate::clock::{self, secs, PreciseTimer};
use crate::fleet::{confirm, connect_fleet, run_failure, setup_report, warn_about_answers, Ctx};
use crate::procstat::{cpu_obj, sample_pid, sample_self, sample_server};
use crate::progress;
use crate::push::{write_body, write_data_message, Pusher};
use crate::report::{hist_us, status_obj, Obj};
use crate::sink::{new_hist, record, LoadSink, Sink};
use crate::{LoadArgs, Outcome};

/// The schedule shared by all pushers.
struct Plan {
    pushers: u64,
    users: Arc<Vec<String>>,
    event_json: String,
    rate: Option<f64>,
    message_size: usize,
    /// Pushing starts at `start`; the measured window is `[t0, t1)`.
    start: u64,
    t0: u64,
    t1: u64,
    /// No push waits for its reply past this (the end of the drain, 1 s at least).
    stop_at: u64,
}

impl Plan {
    /// Scheduled send time of global push number `g` (open loop).
    fn scheduled(&self, rate: f64, g: u64) -> u64 {
        self.start + (g as f64 * 1e9 / rate) as u64
    }
}

struct PusherOut {
    /// Pushes whose (scheduled) send time fell inside the window.
    pushes: u64,
    /// Window pushes that got no reply in time (`--request-timeout`, or the end of the
    /// drain): a server that stopped answering.
    unanswered: u64,
    /// Sum of N over 200 replies in the window.
    expected: u64,
    /// 200 replies whose body did not carry a count.
    no_count: u64,
    status: BTreeMap<u16, u64>,
    io_errors: u64,
    reply: Histogram<u64>,
    lag: Histogram<u64>,
    /// Open loop: pushes scheduled before the end that were never sent
    /// because the pusher fell behind.
    unsent: u64,
    /// Every push sent, warm-up included.
    total: u64,
    connects: u64,
}

async fn pusher_task(mut p: Pusher, i: u64, plan: Arc<Plan>) -> Result<PusherOut> {
    let mut out = PusherOut {
        pushes: 0,
        unanswered: 0,
        expected: 0,
        no_count: 0,
        status: BTreeMap::new(),
        io_errors: 0,
        reply: new_hist(),
        lag: new_hist(),
        unsent: 0,
        total: 0,
        connects: 0,
    };
    let timer = match plan.rate {
        Some(_) => Some(PreciseTimer::new()?),
        None => None,
    };
    let n_users = plan.users.len() as u64;
    if plan.rate.is_none() {
        // The closed loop starts when the plan does, like the open loop's schedule: not
        // ~10 ms early, which would count pushes as warm-up that `--warmup 0` asked to measure.
        sleep_until(plan.start).await;
    }
    let mut k: u64 = 0;
    loop {
        let g = k * plan.pushers + i;
        let (t, send_t) = match (plan.rate, &timer) {
            (Some(rate), Some(timer)) => {
                let sched = plan.scheduled(rate, g);
                if sched >= plan.t1 {
                    break;
                }
                let now = clock::now();
                if now >= plan.t1 {
                    // Behind schedule at the end: count what was never sent.
                    let w = (plan.t1 - plan.start) as f64 * rate / 1e9;
                    let total = ((w - i as f64) / plan.pushers as f64).ceil().max(0.0) as u64;
                    out.unsent = total.saturating_sub(k);
                    break;
                }
                if now < sched {
                    timer.sleep_until(sched).await?;
                }
                (sched, clock::now())
            }
            _ => {
                let now = clock::now();
                if now >= plan.t1 {
                    break;
                }
                (now, now)
            }
        };
        let user = &plan.users[(g % n_users) as usize];
        write_body(&mut p.body, user, &plan.event_json, |o| {
            write_data_message(o, g, t, plan.message_size)
        });
        // However long the server stalls, the run ends with the drain.
        let res = p
            .send_within(Duration::from_nanos(plan.stop_at.saturating_sub(send_t)))
            .await;
        let done = clock::now();
        out.total += 1;
        let in_window = t >= plan.t0 && t < plan.t1;
        let failed = res.is_err();
        if in_window {
            out.pushes += 1;
            if plan.rate.is_some() {
                record(&mut out.lag, send_t - t);
            }
            match res {
                Ok(r) => {
                    record(&mut out.reply, done - send_t);
                    *out.status.entry(r.status).or_default() += 1;
                    if r.status == 200 {
                        match r.delivered {
                            Some(n) => out.expected += n,
                            None => out.no_count += 1,
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => out.unanswered += 1,
                Err(_) => out.io_errors += 1,
            }
        }
        if failed {
            // Do not spin on a refused connection.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        k += 1;
    }
    out.connects = p.connects;
    Ok(out)
}

async fn sleep_until(t: u64) {
    let now = clock::now();
    if t > now {
        tokio::time::sleep(Duration::from_nanos(t - now)).await;
    }
}

pub async fn run(ctx: &Ctx, a: &LoadArgs, user_prefix: &str) -> Result<Outcome> {
    let n_users = a.users.unwrap_or(a.connections);
    let srv_initial = sample_server(ctx.server_pid)?;
    let names: Vec<String> = (0..n_users).map(|u| format!("{user_prefix}{u}")).collect();
    let shards = (ctx.threads * 4).max(4);
    let fleet = connect_fleet(
        ctx,
        a.connections,
        &names,
        Sink::Load(LoadSink::new(shards)),
    )
    .await?;
    let mut pushers = ctx.pushers(a.pushers);
    let conf = confirm(ctx, &fleet, &mut pushers).await?;
    let srv_registered = sample_server(ctx.server_pid)?;

    let start = clock::now() + 10_000_000;
    let t0 = start + secs(a.warmup);
    let t1 = t0 + secs(a.duration);
    fleet.shared.load().set_window(t0, t1);
    let plan = Arc::new(Plan {
        pushers: pushers.len() as u64,
        users: fleet.users.clone(),
        event_json: ctx.event_json.clone(),
        rate: a.rate,
        message_size: a.message_size,
        start,
        t0,
        t1,
        // At least 1 s, so that a push sent just before the window ends, with --drain 0,
        // still has the time any reply needs.
        stop_at: t1 + secs(a.drain.max(1.0)),
    });
    progress!(
        "pushing: {} pushers, {}, warm-up {}s, measuring {}s",
        pushers.len(),
        match a.rate {
            Some(r) => format!("open loop at {r} pushes/s"),
            None => "closed loop".to_string(),
        },
        a.warmup,
        a.duration
    );
    let mut tasks = Vec::new();
    for (i, p) in pushers.into_iter().enumerate() {
        tasks.push(tokio::spawn(pusher_task(p, i as u64, plan.clone())));
    }
    sleep_until(t0).await;
    let srv0 = sample_server(ctx.server_pid)?;
    let others0 = ctx
        .other_pids
        .iter()
        .map(|&pid| sample_pid(pid))
        .collect::<Result<Vec<_>>>()?;
    let me0 = sample_self();
    sleep_until(t1).await;
    let srv1 = sample_server(ctx.server_pid)?;
    let others1 = ctx
        .other_pids
        .iter()
        .map(|&pid| sample_pid(pid))
        .collect::<Result<Vec<_>>>()?;
    let me1 = sample_self();

    let mut outs = Vec::new();
    for t in tasks {
        outs.push(t.await??);
    }
    let expected: u64 = outs.iter().map(|o| o.expected).sum();
    let sink = fleet.shared.load();
    let drain_end = clock::now() + secs(a.drain);
    while sink.received() < expected && clock::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (e2e, outside, unknown) = sink.merged();
    let received = e2e.len();
    progress!("done: {received} of {expected} deliveries received");

    let mut status = BTreeMap::new();
    let mut reply = new_hist();
    let mut lag = new_hist();
    let (mut pushes, mut io_errors, mut unanswered, mut no_count, mut unsent, mut connects) =
        (0, 0, 0, 0, 0, 0);
    let total: u64 = outs.iter().map(|o| o.total).sum();
    for o in &outs {
        pushes += o.pushes;
        io_errors += o.io_errors;
        unanswered += o.unanswered;
        no_count += o.no_count;
        unsent += o.unsent;
        connects += o.connects;
        reply.add(&o.reply).expect("same bounds");
        lag.add(&o.lag).expect("same bounds");
        for (s, n) in &o.status {
            *status.entry(*s).or_default() += n;
        }
    }

    let mut r = Obj::new();
    r.put("mode", "load");
    let mut c = Obj::new();
    c.put("connections", a.connections);
    c.put("users", n_users);
    c.put("pushers", plan.pushers);
    c.put("loop", if a.rate.is_some() { "open" } else { "closed" });
    if let Some(rate) = a.rate {
        c.put("target_rate_per_s", rate);
    }
    c.put("message_size", a.message_size);
    c.put("warmup_s", a.warmup);
    c.put("duration_s", a.duration);
    c.put("drain_s", a.drain);
    c.put("threads", ctx.threads);
    c.put("busy_poll", ctx.busy_poll);
    c.put("source_ips", ctx.source_ips.len());
    c.put("event", ctx.event.as_str());
    c.put("user_prefix", user_prefix);
    r.put("config", c);
    r.put("setup", setup_report(&fleet, &conf));

    let mut p = Obj::new();
    p.put("sent", pushes);
    p.put("per_s", pushes as f64 / a.duration);
    p.put("status", status_obj(&status));
    p.put("io_errors", io_errors);
    p.put("unanswered", unanswered);
    p.put("ok_without_count", no_count);
    p.put("sent_incl_warmup", total);
    p.put(
        "achieved_per_s_incl_warmup",
        total as f64 / ((t1 - start) as f64 / 1e9),
    );
    if a.rate.is_some() {
        p.put("behind_schedule_unsent", unsent);
        if unsent > 0 {
            progress!(
                "warning: the pushers fell behind the schedule and {unsent} scheduled pushes \
                 were never sent: the target rate is above what {} pushers achieve \
                 (raise --pushers or lower --rate)",
                plan.pushers
            );
        }
    }
    p.put("http_connects", connects);
    r.put("pushes", p);

    let mut d = Obj::new();
    d.put("expected", expected);
    d.put("received", received);
    d.put("lost", expected.saturating_sub(received));
    d.put("extra", received.saturating_sub(expected));
    d.put("per_s", received as f64 / a.duration);
    d.put("outside_window", outside);
    d.put("unrecognized", unknown);
    r.put("deliveries", d);
    r.put("connections_closed", fleet.closed());

    r.put("e2e_latency_us", hist_us(&e2e));
    r.put("push_reply_latency_us", hist_us(&reply));
    if a.rate.is_some() {
        r.put("send_lag_us", hist_us(&lag));
    }
    if let (Some(i), Some(reg), Some(b), Some(e)) = (srv_initial, srv_registered, srv0, srv1) {
        let mut o = cpu_obj(&b, &e, received);
        o.put("rss_before_connect_kb", i.rss_kb);
        o.put("rss_registered_kb", reg.rss_kb);
        r.put("server", o);
    }
    for ((pid, b), e) in ctx.other_pids.iter().zip(&others0).zip(&others1) {
        r.put(&format!("process_{pid}"), cpu_obj(b, e, received));
    }
    r.put("loadgen", cpu_obj(&me0, &me1, received));
    let accepted = status.get(&200).copied().unwrap_or(0);
    warn_about_answers(&status, expected.saturating_sub(received));
    Ok(Outcome {
        report: r,
        failure: run_failure(&fleet, io_errors + unanswered, accepted),
    })
}
