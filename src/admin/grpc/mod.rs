//! The gRPC management API (seed 003) on `GRPC_ADDR`, off when unset:
//! `sse.SSEManagementService` (`proto/sse.proto`), the standard
//! `grpc.health.v1` health service, and server reflection (v1 and v1alpha,
//! so `grpcurl -plaintext host:port list` needs no `.proto`).
//!
//! Contract:
//! - It runs on its own small tokio runtime on the `grpc` thread (plus at
//!   most [`BLOCKING_THREADS`] threads for the calls that block: listings,
//!   disconnects, publishes), started only when `GRPC_ADDR` is set. Nothing
//!   async ever runs on a reactor; the API reaches reactors only through the
//!   hub and the connection [`crate::cluster::Directory`], as the admin
//!   listener does.
//! - Every method does what the admin listener's HTTP endpoint of the same
//!   purpose does, through the same function ([`Admin::stats`],
//!   [`Admin::publish_body`], [`super::connections::disconnect`],
//!   [`crate::hub::status::IngestStatus::health`]); refusals carry the same
//!   detail text as the HTTP problem+json.
//! - With `ADMIN_TOKEN` set every method of `sse.SSEManagementService`
//!   needs metadata `authorization: Bearer <token>` (`UNAUTHENTICATED`
//!   otherwise); `PUBLISH_TOKEN` also opens `Publish`. The health and
//!   reflection services hold no data and are open, like `GET /health`.
//! - `WatchPresence` taps the presence feed ([`crate::presence::Watchers`]):
//!   a watcher that leaves more than [`WATCH_QUEUE`] changes unread is ended
//!   with `RESOURCE_EXHAUSTED`, never waited for.

mod service;

use std::net::TcpListener;
use std::sync::Arc;

use log::{error, info};

use super::Admin;
use crate::presence::Presence;

/// The code generated from `proto/sse.proto` (server and client).
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("sse");

    /// The encoded descriptor set of `proto/sse.proto`, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/sse_descriptor.bin"));
}

/// Threads for blocking calls at most.
pub const BLOCKING_THREADS: usize = 8;
/// Presence changes a watcher may leave unread.
pub const WATCH_QUEUE: usize = 4096;

/// Binds `GRPC_ADDR` now (so a taken port fails start-up like the other
/// listeners), then serves it on the `grpc` thread until the process ends.
pub fn start(
    addr: std::net::SocketAddr,
    admin: Arc<Admin>,
    presence: Arc<Presence>,
) -> Result<(), String> {
    let listener =
        TcpListener::bind(addr).map_err(|e| format!("cannot listen on GRPC_ADDR {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("GRPC_ADDR {addr}: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("grpc-blocking")
        .build()
        .map_err(|e| format!("cannot start the gRPC runtime: {e}"))?;
    std::thread::Builder::new()
        .name("grpc".into())
        .spawn(move || {
            runtime.block_on(async move {
                if let Err(e) = serve(listener, admin, presence).await {
                    error!("grpc: server stopped: {e}");
                }
            })
        })
        .map_err(|e| format!("cannot spawn grpc thread: {e}"))?;
    info!("gRPC management API on {addr}");
    Ok(())
}

async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    presence: Arc<Presence>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use pb::sse_management_service_server::SseManagementServiceServer;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    // Room for the largest publish body and its framing; the body's own
    // limit is checked (with the HTTP text) in `Publish`.
    let max_message = admin.cfg.publish_max_bytes.saturating_add(64 * 1024);
    let api = SseManagementServiceServer::new(service::Api { admin, presence })
        .max_decoding_message_size(max_message);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SseManagementServiceServer<service::Api>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(api)
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
