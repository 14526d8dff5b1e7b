//! The generator's three modes run against a live pushgate process over real sockets, and
//! its reports are checked against what the gateway itself counted (its `/metrics`). Then
//! the runs that must fail: a server that closes connections, refuses every measured push,
//! or stops answering, each of which must still print its report and exit with status 1.
//!
//! The gateway is the `pushgate` binary next to this package's binary in the target
//! directory: `cargo test --workspace` (the README's test command) builds both before any
//! test runs. A missing binary fails the test with that advice rather than skipping it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// Upper bound for anything a test waits for; a test that hits it has failed.
const WAIT: Duration = Duration::from_secs(20);

/// The generator's own hard timeout for every run here, in seconds: a run that hangs fails
/// with status 3 instead of holding the test suite.
const HARD_TIMEOUT: &str = "60";

fn gateway_binary() -> PathBuf {
    let loadtest = PathBuf::from(env!("CARGO_BIN_EXE_pushgate-loadtest"));
    let gateway = loadtest.with_file_name("pushgate");
    assert!(
        gateway.exists(),
        "{} is missing: run the workspace's tests (`cargo test --workspace`), which build the \
         gateway too, or `cargo build -p pushgate` first",
        gateway.display()
    );
    gateway
}

/// A `pushgate` process on ports the kernel picks, killed on drop.
struct Gateway {
    child: Child,
    public: SocketAddr,
    internal: SocketAddr,
}

impl Gateway {
    fn start(extra_args: &[&str]) -> Self {
        let mut child = Command::new(gateway_binary())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--internal-listen",
                "127.0.0.1:0",
            ])
            .args(["--log", "info", "--log-format", "json"])
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the pushgate binary");
        let lines = lines_of(child.stderr.take().expect("piped stderr"));
        let listening = wait_for_line(&lines, |line| line.contains("\"pushgate listening\""));
        let entry: Value = serde_json::from_str(&listening).expect("a JSON log line");
        let addr = |key: &str| {
            entry["fields"][key]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} address in {listening}"))
        };
        let (public, internal) = (addr("public"), addr("internal"));
        // Keep reading its log so that the pipe never fills.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            public,
            internal,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The generator, pointed at this gateway and sampling its process.
    fn loadtest(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pushgate-loadtest"));
        command
            .arg("--url")
            .arg(format!("http://{}", self.internal))
            .arg("--ws-url")
            .arg(format!("ws://{}/ws", self.public))
            .arg("--server-pid")
            .arg(self.pid().to_string())
            .args(["--json", "--timeout", HARD_TIMEOUT]);
        command
    }

    /// One request over a fresh connection; returns the status and the body.
    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.internal).expect("connect to the gateway");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.internal,
            body.len()
        )
        .expect("send the request");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read the reply");
        let status = reply
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP reply: {reply:?}"));
        let body = reply
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// The value of one series on `/metrics` (0 when absent: a counter not yet moved).
    fn metric(&self, series: &str) -> f64 {
        let (status, text) = self.http("GET", "/metrics", "");
        assert_eq!(status, 200, "metrics scrape");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.trim().parse().expect("a number"))
            .unwrap_or(0.0)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // SIGCONT first, in case a test stopped it.
        signal(self.pid(), libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of this process; the pid
    // is a child this test started and has not yet reaped.
    unsafe { libc::kill(pid, sig) };
}

/// Lines of a child's pipe, read on a thread, so that a test can wait for one with a bound.
fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn wait_for_line(lines: &mpsc::Receiver<String>, wanted: impl Fn(&str) -> bool) -> String {
    loop {
        match lines.recv_timeout(WAIT) {
            Ok(line) if wanted(&line) => return line,
            Ok(_) => continue,
            Err(e) => panic!("the awaited line never came ({e})"),
        }
    }
}

/// Runs the generator to its end; returns its exit code, its report and its stderr.
fn finish(output: Output) -> (i32, Value, String) {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report on stdout ({e}): {:?}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let code = output.status.code().expect("exited, not killed");
    (code, report, stderr)
}

/// Starts the generator with `args`, calls `during` once it says it is pushing, then waits
/// for it to finish.
fn run_and_act_while_pushing(mut command: Command, during: impl FnOnce()) -> (i32, Value, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pushgate-loadtest");
    let stderr = lines_of(child.stderr.take().expect("piped stderr"));
    let mut seen = vec![wait_for_line(&stderr, |line| line.contains("] pushing:"))];
    during();
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_end(&mut stdout)
        .expect("read the report");
    let status = child.wait().expect("the generator exits");
    seen.extend(stderr.iter());
    finish(Output {
        status,
        stdout,
        stderr: seen.join("\n").into_bytes(),
    })
}

