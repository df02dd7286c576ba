//! With the `libtorch` feature: make binaries and tests find libtorch's shared libraries with no environment
//! variables (tch binaries get no rpath of their own; DEPS.md).
//! 1. an rpath to `$LIBTORCH/lib` for this crate's own tests, examples and benches (and, for a CUDA libtorch,
//!    `libtorch_cuda` linked in even though no symbol of it is referenced);
//! 2. symlinks to `$LIBTORCH/lib/*` in `OUT_DIR/libtorch-lib` plus a `rustc-link-search` for that folder:
//!    cargo puts link-search folders inside the target directory on the library path of `cargo run` and
//!    `cargo test` for every crate that depends on this one (folders outside it, like `.deps/`, are ignored).
//!
//! Without the feature this does nothing.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_LIBTORCH").is_none() {
        return;
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let libtorch = match std::env::var_os("LIBTORCH") {
        Some(p) => manifest.join(p), // absolute stays absolute
        None => manifest.join("../../.deps/libtorch"),
    };
    let lib = libtorch.join("lib");
    if !lib.join("libtorch_cpu.so").is_file() {
        panic!(
            "relprop-tch: no libtorch at {} (feature `libtorch`): run `cargo xtask setup tch` first",
            libtorch.display()
        );
    }
    let lib = lib.canonicalize().unwrap_or(lib);
    println!("cargo:rerun-if-changed={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").is_file() {
        // A CUDA libtorch (not what `cargo xtask setup tch` installs): nothing references libtorch_cuda's
        // symbols, so `--as-needed` would drop it and CUDA would look unavailable. Binaries of other crates
        // need the same line in their own build script (README.md).
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }

    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("libtorch-lib");
    link_all(&lib, &out).unwrap_or_else(|e| panic!("relprop-tch: linking {} into {}: {e}", lib.display(), out.display()));
    println!("cargo:rustc-link-search=native={}", out.display());
}

fn link_all(lib: &Path, out: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    for entry in std::fs::read_dir(lib)? {
        let entry = entry?;
        let dst = out.join(entry.file_name());
        if dst.symlink_metadata().is_ok() {
            std::fs::remove_file(&dst)?;
        }
        std::os::unix::fs::symlink(entry.path(), &dst)?;
    }
    Ok(())
}
