//! The gRPC codec service against a real `kmscodec serve`, with a real tonic client over TCP and
//! over a Unix domain socket: round trips, pass-through, the bad-input table, health and
//! reflection.

// Tests time real servers by the wall clock and find their tools through the environment,
// which clippy.toml refuses in src/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Kmscodec;
use kmscodec::payload::{Payload, Payloads};
use kmscodec::server::grpc::proto::codec_client::CodecClient;
use kmscodec::server::grpc::proto::{DecodeRequest, EncodeRequest};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

const CONFIG: &str = r#"
[server]
body_limit_bytes = "2MiB"
[limits]
max_payloads = 50
max_payload_bytes = "1MiB"
[providers.dev]
kind = "local"
path = "keyring.json"
create_missing = true
[namespaces.alpha]
provider = "dev"
key = "dev"
[namespaces.beta]
provider = "dev"
key = "dev"
"#;

struct Server {
    _codec: Kmscodec,
    _data: tempfile::TempDir,
    grpc_port: u16,
    socket: std::path::PathBuf,
    _socket_dir: tempfile::TempDir,
}

fn start() -> Server {
    let socket_dir = common::temp_dir("grpc-sock");
    let socket = socket_dir.path().join("kmscodec.sock");
    let grpc_port = common::free_port();
    let grpc_listen = format!("127.0.0.1:{grpc_port}");
    let data = common::temp_dir("grpc-data");
    let keyring = data.path().join("keyring.json");
    let config = CONFIG.replace("keyring.json", keyring.to_str().unwrap());
    let codec = Kmscodec::start_with(
        Some(&config),
        &[
            "--grpc-listen",
            &grpc_listen,
            "--grpc-unix-socket",
            socket.to_str().unwrap(),
        ],
    );
    Server {
        _codec: codec,
        _data: data,
        grpc_port,
        socket,
        _socket_dir: socket_dir,
    }
}

async fn tcp_channel(server: &Server) -> Channel {
    Endpoint::try_from(format!("http://127.0.0.1:{}", server.grpc_port))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn unix_channel(server: &Server) -> Channel {
    let path = server.socket.clone();
    // The URI is required by the API but unused: the connector dials the socket.
    Endpoint::try_from("http://kmscodec.invalid")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .unwrap()
}

fn payload(encoding: &str, data: &[u8]) -> Payload {
    Payload {
        metadata: BTreeMap::from([("encoding".to_owned(), encoding.as_bytes().to_vec())]),
        data: data.to_vec(),
        external_payloads: vec![],
    }
}

async fn encode(
    client: &mut CodecClient<Channel>,
    namespace: &str,
    payloads: Vec<Payload>,
) -> Result<Vec<Payload>, tonic::Status> {
    client
        .encode(EncodeRequest {
            namespace: namespace.into(),
            payloads,
        })
        .await
        .map(|r| r.into_inner().payloads)
}

async fn decode(
    client: &mut CodecClient<Channel>,
    namespace: &str,
    payloads: Vec<Payload>,
) -> Result<Vec<Payload>, tonic::Status> {
    client
        .decode(DecodeRequest {
            namespace: namespace.into(),
            payloads,
        })
        .await
        .map(|r| r.into_inner().payloads)
}

async fn round_trips_and_pass_through(mut client: CodecClient<Channel>) {
    let inputs = vec![
        payload("json/plain", b"\"hello\""),
        payload("binary/null", b""),
        payload("binary/plain", &(0..=255).collect::<Vec<u8>>()),
        payload("binary/plain", &vec![7; 512 << 10]),
    ];
    let sealed = encode(&mut client, "alpha", inputs.clone()).await.unwrap();
    assert_eq!(sealed.len(), inputs.len());
    for p in &sealed {
        assert_eq!(p.encoding(), Some(&b"binary/encrypted"[..]));
    }
    let opened = decode(&mut client, "alpha", sealed.clone()).await.unwrap();
    assert_eq!(opened, inputs);
    // Foreign payloads pass through untouched, mixed with ours, in order.
    let foreign = payload("binary/encrypted", b"another codec's ciphertext");
    let mixed = vec![
        foreign.clone(),
        sealed[0].clone(),
        payload("json/plain", b"1"),
    ];
    let opened = decode(&mut client, "alpha", mixed).await.unwrap();
    assert_eq!(
        opened,
        vec![foreign, inputs[0].clone(), payload("json/plain", b"1")]
    );
}

#[tokio::test]
async fn round_trips_over_tcp_and_unix_socket() {
    let server = start();
    round_trips_and_pass_through(CodecClient::new(tcp_channel(&server).await)).await;
    round_trips_and_pass_through(CodecClient::new(unix_channel(&server).await)).await;
    // What one transport seals, the other opens.
    let mut tcp = CodecClient::new(tcp_channel(&server).await);
    let mut unix = CodecClient::new(unix_channel(&server).await);
    let sealed = encode(&mut unix, "beta", vec![payload("json/plain", b"2")])
        .await
        .unwrap();
    assert_eq!(
        decode(&mut tcp, "beta", sealed).await.unwrap(),
        vec![payload("json/plain", b"2")]
    );
    let mode = std::fs::metadata(&server.socket)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o660);
}

