//! The `pushgate` binary: parse the configuration, set up logging, bind the listeners, run
//! the gateway until SIGINT or SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use pushgate::auth::Authenticator;
use pushgate::config::{Config, LogFormat};
use pushgate::gateway::Listeners;

/// sysexits.h EX_USAGE: the configuration is wrong.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let mut config = match Config::try_parse() {
        Ok(config) => config,
        Err(error) => {
            let usage = error.use_stderr();
            let _ = error.print();
            return if usage {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    config.normalize();
    if let Err(error) = config.validate() {
        eprintln!("error: {error}");
        return ExitCode::from(EX_USAGE);
    }
    let auth = match pushgate::auth::from_config(&config) {
        Ok(auth) => auth,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EX_USAGE);
        }
    };
    init_logging(&config);
    match serve(config, auth) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Once, where the operator reads the logs; on stderr when logging is off.
            if tracing::enabled!(tracing::Level::ERROR) {
                tracing::error!("{error:#}");
            } else {
                eprintln!("error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(config: Config, auth: Arc<dyn Authenticator>) -> anyhow::Result<()> {
    // One worker: tokio's single-threaded scheduler, on this thread. It does the same work as
    // a one-worker pool without the pool's cross-thread bookkeeping, for less CPU per delivery
    // (docs/PERFORMANCE.md, "One worker", with the trade it shows in a closed-loop fan-out).
    let mut builder = match config.worker_count() {
        1 => tokio::runtime::Builder::new_current_thread(),
        workers => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
    };
    let runtime = build_runtime(&mut builder).context("starting the tokio runtime")?;
    runtime.block_on(async {
        let listeners = Listeners::bind(&config).await?;
        pushgate::run_with_auth(listeners, config, auth, shutdown_signal()).await?;
        Ok(())
    })
}

/// sysexits.h EX_OSERR: the operating system refused a resource (here, a thread).
const EX_OSERR: i32 = 71;

/// Builds the runtime, turning a refused worker thread into an exit. tokio starts its workers
/// inside `build` and panics when the OS refuses one (a cgroup's `pids.max`, `ulimit -v`);
/// unwinding from there then waits forever for the workers already started, so the process
/// would hang without listening. For the length of the build only, a panic ends the process
/// at once with status 71 and says why.
fn build_runtime(
    builder: &mut tokio::runtime::Builder,
) -> std::io::Result<tokio::runtime::Runtime> {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|panic| {
        let reason = panic
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.payload().downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        let message = format!(
            "starting the tokio runtime: {reason} (is a thread or memory limit, such as a \
             cgroup's pids.max or ulimit -v, lower than --worker-threads needs?)"
        );
        if tracing::enabled!(tracing::Level::ERROR) {
            tracing::error!("{message}");
        } else {
            eprintln!("error: {message}");
        }
        std::process::exit(EX_OSERR);
    }));
    let runtime = builder.enable_all().build();
    std::panic::set_hook(previous_hook);
    runtime
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
