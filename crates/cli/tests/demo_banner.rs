//! The demo's banner: every command it prints runs as printed, from the folder the demo was
//! started in, in a shell that has nothing set up (flotilla not on PATH, no FLOTILLA_*).

mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
};

use support::{BIN, DEADLINE, send_signal, wait_exit};

/// Starts `flotilla demo` in `cwd` with `args` and returns it with the banner's command lines.
fn demo_commands(cwd: &std::path::Path, args: &[&str]) -> (std::process::Child, Vec<String>) {
    let mut demo = Command::new(BIN)
        .arg("demo")
        .args([
            "--clusters",
            "3",
            "--interval",
            "1s",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .current_dir(cwd)
        .env_remove("FLOTILLA_SERVER")
        .env_remove("FLOTILLA_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flotilla demo");
    let stdout = demo.stdout.take().expect("piped");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut commands = Vec::new();
    let mut in_list = false;
    loop {
        let line = received
            .recv_timeout(DEADLINE)
            .expect("the demo prints its banner within the deadline");
        if line.starts_with("In another terminal") {
            in_list = true;
        } else if in_list && line.starts_with("  ") {
            commands.push(line.trim().to_string());
        } else if line.contains("Press Ctrl-C") {
            break;
        }
    }
    (demo, commands)
}

fn run_as_printed(cwd: &std::path::Path, commands: &[String]) {
    let script = format!("set -e\n{}\n", commands.join("\n"));
    let output = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(cwd)
        .env_remove("FLOTILLA_SERVER")
        .env_remove("FLOTILLA_TOKEN")
        .output()
        .expect("run sh");
    assert!(
        output.status.success(),
        "the banner's commands failed as printed:\n{script}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("payments-canary") && stdout.contains("store-0000"),
        "they show the demo fleet:\n{stdout}"
    );
}

#[test]
fn the_demo_banner_commands_run_as_printed() {
    for data_dir in [None, Some("elsewhere/state")] {
        let cwd = tempfile::tempdir().expect("temp dir");
        let args: Vec<&str> = data_dir.map_or(Vec::new(), |d| vec!["--data-dir", d]);
        let (mut demo, commands) = demo_commands(cwd.path(), &args);
        assert!(
            commands.iter().any(|c| c.ends_with(" get bundles")),
            "the banner lists commands: {commands:?}"
        );
        assert!(
            commands
                .iter()
                .any(|c| c.starts_with("export FLOTILLA_SERVER=")),
            "a server on another port is named: {commands:?}"
        );
        assert_eq!(
            commands
                .iter()
                .any(|c| c.starts_with("export FLOTILLA_TOKEN=")),
            data_dir.is_some(),
            "the token is named only when the CLI would not find it: {commands:?}"
        );
        run_as_printed(cwd.path(), &commands);
        send_signal(demo.id(), "TERM");
        assert!(wait_exit(&mut demo, DEADLINE).success());
    }
}
