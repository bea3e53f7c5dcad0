//! Health of live Kubernetes objects, judged from the JSON the API server returns.
//!
//! Pure: no IO and no clock. The rules follow kstatus (`pkg/kstatus/status/core.go`,
//! `generic.go`) and Argo CD's gitops-engine (`pkg/health/health_*.go`); see
//! `docs/dev/kube-rs-notes.md` §10.
//!
//! Generic checks run first, for every kind: a `metadata.deletionTimestamp`, a
//! `metadata.generation` above `status.observedGeneration` (when both are present), a
//! `Stalled=True` condition and a `Reconciling=True` condition. Then the kind decides; kinds are
//! recognized by API group and kind, whatever the version (`apps/v1beta2` Deployments are judged
//! like `apps/v1` ones). Integer status fields the API server leaves out (Go `omitempty` drops
//! zeros) count as 0. A kind without rules is Ready unless it carries a `Ready` condition that is
//! not `True`.
//!
//! Every reason starts with `<Kind> <name>` so it reads on its own in a status report, e.g.
//! `Deployment web: 1 of 3 replicas available`.

use std::fmt;

use serde_json::Value;

/// How a live object is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Reconciled and serving as declared.
    Ready,
    /// Still converging (rolling out, scheduling, binding, running...); says why.
    NotReady(String),
    /// Will not converge without a change (crash loop, deadline exceeded, job failed...); says why.
    Failed(String),
}

impl Health {
    pub fn is_ready(&self) -> bool {
        matches!(self, Health::Ready)
    }

    /// Why the object is not ready, `None` when it is.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Health::Ready => None,
            Health::NotReady(why) | Health::Failed(why) => Some(why),
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Ready => f.write_str("ready"),
            Health::NotReady(why) => write!(f, "not ready: {why}"),
            Health::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// Judges the health of one live object (`apiVersion`, `kind`, `metadata`, `spec`, `status`).
pub fn judge(object: &Value) -> Health {
    let o = Obj::new(object);
    if let Some(health) = generic(&o) {
        return health;
    }
    match (o.group(), o.kind()) {
        ("apps", "Deployment") => deployment(&o),
        ("apps", "StatefulSet") => stateful_set(&o),
        ("apps", "DaemonSet") => daemon_set(&o),
        ("batch", "Job") => job(&o),
        ("", "Pod") => pod(&o),
        ("", "PersistentVolumeClaim") => persistent_volume_claim(&o),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => custom_resource_definition(&o),
        _ => ready_condition(&o),
    }
}

/// Whether a CustomResourceDefinition is served: its `Established` condition is `True`.
pub fn crd_established(object: &Value) -> bool {
    Obj::new(object).condition_is("Established", "True")
}

/// Borrowed accessors over one object.
struct Obj<'a> {
    value: &'a Value,
    /// `<Kind> <name>`, the start of every reason.
    who: String,
}

/// One entry of `status.conditions`.
struct Condition<'a> {
    status: &'a str,
    reason: Option<&'a str>,
    message: Option<&'a str>,
}

impl Condition<'_> {
    /// `reason (message)`, `reason`, `message` or `fallback`, whichever the condition carries.
    fn explain(&self, fallback: &str) -> String {
        match (self.reason, self.message) {
            (Some(reason), Some(message)) => format!("{reason} ({message})"),
            (Some(text), None) | (None, Some(text)) => text.to_string(),
            (None, None) => fallback.to_string(),
        }
    }
}

impl<'a> Obj<'a> {
    fn new(value: &'a Value) -> Self {
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("object");
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>");
        Obj {
            value,
            who: format!("{kind} {name}"),
        }
    }

