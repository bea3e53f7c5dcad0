//! A label selector's string form: parsed or refused, and what parses writes back the same.
#![no_main]

use flotilla_core::selector::Selector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(selector) = Selector::parse(text) {
        let again = Selector::parse(&selector.to_string()).expect("a written selector parses");
        assert_eq!(again, selector);
    }
});
