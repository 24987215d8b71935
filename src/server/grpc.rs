//! The gRPC codec service (`kmscodec.v1.Codec`), the standard gRPC health service and server
//! reflection, over TCP and, optionally, a Unix domain socket.
//!
//! Same codec core and rules as HTTP: one output per input, in order; foreign payloads pass
//! through on decode; the same limits; status codes from the one table in [`super::error`]. The
//! `Payload` messages are wire-compatible with `temporal.api.common.v1`, so SDK types serialize
//! directly. Messages larger than the body limit are refused by tonic itself with OUT_OF_RANGE;
//! our own payload-count and payload-size limits answer RESOURCE_EXHAUSTED.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::AppState;
use super::error::grpc_code;
use super::listener::Peer;
use crate::auth::{AuthError, Authenticator, Authorizer, Credentials, Principal, Role};
use crate::codec::{CodecError, ErrorClass, Operation};
use crate::config::valid_namespace;
use crate::metrics::{Op, Transport};
use crate::payload::{Payload, Payloads};

/// Generated service and client code for `proto/kmscodec/v1/codec.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("kmscodec.v1");

    /// The encoded `FileDescriptorSet` of kmscodec's protos, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/kmscodec_descriptor.bin"));
}

use proto::codec_server::{Codec, CodecServer};
use proto::{DecodeRequest, EncodeRequest};

/// The fully qualified service name, as the health service reports it.
pub const SERVICE_NAME: &str = "kmscodec.v1.Codec";

/// The codec service.
#[derive(Debug, Clone)]
pub struct GrpcCodec {
    state: AppState,
    authenticator: Arc<Authenticator>,
    authorizer: Arc<Authorizer>,
}

/// The codec service with message size limits from the configuration, authenticating callers
/// with `authenticator` (the `authorization` metadata, as `Authorization` over HTTP).
pub fn service(
    state: AppState,
    max_message_bytes: usize,
    authenticator: Arc<Authenticator>,
    authorizer: Arc<Authorizer>,
) -> CodecServer<GrpcCodec> {
    CodecServer::new(GrpcCodec {
        state,
        authenticator,
        authorizer,
    })
    .max_decoding_message_size(max_message_bytes)
    // Sealing adds a header per payload: allow the answer to be somewhat larger.
    .max_encoding_message_size(max_message_bytes.saturating_mul(2))
}

fn status_for(error: &CodecError) -> Status {
    Status::new(
        grpc_code(error.class()),
        format!("{}: {}", error.code(), error.public_message()),
    )
}

