//! Compiles `proto/` without a system `protoc`: protox parses the files into a descriptor set,
//! which is written to `OUT_DIR` for server reflection and handed to tonic-prost-build.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/google/api/http.proto",
    "proto/google/api/annotations.proto",
    "proto/google/rpc/error_details.proto",
    "proto/google/rpc/status.proto",
    "proto/mandate/v1/common.proto",
    "proto/mandate/v1/identity.proto",
    "proto/mandate/v1/contractor.proto",
    "proto/mandate/v1/permission.proto",
];

/// The messages with a PIN field.
const PIN_MESSAGES: &[&str] = &[
    "RegisterContractorResponse",
    "AssociateByPinRequest",
    "GetPinResponse",
    "RotatePinResponse",
    "ReissuePinResponse",
    "ReissueCustomerPinResponse",
    "RemoveAssociateResponse",
    "LinkLegacyCustomerRequest",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_source_info(true).include_imports(true);
    for proto in PROTOS {
        compiler.open_file(proto)?;
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("mandate_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Undecodable requests answer INVALID_ARGUMENT (src/api/codec.rs).
        .codec_path("crate::api::codec::StrictCodec")
        // Messages that carry a PIN get a Debug that hides it (src/api/redact.rs).
        .skip_debug(PIN_MESSAGES.iter().map(|m| format!(".mandate.v1.{m}")))
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
