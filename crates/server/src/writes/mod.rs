//! The write service: every mutation of the fleet, whoever asks for it (the admin API, the git
//! worker, agent registration), goes through one function per kind here: validate (the
//! document rules in `flotilla_core::documents`) → check against memory (exists, mode,
//! resourceVersion, ownership) → store ops → commit → apply to memory, with the same per-kind
//! apply the start-up load and the replica follower use (`fleet::apply`). The functions take
//! typed documents, never bytes or HTTP types, and return domain values or a [`WriteError`].
//!
//! Invariant: writes are serialized by `AppState::admin_lock`, taken here, so the store's commit
//! order is memory's apply order. Nothing here imports `crate::api`.

pub mod bundles;
pub mod clusters;
pub mod groups;
pub mod rollouts;
pub mod sources;
pub mod tokens;

use std::time::Instant;

use flotilla_api::{Kind, ObjectMeta};
use flotilla_core::documents::FieldError;
use flotilla_store::{Op, StoreError};

use crate::state::{AppState, rfc3339};

/// Why a write was refused. Each case is one kind of answer (the HTTP layer maps it to a
/// status); the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A well-formed document breaks a rule (422).
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// The object does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The object exists, changed since the client read it, or belongs to a GitRepo (409).
    #[error("{0}")]
    Conflict(String),
    /// The kind cannot be written this way (405).
    #[error("{0}")]
    NotAllowed(String),
    /// A registration token is unknown, expired or used up (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The store could not commit; nothing changed (503).
    #[error("the store could not commit the change ({0}); nothing was changed, retry")]
    Store(#[from] StoreError),
    /// Memory disagrees with itself (500).
    #[error("{0}")]
    Internal(String),
}

impl WriteError {
    pub fn internal(error: impl std::fmt::Display) -> WriteError {
        WriteError::Internal(error.to_string())
    }
}

pub type WriteResult<T> = Result<T, WriteError>;

/// How a write treats an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// POST: the object must not exist.
    Create,
    /// PUT / apply: create or replace.
    Upsert,
}

/// A write's result: the object as it now is, and whether the write created it.
#[derive(Debug)]
pub struct Written<T> {
    pub created: bool,
    pub object: T,
}

tokio::task_local! {
    /// Set inside [`dry_run`]: how many store ops the write planned (None until it reached
    /// its commit).
    static DRY_RUN: std::cell::Cell<Option<usize>>;
}

/// What [`commit`] answers inside a dry run; never seen by a client ([`dry_run`] catches it).
const DRY_RUN_STOP: &str = "dry run: nothing committed";

/// Runs a write as a dry run (`?dryRun=All`): the write service does everything a write does up
/// to its commit (validation, the checks against memory, planning the store ops), then
/// [`commit`] refuses, so nothing is stored and memory, which is only changed after a commit,
/// stays as it was. Returns the write's own result when it failed before its commit, otherwise
/// the number of store ops it planned.
pub async fn dry_run<T, E>(
    write: impl std::future::Future<Output = Result<T, E>>,
) -> Result<usize, E> {
    let (result, planned) = DRY_RUN
        .scope(std::cell::Cell::new(None), async {
            let result = write.await;
            (result, DRY_RUN.with(std::cell::Cell::get))
        })
        .await;
    match (planned, result) {
        (Some(ops), _) => Ok(ops),
        (None, Err(error)) => Err(error),
        // A write that succeeded without committing changed nothing (no kind does today).
        (None, Ok(_)) => Ok(0),
    }
}

/// Commits ops to the store, timing the commit. Inside [`dry_run`] it commits nothing and
/// fails, so the write stops before it touches memory.
pub(crate) async fn commit(state: &AppState, ops: Vec<Op>) -> Result<u64, StoreError> {
    if DRY_RUN
        .try_with(|planned| planned.set(Some(ops.len())))
        .is_ok()
    {
        return Err(StoreError::Unavailable(DRY_RUN_STOP.into()));
    }
    let started = Instant::now();
    let revision = state.store.commit(ops).await;
    state
        .metrics
        .store_commit_seconds
        .observe(started.elapsed().as_secs_f64());
    if let Err(error) = &revision {
        tracing::error!(%error, "store write failed");
    }
    revision
}

/// Checks `metadata.resourceVersion` when the client sent one (optimistic concurrency).
pub(crate) fn check_version(
    sent: &Option<String>,
    current: Option<&str>,
    what: &str,
) -> WriteResult<()> {
    if let Some(sent) = sent
        && current != Some(sent.as_str())
    {
        return Err(WriteError::Conflict(format!(
            "{what} was changed since you read it (resourceVersion {sent} is not current); read it again and retry"
        )));
    }
    Ok(())
}

/// Checks a write against the object memory holds under its name: a create must find none; a
/// replace that sent a `resourceVersion` must find that one.
pub(crate) fn check_held(
    mode: Mode,
    kind: Kind,
    name: &str,
    sent: &Option<String>,
    held: Option<&ObjectMeta>,
) -> WriteResult<()> {
    let Some(held) = held else {
        return Ok(());
    };
    if mode == Mode::Create {
        return Err(exists_error(kind, name));
    }
    let what = match kind {
        Kind::Cluster => "the cluster",
        Kind::ClusterGroup => "the cluster group",
        Kind::Bundle => "the bundle",
        Kind::RegistrationToken => "the registration token",
        Kind::GitRepo => "the git repo",
        Kind::Secret => "the secret",
    };
    check_version(sent, held.resource_version.as_deref(), what)
}

pub(crate) fn exists_error(kind: Kind, name: &str) -> WriteError {
    WriteError::Conflict(format!(
        "{kind} {name:?} already exists; use `flotilla apply` to replace it"
    ))
}

/// The metadata a write stores: the client's name, labels and annotations; the generation bumped
/// when `changed`; the creation time kept (or now, for a new object).
pub(crate) fn fresh_metadata(
    metadata: &ObjectMeta,
    old: Option<&ObjectMeta>,
    changed: bool,
    now: u64,
) -> ObjectMeta {
    ObjectMeta {
        name: metadata.name.clone(),
        labels: metadata.labels.clone(),
        annotations: metadata.annotations.clone(),
        generation: match old {
            Some(old) if changed => old.generation + 1,
            Some(old) => old.generation,
            None => 1,
        },
        resource_version: None,
        creation_timestamp: old
            .and_then(|o| o.creation_timestamp.clone())
            .or_else(|| Some(rfc3339(now))),
    }
}

/// Deletes an object of any kind (a GitRepo with the bundles it rendered).
pub async fn delete(state: &AppState, kind: Kind, name: &str) -> WriteResult<()> {
    match kind {
        Kind::Cluster => clusters::delete(state, name).await,
        Kind::Bundle => bundles::delete(state, name).await,
        Kind::ClusterGroup => groups::delete(state, name).await,
        Kind::RegistrationToken => tokens::delete(state, name).await,
        Kind::GitRepo => sources::delete_gitrepo(state, name).await,
        Kind::Secret => sources::delete_secret(state, name).await,
    }
}

fn not_found(kind: Kind, name: &str) -> WriteError {
    WriteError::NotFound(format!("{kind} {name:?} not found"))
}
