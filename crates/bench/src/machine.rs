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
    // The release string whole (`6.8.0-45-generic`): procfs's `KernelVersion` keeps only the
    // numbers.
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Machine {
        cores: CpuInfo::current().map_or(0, |info| info.num_cores()),
        memory_gib: (memory_gib * 10.0).round() / 10.0,
        cpu_model,
        kernel,
        bench_cpus: procfs::process::Process::myself()
            .ok()
            .and_then(|process| cpus_allowed_of(&process)),
        server_cpus: server_cpus.map(str::to_string),
    }
}

/// The CPUs a process may run on, as the kernel lists them (`0-1`, `0`).
pub fn cpus_allowed(pid: i32) -> Option<String> {
    cpus_allowed_of(&procfs::process::Process::new(pid).ok()?)
}

fn cpus_allowed_of(process: &procfs::process::Process) -> Option<String> {
    let ranges = process.status().ok()?.cpus_allowed_list?;
    Some(cpu_list(&ranges))
}

/// A CPU list in the kernel's own form: ranges `first-last` (a lone CPU as itself), by commas.
fn cpu_list(ranges: &[(u32, u32)]) -> String {
    ranges
        .iter()
        .map(|&(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_read_as_the_kernel_writes_them() {
        assert_eq!(cpu_list(&[(0, 0)]), "0");
        assert_eq!(cpu_list(&[(0, 3), (8, 8), (10, 11)]), "0-3,8,10-11");
    }

    #[test]
    fn this_process_may_run_on_some_cpu() {
        let own = cpus_allowed(std::process::id() as i32).expect("read own Cpus_allowed_list");
        let expected = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|line| {
                line.strip_prefix("Cpus_allowed_list:")
                    .map(|list| list.trim().to_string())
            })
            .unwrap();
        assert_eq!(own, expected);
    }
}
