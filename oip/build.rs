//! With the `grpc` feature: the OIP gRPC messages (`grpc.rs`) from
//! `proto/grpc_predict_v2.proto`, parsed by protox (no `protoc` needed) and
//! written to `OUT_DIR` by prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/grpc_predict_v2.proto");
    #[cfg(feature = "grpc")]
    {
        let descriptors = protox::compile(["grpc_predict_v2.proto"], ["proto"])?;
        prost_build::Config::new().compile_fds(descriptors)?;
    }
    Ok(())
}
