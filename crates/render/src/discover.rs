//! Finding the deployable folders of a checkout and the files of one folder, by Fleet's rules.
//!
//! Folder discovery (Fleet's `fleet apply`): every `path` of the GitRepo is a glob; each matched
//! folder is walked. The path's own folder is a bundle when it has a `fleet.yaml`, or when it or
//! any sub-folder without a `fleet.yaml` (recursively) holds a `.yaml`/`.yml` file; every folder
//! below it with a `fleet.yaml` is a bundle of its own. Symbolic links are not followed, and
//! hidden folders (`.git`, `.github`…) are skipped: Fleet never loads files from them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use crate::RenderError;

/// The fleet.yaml file names, in the order Fleet looks for them.
pub(crate) const FLEET_YAML_NAMES: [&str; 2] = ["fleet.yaml", "fleet.yml"];

/// The deployable folders under `paths` (relative to `root`; empty means the root itself), in
/// sorted order, each relative to `root` with `/` separators (`.` for the root).
///
/// A path may be a glob (`*`, `?`, `[...]` within one segment). A path that does not exist, a glob
/// that matches no folder, a path leaving the root, or finding no deployable folder at all is an
/// error naming the path(s).
pub fn bundle_folders(root: &Path, paths: &[String]) -> Result<Vec<String>, RenderError> {
    let root_paths = [String::new()];
    let paths = if paths.is_empty() {
        &root_paths[..]
    } else {
        paths
    };
    let mut found = BTreeSet::new();
    for path in paths {
        for base in expand_path(root, path)? {
            discover_in(root, &base, &mut found)?;
        }
    }
    if found.is_empty() {
        let shown = paths
            .iter()
            .map(|path| format!("{:?}", normalize_folder(path)))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(RenderError::plain(format!(
            "no deployable folder under {shown}: a folder needs a fleet.yaml or Kubernetes \
             .yaml/.yml files"
        )));
    }
    Ok(found.into_iter().collect())
}

/// `folder` relative to the root with `/` separators and no `./`, leading or trailing `/`:
/// `.` for the root.
pub(crate) fn normalize_folder(folder: &str) -> String {
    let parts: Vec<&str> = folder
        .split(['/', '\\'])
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

/// `relative` joined to `base`, refusing absolute paths and `..` that leave `base`.
pub(crate) fn join_inside(base: &Path, relative: &str) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    let mut depth = 0usize;
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) => {
                out.push(part);
                depth += 1;
            }
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => {
                out.pop();
                depth -= 1;
            }
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether `path` (following symbolic links) is inside `root`: files read for a rendering must
/// come from the checkout, never from elsewhere on the server.
pub(crate) fn resolves_inside(root: &Path, path: &Path) -> bool {
    match (root.canonicalize(), path.canonicalize()) {
        (Ok(root), Ok(path)) => path.starts_with(root),
        _ => false,
    }
}