fn u64_at(report: &Value, pointer: &str) -> u64 {
    report
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no count at {pointer} in {report}"))
}

#[test]
fn load_reports_every_push_the_gateway_answered_and_every_delivery() {
    let gateway = Gateway::start(&[]);
    let ok_before = gateway.metric("pushgate_pushes_total{result=\"ok\"}");
    let output = gateway
        .loadtest()
        .args(["load", "-c", "20", "-u", "10", "-p", "2", "-d", "1"])
        .args(["--warmup", "0.2", "--drain", "1", "--message-size", "64"])
        .output()
        .expect("run pushgate-loadtest");
    let (code, report, stderr) = finish(output);
    assert_eq!(code, 0, "{stderr}");

    let sent = u64_at(&report, "/pushes/sent");
    let expected = u64_at(&report, "/deliveries/expected");
    assert!(sent > 0, "{report}");
    assert_eq!(
        report["pushes"]["status"],
        serde_json::json!({ "200": sent })
    );
    // Two connections per user: every push in the window went to two.
    assert_eq!(expected, 2 * sent, "{report}");
    assert_eq!(u64_at(&report, "/deliveries/received"), expected);
    assert_eq!(u64_at(&report, "/deliveries/lost"), 0);
    assert_eq!(u64_at(&report, "/connections_closed"), 0);
    assert_eq!(u64_at(&report, "/e2e_latency_us/count"), expected);
    assert!(report["server"]["total_us_per_msg"].is_number(), "{report}");
    assert!(u64_at(&report, "/server/rss_after_kb") > 0);

    // The gateway answered exactly the pushes the generator says it sent: confirmation
    // pushes, warm-up and the measured window.
    let ok_after = gateway.metric("pushgate_pushes_total{result=\"ok\"}");
    let all_sent =
        u64_at(&report, "/setup/confirm_pushes") + u64_at(&report, "/pushes/sent_incl_warmup");
    assert_eq!((ok_after - ok_before) as u64, all_sent, "{report}");
}

#[test]
fn fanout_reports_each_push_reaching_every_connection() {
    let gateway = Gateway::start(&[]);
    let deliveries_before = gateway.metric("pushgate_deliveries_total");
    let ok_before = gateway.metric("pushgate_pushes_total{result=\"ok\"}");
    let output = gateway
        .loadtest()
        .args(["fanout", "-c", "30", "-k", "12", "--drain", "2"])
        .output()
        .expect("run pushgate-loadtest");
    let (code, report, stderr) = finish(output);
    assert_eq!(code, 0, "{stderr}");

    assert_eq!(u64_at(&report, "/pushes/sent"), 12);
    assert_eq!(u64_at(&report, "/deliveries/expected"), 30 * 12);
    assert_eq!(u64_at(&report, "/deliveries/received"), 30 * 12);
    assert_eq!(u64_at(&report, "/deliveries/lost"), 0);
    assert_eq!(u64_at(&report, "/deliveries/pushes_incomplete"), 0);
    assert_eq!(u64_at(&report, "/first_delivery_us/count"), 12);
    assert_eq!(u64_at(&report, "/last_delivery_us/count"), 12);
    let first = report["first_delivery_us"]["max"].as_f64().expect("max");
    let last = report["last_delivery_us"]["max"].as_f64().expect("max");
    assert!(first <= last, "{report}");

    // The gateway answered the generator's pushes, confirmation rounds included, and its
    // deliveries are the measured 360 plus those rounds (the last of which reached all 30;
    // earlier ones reached the connections registered by then).
    let confirm_pushes = u64_at(&report, "/setup/confirm_pushes");
    let ok = gateway.metric("pushgate_pushes_total{result=\"ok\"}") - ok_before;
    assert_eq!(ok as u64, confirm_pushes + 12, "{report}");
    let confirm_deliveries =
        (gateway.metric("pushgate_deliveries_total") - deliveries_before) as u64 - 30 * 12;
    assert!(
        (30..=30 * confirm_pushes).contains(&confirm_deliveries),
        "{confirm_deliveries} deliveries outside the measured pushes: {report}"
    );
}

