//! The typed client against a real server over HTTP: typed documents in and out, the server's
//! refusals as typed errors, list pages followed by their cursor.

use std::collections::BTreeMap;

use flotilla_api::{
    Bundle, BundleSpec, BundleTarget, ClusterGroup, ClusterGroupSpec, LabelSelector,
    RegistrationToken, RegistrationTokenSpec,
};
use flotilla_client::{AdminClient, Error, ListParams, Resource};
use flotilla_server::{ServerConfig, Settings};
use reqwest::StatusCode;

async fn start_server(data_dir: &std::path::Path) -> (flotilla_server::Server, AdminClient) {
    let server = flotilla_server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        store: Default::default(),
        settings: Settings::default(),
    })
    .await
    .expect("server starts");
    let admin = AdminClient::new(
        &format!("http://{}", server.addr),
        server
            .new_admin_token
            .as_deref()
            .expect("a fresh server's token"),
    )
    .expect("client");
    (server, admin)
}

fn group(name: &str, env: &str) -> ClusterGroup {
    let mut group = ClusterGroup::new(
        name,
        ClusterGroupSpec {
            selector: LabelSelector {
                match_labels: BTreeMap::from([("env".to_string(), env.to_string())]),
                ..LabelSelector::default()
            },
        },
    );
    group.metadata.labels.insert("env".into(), env.into());
    group
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_writes_return_the_stored_object_and_refusals_carry_the_servers_status() {
    flotilla_client::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let (server, admin) = start_server(dir.path()).await;
    let groups = admin.api::<ClusterGroup>();

    let created = groups.create(&group("prod", "prod")).await.unwrap();
    assert_eq!(created.metadata.name, "prod");
    assert_eq!(created.metadata.generation, 1);
    assert!(created.metadata.resource_version.is_some());

    let conflict = groups.create(&group("prod", "prod")).await.unwrap_err();
    assert_eq!(conflict.status(), Some(StatusCode::CONFLICT), "{conflict}");
    assert!(
        matches!(&conflict, Error::Api { reason: Some(reason), message, .. }
            if reason == "Conflict" && message.contains("prod")),
        "{conflict:?}"
    );

    let applied = groups.apply(&group("prod", "staging")).await.unwrap();
    assert!(!applied.created);
    assert_eq!(applied.object.metadata.generation, 2);
    assert!(groups.apply(&group("dev", "dev")).await.unwrap().created);

    let mut fetched = groups.get("prod").await.unwrap();
    assert_eq!(fetched.spec.selector.match_labels["env"], "staging");
    fetched.metadata.labels.insert("tier".into(), "web".into());
    fetched.clear_status();
    let replaced = groups.replace("prod", &fetched).await.unwrap();
    assert_eq!(replaced.metadata.labels["tier"], "web");

    groups.delete("dev").await.unwrap();
    assert_eq!(groups.get_opt("dev").await.unwrap(), None);
    let missing = groups.delete("dev").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");

    // A name that is not a DNS label stays one path segment: the server answers about it,
    // not about another route.
    let odd = groups.get("a/b?c").await.unwrap_err();
    assert!(
        odd.status().is_some_and(|status| status.is_client_error()),
        "{odd:?}"
    );

    let bad = admin
        .api::<Bundle>()
        .create(&Bundle::new(
            "bad",
            BundleSpec {
                targets: vec![BundleTarget::default()],
                ..BundleSpec::default()
            },
        ))
        .await
        .unwrap_err();
    assert!(
        bad.status().is_some_and(|status| status.is_client_error()),
        "{bad:?}"
    );

    let token = admin
        .api::<RegistrationToken>()
        .create(&RegistrationToken::new(
            "once",
            RegistrationTokenSpec::default(),
        ))
        .await
        .unwrap();
    assert!(token.status.and_then(|status| status.token).is_some());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_follow_the_cursor_and_filters_reach_the_server() {
    flotilla_client::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let (server, admin) = start_server(dir.path()).await;
    let groups = admin.api::<ClusterGroup>();
    for index in 0..7 {
        let env = if index % 2 == 0 { "prod" } else { "dev" };
        groups
            .create(&group(&format!("g-{index}"), env))
            .await
            .unwrap();
    }
    let first = groups
        .list(&ListParams {
            limit: Some(3),
            ..ListParams::default()
        })
        .await
        .unwrap();
    assert_eq!(first.items.len(), 3);
    let second = groups
        .list(&ListParams {
            limit: Some(3),
            continue_: first.continue_token.clone(),
            ..ListParams::default()
        })
        .await
        .unwrap();
    assert_eq!(second.items[0].metadata.name, "g-3");

    let all = groups
        .list_all(&ListParams {
            limit: Some(2),
            ..ListParams::default()
        })
        .await
        .unwrap();
    let names: Vec<&str> = all.iter().map(|group| group.name()).collect();
    assert_eq!(names, ["g-0", "g-1", "g-2", "g-3", "g-4", "g-5", "g-6"]);

    let prod = ListParams {
        label_selector: Some("env=prod".into()),
        sort: Some("-name".into()),
        ..ListParams::default()
    };
    let names: Vec<String> = groups
        .list_all(&prod)
        .await
        .unwrap()
        .into_iter()
        .map(|group| group.metadata.name)
        .collect();
    assert_eq!(names, ["g-6", "g-4", "g-2", "g-0"]);
    assert_eq!(groups.count(&ListParams::default()).await.unwrap(), 7);

    let refused = groups
        .list(&ListParams {
            sort: Some("age".into()),
            ..ListParams::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(StatusCode::BAD_REQUEST), "{refused}");
    server.shutdown().await.unwrap();
}