    fn kind(&self) -> &'a str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    /// The API group: `apps` for `apps/v1`, empty for the core group (`v1`).
    fn group(&self) -> &'a str {
        let api_version = self
            .value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        api_version.rsplit_once('/').map_or("", |(group, _)| group)
    }

    fn get(&self, pointer: &str) -> Option<&'a Value> {
        self.value.pointer(pointer).filter(|v| !v.is_null())
    }

    fn str(&self, pointer: &str) -> Option<&'a str> {
        self.get(pointer).and_then(Value::as_str)
    }

    fn int(&self, pointer: &str) -> Option<i64> {
        self.get(pointer).and_then(Value::as_i64)
    }

    /// An integer status field; the API server leaves zeros out.
    fn count(&self, pointer: &str) -> i64 {
        self.int(pointer).unwrap_or(0)
    }

    /// `spec.replicas`, 1 when unset (the API server default).
    fn desired_replicas(&self) -> i64 {
        self.int("/spec/replicas").unwrap_or(1)
    }

    fn condition(&self, kind: &str) -> Option<Condition<'a>> {
        let conditions = self.get("/status/conditions")?.as_array()?;
        let found = conditions
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))?;
        let text = |key: &str| {
            found
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        Some(Condition {
            status: text("status").unwrap_or("Unknown"),
            reason: text("reason"),
            message: text("message"),
        })
    }

    fn condition_is(&self, kind: &str, status: &str) -> bool {
        self.condition(kind).is_some_and(|c| c.status == status)
    }

    fn not_ready(&self, why: impl fmt::Display) -> Health {
        Health::NotReady(format!("{}: {why}", self.who))
    }

    fn failed(&self, why: impl fmt::Display) -> Health {
        Health::Failed(format!("{}: {why}", self.who))
    }

    /// `metadata.generation` is newer than what the controller reports, with `observed` 0 when
    /// the status leaves it out.
    fn generation_ahead(&self) -> Option<Health> {
        let generation = self.count("/metadata/generation");
        let observed = self.count("/status/observedGeneration");
        (generation > observed).then(|| {
            self.not_ready(format_args!(
                "generation {generation} not yet observed (controller at {observed})"
            ))
        })
    }
}

/// kstatus `checkGenericProperties`: applies to every kind before its own rules.
fn generic(o: &Obj) -> Option<Health> {
    if o.get("/metadata/deletionTimestamp").is_some() {
        return Some(o.not_ready("being deleted"));
    }
    if let (Some(generation), Some(observed)) = (
        o.int("/metadata/generation"),
        o.int("/status/observedGeneration"),
    ) && generation > observed
    {
        return Some(o.not_ready(format_args!(
            "generation {generation} not yet observed (controller at {observed})"
        )));
    }
    if let Some(stalled) = o.condition("Stalled")
        && stalled.status == "True"
    {
        return Some(o.failed(format_args!(
            "stalled: {}",
            stalled.explain("no reason given")
        )));
    }
    if let Some(reconciling) = o.condition("Reconciling")
        && reconciling.status == "True"
    {
        return Some(o.not_ready(format_args!(
            "reconciling: {}",
            reconciling.explain("in progress")
        )));
    }
    None
}

fn deployment(o: &Obj) -> Health {
    if o.get("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return o.not_ready("paused");
    }
    if let Some(progressing) = o.condition("Progressing")
        && progressing.reason == Some("ProgressDeadlineExceeded")
    {
        return o.failed(format_args!(
            "rollout stuck: {}",
            progressing.explain("ProgressDeadlineExceeded")
        ));
    }
    if let Some(ahead) = o.generation_ahead() {
        return ahead;
    }
    let wanted = o.desired_replicas();
    let updated = o.count("/status/updatedReplicas");
    let replicas = o.count("/status/replicas");
    let available = o.count("/status/availableReplicas");
    // The order and wording follow `kubectl rollout status`.
    if updated < wanted {
        return o.not_ready(format_args!("{updated} of {wanted} replicas updated"));
    }
    if replicas > updated {
        return o.not_ready(format_args!(
            "{} old replicas pending termination",
            replicas - updated
        ));
    }
    if available < wanted {
        return o.not_ready(format_args!("{available} of {wanted} replicas available"));
    }
    Health::Ready
}

fn stateful_set(o: &Obj) -> Health {
    // Argo CD: an observedGeneration of 0 means the controller has not seen the object yet.
    let observed = o.count("/status/observedGeneration");
    if observed == 0 {
        return o.not_ready("not yet observed by the controller");
    }
    if let Some(ahead) = o.generation_ahead() {
        return ahead;
    }
    let wanted = o.desired_replicas();
    let ready = o.count("/status/readyReplicas");
    if ready < wanted {
        return o.not_ready(format_args!("{ready} of {wanted} replicas ready"));
    }
    let strategy = o
        .str("/spec/updateStrategy/type")
        .unwrap_or("RollingUpdate");
    if strategy == "OnDelete" {
        // Pods are replaced only when someone deletes them: ready is all we can wait for.
        return Health::Ready;
    }
    // The API server defaults the partition to 0, which partitions nothing: then the revisions
    // decide, below.
    if let Some(partition) = o
        .int("/spec/updateStrategy/rollingUpdate/partition")
        .filter(|p| *p > 0)
    {
        // Only ordinals >= partition are updated; the rest keep the old revision on purpose.
        let to_update = (wanted - partition).max(0);
        let updated = o.count("/status/updatedReplicas");
        if updated < to_update {
            return o.not_ready(format_args!(
                "{updated} of {to_update} replicas updated (partition {partition})"
            ));
        }
        return Health::Ready;
    }
    let current = o.str("/status/currentRevision");
    let update = o.str("/status/updateRevision");
    if current != update {
        let updated = o.count("/status/updatedReplicas");
        return o.not_ready(format_args!(
            "rolling update: {updated} of {wanted} replicas at revision {}",
            update.unwrap_or("<unknown>")
        ));
    }
    Health::Ready
}

