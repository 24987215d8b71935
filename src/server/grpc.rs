//! The gRPC codec service (`kmscodec.v1.Codec`), the standard gRPC health service and server
//! reflection, over TCP and, optionally, a Unix domain socket.
//!
//! Same codec core and rules as HTTP: one output per input, in order; foreign payloads pass
//! through on decode; the same limits; status codes from the one table in [`super::error`]. The
//! `Payload` messages are wire-compatible with `temporal.api.common.v1`, so SDK types serialize
//! directly. Messages larger than the body limit are refused by tonic itself with OUT_OF_RANGE;
//! our own payload-count and payload-size limits answer RESOURCE_EXHAUSTED.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use super::AppState;
use super::error::grpc_code;
use super::listener::Peer;
use super::pipeline::{self, Admitted, Operation, Pipeline, Refusal, Report};
use crate::auth::{Credentials, Principal};
use crate::metrics::Transport;
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

/// The codec service's handlers: namespace, authorization, codec and report, for a call the
/// [`Gate`] admitted.
#[derive(Debug, Clone)]
pub struct GrpcCodec {
    pipeline: Pipeline,
}

/// The gRPC codec service: the [`Gate`] in front of tonic's generated server.
pub type Service = Gate<CodecServer<GrpcCodec>>;

/// The codec service with message size limits from the configuration, for the listener whose
/// place in the pipeline is `policy`.
pub fn service(state: AppState, policy: pipeline::ListenerPolicy) -> Service {
    let max_message_bytes = policy.body_limit_bytes;
    let pipeline = Pipeline::new(state, policy);
    let server = CodecServer::new(GrpcCodec {
        pipeline: pipeline.clone(),
    })
    .max_decoding_message_size(max_message_bytes)
    // Sealing adds a header per payload: allow the answer to be somewhat larger.
    .max_encoding_message_size(max_message_bytes.saturating_mul(2));
    Gate {
        pipeline,
        inner: server,
    }
}

/// What the [`Gate`] hands the handler with each admitted call.
#[derive(Debug)]
struct Ticket {
    principal: Principal,
    admitted: Admitted,
    request_id: String,
    client: Option<std::net::SocketAddr>,
    started: Instant,
}

/// Authenticates a call from its metadata and takes its permit *before* tonic reads the
/// message, then runs the rest under the request's deadline (the message read included).
#[derive(Debug, Clone)]
pub struct Gate<S> {
    pipeline: Pipeline,
    inner: S,
}

impl<S: NamedService> NamedService for Gate<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for Gate<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send + 'static>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The service that was polled ready serves this call; a fresh clone takes its place.
        let inner = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, inner);
        let pipeline = self.pipeline.clone();
        Box::pin(async move {
            let started = Instant::now();
            let operation = match request.uri().path().rsplit('/').next() {
                Some("Encode") => Some(Operation::Encode),
                Some("Decode") => Some(Operation::Decode {
                    preserve_storage_refs: true,
                }),
                _ => None,
            };
            let Some(operation) = operation else {
                return inner.call(request).await;
            };
            let headers = request.headers();
            let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
            let request_id = crate::audit::request_id(text("x-request-id"));
            // Over TCP the connection is served by `super::listener`, which adds the peer (and a
            // verified client certificate's names); over the Unix socket there is none.
            let peer = request.extensions().get::<Peer>().cloned();
            let client = peer.as_ref().map(|peer| peer.address);
            let credentials = Credentials {
                authorization: text("authorization"),
                authorization_extras: text("authorization-extras"),
                cookie_token: None,
                client_cert_names: peer
                    .as_ref()
                    .map(|peer| &peer.client_cert_names[..])
                    .unwrap_or(&[]),
            };
            let admission = match pipeline.authenticate(&credentials).await {
                Ok(principal) => pipeline.admit().map(|admitted| (principal, admitted)),
                Err(refusal) => Err(refusal),
            };
            let (principal, admitted) = match admission {
                Ok(admission) => admission,
                Err(refusal) => {
                    pipeline.finish(&Report {
                        transport: Transport::Grpc,
                        operation,
                        request_id: &request_id,
                        client,
                        principal: None,
                        namespace: None,
                        payloads: 0,
                        bytes: 0,
                        result: Err(&refusal),
                        started,
                    });
                    return Ok(status(&refusal).into_http());
                }
            };
            let deadline = admitted.deadline;
            let principal_id = principal.id.clone();
            let slot = Arc::new(std::sync::Mutex::new(Some(Ticket {
                principal,
                admitted,
                request_id: request_id.clone(),
                client,
                started,
            })));
            request.extensions_mut().insert(Arc::clone(&slot));
            match tokio::time::timeout_at(deadline, inner.call(request)).await {
                Ok(Ok(response)) => {
                    // The handler did not take its ticket: tonic refused the message itself
                    // (over the size limit, not protobuf). Reported here, as the handler would.
                    let untaken = slot.lock().ok().and_then(|mut slot| slot.take());
                    if let Some(ticket) = untaken {
                        let limit = pipeline.policy().body_limit_bytes;
                        let refusal = unread_message(&response, limit);
                        pipeline.finish(&Report {
                            transport: Transport::Grpc,
                            operation,
                            request_id: &ticket.request_id,
                            client: ticket.client,
                            principal: Some(&ticket.principal.id),
                            namespace: None,
                            payloads: 0,
                            bytes: 0,
                            result: Err(&refusal),
                            started: ticket.started,
                        });
                    }
                    Ok(response)
                }
                Err(_) => {
                    // The handler did not finish (it records its own outcome when it does).
                    let refusal = Refusal::timeout();
                    pipeline.finish(&Report {
                        transport: Transport::Grpc,
                        operation,
                        request_id: &request_id,
                        client,
                        principal: Some(&principal_id),
                        namespace: None,
                        payloads: 0,
                        bytes: 0,
                        result: Err(&refusal),
                        started,
                    });
                    Ok(status(&refusal).into_http())
                }
            }
        })
    }
}

