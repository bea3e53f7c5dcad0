//! An admin request body, as YAML or JSON, through parsing, typing and the bundle write's
//! validation against an empty fleet: any input is a value or an error, never a panic.
#![no_main]

use flotilla_server::{
    api::body::{RawBody, typed},
    fleet::Fleet,
    writes::{Mode, bundles::prepare},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (json, rest) = data.split_first().map_or((false, data), |(b, r)| (b & 1 == 1, r));
    let body = RawBody {
        bytes: axum::body::Bytes::copy_from_slice(rest),
        content_type: Some(if json { "application/json" } else { "application/yaml" }.into()),
    };
    let Ok(document) = body.document() else { return };
    if let Ok(bundle) = typed::<flotilla_api::Bundle>(document.clone()) {
        let _ = prepare(&Fleet::default(), bundle, Mode::Upsert, None);
    }
    if let Ok(group) = typed::<flotilla_api::ClusterGroup>(document.clone()) {
        let _ = flotilla_core::documents::cluster_group(&group);
    }
    if let Ok(token) = typed::<flotilla_api::RegistrationToken>(document) {
        let _ = flotilla_core::documents::registration_token(&token, 0);
    }
});
