//! The commit a binary is built from, for build scripts: `FLOTILLA_COMMIT` when set (image
//! builds without `.git`, or a release pipeline naming it), else the checkout's
//! `git rev-parse HEAD` (with `-dirty` when asked and a tracked file differs), else `unknown`.
//! Prints the `cargo:rerun-if-*` lines that keep the answer current.

use std::{path::Path, process::Command};

/// Whether a build from changed files says so (`<hash>-dirty`). The dirty flag needs the build
/// script to rerun on any edit in the workspace, so only a cheap crate should ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dirty {
    Marked,
    Ignored,
}

/// The commit, for `cargo:rustc-env`. `manifest_dir` is the calling crate's
/// `CARGO_MANIFEST_DIR`.
pub fn commit(manifest_dir: &Path, dirty: Dirty) -> String {
    println!("cargo:rerun-if-env-changed=FLOTILLA_COMMIT");
    std::env::var("FLOTILLA_COMMIT")
        .ok()
        .map(|commit| commit.trim().to_string())
        .filter(|commit| !commit.is_empty())
        .or_else(|| git_commit(manifest_dir, dirty))
        .unwrap_or_else(|| "unknown".into())
}

fn git(folder: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(folder)
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The checkout's HEAD. Asks cargo to run the script again when HEAD moves (a checkout rewrites
/// `HEAD`, a commit the branch's ref file, or `packed-refs` after a `git gc`), and with
/// `Dirty::Marked` when the index or any file of the workspace's crates changes.
fn git_commit(manifest_dir: &Path, dirty: Dirty) -> Option<String> {
    let head = git(manifest_dir, &["rev-parse", "HEAD"])?;
    if head.len() != 40 || !head.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    if let Some(git_dir) = git(manifest_dir, &["rev-parse", "--absolute-git-dir"]) {
        let git_dir = Path::new(&git_dir);
        for file in ["HEAD", "packed-refs"] {
            println!("cargo:rerun-if-changed={}", git_dir.join(file).display());
        }
        if dirty == Dirty::Marked {
            println!("cargo:rerun-if-changed={}", git_dir.join("index").display());
        }
        if let Some(reference) = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
            println!(
                "cargo:rerun-if-changed={}",
                git_dir.join(reference).display()
            );
        }
    }
    if dirty == Dirty::Ignored {
        return Some(head);
    }
    // The workspace's sources and manifests: an edit anywhere in them changes the dirty flag.
    if let Some(crates) = manifest_dir.parent() {
        println!("cargo:rerun-if-changed={}", crates.display());
        if let Some(workspace) = crates.parent() {
            for manifest in ["Cargo.toml", "Cargo.lock"] {
                println!(
                    "cargo:rerun-if-changed={}",
                    workspace.join(manifest).display()
                );
            }
        }
    }
    // Untracked files are left out: they build into nothing until a tracked file names them.
    let status = git(
        manifest_dir,
        &["status", "--porcelain", "--untracked-files=no"],
    )?;
    Some(if status.is_empty() {
        head
    } else {
        format!("{head}-dirty")
    })
}
