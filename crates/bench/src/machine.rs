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

/// The commit this binary was built from, embedded by `build.rs`: 40 hex digits (with `-dirty`
/// when tracked files differed from it), else the `FLOTILLA_COMMIT` the build was given, else
/// `unknown`. The bench starts the server from this same binary, so it is the server's commit
/// too (for `--server`, the bench's own).
pub fn commit() -> &'static str {
    env!("FLOTILLA_BUILD_COMMIT")
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

    #[test]
    fn the_recorded_commit_is_a_full_hash_the_given_commit_or_unknown() {
        let commit = commit();
        let hash = commit.strip_suffix("-dirty").unwrap_or(commit);
        let full_hash = hash.len() == 40 && hash.bytes().all(|byte| byte.is_ascii_hexdigit());
        let given = option_env!("FLOTILLA_COMMIT").is_some_and(|given| given.trim() == commit);
        assert!(
            full_hash || given || commit == "unknown",
            "commit {commit:?} is none of a 40-hex hash, FLOTILLA_COMMIT, unknown"
        );
        assert!(!commit.starts_with('v'), "{commit:?} looks like a version");
    }
}
