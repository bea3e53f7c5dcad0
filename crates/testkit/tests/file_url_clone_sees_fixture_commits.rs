//! Rule: a GitRepoFixture is a real repository: what it commits, branches and tags is what a
//! real `git` client fetches from its file:// URL.

use flotilla_testkit::GitRepoFixture;

#[test]
fn file_url_clone_sees_fixture_commits() {
    let repo = GitRepoFixture::new();
    repo.write("manifests/app.yaml", "kind: ConfigMap\n");
    let first = repo.commit("first");
    assert_eq!(first.len(), 40, "full sha: {first}");
    assert_eq!(repo.head(), first);

    let dest = tempfile::tempdir().unwrap();
    let clone = dest.path().join("clone");
    repo.git(&["clone", "-q", &repo.file_url(), clone.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(clone.join("manifests/app.yaml")).unwrap(),
        "kind: ConfigMap\n"
    );
    let cloned_head = repo.git(&["-C", clone.to_str().unwrap(), "rev-parse", "HEAD"]);
    assert_eq!(cloned_head, first);

    // A second commit (removing the file), a branch and a tag, all visible remotely.
    repo.remove("manifests");
    repo.write("README.md", "second\n");
    let second = repo.commit("second");
    let feature = {
        repo.write("feature.txt", "on a branch\n");
        repo.commit_on("feature", "feature work")
    };
    let tagged = repo.tag("v1.0.0");
    assert_eq!(tagged, second, "commit_on switched back to main");
    repo.lightweight_tag("light");

    let refs = repo.ls_remote(&repo.file_url());
    assert_eq!(refs["refs/heads/main"], second);
    assert_eq!(refs["HEAD"], second);
    assert_eq!(refs["refs/heads/feature"], feature);
    assert_eq!(
        refs["refs/tags/v1.0.0^{}"], second,
        "annotated tag peels to the commit"
    );
    assert_ne!(
        refs["refs/tags/v1.0.0"], second,
        "annotated: the ref names a tag object"
    );
    assert_eq!(refs["refs/tags/light"], second);
    assert_eq!(repo.rev("feature"), feature);
    assert_eq!(repo.rev("v1.0.0"), second);

    // The work tree is back on main, without the branch's file.
    assert!(!repo.work_dir().join("feature.txt").exists());
    assert!(!repo.work_dir().join("manifests").exists());

    // Fetching into the existing clone gets the new commit.
    repo.git(&["-C", clone.to_str().unwrap(), "pull", "-q", "--ff-only"]);
    assert_eq!(
        repo.git(&["-C", clone.to_str().unwrap(), "rev-parse", "HEAD"]),
        second
    );
    assert!(!clone.join("manifests/app.yaml").exists());
}

#[test]
fn host_git_environment_does_not_leak_into_the_fixture() {
    // The fixture's git sees only its own global config: identity and branch name are fixed.
    let repo = GitRepoFixture::new();
    assert_eq!(repo.git(&["config", "user.email"]), "test@flotilla.invalid");
    assert_eq!(repo.git(&["symbolic-ref", "--short", "HEAD"]), "main");
    let origin = repo.git(&["config", "--show-origin", "user.name"]);
    assert!(
        origin.contains(&repo.home().join(".gitconfig").display().to_string()),
        "{origin}"
    );
}
