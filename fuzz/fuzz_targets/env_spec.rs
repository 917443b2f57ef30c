//! Arbitrary text as an env spec: parsing never panics, and a spec that parses prints as text
//! that parses back to the same spec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spfs_router::EnvSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = EnvSpec::parse(text) {
        let printed = spec.to_string();
        let again = EnvSpec::parse(&printed)
            .unwrap_or_else(|err| panic!("{printed:?}, printed from {text:?}, fails: {err}"));
        assert_eq!(again, spec, "{text:?} does not round-trip");
    }
});
