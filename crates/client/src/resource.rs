//! The `Resource` trait: what the typed client needs to know about each api kind.

use flotilla_api::{
    Bundle, BundleSpec, BundleStatus, Cluster, ClusterGroup, ClusterGroupSpec, ClusterGroupStatus,
    ClusterSpec, ClusterStatus, GitRepo, GitRepoSpec, GitRepoStatus, Kind, Object, ObjectMeta,
    RegistrationToken, RegistrationTokenSpec, RegistrationTokenStatus, Secret, SecretSpec,
    SecretStatus,
};
use serde::{Serialize, de::DeserializeOwned};

/// A document kind the admin API serves, as kube's `Resource`: its [`Kind`] (and so its URL
/// collection), and typed access to its parts.
pub trait Resource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: Kind;
    type Spec: Serialize + DeserializeOwned + Default + Clone;
    type Status: Serialize + DeserializeOwned + Clone;

    /// A new document of this kind: `apiVersion`, `kind`, name and spec, no status.
    fn new(name: &str, spec: Self::Spec) -> Self;
    fn metadata(&self) -> &ObjectMeta;
    fn metadata_mut(&mut self) -> &mut ObjectMeta;
    fn spec(&self) -> &Self::Spec;
    fn status(&self) -> Option<&Self::Status>;
    /// Drops the status (the server's part), e.g. before sending a document back.
    fn clear_status(&mut self);

    fn name(&self) -> &str {
        &self.metadata().name
    }
}

macro_rules! resource {
    ($alias:ty, $kind:expr, $spec:ty, $status:ty) => {
        impl Resource for $alias {
            const KIND: Kind = $kind;
            type Spec = $spec;
            type Status = $status;

            fn new(name: &str, spec: $spec) -> Self {
                Object {
                    api_version: flotilla_api::API_VERSION.to_string(),
                    kind: $kind.as_str().to_string(),
                    metadata: ObjectMeta {
                        name: name.to_string(),
                        ..ObjectMeta::default()
                    },
                    spec,
                    status: None,
                }
            }

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }

            fn spec(&self) -> &$spec {
                &self.spec
            }

            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }

            fn clear_status(&mut self) {
                self.status = None;
            }
        }
    };
}

resource!(Cluster, Kind::Cluster, ClusterSpec, ClusterStatus);
resource!(
    ClusterGroup,
    Kind::ClusterGroup,
    ClusterGroupSpec,
    ClusterGroupStatus
);
resource!(Bundle, Kind::Bundle, BundleSpec, BundleStatus);
resource!(
    RegistrationToken,
    Kind::RegistrationToken,
    RegistrationTokenSpec,
    RegistrationTokenStatus
);
resource!(GitRepo, Kind::GitRepo, GitRepoSpec, GitRepoStatus);
resource!(Secret, Kind::Secret, SecretSpec, SecretStatus);

/// Runs `$body` with `$K` naming the [`Resource`] type of a [`Kind`] chosen at run time, for code
/// that takes the kind as an argument (`flotilla get <kind>`) and then works typed:
///
/// ```no_run
/// # async fn delete(
/// #     client: &flotilla_client::AdminClient,
/// #     kind: flotilla_api::Kind,
/// # ) -> flotilla_client::Result<()> {
/// flotilla_client::with_resource!(kind, K => client.api::<K>().delete("web").await)
/// # }
/// ```
///
/// The match is exhaustive over `Kind`: a new kind does not compile until it has a `Resource`.
#[macro_export]
macro_rules! with_resource {
    ($kind:expr, $K:ident => $body:expr) => {
        match $kind {
            ::flotilla_api::Kind::Cluster => {
                type $K = ::flotilla_api::Cluster;
                $body
            }
            ::flotilla_api::Kind::ClusterGroup => {
                type $K = ::flotilla_api::ClusterGroup;
                $body
            }
            ::flotilla_api::Kind::Bundle => {
                type $K = ::flotilla_api::Bundle;
                $body
            }
            ::flotilla_api::Kind::RegistrationToken => {
                type $K = ::flotilla_api::RegistrationToken;
                $body
            }
            ::flotilla_api::Kind::GitRepo => {
                type $K = ::flotilla_api::GitRepo;
                $body
            }
            ::flotilla_api::Kind::Secret => {
                type $K = ::flotilla_api::Secret;
                $body
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of<K: Resource>() -> Kind {
        K::KIND
    }

    #[test]
    fn every_kind_has_the_resource_type_that_names_it() {
        for kind in Kind::ALL {
            let typed = with_resource!(kind, K => kind_of::<K>());
            assert_eq!(typed, kind);
            let document = with_resource!(kind, K => {
                serde_json::to_value(K::new("x", Default::default())).unwrap()
            });
            assert_eq!(document["kind"], kind.as_str());
            assert_eq!(document["apiVersion"], flotilla_api::API_VERSION);
            assert_eq!(document["metadata"]["name"], "x");
            assert!(document.get("status").is_none(), "{document}");
        }
    }
}