#[derive(Clone, PartialEq, prost::Message)]
struct MalformedRequest {
    /// Field 1 is `string namespace` in EncodeRequest: invalid UTF-8 makes it undecodable.
    #[prost(bytes = "vec", tag = "1")]
    namespace: Vec<u8>,
}

#[tokio::test]
async fn bad_input_table() {
    let server = start();
    let mut client = CodecClient::new(tcp_channel(&server).await);
    let sealed = encode(
        &mut client,
        "alpha",
        vec![payload("json/plain", b"\"secret\"")],
    )
    .await
    .unwrap();
    let with_data = |mutate: &dyn Fn(&mut Vec<u8>)| {
        let mut p = sealed[0].clone();
        mutate(&mut p.data);
        vec![p]
    };
    // Header for namespace "alpha", key "dev", 60-byte wrapped key (docs/format.md).
    let header_len = 81 + 5 + 3 + 60;
    let big = vec![payload("binary/plain", &vec![1; (1 << 20) + 1])];
    let many: Vec<_> = (0..51)
        .map(|i| payload("json/plain", format!("{i}").as_bytes()))
        .collect();
    let huge = vec![payload("binary/plain", &vec![1; 3 << 20])];
    struct Case {
        name: &'static str,
        encode: bool,
        namespace: &'static str,
        payloads: Vec<Payload>,
        code: Code,
        message: &'static str,
    }
    let cases = vec![
        Case {
            name: "missing namespace",
            encode: true,
            namespace: "",
            payloads: vec![payload("json/plain", b"1")],
            code: Code::InvalidArgument,
            message: "missing_namespace",
        },
        Case {
            name: "invalid namespace",
            encode: true,
            namespace: "has space",
            payloads: vec![],
            code: Code::InvalidArgument,
            message: "invalid_namespace",
        },
        Case {
            name: "namespace without a key",
            encode: true,
            namespace: "gamma",
            payloads: vec![payload("json/plain", b"1")],
            code: Code::NotFound,
            message: "namespace_not_configured",
        },
        Case {
            name: "swapped namespace",
            encode: false,
            namespace: "beta",
            payloads: sealed.clone(),
            code: Code::InvalidArgument,
            message: "undecryptable_payload",
        },
        Case {
            name: "truncated header",
            encode: false,
            namespace: "alpha",
            payloads: with_data(&|d| d.truncate(30)),
            code: Code::InvalidArgument,
            message: "undecryptable_payload",
        },
        Case {
            name: "wrong version",
            encode: false,
            namespace: "alpha",
            payloads: with_data(&|d| d[4] = 7),
            code: Code::InvalidArgument,
            message: "unsupported_format_version",
        },
        Case {
            name: "flipped header byte",
            encode: false,
            namespace: "alpha",
            payloads: with_data(&|d| d[40] ^= 1),
            code: Code::InvalidArgument,
            message: "undecryptable_payload",
        },
        Case {
            name: "flipped ciphertext byte",
            encode: false,
            namespace: "alpha",
            payloads: with_data(&|d| d[header_len + 1] ^= 1),
            code: Code::InvalidArgument,
            message: "undecryptable_payload",
        },
        Case {
            name: "flipped tag byte",
            encode: false,
            namespace: "alpha",
            payloads: with_data(&|d| {
                let n = d.len();
                d[n - 1] ^= 1
            }),
            code: Code::InvalidArgument,
            message: "undecryptable_payload",
        },
        Case {
            name: "too many payloads",
            encode: true,
            namespace: "alpha",
            payloads: many,
            code: Code::ResourceExhausted,
            message: "too_many_payloads",
        },
        Case {
            name: "payload too large",
            encode: true,
            namespace: "alpha",
            payloads: big,
            code: Code::ResourceExhausted,
            message: "payload_too_large",
        },
        Case {
            name: "message over the body limit",
            encode: true,
            namespace: "alpha",
            payloads: huge,
            code: Code::OutOfRange,
            message: "too large",
        },
    ];
    for case in cases {
        let result = if case.encode {
            encode(&mut client, case.namespace, case.payloads).await
        } else {
            decode(&mut client, case.namespace, case.payloads).await
        };
        let status = result.expect_err(case.name);
        assert_eq!(status.code(), case.code, "{}: {status:?}", case.name);
        assert!(
            status.message().contains(case.message),
            "{}: {}",
            case.name,
            status.message()
        );
        assert!(
            !status.message().contains("secret"),
            "{}: plaintext in error",
            case.name
        );
        // The server keeps serving after every bad request.
        encode(&mut client, "alpha", vec![payload("json/plain", b"1")])
            .await
            .unwrap_or_else(|e| panic!("after {}: {e}", case.name));
    }

    // A request that is not a valid protobuf message at all.
    let mut raw = tonic::client::Grpc::new(tcp_channel(&server).await);
    raw.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<MalformedRequest, Payloads>::default();
    let path = http::uri::PathAndQuery::from_static("/kmscodec.v1.Codec/Encode");
    let status = raw
        .unary(
            tonic::Request::new(MalformedRequest {
                namespace: vec![0xff, 0xfe],
            }),
            path,
            codec,
        )
        .await
        .expect_err("malformed protobuf accepted");
    assert_ne!(status.code(), Code::Ok);
    encode(&mut client, "alpha", vec![payload("json/plain", b"1")])
        .await
        .unwrap();
}

