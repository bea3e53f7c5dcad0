//! The pure parsers and rules a client's input reaches (selectors in both forms, label rules,
//! manifest validation, merge patches, customization) never panic on generated input, and what
//! they accept round-trips. Stable-toolchain property tests (proptest); the coverage-guided
//! fuzzers in `fuzz/` run the same entry points where a nightly toolchain exists.

use std::collections::BTreeMap;

use flotilla_api::{LabelSelector, Patch, agent::DeployOptions};
use flotilla_core::{
    customize::{customize, is_cluster_scoped, merge_patch, validate_manifests},
    selector::{Selector, validate_label_key, validate_label_value},
};
use flotilla_testkit::generate::{json_value, selector_text};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn selector_strings_never_panic_and_accepted_ones_round_trip(text in selector_text()) {
        if let Ok(selector) = Selector::parse(&text) {
            let written = selector.to_string();
            let again = Selector::parse(&written);
            prop_assert!(again.as_ref().is_ok_and(|s| *s == selector), "{} -> {}: {:?}", text, written, again);
            let from_api = Selector::from_api(&selector.to_api());
            prop_assert!(from_api.as_ref().is_ok_and(|s| *s == selector), "{:?}", from_api);
        }
    }

    #[test]
    fn any_text_is_a_selector_or_an_error(text in ".{0,64}") {
        let _ = Selector::parse(&text);
    }

    #[test]
    fn selector_documents_never_panic(document in json_value()) {
        if let Ok(api) = serde_json::from_value::<LabelSelector>(document) {
            let _ = Selector::from_api(&api);
        }
    }

    #[test]
    fn label_rules_never_panic_and_accepted_labels_select(key in ".{0,70}", value in ".{0,70}") {
        if validate_label_key(&key).is_ok() && validate_label_value(&value).is_ok() {
            let labels = BTreeMap::from([(key.clone(), value.clone())]);
            let selector = Selector::from_api(&LabelSelector {
                match_labels: labels.clone(),
                ..LabelSelector::default()
            });
            prop_assert!(selector.is_ok_and(|s| s.matches_map(&labels)), "{:?}={:?}", key, value);
        }
    }

    #[test]
    fn manifests_and_merge_patches_never_panic(
        manifests in prop::collection::vec(json_value(), 0..4),
        patch in json_value(),
    ) {
        let _ = validate_manifests(&manifests);
        for manifest in &manifests {
            let mut patched = manifest.clone();
            merge_patch(&mut patched, &patch);
            // RFC 7386: applying the same patch twice changes nothing more.
            let mut twice = patched.clone();
            merge_patch(&mut twice, &patch);
            prop_assert_eq!(twice, patched);
        }
    }

    #[test]
    fn customization_of_any_input_is_a_result(
        manifests in prop::collection::vec(json_value(), 0..4),
        patch in json_value(),
        namespace in prop::option::of("[a-z]{0,5}"),
        vars in prop::collection::btree_map("(cluster\\.name|values\\.[a-z]{1,2})", ".{0,5}", 0..3),
    ) {
        let options = DeployOptions {
            namespace,
            patches: vec![Patch { api_version: None, kind: None, name: None, patch }],
            vars,
            ..DeployOptions::default()
        };
        if let Ok(out) = customize(&manifests, &options, &|a, k| !is_cluster_scoped(a, k)) {
            // What customization returns is always a valid set of manifests.
            prop_assert!(validate_manifests(&out).is_ok());
        }
    }
}
