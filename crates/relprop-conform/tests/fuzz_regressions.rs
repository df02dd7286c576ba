//! Regression corpus of the `spec_yaml` fuzz target (fuzz/, docs/hardening.md), run in the normal test suite:
//! every saved YAML text gives validated cases or an error naming the file, never a panic or a hang.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use relprop_conform::spec::parse_str;

#[test]
fn spec_yaml_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus/spec_yaml");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let Ok(text) = std::str::from_utf8(&bytes) else { continue };
        let t = Instant::now();
        match parse_str(text, Path::new("fuzz.yaml"), &root) {
            Ok(cases) => {
                for c in cases {
                    let _ = c.analyzer();
                }
            }
            Err(e) => assert!(e.to_string().contains("fuzz.yaml"), "{}: error does not name the file: {e}", f.display()),
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{} took {:?}", f.display(), t.elapsed());
    }
}

#[test]
fn load_file_and_parse_str_agree() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join("specs/properties.yaml");
    let a = relprop_conform::spec::load_file(&path, &root).unwrap();
    let b = parse_str(&std::fs::read_to_string(&path).unwrap(), &path, &root).unwrap();
    assert_eq!(a.len(), b.len());
    assert!(a.iter().zip(&b).all(|(x, y)| x.origin == y.origin && x.name == y.name && x.suite == y.suite));
}
