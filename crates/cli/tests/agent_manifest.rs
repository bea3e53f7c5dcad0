//! `flotilla agent manifest`: the install YAML is complete, consistent and removable.

mod support;

use std::process::Command;

use serde_json::Value;

fn manifest(args: &[&str]) -> std::process::Output {
    Command::new(support::BIN)
        .args(["agent", "manifest"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn agent_manifest_installs_everything_the_agent_needs_in_one_removable_set() {
    let output = manifest(&[
        "--server",
        "https://fleet.example",
        "--token",
        "secret-token",
        "--name",
        "store-0042",
        "--labels",
        "env=prod",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let kinds: Vec<&str> = documents
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Secret",
            "PersistentVolumeClaim",
            "Deployment"
        ]
    );
    // Everything namespaced lives in the agent's namespace, and every cluster-scoped object is
    // in the output: `kubectl delete -f` of the same output leaves nothing behind.
    for document in &documents {
        let kind = document["kind"].as_str().unwrap();
        let namespace = document["metadata"]["namespace"].as_str();
        match kind {
            "Namespace" | "ClusterRole" | "ClusterRoleBinding" => {
                assert_eq!(namespace, None, "{kind}")
            }
            _ => assert_eq!(namespace, Some("flotilla-system"), "{kind}"),
        }
        assert_eq!(
            document["metadata"]["labels"]["app.kubernetes.io/part-of"],
            "flotilla"
        );
    }
    let secret = &documents[4];
    assert_eq!(secret["stringData"]["token"], "secret-token");
    assert_eq!(secret["stringData"]["server"], "https://fleet.example");
    let binding = &documents[3];
    assert_eq!(
        binding["subjects"][0]["name"],
        documents[1]["metadata"]["name"]
    );
    let deployment = &documents[6];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], documents[1]["metadata"]["name"]);
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&args[..3], ["agent", "--name", "store-0042"]);
    assert!(args.windows(2).any(|w| w == ["--labels", "env=prod"]));
    // The token reaches the agent through the Secret, never in the pod spec itself.
    assert!(!deployment.to_string().contains("secret-token"));
    assert_eq!(
        container["env"][1]["valueFrom"]["secretKeyRef"]["key"],
        "token"
    );
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        documents[5]["metadata"]["name"]
    );
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
}

#[test]
fn agent_manifest_without_a_name_picks_one_and_with_a_bad_name_says_what_to_fix() {
    let output = manifest(&[
        "--server",
        "https://fleet.example",
        "--token",
        "t",
        "--state-volume",
        "empty-dir",
    ]);
    assert!(output.status.success());
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8(output.stdout).unwrap()).unwrap();
    let deployment = documents.last().unwrap();
    let name = deployment["spec"]["template"]["spec"]["containers"][0]["args"][2]
        .as_str()
        .unwrap();
    assert!(name.starts_with("cluster-") && name.len() == 16, "{name}");
    assert!(
        !documents
            .iter()
            .any(|d| d["kind"] == "PersistentVolumeClaim")
    );
    let output = manifest(&[
        "--server",
        "https://fleet.example",
        "--token",
        "t",
        "--name",
        "Not_A_Label",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--name"), "{stderr}");
}

#[test]
fn agent_manifest_runs_the_image_it_is_given_and_by_default_this_release() {
    let image_of = |extra: &[&str]| {
        let mut args = vec!["--server", "https://fleet.example", "--token", "t"];
        args.extend(extra);
        let output = manifest(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(&String::from_utf8(output.stdout).unwrap()).unwrap();
        documents.last().unwrap()["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        image_of(&["--image", "registry.example/mirror/flotilla:1.2.3"]),
        "registry.example/mirror/flotilla:1.2.3"
    );
    assert_eq!(
        image_of(&[]),
        concat!("ghcr.io/flotilla-dev/flotilla:", env!("CARGO_PKG_VERSION"))
    );
}