impl GrpcCodec {
    async fn run(
        &self,
        op: Op,
        caller: Caller,
        namespace: String,
        payloads: Vec<Payload>,
    ) -> Result<Response<Payloads>, Status> {
        let started = Instant::now();
        let count = payloads.len();
        let bytes: usize = payloads.iter().map(Payload::size).sum();
        let permit = Arc::clone(&self.state.in_flight).try_acquire_owned();
        let role = match op {
            Op::Encode => Role::Write,
            Op::Decode | Op::Download => Role::Read,
        };
        let valid = valid_namespace(&namespace);
        let result = if permit.is_err() {
            Err((
                ErrorClass::Unavailable,
                Status::unavailable("overloaded: too many requests in flight; retry shortly"),
            ))
        } else if let Err(error) = &caller.principal {
            Err(if error.is_unavailable() {
                (
                    ErrorClass::Unavailable,
                    Status::unavailable(format!("auth_unavailable: {error}")),
                )
            } else {
                (
                    ErrorClass::Unauthenticated,
                    Status::unauthenticated(format!("unauthenticated: {error}")),
                )
            })
        } else if valid
            && !caller.principal.as_ref().is_ok_and(|principal| {
                self.authorizer
                    .permits(&self.authenticator, principal, &namespace, role)
            })
        {
            Err((
                ErrorClass::Forbidden,
                Status::permission_denied(format!(
                    "forbidden: not allowed to {} in this namespace (needs the {role} role)",
                    op.as_str()
                )),
            ))
        } else if valid {
            let codec = &self.state.codec;
            // gRPC has no storage-reference flag: decode returns references unchanged (as the
            // gRPC codec service did before External Storage).
            let operation = match op {
                Op::Encode => Operation::Encode,
                Op::Decode => Operation::Decode {
                    preserve_storage_refs: true,
                },
                Op::Download => Operation::Download,
            };
            codec.call(operation, &namespace, payloads).await
            .map_err(|error| {
                match error.class() {
                    ErrorClass::Internal | ErrorClass::Unavailable => {
                        tracing::warn!(op = op.as_str(), namespace, %error, "grpc codec request failed");
                    }
                    _ => tracing::debug!(op = op.as_str(), namespace, error = ?error, "grpc codec request refused"),
                }
                (error.class(), status_for(&error))
            })
        } else {
            Err((
                ErrorClass::InvalidInput,
                Status::invalid_argument(if namespace.is_empty() {
                    "missing_namespace: set the namespace field"
                } else {
                    "invalid_namespace: namespace must be 1-255 printable characters without spaces or '/'"
                }),
            ))
        };
        drop(permit);
        let elapsed = started.elapsed();
        self.state.metrics.observe(
            Transport::Grpc,
            op,
            result.as_ref().map(|_| ()).map_err(|(class, _)| *class),
            count,
            bytes,
            elapsed,
        );
        let (status, code) = match &result {
            Ok(_) => (200, "ok"),
            Err((class, status)) => (
                super::error::http_status(*class).as_u16(),
                grpc_error_code(status),
            ),
        };
        self.state.audit.record(&crate::audit::Record {
            listener: "grpc",
            request_id: &caller.request_id,
            client: caller.client,
            principal: caller.principal.as_ref().ok().map(|p| p.id.as_str()),
            namespace: valid.then_some(namespace.as_str()),
            op: op.as_str(),
            payloads: count,
            bytes,
            status,
            result: code,
            duration: elapsed,
        });
        result
            .map(|payloads| Response::new(Payloads { payloads }))
            .map_err(|(_, status)| status)
    }
}

/// Who called, for authorization and the audit log.
struct Caller {
    request_id: String,
    client: Option<std::net::SocketAddr>,
    principal: Result<Principal, AuthError>,
}

impl GrpcCodec {
    async fn caller<T>(&self, request: &Request<T>) -> Caller {
        let metadata = request.metadata();
        let text = |key: &str| metadata.get(key).and_then(|value| value.to_str().ok());
        // Over TCP the connection is served by `super::listener`, which adds the peer (and a
        // verified client certificate's names); over the Unix socket there is none.
        let peer = request.extensions().get::<Peer>();
        let credentials = Credentials {
            authorization: text("authorization"),
            authorization_extras: text("authorization-extras"),
            cookie_token: None,
            client_cert_names: peer.map(|peer| &peer.client_cert_names[..]).unwrap_or(&[]),
        };
        let principal = self.authenticator.authenticate(&credentials).await;
        Caller {
            request_id: crate::audit::request_id(text("x-request-id")),
            client: peer
                .map(|peer| peer.address)
                .or_else(|| request.remote_addr()),
            principal,
        }
    }
}

/// The audit log's `result` for a refused gRPC call: the status code's name.
fn grpc_error_code(status: &Status) -> &'static str {
    match status.code() {
        tonic::Code::InvalidArgument => "invalid_argument",
        tonic::Code::ResourceExhausted => "resource_exhausted",
        tonic::Code::NotFound => "not_found",
        tonic::Code::PermissionDenied => "permission_denied",
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::Unavailable => "unavailable",
        _ => "internal",
    }
}

#[tonic::async_trait]
impl Codec for GrpcCodec {
    async fn encode(&self, request: Request<EncodeRequest>) -> Result<Response<Payloads>, Status> {
        let caller = self.caller(&request).await;
        let request = request.into_inner();
        self.run(Op::Encode, caller, request.namespace, request.payloads)
            .await
    }

    async fn decode(&self, request: Request<DecodeRequest>) -> Result<Response<Payloads>, Status> {
        let caller = self.caller(&request).await;
        let request = request.into_inner();
        self.run(Op::Decode, caller, request.namespace, request.payloads)
            .await
    }
}
