//! Compiles `proto/statnode.proto` with protox (pure Rust, so no `protoc` is needed to build)
//! and generates the prost types into `OUT_DIR`.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto/statnode.proto");
    let descriptors = protox::compile(["proto/statnode.proto"], ["proto"])?;
    prost_build::Config::new()
        // Sorted maps: encoding the same tree twice gives the same bytes.
        .btree_map(["."])
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .compile_fds(descriptors)?;
    Ok(())
}
