//! Compiles `proto/` into the gRPC service code (tonic) and a descriptor set for server
//! reflection. `temporal.api.common.v1` maps onto the hand-written types in `src/payload.rs`.

// A build script reads what cargo sets in its environment.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["kmscodec/v1/codec.proto"], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("kmscodec_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .extern_path(".temporal.api.common.v1", "crate::payload")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
