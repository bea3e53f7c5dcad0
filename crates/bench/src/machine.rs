//! Where and at which commit a bench ran: every figure is recorded with both.

use anyhow::Context;
use procfs::{CpuInfo, Current, Meminfo};

use crate::result::Machine;

/// The machine, and the CPUs the bench (with its simulator) and the server may run on.
pub fn describe(server_cpus: Option<&str>) -> Machine {
    let cpu_model = CpuInfo::current()
        .ok()
        .and_then(|info| info.model_name(0).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    let memory_gib = Meminfo::current()
        .map(|info| info.mem_total as f64 / (1024.0 * 1024.0 * 1024.0))
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Machine {
        cores: CpuInfo::current().map_or(0, |info| info.num_cores()),
        memory_gib: (memory_gib * 10.0).round() / 10.0,
        cpu_model,
        kernel,
        bench_cpus: cpus_allowed_in("/proc/self/status"),
        server_cpus: server_cpus.map(str::to_string),
    }
}

/// The CPUs a process may run on, as the kernel lists them (`0-1`, `0`).
pub fn cpus_allowed(pid: i32) -> Option<String> {
    cpus_allowed_in(&format!("/proc/{pid}/status"))
}

fn cpus_allowed_in(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| {
            line.strip_prefix("Cpus_allowed_list:")
                .map(|list| list.trim().to_string())
        })
}

/// Pins every thread of this process (and so the threads it starts later) to `cpus`, a
/// `taskset` list.
pub fn pin_self(cpus: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("run taskset (util-linux) to pin the bench")?;
    anyhow::ensure!(status.success(), "taskset -c {cpus} failed: {status}");
    Ok(())
}

/// The git commit of the checkout the `flotilla` binary was built in (with `-dirty` when it has
/// uncommitted changes), or the package version when it was not built from a checkout.
pub fn commit(exe: &std::path::Path) -> String {
    let folder = exe.parent().unwrap_or(std::path::Path::new("."));
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(folder)
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) if !commit.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|status| !status.is_empty());
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
        _ => format!("v{}", env!("CARGO_PKG_VERSION")),
    }
}
