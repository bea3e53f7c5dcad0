//! An admin request body, as YAML or JSON, through parsing, typing and the bundle write's
//! validation against an empty fleet: any input is a value or an error, never a panic.
#![no_main]

use flotilla_server::{
    api::{
        admin::{Mode, prepare_bundle},
        body::{RawBody, typed},
    },
    fleet::Fleet,
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
        let _ = prepare_bundle(&Fleet::default(), bundle, Mode::Upsert, None);
    }
    let _ = typed::<flotilla_api::ClusterGroup>(document.clone());
    let _ = typed::<flotilla_api::RegistrationToken>(document);
});
