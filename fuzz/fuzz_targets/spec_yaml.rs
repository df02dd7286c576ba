//! YAML conformance-case text → validated cases (`relprop_conform::spec::parse_str`), with the repository as
//! root so paths to the real golden files resolve and validation runs all the way to the analyzer.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Ok(cases) = relprop_conform::spec::parse_str(text, Path::new("fuzz.yaml"), &root) {
        for c in cases {
            let _ = c.analyzer();
            let _ = c.family();
        }
    }
});