/// The fleet.yaml of `dir`, if it has one.
pub(crate) fn fleet_yaml_path(dir: &Path) -> Option<PathBuf> {
    FLEET_YAML_NAMES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// The sub-directories of `dir` (not symbolic links, not hidden), sorted by name.
fn sub_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, std::io::Error> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_hidden(&name) && entry.file_type()?.is_dir() {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn io_error(file: &str, error: std::io::Error) -> RenderError {
    RenderError::in_file(file, format!("cannot read: {error}"))
}

fn join_rel(parent: &str, name: &str) -> String {
    if parent == "." {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// The folders (relative to `root`) a GitRepo path names: the path itself or its glob matches.
fn expand_path(root: &Path, path: &str) -> Result<Vec<String>, RenderError> {
    let normalized = normalize_folder(path);
    let shown = if path.is_empty() { "." } else { path };
    if normalized == "." {
        return Ok(vec![".".to_string()]);
    }
    if normalized.split('/').any(|part| part == "..") {
        return Err(RenderError::in_file(
            shown,
            "path leaves the repository (`..`); use a folder inside it",
        ));
    }
    let mut current = vec![".".to_string()];
    for segment in normalized.split('/') {
        let mut next = Vec::new();
        for parent in &current {
            let parent_dir = root.join(parent);
            if is_glob(segment) {
                let dirs = sub_dirs(&parent_dir).map_err(|error| io_error(parent, error))?;
                for (name, _) in dirs {
                    if glob_match(segment, &name) {
                        next.push(join_rel(parent, &name));
                    }
                }
            } else {
                let rel = join_rel(parent, segment);
                let metadata = std::fs::symlink_metadata(root.join(&rel));
                if metadata.is_ok_and(|metadata| metadata.is_dir()) {
                    next.push(rel);
                }
            }
        }
        current = next;
    }
    if current.is_empty() {
        let problem = if is_glob(&normalized) {
            "matches no folder in the repository"
        } else if root.join(&normalized).exists() {
            "is not a folder"
        } else {
            "does not exist in the repository"
        };
        return Err(RenderError::in_file(shown, problem));
    }
    Ok(current)
}

fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Adds the bundles found from the GitRepo path folder `base` (relative to `root`).
fn discover_in(root: &Path, base: &str, found: &mut BTreeSet<String>) -> Result<(), RenderError> {
    let base_dir = root.join(base);
    let has_fleet_yaml = fleet_yaml_path(&base_dir).is_some();
    if has_fleet_yaml || has_loose_resources(&base_dir).map_err(|e| io_error(base, e))? {
        found.insert(base.to_string());
    }
    // Every folder below with a fleet.yaml is a bundle of its own, at any depth.
    let mut stack = vec![base.to_string()];
    while let Some(dir) = stack.pop() {
        let subs = sub_dirs(&root.join(&dir)).map_err(|error| io_error(&dir, error))?;
        for (name, path) in subs {
            let rel = join_rel(&dir, &name);
            if fleet_yaml_path(&path).is_some() {
                found.insert(rel.clone());
            }
            stack.push(rel);
        }
    }
    Ok(())
}

/// Whether `dir` or a sub-folder without a fleet.yaml (recursively) holds a `.yaml`/`.yml` file:
/// Fleet then makes the GitRepo path's own folder a bundle even without a fleet.yaml.
fn has_loose_resources(dir: &Path) -> Result<bool, std::io::Error> {
    if fleet_yaml_path(dir).is_some() {
        return Ok(false);
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_hidden(&name) {
            continue;
        }
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if has_loose_resources(&entry.path())? {
                return Ok(true);
            }
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The files of the bundle folder `folder` (relative to `root`), keyed by their path relative to
/// the folder: hidden files and folders, `.fleetignore`d entries and nested bundles (folders with
/// their own fleet.yaml) are left out. Symbolic links are followed only when they stay inside
/// the checkout.
pub(crate) fn collect_files(
    root: &Path,
    folder: &str,
) -> Result<BTreeMap<String, PathBuf>, RenderError> {
    let mut files = BTreeMap::new();
    let base = root.join(folder);
    // (directory relative to the folder, .fleetignore patterns in force there)
    let mut stack: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
    while let Some((dir, inherited)) = stack.pop() {
        let dir_path = if dir.is_empty() {
            base.clone()
        } else {
            base.join(&dir)
        };
        let shown = |name: &str| {
            let inside = if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            };
            join_rel(folder, &inside)
        };
        let mut ignore = inherited;
        ignore
            .extend(read_fleetignore(&dir_path).map_err(|e| io_error(&shown(".fleetignore"), e))?);
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&dir_path).map_err(|e| io_error(&shown(""), e))? {
            let entry = entry.map_err(|e| io_error(&shown(""), e))?;
            entries.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
        entries.sort();
        for (name, path) in entries {
            if is_hidden(&name) {
                continue;
            }
            let rel = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let symlink =
                std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
            if symlink && !resolves_inside(root, &path) {
                return Err(RenderError::in_file(
                    shown(&name),
                    "is a symbolic link that points outside the repository",
                ));
            }
            let is_dir = path.is_dir();
            if is_ignored(&ignore, &name, is_dir) {
                continue;
            }
            if is_dir {
                // A nested folder with its own fleet.yaml is another bundle, rendered on its own.
                if symlink || fleet_yaml_path(&path).is_some() {
                    continue;
                }
                stack.push((rel, ignore.clone()));
            } else if path.is_file() {
                files.insert(rel, path);
            }
        }
    }
    Ok(files)
}

/// The patterns of `dir/.fleetignore`: one per line, `#` comments and blank lines skipped,
/// trailing spaces trimmed unless escaped with `\`.
fn read_fleetignore(dir: &Path) -> Result<Vec<String>, std::io::Error> {
    let path = dir.join(".fleetignore");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut patterns = Vec::new();
    for line in text.lines() {
        let mut line = line.to_string();
        while line.ends_with(char::is_whitespace) && !line.ends_with("\\ ") {
            line.pop();
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        patterns.push(line.replace("\\ ", " ").replace("\\#", "#"));
    }
    Ok(patterns)
}

/// Whether an entry called `name` is ignored by `patterns` (Fleet: a pattern matches the entry's
/// base name; `dir/*` ignores folders called `dir`).
fn is_ignored(patterns: &[String], name: &str, is_dir: bool) -> bool {
    patterns
        .iter()
        .any(|pattern| match pattern.strip_suffix("/*") {
            Some(dir_name) if !dir_name.is_empty() => is_dir && glob_match(dir_name, name),
            _ => glob_match(pattern, name),
        })
}

/// Shell-style matching of one path segment: `*` any run, `?` one character, `[...]` a class
/// (ranges, `^` or `!` negation), `\` escapes.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    glob_at(&pattern, &text)
}

fn glob_at(pattern: &[char], text: &[char]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some('*') => (0..=text.len()).any(|skip| glob_at(&pattern[1..], &text[skip..])),
        Some('?') => !text.is_empty() && glob_at(&pattern[1..], &text[1..]),
        Some('[') => {
            let Some((matched, rest)) = class_match(&pattern[1..], text.first().copied()) else {
                // An unterminated class matches a literal `[`.
                return text.first() == Some(&'[') && glob_at(&pattern[1..], &text[1..]);
            };
            matched && glob_at(rest, &text[1..])
        }
        Some('\\') if pattern.len() > 1 => {
            text.first() == Some(&pattern[1]) && glob_at(&pattern[2..], &text[1..])
        }
        Some(&c) => text.first() == Some(&c) && glob_at(&pattern[1..], &text[1..]),
    }
}

/// Matches `c` against the class starting after `[`; returns whether it matched and the
/// pattern after the closing `]`, or `None` when the class never closes.
fn class_match(class: &[char], c: Option<char>) -> Option<(bool, &[char])> {
    let (negated, mut i) = match class.first() {
        Some('^' | '!') => (true, 1),
        _ => (false, 0),
    };
    let mut matched = false;
    let mut first = true;
    loop {
        let current = *class.get(i)?;
        if current == ']' && !first {
            break;
        }
        first = false;
        let low = current;
        if class.get(i + 1) == Some(&'-') && class.get(i + 2).is_some_and(|&h| h != ']') {
            let high = class[i + 2];
            matched |= c.is_some_and(|c| low <= c && c <= high);
            i += 3;
        } else {
            matched |= c == Some(low);
            i += 1;
        }
    }
    Some((c.is_some() && matched != negated, &class[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("app-*", "app-web"));
        assert!(!glob_match("app-*", "web"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[^a-c]x", "bx"));
        assert!(glob_match("*.yaml", "x.yaml"));
        assert!(!glob_match("*.yaml", "x.yml"));
    }

    #[test]
    fn folders_normalize_to_slash_paths() {
        assert_eq!(normalize_folder(""), ".");
        assert_eq!(normalize_folder("./"), ".");
        assert_eq!(normalize_folder("/apps//web/"), "apps/web");
        assert_eq!(normalize_folder("./apps/./web"), "apps/web");
    }

    #[test]
    fn join_inside_refuses_to_leave_the_base() {
        let base = Path::new("/repo");
        assert_eq!(join_inside(base, "a/../b"), Some(PathBuf::from("/repo/b")));
        assert_eq!(join_inside(base, "../etc"), None);
        assert_eq!(join_inside(base, "/etc"), None);
    }
}
