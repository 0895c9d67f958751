//! Generates the gRPC code of `proto/sse.proto` (server, and a client for
//! the tests) with `protox`, a pure-Rust protobuf compiler: no `protoc`
//! needs to be installed. The encoded descriptor set is written beside the
//! code for server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() {
    println!("cargo:rerun-if-changed=proto/sse.proto");
    let fds = protox::compile(["sse.proto"], ["proto"]).unwrap_or_else(|e| {
        panic!("proto/sse.proto: {e}");
    });
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    std::fs::write(out.join("sse_descriptor.bin"), fds.encode_to_vec())
        .expect("write sse_descriptor.bin");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // The client is built on a channel the caller makes (tests): the
        // library itself carries no client transport.
        .build_transport(false)
        .compile_fds(fds)
        .expect("generate the gRPC code");
}
