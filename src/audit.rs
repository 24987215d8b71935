//! The audit log: one JSON line per codec request, saying who asked to encode or decode what in
//! which namespace, and what came of it.
//!
//! A line never holds payload contents, tokens or keys: only the principal's name, the
//! namespace, counts and sizes. A file output is created with mode 0600.
//!
//! ```json
//! {"time":"2026-12-01T21:00:00.123Z","listener":"ui","request_id":"6f1c…","client":"10.0.0.7:51234",
//!  "principal":"email:alice@example.com","namespace":"orders","op":"decode","payloads":2,
//!  "bytes":1830,"status":200,"result":"ok","duration_ms":3.1}
//! ```
//!
//! Lines are rendered by the request that they describe and written by one background thread in
//! batches (group commit): a request only appends its line to a shared buffer, and the writer
//! thread writes what gathered within [`BATCH_WINDOW`] with one `write`. Lines are never
//! interleaved or reordered within a batch. A request never waits for the output: when it cannot
//! keep up and [`MAX_PENDING`] bytes wait, [`AuditLog::has_room`] turns false and the request
//! pipeline sheds codec requests with 503 `audit_unavailable` before serving them (nothing
//! unaudited is served; `kmscodec_audit_shed_total` counts them), while health, readiness and
//! metrics, which write no audit line, keep answering. Lines of requests already admitted are
//! always kept; past [`HARD_LIMIT`] pending bytes (only refusals can get there, as admitted
//! requests are bounded by their permits) a line is counted in [`AuditLog::dropped`] and logged
//! as a warning instead of written. [`AuditLog::close`] (called when the server has drained, and
//! on drop) writes every pending line before it returns.

pub mod scope;

pub use scope::{Scope, Scopes};

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::json::write_json_string;

/// The `tracing` target of key administration's audit lines (`kmscodec keys ...` and the admin
/// API): one per operation, whatever its outcome. They go to the process log, not the codec
/// audit log.
pub const ADMIN_TARGET: &str = "kmscodec::audit";

/// Where audit lines go (`[audit]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuditOutput {
    /// Not written.
    Off,
    /// Standard output (the default: the container runtime's log collector picks it up).
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
    /// Appended to a file (created 0600).
    File(PathBuf),
}

/// How long the writer lets lines gather after the first one before it writes them.
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// Bytes of unwritten lines after which codec requests are shed (`audit_unavailable`).
pub const MAX_PENDING: usize = 1 << 20;
/// Bytes of unwritten lines past which refusals' lines are counted and dropped rather than
/// buffered: the audit buffer's bound, whatever callers do.
pub const HARD_LIMIT: usize = 4 * MAX_PENDING;

/// Where audit lines go.
pub struct AuditLog {
    shared: Option<Arc<Shared>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// What each listener records line by line ([`scope`]); the rest is summarized.
    scopes: Scopes,
    summaries: Arc<scope::Summaries>,
    /// Writes the summary lines every `scopes.summary_interval`, and once more on close.
    summarizer: Mutex<Option<(Arc<StopSignal>, std::thread::JoinHandle<()>)>>,
}

/// Set (and signalled) to stop the summary writer.
type StopSignal = (Mutex<bool>, Condvar);

struct Shared {
    pending: Mutex<Pending>,
    /// The writer waits here for lines (or for the log to close).
    lines_waiting: Condvar,
    /// Unwritten bytes, readable without the lock (for [`AuditLog::has_room`]).
    pending_bytes: std::sync::atomic::AtomicUsize,
    /// Lines dropped past [`HARD_LIMIT`].
    dropped: std::sync::atomic::AtomicU64,
    sink: Mutex<Box<dyn Write + Send>>,
}

