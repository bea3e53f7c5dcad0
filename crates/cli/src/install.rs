//! `flotilla agent manifest`: the Kubernetes YAML that installs the agent in a cluster. Every
//! object it creates is in the output, so `kubectl delete -f` of the same output removes it all.

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

pub const NAMESPACE: &str = "flotilla-system";
const APP: &str = "flotilla-agent";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateVolume {
    /// A PersistentVolumeClaim: the agent keeps its identity and cache across pod restarts.
    Pvc,
    /// An emptyDir: a new pod registers again with the token (which must still be valid).
    EmptyDir,
}

#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The flotilla server the agent syncs with.
    #[arg(long, env = "FLOTILLA_SERVER")]
    pub server: String,
    /// Registration token (`flotilla token create`).
    #[arg(long, env = "FLOTILLA_AGENT_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Cluster name (a DNS label); default: `cluster-` and 8 random hex digits.
    #[arg(long)]
    pub name: Option<String>,
    /// Labels the cluster asks for: k=v,k2=v2.
    #[arg(long, default_value = "")]
    pub labels: String,
    /// The agent's container image.
    #[arg(long, default_value = concat!("ghcr.io/flotilla-dev/flotilla:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// The volume the agent keeps its state in.
    #[arg(long, value_enum, default_value_t = StateVolume::Pvc)]
    pub state_volume: StateVolume,
    /// Sync interval.
    #[arg(long, default_value = "30s")]
    pub interval: String,
}

/// The install documents, in apply order.
pub fn documents(args: &ManifestArgs, name: &str) -> Vec<Value> {
    let labels = json!({"app.kubernetes.io/name": APP, "app.kubernetes.io/part-of": "flotilla"});
    let metadata = |object: &str| json!({"name": object, "namespace": NAMESPACE, "labels": labels});
    let mut documents = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(APP)}),
        // Bundles may hold any kind, cluster-scoped ones included: the agent needs the rights to
        // apply, read, prune and delete all of them.
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": APP, "labels": labels},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": APP, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": APP},
            "subjects": [{"kind": "ServiceAccount", "name": APP, "namespace": NAMESPACE}],
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata(APP),
            "type": "Opaque",
            "stringData": {"server": args.server, "token": args.token},
        }),
    ];
    let state_volume = match args.state_volume {
        StateVolume::Pvc => {
            documents.push(json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": metadata("flotilla-agent-state"),
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "256Mi"}},
                },
            }));
            json!({"name": "state", "persistentVolumeClaim": {"claimName": "flotilla-agent-state"}})
        }
        StateVolume::EmptyDir => json!({"name": "state", "emptyDir": {}}),
    };
    let secret = |key: &str| json!({"secretKeyRef": {"name": APP, "key": key}});
    documents.push(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(APP),
        "spec": {
            "replicas": 1,
            // One agent per cluster, never two at once.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": APP}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": APP,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 65532,
                        "fsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": "agent",
                        "image": args.image,
                        "args": [
                            "agent",
                            "--name", name,
                            "--labels", args.labels,
                            "--interval", args.interval,
                            "--state-dir", "/var/lib/flotilla-agent",
                        ],
                        "env": [
                            {"name": "FLOTILLA_SERVER", "valueFrom": secret("server")},
                            {"name": "FLOTILLA_AGENT_TOKEN", "valueFrom": secret("token")},
                        ],
                        "resources": {
                            "requests": {"cpu": "20m", "memory": "32Mi"},
                            "limits": {"memory": "256Mi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "state", "mountPath": "/var/lib/flotilla-agent"}],
                    }],
                    "volumes": [state_volume],
                },
            },
        },
    }));
    documents
}

/// A default cluster name: unique enough to register many clusters from one script.
pub fn random_name() -> String {
    format!(
        "cluster-{:08x}",
        rand::RngExt::random::<u32>(&mut rand::rng())
    )
}
