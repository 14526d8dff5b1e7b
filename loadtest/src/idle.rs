//! `idle`: C registered connections held open; server memory per connection
//! and idle CPU.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Result;

use crate::fleet::{confirm, connect_fleet, setup_report, Confirmed, Ctx};
use crate::procstat::{cpu_obj, sample_self, sample_server};
use crate::progress;
use crate::report::Obj;
use crate::sink::{IdleSink, Sink};
use crate::{IdleArgs, Outcome};

/// Run `idle`. A failed recheck still yields the report (it says how many
/// connections the server closed during the hold), but as a failed
/// [`Outcome`], so that the exit status says the connections were not all
/// held: a script checking only `$?` must not mistake it for a success.
pub async fn run(ctx: &Ctx, a: &IdleArgs, user_prefix: &str) -> Result<Outcome> {
    let n_users = a.users.unwrap_or(a.connections);
    let me_initial = sample_self();
    let srv_initial = sample_server(ctx.server_pid)?;
    let names: Vec<String> = (0..n_users).map(|u| format!("{user_prefix}{u}")).collect();
    let fleet = connect_fleet(ctx, a.connections, &names, Sink::Idle(IdleSink::default())).await?;
    let mut pushers = ctx.pushers(a.pushers);
    let conf = confirm(ctx, &fleet, &mut pushers).await?;
    let srv_registered = sample_server(ctx.server_pid)?;
    let me_registered = sample_self();

    progress!("holding {} connections for {}s", a.connections, a.hold);
    tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    let srv_held = sample_server(ctx.server_pid)?;
    let me_held = sample_self();
    let closed_during_hold = fleet.closed();

    // Are they all still registered and served?
    let recheck = if a.no_recheck {
        None
    } else {
        Some(confirm(ctx, &fleet, &mut pushers).await)
    };

    let mut r = Obj::new();
    r.put("mode", "idle");
    let mut c = Obj::new();
    c.put("connections", a.connections);
    c.put("users", n_users);
    c.put("hold_s", a.hold);
    c.put("pushers", a.pushers);
    c.put("no_recheck", a.no_recheck);
    c.put("threads", ctx.threads);
    c.put("busy_poll", ctx.busy_poll);
    c.put("source_ips", ctx.source_ips.len());
    c.put("event", ctx.event.as_str());
    c.put("user_prefix", user_prefix);
    r.put("config", c);
    r.put("setup", setup_report(&fleet, &conf));
    let mut k = Obj::new();
    k.put(
        "open_after_hold",
        a.connections as u64 - closed_during_hold.min(a.connections as u64),
    );
    k.put("closed_during_hold", closed_during_hold);
    k.put(
        "unexpected_messages",
        fleet.shared.idle().other.load(Relaxed),
    );
    match &recheck {
        None => {}
        Some(Ok(c)) => {
            k.put("recheck_ok", true);
            k.put("recheck_s", c.seconds);
        }
        Some(Err(e)) => {
            k.put("recheck_ok", false);
            k.put("recheck_error", format!("{e:#}"));
        }
    }
    r.put("connections", k);
    if let (Some(i), Some(reg), Some(held)) = (srv_initial, srv_registered, srv_held) {
        let mut o = Obj::new();
        o.put("rss_before_connect_kb", i.rss_kb);
        o.put("rss_registered_kb", reg.rss_kb);
        o.put("rss_after_hold_kb", held.rss_kb);
        let delta = reg.rss_kb as i64 - i.rss_kb as i64;
        o.put("rss_delta_kb", delta);
        o.put(
            "rss_per_connection_bytes",
            delta as f64 * 1024.0 / a.connections as f64,
        );
        o.put("idle", cpu_obj(&reg, &held, 0));
        r.put("server", o);
    }
    let mut l = cpu_obj(&me_registered, &me_held, 0);
    l.put(
        "rss_per_connection_bytes",
        (me_registered.rss_kb as f64 - me_initial.rss_kb as f64) * 1024.0 / a.connections as f64,
    );
    r.put("loadgen", l);
    Ok(Outcome {
        report: r,
        failure: recheck_failure(recheck),
    })
}

/// The run's failure, if the recheck after the hold ran and failed.
fn recheck_failure(recheck: Option<Result<Confirmed>>) -> Option<anyhow::Error> {
    match recheck {
        Some(Err(e)) => Some(e.context("recheck after the hold failed (recheck_ok false)")),
        Some(Ok(_)) | None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failed_recheck_fails_the_run() {
        let passed = Confirmed {
            rounds: 1,
            pushes: 1,
            seconds: 0.1,
        };
        assert!(recheck_failure(None).is_none());
        assert!(recheck_failure(Some(Ok(passed))).is_none());
        let e = recheck_failure(Some(Err(anyhow::anyhow!("3 of 5 users unconfirmed"))))
            .map(|e| format!("{e:#}"));
        assert_eq!(
            e.as_deref(),
            Some("recheck after the hold failed (recheck_ok false): 3 of 5 users unconfirmed")
        );
    }
}