/// What tonic answered for a message it would not hand to the handler, as a refusal for the
/// report: over the size limit (OUT_OF_RANGE), or not a valid message.
fn unread_message(response: &http::Response<Body>, limit: usize) -> Refusal {
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(tonic::Code::from_i32);
    match code {
        Some(tonic::Code::OutOfRange) => Refusal::too_large(limit),
        _ => Refusal::new(
            crate::codec::ErrorClass::InvalidInput,
            "invalid_message",
            "the message is not a valid request",
        ),
    }
}

/// The gRPC status of a refusal: the class's code, and `code: message` as the message.
fn status(refusal: &Refusal) -> Status {
    Status::new(
        grpc_code(refusal.class),
        format!("{}: {}", refusal.code, refusal.message),
    )
}

impl GrpcCodec {
    async fn run<T>(
        &self,
        operation: Operation,
        request: Request<T>,
        parts: impl FnOnce(T) -> (String, Vec<Payload>),
    ) -> Result<Response<Payloads>, Status> {
        let ticket = request
            .extensions()
            .get::<Arc<std::sync::Mutex<Option<Ticket>>>>()
            .and_then(|slot| slot.lock().ok()?.take());
        let Some(ticket) = ticket else {
            return Err(Status::internal("internal: the call was not admitted"));
        };
        let (namespace, payloads) = parts(request.into_inner());
        let count = payloads.len();
        let bytes = payloads.iter().map(Payload::size).sum();
        let pipeline = &self.pipeline;
        let checked = pipeline::namespace(Some(namespace.as_str()), "set the namespace field");
        let result = match &checked {
            Ok(namespace) => match pipeline.authorize(&ticket.principal, namespace, operation) {
                Ok(()) => {
                    pipeline
                        .run(&ticket.admitted, operation, namespace, payloads)
                        .await
                }
                Err(refusal) => Err(refusal),
            },
            Err(refusal) => Err(refusal.clone()),
        };
        pipeline.finish(&Report {
            transport: Transport::Grpc,
            operation,
            request_id: &ticket.request_id,
            client: ticket.client,
            principal: Some(&ticket.principal.id),
            namespace: checked.as_deref().ok(),
            payloads: count,
            bytes,
            result: result.as_ref().map(|_| ()),
            started: ticket.started,
        });
        result
            .map(|payloads| Response::new(Payloads { payloads }))
            .map_err(|refusal| status(&refusal))
    }
}

#[tonic::async_trait]
impl Codec for GrpcCodec {
    async fn encode(&self, request: Request<EncodeRequest>) -> Result<Response<Payloads>, Status> {
        self.run(Operation::Encode, request, |request| {
            (request.namespace, request.payloads)
        })
        .await
    }

    async fn decode(&self, request: Request<DecodeRequest>) -> Result<Response<Payloads>, Status> {
        // gRPC has no storage-reference flag: decode returns references unchanged.
        let operation = Operation::Decode {
            preserve_storage_refs: true,
        };
        self.run(operation, request, |request| {
            (request.namespace, request.payloads)
        })
        .await
    }
}
