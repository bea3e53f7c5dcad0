//! Which folders of a checkout are bundles, and what the bundles are called.

mod support;

use flotilla_render::{bundle_folders, bundle_name};
use support::{Checkout, configmap};

fn folders(checkout: &Checkout, paths: &[&str]) -> Vec<String> {
    let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    bundle_folders(checkout.root(), &paths).unwrap()
}

#[test]
fn every_folder_with_fleet_yaml_is_a_bundle_at_any_depth() {
    let checkout = Checkout::new();
    checkout
        .write("apps/web/fleet.yaml", "")
        .write("apps/web/cm.yaml", &configmap("web"))
        .write("apps/web/sub/fleet.yml", "")
        .write("apps/web/sub/cm.yaml", &configmap("sub"))
        .write("infra/deep/er/fleet.yaml", "")
        .write("docs/readme.md", "# nothing to deploy\n");
    assert_eq!(
        folders(&checkout, &[]),
        ["apps/web", "apps/web/sub", "infra/deep/er"]
    );
}

#[test]
fn path_root_without_fleet_yaml_is_a_bundle_only_when_it_has_loose_yaml() {
    let checkout = Checkout::new();
    checkout
        .write("repo/a/fleet.yaml", "")
        .write("repo/a/cm.yaml", &configmap("a"));
    // Every YAML file below belongs to a fleet.yaml folder: the path itself is no bundle.
    assert_eq!(folders(&checkout, &["repo"]), ["repo/a"]);
    // A YAML file in a sub-folder without fleet.yaml makes the path's folder a bundle.
    checkout.write("repo/loose/more/cm.yaml", &configmap("loose"));
    assert_eq!(folders(&checkout, &["repo"]), ["repo", "repo/a"]);
    // The root of a checkout with only loose YAML is one bundle.
    let plain = Checkout::new();
    plain.write("x/y/cm.yaml", &configmap("x"));
    assert_eq!(folders(&plain, &[]), ["."]);
    assert_eq!(folders(&plain, &["x"]), ["x"]);
}

#[test]
fn hidden_folders_are_never_bundles_nor_make_one() {
    let checkout = Checkout::new();
    checkout
        .write(".github/workflows/ci.yml", "on: push\n")
        .write(".git/fleet.yaml", "")
        .write("app/fleet.yaml", "");
    assert_eq!(folders(&checkout, &[]), ["app"]);
}

#[test]
fn chart_and_kustomize_folders_follow_the_same_rules() {
    let checkout = Checkout::new();
    checkout
        .write(
            "charts/web/Chart.yaml",
            "apiVersion: v2\nname: web\nversion: 0.1.0\n",
        )
        .write("charts/web/templates/cm.yaml", &configmap("x"))
        .write("kust/kustomization.yaml", "resources: [cm.yaml]\n")
        .write("kust/cm.yaml", &configmap("k"));
    // Without fleet.yaml, a GitRepo path holding a chart or a kustomization is one bundle.
    assert_eq!(folders(&checkout, &["charts/web"]), ["charts/web"]);
    assert_eq!(folders(&checkout, &["kust"]), ["kust"]);
    assert_eq!(folders(&checkout, &[]), ["."]);
}

#[test]
fn paths_may_be_globs_and_overlapping_paths_count_once() {
    let checkout = Checkout::new();
    for app in ["shop-a", "shop-b", "blog"] {
        checkout.write(&format!("apps/{app}/fleet.yaml"), "");
    }
    assert_eq!(
        folders(&checkout, &["apps/shop-*", "/apps/shop-a/", "./apps/blog"]),
        ["apps/blog", "apps/shop-a", "apps/shop-b"]
    );
}

#[test]
fn missing_or_escaping_paths_and_empty_results_are_errors_naming_them() {
    let checkout = Checkout::new();
    checkout.write("app/fleet.yaml", "");
    let error = bundle_folders(checkout.root(), &["nope".into()]).unwrap_err();
    assert_eq!(error.file.as_deref(), Some("nope"));
    assert!(error.message.contains("does not exist"), "{error}");
    let error = bundle_folders(checkout.root(), &["ap*x".into()]).unwrap_err();
    assert!(error.message.contains("matches no folder"), "{error}");
    let error = bundle_folders(checkout.root(), &["../elsewhere".into()]).unwrap_err();
    assert!(error.message.contains("leaves the repository"), "{error}");
    let empty = Checkout::new();
    empty.write("docs/readme.md", "text\n");
    let error = bundle_folders(empty.root(), &[]).unwrap_err();
    assert!(error.message.starts_with("no deployable folder"), "{error}");
}

#[test]
fn bundle_name_joins_repo_and_folder_and_sanitises() {
    assert_eq!(bundle_name("shop", ".", None), "shop");
    assert_eq!(bundle_name("shop", "", None), "shop");
    assert_eq!(bundle_name("shop", "apps/web", None), "shop-apps-web");
    assert_eq!(
        bundle_name("Shop", "./Apps/My_Web.v2/", None),
        "shop-apps-my-web-v2"
    );
    assert_eq!(bundle_name("shop", "a//--b", None), "shop-a-b");
    assert_eq!(bundle_name("shop", "apps/web", Some("My App")), "my-app");
    // An unusable fleet.yaml name falls back to the derived one.
    assert_eq!(bundle_name("shop", "apps/web", Some("__")), "shop-apps-web");
}

#[test]
fn bundle_name_truncates_long_names_with_a_hash_of_the_whole() {
    let folder = "a-very/long/path/that/goes/on/and/on/through/many/levels/of/folders";
    let name = bundle_name("repository", folder, None);
    assert_eq!(name.len(), 63, "{name}");
    assert!(
        name.starts_with("repository-a-very-long-path-that-goes-on-and-on-throu"),
        "{name}"
    );
    let (_, hash) = name.rsplit_once('-').unwrap();
    assert_eq!(hash.len(), 8);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
    // Names that differ only past the cut stay distinct.
    let other = bundle_name("repository", &format!("{folder}-x"), None);
    assert_ne!(name, other);
    assert_eq!(name[..54], other[..54]);
    // Short names are never hashed; a name of exactly 63 characters is kept.
    let exact = "a".repeat(63);
    assert_eq!(bundle_name(&exact, ".", None), exact);
    assert_eq!(bundle_name("r", ".", Some(&"b".repeat(70))).len(), 63);
}
