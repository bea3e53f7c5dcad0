//! Where and at which commit a bench ran: every figure is recorded with both.

use procfs::{CpuInfo, Current, Meminfo};

use crate::result::Machine;

pub fn describe() -> Machine {
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
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        memory_gib: (memory_gib * 10.0).round() / 10.0,
        cpu_model,
        kernel,
    }
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