struct Pending {
    lines: Vec<u8>,
    /// Set by [`AuditLog::close`]: the writer writes what is left and stops; later lines are
    /// written by the request itself.
    closed: bool,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.shared.is_some())
            .finish()
    }
}

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("audit log {target}: {error}")]
pub struct AuditError {
    target: String,
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

/// One external storage access (an object read to resolve a reference, or written to offload
/// a payload), as the audit log records it: the object's location, never its content.
#[derive(Debug, Clone, Copy)]
pub struct ObjectRecord<'a> {
    /// The namespace the request named.
    pub namespace: &'a str,
    /// `get` or `put`.
    pub op: &'a str,
    /// The storage driver's name (`aws.s3driver`).
    pub driver: &'a str,
    /// The bucket.
    pub bucket: &'a str,
    /// The object key.
    pub key: &'a str,
    /// Object bytes read or written.
    pub bytes: usize,
    /// `ok`, or why not (`bucket_refused`, `hash_mismatch`, `not_found`, …).
    pub result: &'a str,
    /// How long the access took.
    pub duration: Duration,
}

impl AuditLog {
    /// Opens the configured output with every request recorded line by line.
    pub fn open(output: &AuditOutput) -> Result<Self, AuditError> {
        Self::open_scoped(output, Scopes::all())
    }

    /// Opens the configured output recording what `scopes` says, and starts the summary writer
    /// when a listener summarizes.
    pub fn open_scoped(output: &AuditOutput, scopes: Scopes) -> Result<Self, AuditError> {
        let mut log = Self::open_output(output)?;
        log.scopes = scopes;
        if let Some(shared) = &log.shared
            && log.scopes.summarizes()
        {
            let stop: Arc<StopSignal> = Arc::new((Mutex::new(false), Condvar::new()));
            let thread = {
                let stop = Arc::clone(&stop);
                let shared = Arc::clone(shared);
                let summaries = Arc::clone(&log.summaries);
                let interval = log.scopes.summary_interval;
                std::thread::Builder::new()
                    .name("audit-summary".to_owned())
                    .spawn(move || summarize(&stop, &shared, &summaries, interval))
                    .map_err(|error| AuditError {
                        target: "summary thread".to_owned(),
                        error,
                    })?
            };
            *lock(&log.summarizer) = Some((stop, thread));
        }
        Ok(log)
    }

