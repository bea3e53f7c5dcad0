//! An agent's sync and registration bodies, decoded and, where they decode, run through the
//! customization an agent applies with the options a server could send.
#![no_main]

use flotilla_api::agent::{DeployOptions, RegisterRequest, SyncRequest};
use flotilla_core::customize::{customize, is_cluster_scoped};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<SyncRequest>(data);
    let _ = serde_json::from_slice::<RegisterRequest>(data);
    if let Ok((manifests, options)) =
        serde_json::from_slice::<(Vec<serde_json::Value>, DeployOptions)>(data)
    {
        let _ = customize(&manifests, &options, &|a, k| !is_cluster_scoped(a, k));
    }
});
