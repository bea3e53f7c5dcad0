//! List pages: `total` counts what the filters accept, for every kind.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{API_VERSION, Harness, bundle};

async fn total(h: &Harness, path: &str) -> u64 {
    let response = h.admin(Method::GET, path, None).await;
    assert_eq!(response.status().as_u16(), 200, "{path}");
    let page: Value = response.json().await.expect("list JSON");
    page["total"].as_u64().expect("a total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_list_totals_what_the_filter_accepts_for_every_kind() {
    let h = Harness::start().await;
    for (name, env) in [("a", "prod"), ("b", "prod"), ("c", "dev")] {
        let mut web = bundle(name, json!({}));
        web["metadata"]["labels"] = json!({"env": env});
        h.apply_ok(&web).await;
        h.apply_ok(&json!({"apiVersion": API_VERSION, "kind": "ClusterGroup",
            "metadata": {"name": name, "labels": {"env": env}},
            "spec": {"selector": {"matchLabels": {"env": env}}}}))
            .await;
    }
    h.token("open", json!({})).await;
    h.token("spent", json!({"maxUses": 1})).await;
    let spent = h.token("spent-2", json!({"maxUses": 1})).await;
    h.register_ok(&spent, "store-1", "c1", json!({})).await;

    for plural in ["bundles", "clustergroups"] {
        assert_eq!(total(&h, &format!("/api/v1/{plural}")).await, 3);
        let filtered = format!("/api/v1/{plural}?labelSelector=env%3Dprod");
        assert_eq!(total(&h, &filtered).await, 2, "{plural}");
        let filtered = format!("/api/v1/{plural}?labelSelector=env%3Dprod&limit=1");
        assert_eq!(
            total(&h, &filtered).await,
            2,
            "{plural}: a page's total is the list's"
        );
    }
    assert_eq!(total(&h, "/api/v1/registrationtokens").await, 3);
    assert_eq!(
        total(&h, "/api/v1/registrationtokens?state=UsedUp").await,
        1
    );
    h.shutdown().await;
}