fn daemon_set(o: &Obj) -> Health {
    if let Some(ahead) = o.generation_ahead() {
        return ahead;
    }
    let Some(desired) = o.int("/status/desiredNumberScheduled") else {
        return o.not_ready("not yet scheduled by the controller");
    };
    let on_delete = o.str("/spec/updateStrategy/type") == Some("OnDelete");
    let updated = o.count("/status/updatedNumberScheduled");
    if !on_delete && updated < desired {
        return o.not_ready(format_args!("{updated} of {desired} pods updated"));
    }
    let available = o.count("/status/numberAvailable");
    if available < desired {
        return o.not_ready(format_args!("{available} of {desired} pods available"));
    }
    Health::Ready
}

fn job(o: &Obj) -> Health {
    if o.condition_is("Complete", "True") {
        return Health::Ready;
    }
    // `FailureTarget` (Kubernetes >= 1.31) precedes `Failed` while pods terminate: the outcome
    // is already decided.
    for kind in ["Failed", "FailureTarget"] {
        if let Some(failed) = o.condition(kind)
            && failed.status == "True"
        {
            return Health::Failed(format!(
                "{} failed: {}",
                o.who,
                failed.explain("no reason given")
            ));
        }
    }
    if o.condition_is("Suspended", "True")
        || o.get("/spec/suspend").and_then(Value::as_bool) == Some(true)
    {
        return o.not_ready("suspended");
    }
    if o.condition_is("SuccessCriteriaMet", "True") {
        return o.not_ready("succeeded, waiting for pods to terminate");
    }
    if o.get("/status/startTime").is_none() {
        return o.not_ready("not started");
    }
    o.not_ready(format_args!(
        "running ({} active, {} succeeded, {} failed)",
        o.count("/status/active"),
        o.count("/status/succeeded"),
        o.count("/status/failed")
    ))
}

fn pod(o: &Obj) -> Health {
    let phase = o.str("/status/phase").unwrap_or("");
    match phase {
        "Succeeded" => return Health::Ready,
        "Failed" => {
            let why = match (o.str("/status/reason"), o.str("/status/message")) {
                (Some(reason), Some(message)) => format!("{reason} ({message})"),
                (Some(text), None) | (None, Some(text)) => text.to_string(),
                (None, None) => "a container exited with an error".to_string(),
            };
            return Health::Failed(format!("{} failed: {why}", o.who));
        }
        _ => {}
    }
    // Init containers crash-loop the same way and keep the pod from ever starting.
    let statuses = ["/status/initContainerStatuses", "/status/containerStatuses"]
        .into_iter()
        .filter_map(|p| o.get(p).and_then(Value::as_array))
        .flatten();
    let mut waiting = None;
    for status in statuses {
        let Some(reason) = status
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
        else {
            continue;
        };
        let container = status
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>");
        if reason == "CrashLoopBackOff" {
            return o.failed(format_args!("container {container} is in CrashLoopBackOff"));
        }
        waiting.get_or_insert((container, reason));
    }
    if phase == "Running" && o.condition_is("Ready", "True") {
        return Health::Ready;
    }
    if let Some((container, reason)) = waiting {
        return o.not_ready(format_args!("container {container} waiting: {reason}"));
    }
    if let Some(scheduled) = o.condition("PodScheduled")
        && scheduled.status == "False"
    {
        return o.not_ready(format_args!(
            "not scheduled: {}",
            scheduled.explain("no reason given")
        ));
    }
    match phase {
        "" => o.not_ready("no status yet"),
        "Running" => o.not_ready("running, not ready"),
        other => o.not_ready(other),
    }
}

fn persistent_volume_claim(o: &Obj) -> Health {
    match o.str("/status/phase") {
        Some("Bound") => Health::Ready,
        Some("Lost") => o.failed("lost its volume"),
        Some(phase) => o.not_ready(phase),
        None => o.not_ready("no status yet"),
    }
}