#[tokio::test]
async fn health_and_reflection_services() {
    let server = start();
    let channel = tcp_channel(&server).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "kmscodec.v1.Codec"] {
        let reply = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            reply.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving,
            "{service:?}"
        );
    }

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("{reply:?}")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"kmscodec.v1.Codec"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    drop(server);
}

/// A grpcio (grpc-core) client with its default settings: for a `unix:` target it sends the
/// percent-encoded socket path as `:authority`, which is not a valid authority. The socket
/// accepts it, for both target spellings (`unix:///abs/path`, and `unix:/abs/path` as Go
/// programs write it).
#[test]
fn grpcio_with_default_settings_round_trips_over_the_unix_socket() {
    const SCRIPT: &str = r#"
import sys, grpc

def varint(n):
    out = b""
    while True:
        byte = n & 0x7f
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])

def field(tag, data):
    return bytes([tag]) + varint(len(data)) + data

def first_payload(payloads):
    # Payloads { repeated Payload payloads = 1; }: the first one's bytes.
    assert payloads[0] == 0x0a, payloads[:4]
    length, at, shift = 0, 1, 0
    while True:
        byte = payloads[at]
        at += 1
        length |= (byte & 0x7f) << shift
        shift += 7
        if byte < 0x80:
            break
    return payloads[at:at + length]

target = sys.argv[1]
channel = grpc.insecure_channel(target)
identity = lambda x: x
encode = channel.unary_unary("/kmscodec.v1.Codec/Encode", request_serializer=identity, response_deserializer=identity)
decode = channel.unary_unary("/kmscodec.v1.Codec/Decode", request_serializer=identity, response_deserializer=identity)
plain = field(0x12, b"grpcio default authority")
sealed = encode(field(0x0a, b"alpha") + field(0x12, plain), timeout=10)
assert b"grpcio default authority" not in sealed
opened = decode(field(0x0a, b"alpha") + field(0x12, first_payload(sealed)), timeout=10)
assert first_payload(opened) == plain, opened
print("round trip ok", target)
"#;
    let server = start();
    let home = common::temp_dir("grpcio-home");
    let socket = server.socket.to_str().unwrap().to_owned();
    for target in [format!("unix://{socket}"), format!("unix:{socket}")] {
        let mut cmd = common::hermetic_command(common::tool("python"), home.path());
        cmd.args(["-c", SCRIPT, &target]);
        let out = common::run_ok(cmd, Duration::from_secs(60));
        assert!(out.contains("round trip ok"), "{out}");
    }
}