#[test]
fn busy_poll_keeps_the_generator_awake_and_loses_nothing() {
    let gateway = Gateway::start(&[]);
    let output = gateway
        .loadtest()
        .args([
            "load", "-c", "20", "-u", "10", "-p", "2", "-d", "1", "--rate", "100",
        ])
        .args(["--warmup", "0.2", "--drain", "1", "--busy-poll"])
        .output()
        .expect("run pushgate-loadtest");
    let (code, report, stderr) = finish(output);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["config"]["busy_poll"], true, "{report}");
    let expected = u64_at(&report, "/deliveries/expected");
    assert!(expected > 0, "{report}");
    assert_eq!(u64_at(&report, "/deliveries/received"), expected);
    assert_eq!(u64_at(&report, "/deliveries/lost"), 0);
    // A thread that never sleeps spends the whole window on a core; sleeping between 100
    // pushes a second it uses 3-4 % of one. A quarter of a core leaves room for the other
    // tests of this file, which run beside it on the same two cores.
    let cores = report["loadgen"]["cpu_cores_used"].as_f64().expect("cores");
    assert!(cores >= 0.25, "generator used {cores} of a core: {report}");
}

#[test]
fn idle_reports_memory_per_connection_and_every_connection_still_served() {
    let gateway = Gateway::start(&[]);
    let registered_before = gateway.metric("pushgate_registrations_total{result=\"ok\"}");
    let output = gateway
        .loadtest()
        .args(["idle", "-c", "200", "-u", "50", "--hold", "0.5"])
        .output()
        .expect("run pushgate-loadtest");
    let (code, report, stderr) = finish(output);
    assert_eq!(code, 0, "{stderr}");

    assert_eq!(u64_at(&report, "/connections/open_after_hold"), 200);
    assert_eq!(u64_at(&report, "/connections/closed_during_hold"), 0);
    assert_eq!(report["connections"]["recheck_ok"], true);
    assert!(
        report["server"]["rss_per_connection_bytes"].is_number(),
        "{report}"
    );
    // The gateway registered exactly the connections the generator reports.
    let registered = gateway.metric("pushgate_registrations_total{result=\"ok\"}");
    assert_eq!(registered - registered_before, 200.0);
}

#[test]
fn a_run_whose_connections_the_server_closes_prints_its_report_and_exits_1() {
    let gateway = Gateway::start(&[]);
    let mut command = gateway.loadtest();
    command.args(["load", "-c", "20", "-u", "10", "-p", "1", "-d", "1"]);
    command.args(["--warmup", "0.5", "--drain", "0.5"]);
    let (code, report, stderr) = run_and_act_while_pushing(command, || {
        let (status, body) = gateway.http("POST", "/api/v2/disconnect", r#"{"userId":"lt-u3"}"#);
        assert_eq!((status, body.as_str()), (200, r#"{"closed":2}"#));
    });
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(u64_at(&report, "/connections_closed"), 2);
    assert!(
        stderr.contains("the server closed 2 of the 20 connections during the run"),
        "{stderr}"
    );
}

#[test]
fn a_run_whose_measured_pushes_are_all_refused_prints_its_report_and_exits_1() {
    // Confirmation pushes are small enough; the 300-byte measured ones are not.
    let gateway = Gateway::start(&["--max-push-body", "200"]);
    let output = gateway
        .loadtest()
        .args(["load", "-c", "4", "-u", "2", "-p", "1", "-d", "0.5"])
        .args(["--warmup", "0", "--drain", "0", "--message-size", "300"])
        .output()
        .expect("run pushgate-loadtest");
    let (code, report, stderr) = finish(output);
    assert_eq!(code, 1, "{stderr}");
    let sent = u64_at(&report, "/pushes/sent");
    assert!(sent > 0, "{report}");
    assert_eq!(
        report["pushes"]["status"],
        serde_json::json!({ "413": sent })
    );
    assert!(stderr.contains("no measured push was accepted"), "{stderr}");
}

#[test]
fn a_run_whose_pushes_go_unanswered_ends_by_itself_with_its_report_and_exits_1() {
    let gateway = Gateway::start(&[]);
    let mut command = gateway.loadtest();
    command.args(["--request-timeout", "1"]);
    command.args(["load", "-c", "4", "-u", "2", "-p", "1", "-d", "0.5"]);
    command.args(["--warmup", "0", "--drain", "0"]);
    let (code, report, stderr) =
        run_and_act_while_pushing(command, || signal(gateway.pid(), libc::SIGSTOP));
    // 1, not the hard timeout's 3: the run ended by itself, within its window, drain and
    // request timeout, and still reported.
    assert_eq!(code, 1, "{stderr}");
    assert!(
        u64_at(&report, "/pushes/unanswered") + u64_at(&report, "/pushes/io_errors") > 0,
        "{report}"
    );
    assert!(
        stderr.contains("measured pushes got no HTTP reply"),
        "{stderr}"
    );
}
