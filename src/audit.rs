//! The audit log: one JSON line per codec request, saying who asked to encode or decode what in
//! which namespace, and what came of it.
//!
//! A line never holds payload contents, tokens or keys: only the principal's name, the
//! namespace, counts and sizes. Lines are written whole (one `write` per line) so concurrent
//! requests never interleave, and a file output is created with mode 0600.
//!
//! ```json
//! {"time":"2026-12-01T21:00:00.123Z","listener":"ui","request_id":"6f1c…","client":"10.0.0.7:51234",
//!  "principal":"email:alice@example.com","namespace":"orders","op":"decode","payloads":2,
//!  "bytes":1830,"status":200,"result":"ok","duration_ms":3.1}
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::AuditOutput;
use crate::payload::write_json_string;

/// Where audit lines go.
pub struct AuditLog {
    sink: Option<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.sink.is_some())
            .finish()
    }
}

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {error}")]
pub struct AuditError {
    path: PathBuf,
    error: std::io::Error,
}

/// One codec request, as the audit log records it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Which listener served it (`worker`, `ui`, `grpc`).
    pub listener: &'a str,
    /// The request id (the caller's `X-Request-Id` when it sent a sane one).
    pub request_id: &'a str,
    /// The client's address, if known (not for Unix sockets).
    pub client: Option<SocketAddr>,
    /// The authenticated principal (`token:NAME`, `sub:…`, `anonymous`), or `None` when
    /// authentication failed.
    pub principal: Option<&'a str>,
    /// The namespace asked for, if the request named a valid one.
    pub namespace: Option<&'a str>,
    /// `encode` or `decode`.
    pub op: &'a str,
    /// Payloads in the request.
    pub payloads: usize,
    /// Payload bytes in the request.
    pub bytes: usize,
    /// The status answered (HTTP status; gRPC codes are mapped to their HTTP equivalent).
    pub status: u16,
    /// `ok` or the error code answered (`unauthenticated`, `forbidden`, `body_too_large`, …).
    pub result: &'a str,
    /// How long the request took.
    pub duration: Duration,
}

impl AuditLog {
    /// Opens the configured output.
    pub fn open(output: &AuditOutput) -> Result<Self, AuditError> {
        let sink: Option<Box<dyn Write + Send>> = match output {
            AuditOutput::Off => None,
            AuditOutput::Stdout => Some(Box::new(std::io::stdout())),
            AuditOutput::Stderr => Some(Box::new(std::io::stderr())),
            AuditOutput::File(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|error| AuditError {
                        path: path.clone(),
                        error,
                    })?;
                Some(Box::new(file))
            }
        };
        Ok(Self {
            sink: sink.map(Mutex::new),
        })
    }

    /// An audit log that writes nothing.
    pub fn off() -> Self {
        Self { sink: None }
    }

    /// Writes one line. A failed write is logged, never fails the request.
    pub fn record(&self, record: &Record<'_>) {
        let Some(sink) = &self.sink else { return };
        let line = render(record, time::OffsetDateTime::now_utc());
        let Ok(mut sink) = sink.lock() else { return };
        if let Err(error) = sink.write_all(&line).and_then(|()| sink.flush()) {
            tracing::warn!(%error, "could not write an audit line");
        }
    }
}

fn field(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    out.push(b',');
    write_json_string(name, out);
    out.push(b':');
    match value {
        Some(value) => write_json_string(value, out),
        None => out.extend_from_slice(b"null"),
    }
}

fn number(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
    out.push(b',');
    write_json_string(name, out);
    out.push(b':');
    out.extend_from_slice(value.to_string().as_bytes());
}

fn render(record: &Record<'_>, now: time::OffsetDateTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let time = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    out.push(b'{');
    write_json_string("time", &mut out);
    out.push(b':');
    write_json_string(&time, &mut out);
    field(&mut out, "listener", Some(record.listener));
    field(&mut out, "request_id", Some(record.request_id));
    let client = record.client.map(|address| address.to_string());
    field(&mut out, "client", client.as_deref());
    field(&mut out, "principal", record.principal);
    field(&mut out, "namespace", record.namespace);
    field(&mut out, "op", Some(record.op));
    number(&mut out, "payloads", record.payloads);
    number(&mut out, "bytes", record.bytes);
    number(&mut out, "status", record.status);
    field(&mut out, "result", Some(record.result));
    number(
        &mut out,
        "duration_ms",
        format_args!("{:.3}", record.duration.as_secs_f64() * 1000.0),
    );
    out.extend_from_slice(b"}\n");
    out
}

/// A request id: the caller's `X-Request-Id` when it is 1 to 128 visible ASCII characters, else
/// a new one: a random 64-bit prefix chosen once per process and a 64-bit counter, in hex. Unique
/// within the process and, with overwhelming probability, across processes, without a system
/// call per request.
pub fn request_id(supplied: Option<&str>) -> String {
    if let Some(id) = supplied
        && !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_graphic())
    {
        return id.to_owned();
    }
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without the OS generator, the clock still separates processes.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos())
                .unwrap_or_default();
            return (nanos as u64) ^ u64::from(std::process::id());
        }
        u64::from_le_bytes(bytes)
    });
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for byte in prefix.to_be_bytes().into_iter().chain(count.to_be_bytes()) {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sample<'a>() -> Record<'a> {
        Record {
            listener: "ui",
            request_id: "r-1",
            client: Some(SocketAddr::from(([127, 0, 0, 1], 4000))),
            principal: Some("email:alice@example.com"),
            namespace: Some("orders\"x"),
            op: "decode",
            payloads: 2,
            bytes: 1830,
            status: 200,
            result: "ok",
            duration: Duration::from_micros(3100),
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_every_field() {
        let line = render(&sample(), time::OffsetDateTime::UNIX_EPOCH);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["time"], "1970-01-01T00:00:00Z");
        assert_eq!(value["listener"], "ui");
        assert_eq!(value["client"], "127.0.0.1:4000");
        assert_eq!(value["principal"], "email:alice@example.com");
        assert_eq!(value["namespace"], "orders\"x");
        assert_eq!(value["payloads"], 2);
        assert_eq!(value["bytes"], 1830);
        assert_eq!(value["status"], 200);
        assert_eq!(value["result"], "ok");
        assert_eq!(value["duration_ms"], 3.1);
    }

    #[test]
    fn missing_principal_and_namespace_are_null() {
        let record = Record {
            principal: None,
            namespace: None,
            client: None,
            ..sample()
        };
        let value: serde_json::Value =
            serde_json::from_slice(&render(&record, time::OffsetDateTime::UNIX_EPOCH)).unwrap();
        assert!(value["principal"].is_null());
        assert!(value["namespace"].is_null());
        assert!(value["client"].is_null());
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_minted_otherwise() {
        assert_eq!(request_id(Some("abc-123")), "abc-123");
        let minted = request_id(Some("has space"));
        assert_eq!(minted.len(), 32);
        assert!(minted.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(request_id(None).len(), 32);
        assert_eq!(request_id(Some(&"x".repeat(129))).len(), 32);
        assert_ne!(request_id(None), request_id(None));
    }

    #[test]
    fn a_file_output_is_private_and_appended() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        for _ in 0..2 {
            let log = AuditLog::open(&AuditOutput::File(path.clone())).unwrap();
            log.record(&sample());
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