    /// Opens the configured output and starts its writer thread.
    fn open_output(output: &AuditOutput) -> Result<Self, AuditError> {
        let failed = |target: &str| {
            let target = target.to_owned();
            move |error| AuditError { target, error }
        };
        let sink: Box<dyn Write + Send> = match output {
            AuditOutput::Off => return Ok(Self::off()),
            AuditOutput::Stdout => stream(std::io::stdout()),
            AuditOutput::Stderr => stream(std::io::stderr()),
            AuditOutput::File(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(failed(&path.display().to_string()))?;
                Box::new(file)
            }
        };
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                lines: Vec::new(),
                closed: false,
            }),
            lines_waiting: Condvar::new(),
            pending_bytes: std::sync::atomic::AtomicUsize::new(0),
            dropped: std::sync::atomic::AtomicU64::new(0),
            sink: Mutex::new(sink),
        });
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("kmscodec-audit".to_owned())
                .spawn(move || shared.write_batches())
                .map_err(failed("writer thread"))?
        };
        Ok(Self {
            shared: Some(shared),
            writer: Mutex::new(Some(writer)),
            scopes: Scopes::all(),
            summaries: Arc::new(scope::Summaries::new(SystemTime::now())),
            summarizer: Mutex::new(None),
        })
    }

    /// An audit log that writes nothing.
    pub fn off() -> Self {
        Self {
            shared: None,
            writer: Mutex::new(None),
            scopes: Scopes::all(),
            summaries: Arc::new(scope::Summaries::new(SystemTime::now())),
            summarizer: Mutex::new(None),
        }
    }

    /// Whether a codec request may be served: fewer than [`MAX_PENDING`] bytes wait for the
    /// output. Always true for a log that writes nothing.
    pub fn has_room(&self) -> bool {
        self.shared.as_ref().is_none_or(|shared| {
            shared
                .pending_bytes
                .load(std::sync::atomic::Ordering::Relaxed)
                < MAX_PENDING
        })
    }

    /// Lines dropped because more than [`HARD_LIMIT`] bytes were waiting.
    pub fn dropped(&self) -> u64 {
        self.shared.as_ref().map_or(0, |shared| {
            shared.dropped.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// Records one request, as a line of its own or in its listener's next summary line, as the
    /// listener's [`Scope`] says, without waiting for the output. A failed write is logged, never
    /// fails the request.
    pub fn record(&self, record: &Record<'_>) {
        let Some(shared) = &self.shared else { return };
        match self.scopes.of(record.listener).decide(record) {
            scope::Decision::Line => {}
            scope::Decision::Summary => return self.summaries.add(record),
            scope::Decision::Nothing => return,
        }
        thread_local! {
            static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            render(record, SystemTime::now(), line);
            shared.append(line);
        });
    }

    /// Records one external storage access (`"event":"storage"`). Never fails the request.
    pub fn record_object(&self, record: &ObjectRecord<'_>) {
        let Some(shared) = &self.shared else { return };
        let mut line = Vec::with_capacity(256 + record.key.len());
        line.extend_from_slice(b"{\"time\":\"");
        write_time(SystemTime::now(), &mut line);
        line.extend_from_slice(b"\",\"event\":\"storage\",\"namespace\":");
        write_json_string(record.namespace, &mut line);
        line.extend_from_slice(b",\"op\":");
        write_json_string(record.op, &mut line);
        line.extend_from_slice(b",\"driver\":");
        write_json_string(record.driver, &mut line);
        line.extend_from_slice(b",\"bucket\":");
        write_json_string(record.bucket, &mut line);
        line.extend_from_slice(b",\"key\":");
        write_json_string(record.key, &mut line);
        line.extend_from_slice(b",\"bytes\":");
        write_decimal(record.bytes as u64, &mut line);
        line.extend_from_slice(b",\"result\":");
        write_json_string(record.result, &mut line);
        let micros = u64::try_from(record.duration.as_micros()).unwrap_or(u64::MAX);
        line.extend_from_slice(b",\"duration_ms\":");
        write_decimal(micros / 1000, &mut line);
        line.push(b'.');
        write_padded(micros % 1000, 3, &mut line);
        line.extend_from_slice(b"}\n");
        shared.append(&line);
    }

    /// Writes every pending line and stops the writer thread; later lines are written by the
    /// requests themselves. Called once the server has drained; idempotent.
    pub fn close(&self) {
        let Some(shared) = &self.shared else { return };
        // The summary writer writes what it counted, then the writer drains everything.
        if let Some((stop, thread)) = lock(&self.summarizer).take() {
            *lock(&stop.0) = true;
            stop.1.notify_one();
            if thread.join().is_err() {
                tracing::warn!("the audit summary thread failed");
            }
        }
        lock(&shared.pending).closed = true;
        shared.lines_waiting.notify_one();
        if let Some(writer) = lock(&self.writer).take()
            && writer.join().is_err()
        {
            tracing::warn!("the audit writer thread failed");
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// The summary writer: every `interval` (and once more when `stop` is set), one line per group
/// counted since the last summary.
// The summary thread runs outside the async runtime, on the wall clock.
#[allow(clippy::disallowed_methods)]
fn summarize(stop: &StopSignal, shared: &Shared, summaries: &scope::Summaries, interval: Duration) {
    let mut line = Vec::new();
    loop {
        let mut stopped = lock(&stop.0);
        let deadline = std::time::Instant::now() + interval;
        while !*stopped {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            stopped = stop
                .1
                .wait_timeout(stopped, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        let last = *stopped;
        drop(stopped);
        let now = SystemTime::now();
        let (since, groups) = summaries.take(now);
        line.clear();
        for group in &groups {
            render_summary(group, since, now, &mut line);
        }
        if !line.is_empty() {
            shared.append(&line);
        }
        if last {
            return;
        }
    }
}

/// Renders one summary line, newline included:
/// `{"time":…,"kind":"summary","since":…,"listener":"worker","principal":"anonymous",
/// "namespace":"orders","op":"encode","requests":1200,"payloads":1200,"bytes":30000}`.
fn render_summary(group: &scope::Group, since: SystemTime, now: SystemTime, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    write_time(now, out);
    out.extend_from_slice(b"\",\"kind\":\"summary\",\"since\":\"");
    write_time(since, out);
    out.extend_from_slice(b"\",\"listener\":");
    write_json_string(&group.listener, out);
    out.extend_from_slice(b",\"principal\":");
    write_optional(group.principal.as_deref(), out);
    out.extend_from_slice(b",\"namespace\":");
    write_optional(group.namespace.as_deref(), out);
    out.extend_from_slice(b",\"op\":");
    write_json_string(&group.op, out);
    out.extend_from_slice(b",\"requests\":");
    write_decimal(group.counts.requests, out);
    out.extend_from_slice(b",\"payloads\":");
    write_decimal(group.counts.payloads, out);
    out.extend_from_slice(b",\"bytes\":");
    write_decimal(group.counts.bytes, out);
    out.extend_from_slice(b"}\n");
}

/// A standard stream as an audit sink: a duplicate of its descriptor, written directly (one
/// `write` per batch, no line buffering), or the stream itself if it cannot be duplicated.
fn stream<S>(stream: S) -> Box<dyn Write + Send>
where
    S: Write + Send + std::os::fd::AsFd + 'static,
{
    match stream.as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::fs::File::from(fd)),
        Err(_) => Box::new(stream),
    }
}

/// Locks, also after a panic elsewhere: the buffer holds whole lines only.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn append(&self, line: &[u8]) {
        let mut pending = lock(&self.pending);
        if pending.lines.len() >= HARD_LIMIT && !pending.closed {
            drop(pending);
            let dropped = self
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if dropped.is_power_of_two() || dropped == 0 {
                tracing::warn!(
                    dropped = dropped + 1,
                    "the audit output is not draining: refusals' audit lines are being dropped"
                );
            }
            return;
        }
        if pending.closed {
            drop(pending);
            self.write_out(line);
            return;
        }
        let first = pending.lines.is_empty();
        pending.lines.extend_from_slice(line);
        self.pending_bytes
            .store(pending.lines.len(), std::sync::atomic::Ordering::Relaxed);
        drop(pending);
        if first {
            self.lines_waiting.notify_one();
        }
    }

    /// The writer thread: waits for a line, lets more gather for [`BATCH_WINDOW`], writes them
    /// all; after [`AuditLog::close`], writes what is left and returns.
    fn write_batches(&self) {
        let mut batch = Vec::new();
        loop {
            let mut pending = lock(&self.pending);
            while pending.lines.is_empty() && !pending.closed {
                pending = self
                    .lines_waiting
                    .wait(pending)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if !pending.closed {
                drop(pending);
                std::thread::sleep(BATCH_WINDOW);
                pending = lock(&self.pending);
            }
            if pending.lines.is_empty() && pending.closed {
                return;
            }
            std::mem::swap(&mut pending.lines, &mut batch);
            drop(pending);
            self.write_out(&batch);
            batch.clear();
            // Room again only once the batch is out: a stalled output keeps the bytes pending.
            let pending = lock(&self.pending);
            self.pending_bytes
                .store(pending.lines.len(), std::sync::atomic::Ordering::Relaxed);
            drop(pending);
        }
    }

    fn write_out(&self, bytes: &[u8]) {
        let mut sink = lock(&self.sink);
        if let Err(error) = sink.write_all(bytes).and_then(|()| sink.flush()) {
            tracing::warn!(%error, "could not write audit lines");
        }
    }
}

/// Renders one line, newline included, onto `out`.
fn render(record: &Record<'_>, now: SystemTime, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    write_time(now, out);
    out.extend_from_slice(b"\",\"listener\":");
    write_json_string(record.listener, out);
    out.extend_from_slice(b",\"request_id\":");
    write_json_string(record.request_id, out);
    out.extend_from_slice(b",\"client\":");
    match record.client {
        Some(address) => {
            out.push(b'"');
            write_address(address, out);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"principal\":");
    write_optional(record.principal, out);
    out.extend_from_slice(b",\"namespace\":");
    write_optional(record.namespace, out);
    out.extend_from_slice(b",\"op\":");
    write_json_string(record.op, out);
    out.extend_from_slice(b",\"payloads\":");
    write_decimal(record.payloads as u64, out);
    out.extend_from_slice(b",\"bytes\":");
    write_decimal(record.bytes as u64, out);
    out.extend_from_slice(b",\"status\":");
    write_decimal(u64::from(record.status), out);
    out.extend_from_slice(b",\"result\":");
    write_json_string(record.result, out);
    // Milliseconds with three decimals, from whole microseconds.
    let micros = u64::try_from(record.duration.as_micros()).unwrap_or(u64::MAX);
    out.extend_from_slice(b",\"duration_ms\":");
    write_decimal(micros / 1000, out);
    out.push(b'.');
    write_padded(micros % 1000, 3, out);
    out.extend_from_slice(b"}\n");
}

fn write_optional(value: Option<&str>, out: &mut Vec<u8>) {
    match value {
        Some(value) => write_json_string(value, out),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_decimal(value: u64, out: &mut Vec<u8>) {
    write_padded(value, 1, out);
}

/// `value` in decimal with at least `width` (at most 20) digits, zero-padded.
fn write_padded(value: u64, width: usize, out: &mut Vec<u8>) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    let mut rest = value;
    while rest > 0 {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let start = at.min(digits.len().saturating_sub(width.max(1)));
    out.extend_from_slice(&digits[start..]);
}

fn write_address(address: SocketAddr, out: &mut Vec<u8>) {
    match address {
        SocketAddr::V4(v4) => {
            for (index, octet) in v4.ip().octets().into_iter().enumerate() {
                if index > 0 {
                    out.push(b'.');
                }
                write_decimal(u64::from(octet), out);
            }
            out.push(b':');
            write_decimal(u64::from(v4.port()), out);
        }
        // `[addr]:port`, `%scope` numeric: no character that JSON needs escaped.
        SocketAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// RFC 3339 UTC with milliseconds: `2026-12-01T21:00:00.123Z`.
fn write_time(now: SystemTime, out: &mut Vec<u8>) {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs();
    let cached = SECOND.with(|cell| {
        let (second, text) = cell.get();
        (second == seconds).then_some(text)
    });
    match cached {
        Some(text) => out.extend_from_slice(&text),
        None => {
            let start = out.len();
            write_second(seconds, out);
            // Always 19 bytes (`write_second` writes years 1970 to 9999); checked, not assumed.
            if let Ok(text) = <[u8; 19]>::try_from(&out[start..]) {
                SECOND.with(|cell| cell.set((seconds, text)));
            }
        }
    }
    out.push(b'.');
    write_padded(u64::from(since.subsec_millis()), 3, out);
    out.push(b'Z');
}

thread_local! {
    /// The last second this thread wrote, and its `YYYY-MM-DDTHH:MM:SS`: under load, most
    /// lines share their second with the line before.
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const {
        std::cell::Cell::new((u64::MAX, [0; 19]))
    };
}

/// The last second with a four-digit year: 9999-12-31T23:59:59.
const LAST_SECOND: u64 = 253_402_300_799;

/// Writes `YYYY-MM-DDTHH:MM:SS` of `seconds` after the epoch, in UTC (the proleptic Gregorian
/// calendar of the `time` crate).
fn write_second(seconds: u64, out: &mut Vec<u8>) {
    let at = Some(seconds)
        .filter(|&seconds| seconds <= LAST_SECOND)
        .and_then(|seconds| i64::try_from(seconds).ok())
        .and_then(|seconds| time::OffsetDateTime::from_unix_timestamp(seconds).ok());
    let Some(at) = at else {
        // Past 9999 (or out of `time`'s range): clamped to the last second with four year
        // digits, so the line keeps its format instead of panicking. Only a clock that is off by
        // millennia gets here.
        out.extend_from_slice(b"9999-12-31T23:59:59");
        return;
    };
    let (year, month, day) = at.to_calendar_date();
    let (hour, minute, second) = at.to_hms();
    write_padded(u64::from(year.unsigned_abs()), 4, out);
    out.push(b'-');
    write_padded(u64::from(u8::from(month)), 2, out);
    out.push(b'-');
    write_padded(u64::from(day), 2, out);
    out.push(b'T');
    write_padded(u64::from(hour), 2, out);
    out.push(b':');
    write_padded(u64::from(minute), 2, out);
    out.push(b':');
    write_padded(u64::from(second), 2, out);
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
    let mut id = [0u8; 32];
    for (pair, byte) in id
        .chunks_exact_mut(2)
        .zip(prefix.to_be_bytes().into_iter().chain(count.to_be_bytes()))
    {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
    // Hex digits are ASCII: the conversion cannot fail.
    String::from_utf8(id.to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
