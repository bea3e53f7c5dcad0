//! `Api<K>`: the typed calls on one kind's collection (list, get, create, replace, apply, delete).

use std::marker::PhantomData;

use flotilla_api::List;

use crate::{AdminClient, Resource, Result};

/// Query options of a list call (`GET /api/v1/<plural>`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListParams {
    /// Label selector, e.g. `env=prod,tier in (a,b),!canary`.
    pub label_selector: Option<String>,
    /// Only objects in this state (clusters: `Online`, `Offline`, `Pending`; bundles: `Ready`, …).
    pub state: Option<String>,
    /// `name` or `-name`.
    pub sort: Option<String>,
    /// Items per page (the server's default and cap apply).
    pub limit: Option<usize>,
    /// The cursor a previous page returned as `continue`.
    pub continue_: Option<String>,
}

impl ListParams {
    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        let ListParams {
            label_selector,
            state,
            sort,
            limit,
            continue_,
        } = self;
        [
            ("limit", limit.map(|limit| limit.to_string())),
            ("labelSelector", label_selector.clone()),
            ("state", state.clone()),
            ("sort", sort.clone()),
            ("continue", continue_.clone()),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
        .collect()
    }
}

/// What `apply` did: created the object or replaced it, and the object as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied<K> {
    pub created: bool,
    pub object: K,
}

/// The admin API of one kind, as kube's `Api<K>`: `client.api::<Bundle>().get("web")`.
pub struct Api<K> {
    pub(crate) client: AdminClient,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api {
            client: self.client.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: Resource> Api<K> {
    pub(crate) fn new(client: AdminClient) -> Api<K> {
        Api {
            client,
            kind: PhantomData,
        }
    }

    /// One page of the matching objects (`params.limit` and `params.continue_` choose which).
    pub async fn list(&self, params: &ListParams) -> Result<List<K>> {
        self.client.list_as(K::KIND, params).await
    }

    /// Every matching object, following `continue` page by page.
    pub async fn list_all(&self, params: &ListParams) -> Result<Vec<K>> {
        self.client.list_all_as(K::KIND, params).await
    }

    /// How many objects match, without fetching them.
    pub async fn count(&self, params: &ListParams) -> Result<u64> {
        self.client.count_of::<K>(K::KIND, params).await
    }

    pub async fn get(&self, name: &str) -> Result<K> {
        self.client.get_as(K::KIND, name).await
    }

    /// The object, or `None` when the server says it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        match self.get(name).await {
            Ok(object) => Ok(Some(object)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Creates the object; the server refuses (409) when one of that name exists.
    pub async fn create(&self, document: &K) -> Result<K> {
        self.client.create_as(K::KIND, document).await
    }

    /// Replaces the object `name` (clusters: labels only).
    pub async fn replace(&self, name: &str, document: &K) -> Result<K> {
        self.client.replace_as(K::KIND, name, document).await
    }

    /// Creates or replaces the object the document names.
    pub async fn apply(&self, document: &K) -> Result<Applied<K>> {
        self.client.apply_as(document).await
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        self.client.delete(K::KIND, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_params_send_only_what_is_set_under_the_servers_names() {
        assert!(ListParams::default().query().is_empty());
        let params = ListParams {
            label_selector: Some("env in (a,b)".into()),
            state: Some("Online".into()),
            sort: Some("-name".into()),
            limit: Some(100),
            continue_: Some("abc".into()),
        };
        assert_eq!(
            params.query(),
            [
                ("limit", "100".to_string()),
                ("labelSelector", "env in (a,b)".into()),
                ("state", "Online".into()),
                ("sort", "-name".into()),
                ("continue", "abc".into()),
            ]
        );
    }
}
