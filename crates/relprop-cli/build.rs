//! With the `tch` feature, bake the rpath of the project-local libtorch (`.deps/libtorch/lib`, installed by
//! `cargo xtask setup tch`) into the `relprop` binary, so it also runs outside cargo with no LD_LIBRARY_PATH.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    let libtorch = std::env::var("LIBTORCH").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../.deps/libtorch").to_string());
    println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{libtorch}/lib");
}
