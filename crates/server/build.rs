//! Embeds the commit the server was built from as `FLOTILLA_BUILD_COMMIT` (served at
//! `/api/v1/version`, and shown by `flotilla version` for the client too: one binary, one
//! build). No dirty flag: it would make every edit anywhere in the workspace rebuild the server
//! crate.

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let commit = flotilla_buildinfo::commit(
        std::path::Path::new(&manifest_dir),
        flotilla_buildinfo::Dirty::Ignored,
    );
    println!("cargo:rustc-env=FLOTILLA_BUILD_COMMIT={commit}");
}
