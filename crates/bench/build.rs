//! Embeds the commit the binary was built from as `FLOTILLA_BUILD_COMMIT`, so a bench result
//! names the code that produced it, wherever the binary runs (`-dirty` when built from changed
//! files: a result must not pass for the commit's).

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let commit = flotilla_buildinfo::commit(
        std::path::Path::new(&manifest_dir),
        flotilla_buildinfo::Dirty::Marked,
    );
    println!("cargo:rustc-env=FLOTILLA_BUILD_COMMIT={commit}");
}
