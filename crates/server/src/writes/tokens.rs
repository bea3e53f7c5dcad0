//! RegistrationToken writes.

use flotilla_api::{Kind, ObjectMeta, RegistrationToken};
use flotilla_core::documents;
use flotilla_store::Op;

use super::{
    Mode, WriteError, WriteResult, Written, check_held, commit, fresh_metadata, not_found,
};
use crate::{
    auth::{hash_secret, new_secret},
    fleet::NewToken,
    records::{self, TokenRecord},
    state::{AppState, now_seconds},
    view,
};

/// Creates or replaces a registration token. A new token gets a secret, shown once in the
/// returned document (`name.secret`); a replaced token keeps its secret and its use count.
pub async fn write(
    state: &AppState,
    mut token: RegistrationToken,
    mode: Mode,
) -> WriteResult<Written<RegistrationToken>> {
    if token.metadata.name.is_empty() {
        token.metadata.name = format!("token-{}", &new_secret()[..10]);
    }
    let name = token.metadata.name.clone();
    let now = now_seconds();
    let expires_at = documents::registration_token(&token, now)?;
    let _serialized = state.admin_lock.lock().await;
    let old = {
        let fleet = state.fleet.read();
        let held = fleet.tokens().get(&name);
        check_held(
            mode,
            Kind::RegistrationToken,
            &name,
            &token.metadata.resource_version,
            held.map(|old| &old.metadata),
        )?;
        held.map(|old| (old.metadata.clone(), old.secret_hash))
    };
    let secret = old.is_none().then(new_secret);
    let secret_hash = match (&secret, &old) {
        (Some(secret), _) => hash_secret(secret),
        (None, Some((_, hash))) => *hash,
        (None, None) => {
            return Err(WriteError::internal("token has neither old nor new secret"));
        }
    };
    let mut spec = token.spec;
    spec.ttl = None;
    spec.expires_at = None;
    let mut metadata = fresh_metadata(
        &ObjectMeta {
            name: name.clone(),
            ..token.metadata
        },
        old.as_ref().map(|(m, _)| m),
        true,
        now,
    );
    let record = TokenRecord {
        metadata: metadata.clone(),
        spec: spec.clone(),
        secret_hash: hex::encode(secret_hash),
        expires_at,
    };
    let revision = commit(state, vec![records::put(records::TOKEN, &name, &record)]).await?;
    metadata.resource_version = Some(revision.to_string());
    let mut fleet = state.fleet.write();
    fleet.put_token(
        &name,
        NewToken {
            metadata,
            spec,
            secret_hash,
            expires_at,
        },
        0,
    );
    let entry = fleet
        .tokens()
        .get(&name)
        .ok_or_else(|| WriteError::internal("token vanished"))?;
    Ok(Written {
        created: old.is_none(),
        object: view::token(entry, now, secret.map(|secret| format!("{name}.{secret}"))),
    })
}

pub async fn delete(state: &AppState, name: &str) -> WriteResult<()> {
    let _serialized = state.admin_lock.lock().await;
    if !state.fleet.read().tokens().contains_key(name) {
        return Err(not_found(Kind::RegistrationToken, name));
    }
    commit(
        state,
        vec![
            records::delete(records::TOKEN, name),
            Op::DeleteCounter {
                counter: records::token_uses_counter(name),
            },
        ],
    )
    .await?;
    state.fleet.write().remove_token(name);
    Ok(())
}