fn custom_resource_definition(o: &Obj) -> Health {
    let established = o.condition("Established");
    if established.as_ref().is_some_and(|c| c.status == "True") {
        return Health::Ready;
    }
    if let Some(names) = o.condition("NamesAccepted")
        && names.status == "False"
    {
        return o.failed(format_args!(
            "names not accepted: {}",
            names.explain("no reason given")
        ));
    }
    if let Some(established) = established
        && established.status == "False"
        && established.reason.is_some_and(|r| r != "Installing")
    {
        return o.failed(format_args!(
            "not established: {}",
            established.explain("no reason given")
        ));
    }
    o.not_ready("not established yet")
}

/// Any other kind: a `Ready` condition decides when there is one.
fn ready_condition(o: &Obj) -> Health {
    match o.condition("Ready") {
        None => Health::Ready,
        Some(ready) if ready.status == "True" => Health::Ready,
        Some(ready) => o.not_ready(format_args!(
            "Ready is {}: {}",
            ready.status,
            ready.explain("no reason given")
        )),
    }
}

/// Whether a manifest is a CustomResourceDefinition (applied before the kinds it defines, and
/// judged by `Established`).
pub(super) fn is_crd(manifest: &Value) -> bool {
    manifest.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")
        && manifest
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("apiextensions.k8s.io/"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn not_ready(health: Health) -> String {
        match health {
            Health::NotReady(why) => why,
            other => panic!("expected NotReady, got {other:?}"),
        }
    }

    fn failed(health: Health) -> String {
        match health {
            Health::Failed(why) => why,
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    fn deployment(spec: Value, status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "generation": 2},
            "spec": spec,
            "status": status,
        })
    }

    fn rolled_out(replicas: i64) -> Value {
        json!({
            "observedGeneration": 2,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        })
    }

    fn with_conditions(mut object: Value, conditions: Value) -> Value {
        object["status"]["conditions"] = conditions;
        object
    }

    // --- generic ---

    #[test]
    fn deletion_timestamp_means_being_deleted() {
        let mut object = deployment(json!({"replicas": 3}), rolled_out(3));
        object["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert_eq!(not_ready(judge(&object)), "Deployment web: being deleted");
    }

    #[test]
    fn generation_ahead_of_observed_is_not_ready_for_any_kind() {
        let object = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "generation": 5},
            "status": {"observedGeneration": 4},
        });
        let why = not_ready(judge(&object));
        assert!(
            why.contains("Widget w") && why.contains("not yet observed"),
            "{why}"
        );
    }

    #[test]
    fn generation_check_needs_both_fields() {
        let object = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "generation": 5},
            "status": {},
        });
        assert_eq!(judge(&object), Health::Ready);
    }

    #[test]
    fn stalled_true_is_failed_with_reason_and_message() {
        let object = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w"},
            "status": {"conditions": [
                {"type": "Stalled", "status": "True", "reason": "BadSpec", "message": "size too big"},
            ]},
        });
        assert_eq!(
            failed(judge(&object)),
            "Widget w: stalled: BadSpec (size too big)"
        );
    }

    #[test]
    fn reconciling_true_is_not_ready() {
        let object = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w"},
            "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Reconciling", "status": "True", "reason": "Progressing"},
            ]},
        });
        assert_eq!(
            not_ready(judge(&object)),
            "Widget w: reconciling: Progressing"
        );
    }

    #[test]
    fn stalled_and_reconciling_false_are_ignored() {
        let object = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w"},
            "status": {"conditions": [
                {"type": "Stalled", "status": "False"},
                {"type": "Reconciling", "status": "False"},
            ]},
        });
        assert_eq!(judge(&object), Health::Ready);
    }

    // --- Deployment ---

    #[test]
    fn deployment_rolled_out_is_ready() {
        let object = deployment(json!({"replicas": 3}), rolled_out(3));
        assert_eq!(judge(&object), Health::Ready);
        assert!(judge(&object).is_ready());
    }

    #[test]
    fn deployment_replicas_default_to_one() {
        assert_eq!(judge(&deployment(json!({}), rolled_out(1))), Health::Ready);
        let why = not_ready(judge(&deployment(
            json!({}),
            json!({"observedGeneration": 2}),
        )));
        assert_eq!(why, "Deployment web: 0 of 1 replicas updated");
    }

    #[test]
    fn deployment_scaled_to_zero_is_ready_without_status_counts() {
        let object = deployment(json!({"replicas": 0}), json!({"observedGeneration": 2}));
        assert_eq!(judge(&object), Health::Ready);
    }

    #[test]
    fn deployment_missing_status_is_not_ready() {
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "generation": 1},
            "spec": {"replicas": 2},
        });
        let why = not_ready(judge(&object));
        assert!(why.contains("generation 1 not yet observed"), "{why}");
    }

    #[test]
    fn deployment_old_observed_generation_is_not_ready() {
        let mut status = rolled_out(3);
        status["observedGeneration"] = json!(1);
        let why = not_ready(judge(&deployment(json!({"replicas": 3}), status)));
        assert!(why.contains("generation 2 not yet observed"), "{why}");
    }

    #[test]
    fn deployment_paused_is_not_ready() {
        let object = deployment(json!({"replicas": 3, "paused": true}), rolled_out(3));
        assert_eq!(not_ready(judge(&object)), "Deployment web: paused");
    }

    #[test]
    fn deployment_progress_deadline_exceeded_is_failed() {
        let object = with_conditions(
            deployment(json!({"replicas": 3}), rolled_out(1)),
            json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                    "message": "ReplicaSet \"web-7d\" has timed out progressing."}]),
        );
        let why = failed(judge(&object));
        assert!(
            why.starts_with("Deployment web: rollout stuck: ProgressDeadlineExceeded"),
            "{why}"
        );
        assert!(why.contains("timed out progressing"), "{why}");
    }

    #[test]
    fn deployment_progressing_with_other_reason_is_not_failed() {
        let object = with_conditions(
            deployment(json!({"replicas": 3}), rolled_out(3)),
            json!([{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]),
        );
        assert_eq!(judge(&object), Health::Ready);
    }

    #[test]
    fn deployment_not_all_updated() {
        let status = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
                            "availableReplicas": 3});
        assert_eq!(
            not_ready(judge(&deployment(json!({"replicas": 3}), status))),
            "Deployment web: 1 of 3 replicas updated"
        );
    }

    #[test]
    fn deployment_old_replicas_pending_termination() {
        let status = json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3,
                            "availableReplicas": 3});
        assert_eq!(
            not_ready(judge(&deployment(json!({"replicas": 3}), status))),
            "Deployment web: 1 old replicas pending termination"
        );
    }

    #[test]
    fn deployment_not_all_available() {
        let status = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
                            "availableReplicas": 1});
        assert_eq!(
            not_ready(judge(&deployment(json!({"replicas": 3}), status))),
            "Deployment web: 1 of 3 replicas available"
        );
    }

    #[test]
    fn deployment_omitted_available_counts_as_zero() {
        let status = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3});
        assert_eq!(
            not_ready(judge(&deployment(json!({"replicas": 3}), status))),
            "Deployment web: 0 of 3 replicas available"
        );
    }

    #[test]
    fn deployment_in_other_apps_version_uses_the_same_rules() {
        let mut object = deployment(json!({"replicas": 2}), json!({"observedGeneration": 2}));
        object["apiVersion"] = json!("apps/v1beta2");
        assert!(matches!(judge(&object), Health::NotReady(_)));
    }

    // --- StatefulSet ---

    fn stateful_set(spec: Value, status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "generation": 3},
            "spec": spec, "status": status,
        })
    }

    fn sts_status(ready: i64, updated: i64, current: &str, update: &str) -> Value {
        json!({"observedGeneration": 3, "replicas": 3, "readyReplicas": ready,
               "currentReplicas": 3, "updatedReplicas": updated,
               "currentRevision": current, "updateRevision": update})
    }

    #[test]
    fn stateful_set_rolled_out_is_ready() {
        let object = stateful_set(json!({"replicas": 3}), sts_status(3, 3, "db-1", "db-1"));
        assert_eq!(judge(&object), Health::Ready);
    }

    #[test]
    fn stateful_set_never_observed_is_not_ready() {
        let object = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db"}, "spec": {"replicas": 1},
        });
        assert_eq!(
            not_ready(judge(&object)),
            "StatefulSet db: not yet observed by the controller"
        );
    }

    #[test]
    fn stateful_set_old_generation_is_not_ready() {
        let mut status = sts_status(3, 3, "a", "a");
        status["observedGeneration"] = json!(2);
        let why = not_ready(judge(&stateful_set(json!({"replicas": 3}), status)));
        assert!(why.contains("generation 3 not yet observed"), "{why}");
    }

    #[test]
    fn stateful_set_waits_for_ready_replicas_default_one() {
        let status = json!({"observedGeneration": 3});
        assert_eq!(
            not_ready(judge(&stateful_set(json!({}), status))),
            "StatefulSet db: 0 of 1 replicas ready"
        );
        let why = not_ready(judge(&stateful_set(
            json!({"replicas": 3}),
            sts_status(2, 3, "a", "a"),
        )));
        assert_eq!(why, "StatefulSet db: 2 of 3 replicas ready");
    }

    #[test]
    fn stateful_set_revision_mismatch_is_rolling() {
        let why = not_ready(judge(&stateful_set(
            json!({"replicas": 3}),
            sts_status(3, 1, "db-1", "db-2"),
        )));
        assert_eq!(
            why,
            "StatefulSet db: rolling update: 1 of 3 replicas at revision db-2"
        );
    }

    #[test]
    fn stateful_set_partition_counts_only_replicas_above_it() {
        let spec = json!({"replicas": 3, "updateStrategy": {"type": "RollingUpdate",
                          "rollingUpdate": {"partition": 2}}});
        // One replica (ordinal 2) must be updated; revisions legitimately differ.
        let done = stateful_set(spec.clone(), sts_status(3, 1, "db-1", "db-2"));
        assert_eq!(judge(&done), Health::Ready);
        let waiting = stateful_set(spec, sts_status(3, 0, "db-1", "db-2"));
        assert_eq!(
            not_ready(judge(&waiting)),
            "StatefulSet db: 0 of 1 replicas updated (partition 2)"
        );
    }

    #[test]
    fn stateful_set_partition_above_replicas_needs_no_update() {
        let spec = json!({"replicas": 3, "updateStrategy": {"rollingUpdate": {"partition": 5}}});
        let object = stateful_set(spec, sts_status(3, 0, "db-1", "db-2"));
        assert_eq!(judge(&object), Health::Ready);
    }

    #[test]
    fn stateful_set_partition_zero_waits_for_revisions() {
        let spec = json!({"replicas": 3, "updateStrategy": {"type": "RollingUpdate",
                          "rollingUpdate": {"partition": 0}}});
        let object = stateful_set(spec.clone(), sts_status(3, 3, "db-1", "db-2"));
        assert!(matches!(judge(&object), Health::NotReady(_)));
        let object = stateful_set(spec, sts_status(3, 3, "db-2", "db-2"));
        assert_eq!(judge(&object), Health::Ready);
    }

    #[test]
    fn stateful_set_on_delete_is_ready_once_ready() {
        let spec = json!({"replicas": 3, "updateStrategy": {"type": "OnDelete"}});
        let object = stateful_set(spec.clone(), sts_status(3, 0, "db-1", "db-2"));
        assert_eq!(judge(&object), Health::Ready);
        let object = stateful_set(spec, sts_status(1, 0, "db-1", "db-2"));
        assert!(matches!(judge(&object), Health::NotReady(_)));
    }

    // --- DaemonSet ---

    fn daemon_set(spec: Value, status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "generation": 1},
            "spec": spec, "status": status,
        })
    }

    #[test]
    fn daemon_set_rolled_out_is_ready() {
        let status = json!({"observedGeneration": 1, "desiredNumberScheduled": 4,
                            "currentNumberScheduled": 4, "updatedNumberScheduled": 4,
                            "numberAvailable": 4, "numberReady": 4});
        assert_eq!(judge(&daemon_set(json!({}), status)), Health::Ready);
    }

    #[test]
    fn daemon_set_without_desired_count_is_not_ready() {
        let why = not_ready(judge(&daemon_set(
            json!({}),
            json!({"observedGeneration": 1}),
        )));
        assert_eq!(why, "DaemonSet agent: not yet scheduled by the controller");
    }

    #[test]
    fn daemon_set_on_no_nodes_is_ready() {
        let status = json!({"observedGeneration": 1, "desiredNumberScheduled": 0,
                            "currentNumberScheduled": 0, "numberReady": 0});
        assert_eq!(judge(&daemon_set(json!({}), status)), Health::Ready);
    }

    #[test]
    fn daemon_set_waits_for_updated_and_available() {
        let status = json!({"observedGeneration": 1, "desiredNumberScheduled": 4,
                            "updatedNumberScheduled": 2, "numberAvailable": 4});
        assert_eq!(
            not_ready(judge(&daemon_set(json!({}), status))),
            "DaemonSet agent: 2 of 4 pods updated"
        );
        let status = json!({"observedGeneration": 1, "desiredNumberScheduled": 4,
                            "updatedNumberScheduled": 4, "numberAvailable": 3});
        assert_eq!(
            not_ready(judge(&daemon_set(json!({}), status))),
            "DaemonSet agent: 3 of 4 pods available"
        );
    }

    #[test]
    fn daemon_set_on_delete_skips_the_updated_count() {
        let status = json!({"observedGeneration": 1, "desiredNumberScheduled": 4,
                            "numberAvailable": 4});
        let object = daemon_set(json!({"updateStrategy": {"type": "OnDelete"}}), status);
        assert_eq!(judge(&object), Health::Ready);
    }

    #[test]
    fn daemon_set_without_observed_generation_is_not_ready() {
        let status = json!({"desiredNumberScheduled": 1, "updatedNumberScheduled": 1,
                            "numberAvailable": 1});
        let why = not_ready(judge(&daemon_set(json!({}), status)));
        assert!(why.contains("not yet observed"), "{why}");
    }

    // --- Job ---

    fn job(status: Value) -> Value {
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "generation": 1},
            "spec": {"template": {}}, "status": status,
        })
    }

    #[test]
    fn job_complete_is_ready() {
        let object = job(json!({"startTime": "t", "succeeded": 1, "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True"},
            {"type": "Complete", "status": "True"},
        ]}));
        assert_eq!(judge(&object), Health::Ready);
    }

    #[test]
    fn job_failed_carries_reason_and_message() {
        let object = job(json!({"startTime": "t", "failed": 7, "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit"},
        ]}));
        assert_eq!(
            failed(judge(&object)),
            "Job migrate failed: BackoffLimitExceeded (Job has reached the specified backoff limit)"
        );
        let object = job(json!({"conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"},
        ]}));
        assert_eq!(
            failed(judge(&object)),
            "Job migrate failed: BackoffLimitExceeded"
        );
    }

    #[test]
    fn job_failure_target_is_failed() {
        let object = job(json!({"startTime": "t", "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"},
        ]}));
        assert_eq!(
            failed(judge(&object)),
            "Job migrate failed: DeadlineExceeded"
        );
    }

    #[test]
    fn job_without_start_time_is_not_started() {
        assert_eq!(
            not_ready(judge(&job(json!({})))),
            "Job migrate: not started"
        );
        let object =
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"}});
        assert_eq!(not_ready(judge(&object)), "Job migrate: not started");
    }

    #[test]
    fn job_started_is_running() {
        let object = job(json!({"startTime": "t", "active": 1, "failed": 1}));
        assert_eq!(
            not_ready(judge(&object)),
            "Job migrate: running (1 active, 0 succeeded, 1 failed)"
        );
    }

    #[test]
    fn job_false_conditions_do_not_decide() {
        let object = job(json!({"startTime": "t", "active": 1, "conditions": [
            {"type": "Failed", "status": "False"}, {"type": "Complete", "status": "False"},
        ]}));
        assert!(not_ready(judge(&object)).contains("running"));
    }

    #[test]
    fn job_suspended_is_not_ready() {
        let object = job(json!({"conditions": [{"type": "Suspended", "status": "True"}]}));
        assert_eq!(not_ready(judge(&object)), "Job migrate: suspended");
    }

    // --- Pod ---

    fn pod(status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": status})
    }

    #[test]
    fn pod_succeeded_is_ready() {
        assert_eq!(judge(&pod(json!({"phase": "Succeeded"}))), Health::Ready);
    }

    #[test]
    fn pod_running_and_ready_is_ready() {
        let object = pod(json!({"phase": "Running", "conditions": [
            {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"},
        ]}));
        assert_eq!(judge(&object), Health::Ready);
    }

    #[test]
    fn pod_running_not_ready_is_not_ready() {
        let object = pod(json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
        ]}));
        assert_eq!(not_ready(judge(&object)), "Pod p: running, not ready");
    }

    #[test]
    fn pod_crash_loop_is_failed() {
        let object = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "sidecar", "state": {"running": {}}},
            {"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                  "message": "back-off 5m0s"}}},
        ]}));
        assert_eq!(
            failed(judge(&object)),
            "Pod p: container app is in CrashLoopBackOff"
        );
    }

    #[test]
    fn pod_init_container_crash_loop_is_failed() {
        let object = pod(json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "init", "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
        ]}));
        assert_eq!(
            failed(judge(&object)),
            "Pod p: container init is in CrashLoopBackOff"
        );
    }

    #[test]
    fn pod_failed_phase_is_failed() {
        let object = pod(json!({"phase": "Failed", "reason": "Evicted",
                                "message": "low on memory"}));
        assert_eq!(
            failed(judge(&object)),
            "Pod p failed: Evicted (low on memory)"
        );
        assert!(matches!(
            judge(&pod(json!({"phase": "Failed"}))),
            Health::Failed(_)
        ));
    }

    #[test]
    fn pod_pending_reports_waiting_reason_or_scheduling() {
        let object = pod(json!({"phase": "Pending", "containerStatuses": [
            {"name": "app", "state": {"waiting": {"reason": "ImagePullBackOff"}}},
        ]}));
        assert_eq!(
            not_ready(judge(&object)),
            "Pod p: container app waiting: ImagePullBackOff"
        );
        let object = pod(json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available"},
        ]}));
        assert_eq!(
            not_ready(judge(&object)),
            "Pod p: not scheduled: Unschedulable (0/3 nodes are available)"
        );
        assert_eq!(
            not_ready(judge(&pod(json!({"phase": "Pending"})))),
            "Pod p: Pending"
        );
    }

    #[test]
    fn pod_without_status_is_not_ready() {
        let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        assert_eq!(not_ready(judge(&object)), "Pod p: no status yet");
    }

    // --- PersistentVolumeClaim ---

    fn pvc(status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "data"}, "status": status})
    }

    #[test]
    fn pvc_phases() {
        assert_eq!(judge(&pvc(json!({"phase": "Bound"}))), Health::Ready);
        assert_eq!(
            failed(judge(&pvc(json!({"phase": "Lost"})))),
            "PersistentVolumeClaim data: lost its volume"
        );
        assert_eq!(
            not_ready(judge(&pvc(json!({"phase": "Pending"})))),
            "PersistentVolumeClaim data: Pending"
        );
        assert_eq!(
            not_ready(judge(&pvc(json!({})))),
            "PersistentVolumeClaim data: no status yet"
        );
    }

    // --- CustomResourceDefinition ---

    fn crd(conditions: Value) -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.com"},
               "status": {"conditions": conditions}})
    }

    #[test]
    fn crd_established_is_ready() {
        let object = crd(json!([
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
        ]));
        assert_eq!(judge(&object), Health::Ready);
        assert!(crd_established(&object));
    }

    #[test]
    fn crd_names_not_accepted_is_failed() {
        let object = crd(json!([
            {"type": "NamesAccepted", "status": "False", "reason": "ListKindConflict",
             "message": "\"WidgetList\" is already in use"},
            {"type": "Established", "status": "False", "reason": "NotAccepted"},
        ]));
        let why = failed(judge(&object));
        assert!(
            why.starts_with(
                "CustomResourceDefinition widgets.example.com: names not accepted: ListKindConflict"
            ),
            "{why}"
        );
        assert!(!crd_established(&object));
    }

    #[test]
    fn crd_installing_is_not_ready() {
        let object = crd(json!([
            {"type": "NamesAccepted", "status": "True"},
            {"type": "Established", "status": "False", "reason": "Installing"},
        ]));
        assert!(matches!(judge(&object), Health::NotReady(_)));
        assert!(!crd_established(&object));
        let object = json!({"apiVersion": "apiextensions.k8s.io/v1",
                            "kind": "CustomResourceDefinition", "metadata": {"name": "x"}});
        assert_eq!(
            not_ready(judge(&object)),
            "CustomResourceDefinition x: not established yet"
        );
        assert!(!crd_established(&object));
    }

    #[test]
    fn crd_not_established_for_another_reason_is_failed() {
        let object = crd(json!([{"type": "Established", "status": "False", "reason": "Broken"}]));
        assert!(matches!(judge(&object), Health::Failed(_)));
    }

    // --- other kinds ---

    #[test]
    fn other_kinds_without_conditions_are_ready() {
        for (api_version, kind) in [("v1", "ConfigMap"), ("v1", "Service"), ("v1", "Secret")] {
            let object =
                json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}});
            assert_eq!(judge(&object), Health::Ready, "{kind}");
        }
    }

    #[test]
    fn other_kinds_follow_their_ready_condition() {
        let object = json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "tls"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        });
        assert_eq!(judge(&object), Health::Ready);
        let object = json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "tls"},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Pending",
                                       "message": "Issuing certificate"}]},
        });
        assert_eq!(
            not_ready(judge(&object)),
            "Certificate tls: Ready is False: Pending (Issuing certificate)"
        );
        let object = json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "tls"},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
        });
        assert!(matches!(judge(&object), Health::NotReady(_)));
    }

    #[test]
    fn kinds_are_matched_with_their_group() {
        // A custom `Deployment` kind in another group is not judged by apps/v1 rules.
        let object = json!({
            "apiVersion": "example.com/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 3},
        });
        assert_eq!(judge(&object), Health::Ready);
    }

    #[test]
    fn health_display_and_accessors() {
        let health = Health::Failed("Job x failed: y".into());
        assert_eq!(health.to_string(), "failed: Job x failed: y");
        assert_eq!(health.reason(), Some("Job x failed: y"));
        assert_eq!(Health::Ready.reason(), None);
        assert_eq!(Health::Ready.to_string(), "ready");
        assert_eq!(Health::NotReady("a".into()).to_string(), "not ready: a");
    }
}
