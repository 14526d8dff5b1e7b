//! The deployment files in `deploy/` as the tools that load them read them: the systemd unit
//! through `systemd-analyze verify`, the Prometheus scrape configuration through `promtool`,
//! and every `PUSHGATE_*` variable the unit, the README and the docs name against the ones
//! the binary reads. (The nginx configuration runs for real in `tests/nginx.rs`.)

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const GATEWAY: &str = env!("CARGO_BIN_EXE_pushgate");

/// Runs `program` and returns its exit success and everything it printed.
fn run(program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("{program} runs (scripts/test installs it when missing): {error}")
        });
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit =
        std::fs::read_to_string(Path::new(REPO).join("deploy/systemd/pushgate.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/pushgate\n"));
    // The unit names the installed binary; verify checks that it exists and is executable.
    let dir = tempfile_dir("unit");
    let path = dir.join("pushgate.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/pushgate", GATEWAY).as_bytes(),
    )
    .unwrap();
    let (ok, printed) = run(
        "systemd-analyze",
        &["verify", "--man=no", path.to_str().unwrap()],
    );
    let _ = std::fs::remove_dir_all(&dir);
    // verify exits 0 on an unknown key or a bad value, with a warning: silence is the pass.
    assert!(ok && printed.trim().is_empty(), "{printed}");
}

#[test]
fn the_prometheus_scrape_config_passes_promtool() {
    let config = Path::new(REPO).join("deploy/prometheus/pushgate.yml");
    let (ok, printed) = run("promtool", &["check", "config", config.to_str().unwrap()]);
    assert!(ok && printed.contains("SUCCESS"), "{printed}");
}

#[test]
fn every_documented_environment_variable_is_one_the_binary_reads() {
    let (ok, help) = run(GATEWAY, &["--help"]);
    assert!(ok, "{help}");
    let read = variables(&help);
    assert!(
        read.contains("PUSHGATE_LISTEN") && read.len() > 40,
        "{read:?}"
    );
    let mut documents = vec![
        "README.md".to_owned(),
        "deploy/systemd/pushgate.service".to_owned(),
    ];
    for entry in std::fs::read_dir(Path::new(REPO).join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        documents.push(format!("docs/{name}"));
    }
    let mut named_anywhere = 0;
    for document in documents {
        let text = std::fs::read_to_string(Path::new(REPO).join(&document)).unwrap();
        let unknown: Vec<_> = variables(&text).difference(&read).cloned().collect();
        assert!(
            unknown.is_empty(),
            "{document} names variables the binary does not read: {unknown:?}"
        );
        named_anywhere += variables(&text).len();
    }
    assert!(named_anywhere > 0, "the check saw no variable at all");
}

/// Every `PUSHGATE_NAME` in `text` (a name cut short with `...` in prose is not one).
fn variables(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("PUSHGATE_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let name = name.trim_end_matches('_');
        if name.len() > "PUSHGATE_".len() {
            found.insert(name.to_owned());
        }
        rest = &rest[at + "PUSHGATE_".len()..];
    }
    found
}

/// A fresh directory of this test's own under the system's temporary directory.
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pushgate-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
