//! The OIP gRPC service and client (`serve::grpc::proto`) from
//! `oip/proto/grpc_predict_v2.proto`, over the messages `tensorlet-oip`
//! generates from the same file (`tensorlet_oip::grpc`): protox parses it (no
//! `protoc` needed), tonic-prost-build writes the code to `OUT_DIR`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../oip/proto";
    println!("cargo:rerun-if-changed={proto}/grpc_predict_v2.proto");
    let descriptors = protox::compile(["grpc_predict_v2.proto"], [proto])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .extern_path(".inference", "::tensorlet_oip::grpc")
        .compile_fds(descriptors)?;
    Ok(())
}
