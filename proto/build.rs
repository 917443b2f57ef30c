//! Compiles `proto/vfs.proto` into Rust with protox (a pure-Rust protobuf compiler, so no
//! system `protoc` is needed) and tonic-prost-build (messages, client and server).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/vfs.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
