//! `fanout`: one user with C connections; K sequential pushes, time from
//! send to first and to last delivery of each.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Result;

use crate::clock::{self, secs};
use crate::fleet::{confirm, connect_fleet, run_failure, setup_report, warn_about_answers, Ctx};
use crate::procstat::{cpu_obj, sample_self, sample_server};
use crate::progress;
use crate::push::{write_body, write_data_message};
use crate::report::{hist_us, hist_us_short, status_obj, Obj};
use crate::sink::{new_hist, record, FanoutSink, Sink};
use crate::{FanoutArgs, Outcome};

pub async fn run(ctx: &Ctx, a: &FanoutArgs) -> Result<Outcome> {
    let k_pushes = a.pushes;
    let srv_initial = sample_server(ctx.server_pid)?;
    let fleet = connect_fleet(
        ctx,
        a.connections,
        std::slice::from_ref(&a.user),
        Sink::Fanout(FanoutSink::new(k_pushes)),
    )
    .await?;
    let mut pushers = ctx.pushers(1);
    let conf = confirm(ctx, &fleet, &mut pushers).await?;
    let mut p = pushers.pop().expect("one pusher");

    let srv0 = sample_server(ctx.server_pid)?;
    let me0 = sample_self();
    progress!("fanout: {k_pushes} pushes to {} connections", a.connections);
    let mut sent_at = vec![0u64; k_pushes];
    let mut expected = vec![0u64; k_pushes];
    let mut status = BTreeMap::new();
    let mut reply = new_hist();
    let mut io_errors = 0u64;
    let mut unanswered = 0u64;
    let mut no_count = 0u64;
    let mut sent = 0usize;
    let user = fleet.users[0].clone();
    for k in 0..k_pushes {
        if fleet.closed() >= a.connections as u64 {
            progress!("every connection was closed by the server: stopping after {k} pushes");
            break;
        }
        sent += 1;
        let t = clock::now();
        write_body(&mut p.body, &user, &ctx.event_json, |o| {
            write_data_message(o, k as u64, t, a.message_size)
        });
        sent_at[k] = t;
        match p.send().await {
            Ok(r) => {
                record(&mut reply, clock::now() - t);
                *status.entry(r.status).or_default() += 1;
                if r.status == 200 {
                    expected[k] = match r.delivered {
                        Some(n) => n,
                        None => {
                            no_count += 1;
                            a.connections as u64
                        }
                    };
                }
            }
            Err(e) => {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    unanswered += 1;
                } else {
                    io_errors += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if a.interval_ms > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(a.interval_ms / 1000.0)).await;
        }
    }
    let sink = fleet.shared.fanout();
    let want: u64 = expected.iter().sum();
    let drain_end = clock::now() + secs(a.drain);
    while sink.received() < want && clock::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let srv1 = sample_server(ctx.server_pid)?;
    let me1 = sample_self();
    let received = sink.received();

    let mut first = new_hist();
    let mut last = new_hist();
    let mut incomplete = 0u64;
    for k in 0..k_pushes {
        let n = sink.count[k].load(Relaxed);
        if n > 0 {
            record(
                &mut first,
                sink.first[k].load(Relaxed).saturating_sub(sent_at[k]),
            );
            record(
                &mut last,
                sink.last[k].load(Relaxed).saturating_sub(sent_at[k]),
            );
        }
        if n < expected[k] {
            incomplete += 1;
        }
    }
    progress!("done: {received} of {want} deliveries received");

    let mut r = Obj::new();
    r.put("mode", "fanout");
    let mut c = Obj::new();
    c.put("connections", a.connections);
    c.put("pushes", k_pushes);
    c.put("message_size", a.message_size);
    c.put("interval_ms", a.interval_ms);
    c.put("drain_s", a.drain);
    c.put("threads", ctx.threads);
    c.put("busy_poll", ctx.busy_poll);
    c.put("source_ips", ctx.source_ips.len());
    c.put("user", a.user.as_str());
    c.put("event", ctx.event.as_str());
    r.put("config", c);
    r.put("setup", setup_report(&fleet, &conf));
    let mut pu = Obj::new();
    pu.put("sent", sent);
    pu.put("status", status_obj(&status));
    pu.put("io_errors", io_errors);
    pu.put("unanswered", unanswered);
    pu.put("ok_without_count", no_count);
    r.put("pushes", pu);
    let mut d = Obj::new();
    d.put("expected", want);
    d.put("received", received);
    d.put("lost", want.saturating_sub(received));
    d.put("pushes_incomplete", incomplete);
    d.put("stray", sink.stray.load(Relaxed));
    let wall = (srv1.map_or(me1.at_ns, |s| s.at_ns)).saturating_sub(me0.at_ns) as f64 / 1e9;
    d.put(
        "per_s",
        if wall > 0.0 {
            received as f64 / wall
        } else {
            0.0
        },
    );
    r.put("deliveries", d);
    r.put("connections_closed", fleet.closed());
    r.put("first_delivery_us", hist_us_short(&first));
    r.put("last_delivery_us", hist_us_short(&last));
    r.put("push_reply_latency_us", hist_us(&reply));
    if let (Some(i), Some(b), Some(e)) = (srv_initial, srv0, srv1) {
        let mut o = cpu_obj(&b, &e, received);
        o.put("rss_before_connect_kb", i.rss_kb);
        r.put("server", o);
    }
    r.put("loadgen", cpu_obj(&me0, &me1, received));
    let accepted = status.get(&200).copied().unwrap_or(0);
    warn_about_answers(&status, want.saturating_sub(received));
    Ok(Outcome {
        report: r,
        failure: run_failure(&fleet, io_errors + unanswered, accepted),
    })
}
