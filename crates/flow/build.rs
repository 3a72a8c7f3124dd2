// Generates the gRPC types and the Observer service from Hubble-compatible protos (needs
// `protoc`, see the README's build dependencies).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure().compile_protos(&["proto/observer/observer.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
