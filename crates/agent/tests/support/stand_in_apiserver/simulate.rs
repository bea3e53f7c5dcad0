//! What controllers would write: the "auto-ready" status of workloads, CRD conditions and the
//! synthetic nodes. Status shapes follow the real controllers closely enough for kstatus/Argo
//! style health rules (docs/dev/kube-rs-notes.md §10); Go's `omitempty` is imitated (zero
//! counters are left out).

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Map, Value, json};

/// The timestamp the stand-in uses for every time field, so test output is deterministic.
pub const TIME: &str = "2025-01-01T00:00:00Z";

/// The status a healthy, settled object of this type would have, or `None` when the stand-in
/// simulates nothing for it (the status then stays whatever it was).
pub fn ready_status(api_version: &str, kind: &str, object: &Value) -> Option<Value> {
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
    let spec = &object["spec"];
    let replicas = spec["replicas"].as_i64().unwrap_or(1);
    let status = match (api_version, kind) {
        ("apps/v1", "Deployment") => {
            let mut status = counters(&[
                ("replicas", replicas),
                ("updatedReplicas", replicas),
                ("readyReplicas", replicas),
                ("availableReplicas", replicas),
            ]);
            status.insert("observedGeneration".into(), json!(generation));
            let name = object["metadata"]["name"].as_str().unwrap_or("");
            status.insert(
                "conditions".into(),
                json!([
                    condition(
                        "Available",
                        "True",
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability."
                    ),
                    condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        &format!(
                            "ReplicaSet \"{name}-{}\" has successfully progressed.",
                            template_hash(spec)
                        ),
                    ),
                ]),
            );
            status
        }
        ("apps/v1", "StatefulSet") => {
            let mut status = counters(&[
                ("replicas", replicas),
                ("readyReplicas", replicas),
                ("currentReplicas", replicas),
                ("updatedReplicas", replicas),
                ("availableReplicas", replicas),
            ]);
            let revision = format!(
                "{}-{}",
                object["metadata"]["name"].as_str().unwrap_or(""),
                template_hash(spec)
            );
            status.insert("observedGeneration".into(), json!(generation));
            status.insert("currentRevision".into(), json!(revision));
            status.insert("updateRevision".into(), json!(revision));
            status
        }
        ("apps/v1", "DaemonSet") => {
            let mut status = counters(&[
                ("desiredNumberScheduled", 3),
                ("currentNumberScheduled", 3),
                ("updatedNumberScheduled", 3),
                ("numberReady", 3),
                ("numberAvailable", 3),
            ]);
            status.insert("observedGeneration".into(), json!(generation));
            status
        }
        ("batch/v1", "Job") => {
            let mut status = counters(&[("succeeded", spec["completions"].as_i64().unwrap_or(1))]);
            status.insert("startTime".into(), json!(TIME));
            status.insert("completionTime".into(), json!(TIME));
            status.insert(
                "conditions".into(),
                json!([
                    condition(
                        "SuccessCriteriaMet",
                        "True",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods"
                    ),
                    condition(
                        "Complete",
                        "True",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods"
                    ),
                ]),
            );
            status
        }
        ("v1", "Pod") => {
            let containers: Vec<Value> = spec["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": true, "started": true,
                           "restartCount": 0, "state": {"running": {"startedAt": TIME}}})
                })
                .collect();
            let conditions: Vec<Value> = [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
            ]
            .iter()
            .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": TIME}))
            .collect();
            let mut status = Map::new();
            status.insert("phase".into(), json!("Running"));
            status.insert("conditions".into(), json!(conditions));
            status.insert("containerStatuses".into(), json!(containers));
            status.insert("hostIP".into(), json!("10.0.0.1"));
            status.insert("podIP".into(), json!("10.244.0.10"));
            status.insert("startTime".into(), json!(TIME));
            status
        }
        ("v1", "PersistentVolumeClaim") => {
            let mut status = Map::new();
            status.insert("phase".into(), json!("Bound"));
            if let Some(modes) = spec.get("accessModes") {
                status.insert("accessModes".into(), modes.clone());
            }
            if let Some(storage) = spec["resources"]["requests"].get("storage") {
                status.insert("capacity".into(), json!({"storage": storage}));
            }
            status
        }
        ("v1", "Namespace") => Map::from_iter([("phase".to_string(), json!("Active"))]),
        ("v1", "Service") => {
            let mut status = Map::new();
            let ingress = if spec["type"] == "LoadBalancer" {
                json!({"ingress": [{"ip": "192.0.2.10"}]})
            } else {
                json!({})
            };
            status.insert("loadBalancer".into(), ingress);
            status
        }
        _ => return None,
    };
    Some(Value::Object(status))
}

/// A status with the non-zero counters only (`omitempty`).
fn counters(fields: &[(&str, i64)]) -> Map<String, Value> {
    fields
        .iter()
        .filter(|(_, n)| *n != 0)
        .map(|(k, n)| (k.to_string(), json!(n)))
        .collect()
}

fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": TIME, "lastUpdateTime": TIME})
}

/// A stable short hash of the pod template, like the `pod-template-hash` label.
fn template_hash(spec: &Value) -> String {
    let mut hasher = DefaultHasher::new();
    spec["template"].to_string().hash(&mut hasher);
    format!("{:010x}", hasher.finish() & 0xff_ffff_ffff)
}

/// A CRD's status: names accepted, and `Established` as asked.
pub fn crd_status(crd: &Value, established: bool) -> Value {
    let (status, reason) = if established {
        ("True", "InitialNamesAccepted")
    } else {
        ("False", "Installing")
    };
    let storage = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())
        .map_or_else(Vec::new, |v| vec![v.to_string()]);
    json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": TIME},
            {"type": "Established", "status": status, "reason": reason, "message": "the initial names have been accepted", "lastTransitionTime": TIME},
        ],
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": storage,
    })
}

/// The synthetic nodes `node-1..=total`; the first `ready` are Ready.
pub fn nodes(total: usize, ready: usize) -> Vec<Value> {
    (1..=total)
        .map(|i| {
            let name = format!("node-{i}");
            let ready = if i <= ready {
                json!({"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": TIME, "lastTransitionTime": TIME})
            } else {
                json!({"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "container runtime network not ready", "lastHeartbeatTime": TIME, "lastTransitionTime": TIME})
            };
            let pressure = |t: &str| json!({"type": t, "status": "False", "reason": format!("KubeletHas{}", t.trim_end_matches("Pressure")), "lastHeartbeatTime": TIME, "lastTransitionTime": TIME});
            let capacity = json!({"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"});
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {
                    "name": name, "uid": format!("00000000-0000-4000-a000-{i:012x}"), "resourceVersion": "1",
                    "creationTimestamp": TIME,
                    "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
                },
                "spec": {"podCIDR": format!("10.244.{i}.0/24")},
                "status": {
                    "conditions": [pressure("MemoryPressure"), pressure("DiskPressure"), pressure("PIDPressure"), ready],
                    "capacity": capacity, "allocatable": capacity,
                    "addresses": [{"type": "InternalIP", "address": format!("10.0.0.{i}")}, {"type": "Hostname", "address": name}],
                    "nodeInfo": {
                        "kubeletVersion": "v1.33.1", "kubeProxyVersion": "", "architecture": "amd64", "operatingSystem": "linux",
                        "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://2.0.0",
                        "bootID": "", "machineID": "", "systemUUID": "",
                    },
                },
            })
        })
        .collect()
}
