//! The HTTP/1 request-head timeout and keep-alive idle timeout of a connection.
//!
//! hyper's own `header_read_timeout` starts when hyper begins to read a request head, which on a
//! keep-alive connection is right after the previous answer: a client that pauses for longer
//! than the timeout finds its connection closed, and one that sends at that moment loses its
//! request (RFC 9112, section 9.3.1). Here the two limits are separate:
//!
//! * a new connection has [`HEAD_TIMEOUT`] to send its first request head, and any head, once
//!   its first byte has arrived, has [`HEAD_TIMEOUT`] to be complete (slowloris);
//! * between requests, a keep-alive connection may stay idle for [`IDLE_TIMEOUT`], longer than
//!   the idle timeouts of common HTTP clients (Go 90 s, aiohttp 15 s, undici 4 s), so that the
//!   client, not the server, normally closes an idle connection.
//!
//! While the handler holds a request (body and answer) no timer runs here: the request pipeline's
//! deadline governs (`super::pipeline`).
//!
//! HTTP/2 connections are told apart by their 24-byte preface. A preface is a head like any
//! other: once its first byte arrived, it has [`HEAD_TIMEOUT`] to be complete (a client that
//! sends `PRI` and stops is closed like a partial HTTP/1 head). After the preface, the first
//! stream must begin within the same [`HEAD_TIMEOUT`] of the connection's start, and once every
//! stream has been answered the connection may idle for [`IDLE_TIMEOUT`]; frames that open no
//! stream (pings, settings, window updates) do not count as activity. Dead peers are found by
//! HTTP/2 pings (`super::listener`).
//!
//! Timers are cheap on the hot path: a keep-alive request that arrives in one read moves the
//! idle deadline (an `Instant`) once, and the one `Sleep` per connection is only reset when it
//! fires early or must fire sooner.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a client has to send a complete request head once it started one (and to send the
/// first request on a new connection).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a keep-alive connection may sit idle between requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The connection waits for a request head: a new connection, or after an answer.
const WAITING: u8 = 0;
/// A request head has begun to arrive.
const READING: u8 = 1;
/// The handler has the request.
const SERVING: u8 = 2;
/// `Timed::seen` only: a head has begun and its deadline is not set yet.
const READING_UNTIMED: u8 = 3;

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Where a connection is in its request cycle, shared by the stream and the request handler.
#[derive(Debug, Clone)]
pub struct Phase(Arc<PhaseState>);

#[derive(Debug)]
struct PhaseState {
    state: AtomicU8,
    /// Requests the handler holds (HTTP/2 serves several at once).
    active: AtomicU32,
}

impl Phase {
    fn new() -> Self {
        Self(Arc::new(PhaseState {
            state: AtomicU8::new(WAITING),
            active: AtomicU32::new(0),
        }))
    }

    fn load(&self) -> u8 {
        self.0.state.load(Ordering::Acquire)
    }

    fn store(&self, state: u8) {
        self.0.state.store(state, Ordering::Release);
    }

    /// The handler took a request: no head or idle timer until it answers.
    pub fn serving(&self) {
        self.0.active.fetch_add(1, Ordering::AcqRel);
        self.store(SERVING);
    }

    /// The handler answered: once no request is held, the connection waits for the next one.
    pub fn answered(&self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) <= 1 {
            self.0.active.store(0, Ordering::Release);
            self.store(WAITING);
        }
    }
}

/// A connection's byte stream with the head and idle timers.
#[derive(Debug)]
pub struct Timed<S> {
    inner: S,
    phase: Phase,
    /// The phase this stream last acted on, to notice a new wait after an answer, or
    /// [`READING_UNTIMED`] while a begun head's deadline is still to be set.
    seen: u8,
    /// When the current head or idle wait ends.
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
    /// When `timer` fires (it may be earlier than `deadline`: then it is re-armed).
    timer_at: Instant,
    /// `Some(true)` once the stream sent the whole HTTP/2 preface, `Some(false)` for HTTP/1.
    http2: Option<bool>,
    /// How many bytes of the HTTP/2 preface have arrived so far.
    preface_at: usize,
    head_timeout: Duration,
    idle_timeout: Duration,
}

impl<S> Timed<S> {
    /// Wraps a new connection's stream; the returned [`Phase`] goes to the request handler.
    pub fn new(inner: S) -> (Self, Phase) {
        Self::with_timeouts(inner, HEAD_TIMEOUT, IDLE_TIMEOUT)
    }

    fn with_timeouts(inner: S, head_timeout: Duration, idle_timeout: Duration) -> (Self, Phase) {
        let phase = Phase::new();
        let deadline = Instant::now() + head_timeout;
        let timed = Self {
            inner,
            phase: phase.clone(),
            seen: WAITING,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            timer_at: deadline,
            http2: None,
            preface_at: 0,
            head_timeout,
            idle_timeout,
        };
        (timed, phase)
    }

    /// Whether `deadline` has passed; otherwise makes sure the task is woken by then.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = self.deadline;
        if deadline < self.timer_at {
            self.timer.as_mut().reset(deadline);
            self.timer_at = deadline;
        }
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            if Instant::now() >= deadline {
                return true;
            }
            // It fired for an earlier deadline that has since moved on.
            self.timer.as_mut().reset(deadline);
            self.timer_at = deadline;
        }
    }

    fn note_bytes(&mut self, bytes: &[u8]) {
        if self.http2.is_none() {
            let at = self.preface_at;
            let seen = bytes.len().min(PREFACE.len() - at);
            if bytes[..seen] != PREFACE[at..at + seen] {
                self.http2 = Some(false);
            } else {
                self.preface_at += seen;
                if self.preface_at == PREFACE.len() {
                    // The preface is complete: the first stream is due by the deadline already
                    // set (the connection's start, or the preface's first byte).
                    self.http2 = Some(true);
                    self.phase.store(WAITING);
                    self.seen = WAITING;
                    return;
                }
            }
        }
        if self.http2 == Some(true) {
            return;
        }
        if self.phase.load() == WAITING {
            self.phase.store(READING);
            // The head's deadline is set when a read finds no more bytes (below): a head that
            // arrives in one read, the usual case, costs no clock read.
            self.seen = READING_UNTIMED;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        match result {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.note_bytes(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let phase = this.phase.load();
                match phase {
                    SERVING => {
                        this.seen = SERVING;
                        return Poll::Pending;
                    }
                    WAITING if this.seen != WAITING => {
                        this.seen = WAITING;
                        this.deadline = Instant::now() + this.idle_timeout;
                    }
                    READING if this.seen == READING_UNTIMED => {
                        this.seen = READING;
                        this.deadline = Instant::now() + this.head_timeout;
                    }
                    _ => {}
                }
                if this.expired(cx) {
                    let what = if phase == READING {
                        "request head not complete in time"
                    } else {
                        "no request in time"
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

/// Implements `AsyncWrite` for a stream wrapper `$wrapper<S>` by forwarding every call to its
/// `inner` field: the wrappers in this module and [`super::authority`] only look at what is read.
macro_rules! forward_async_write {
    ($wrapper:ident) => {
        impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<S> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use forward_async_write;

forward_async_write!(Timed);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(120);

    async fn read_some(stream: &mut Timed<tokio::io::DuplexStream>) -> io::Result<Vec<u8>> {
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await?;
        Ok(buf[..n].to_vec())
    }

    #[tokio::test(start_paused = true)]
    async fn a_keep_alive_connection_may_idle_longer_than_a_head_may_take() {
        let (client, server) = tokio::io::duplex(1024);
        let (mut server, phase) = Timed::with_timeouts(server, HEAD, IDLE);
        let mut client = client;
        client.write_all(b"POST / HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(read_some(&mut server).await.unwrap().len(), 19);
        phase.serving();
        // Body reads while serving: no timer, however long.
        let pending = tokio::time::timeout(Duration::from_secs(600), read_some(&mut server)).await;
        assert!(pending.is_err(), "a read while serving timed out");
        phase.answered();
        // Idle for 100 s (past the head timeout), then the next request is read.
        let client_task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(100)).await;
            client.write_all(b"POST / HTTP/1.1\r\n").await.unwrap();
            client
        });
        assert_eq!(read_some(&mut server).await.unwrap().len(), 17);
        let _client = client_task.await.unwrap();
        // That head is incomplete: it has 10 s from its first byte.
        let started = Instant::now();
        let error = read_some(&mut server).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_trickled_byte_by_byte_still_has_ten_seconds_from_its_first_byte() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut server, _phase) = Timed::with_timeouts(server, HEAD, IDLE);
        let started = Instant::now();
        let trickle = tokio::spawn(async move {
            for byte in b"POST / HTTP/1.1\r\n".iter() {
                if client.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            client
        });
        let mut received = 0;
        let error = loop {
            match read_some(&mut server).await {
                Ok(bytes) => received += bytes.len(),
                Err(error) => break error,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 10);
        assert_eq!(received, 4, "bytes at 0, 3, 6 and 9 s");
        drop(trickle.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_closes_after_the_idle_timeout_and_a_silent_one_after_the_head_timeout()
     {
        let (_client, server) = tokio::io::duplex(1024);
        let (mut server, _phase) = Timed::with_timeouts(server, HEAD, IDLE);
        let started = Instant::now();
        assert_eq!(
            read_some(&mut server).await.unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        assert_eq!(started.elapsed().as_secs(), 10, "a silent new connection");

        let (mut client, server) = tokio::io::duplex(1024);
        let (mut server, phase) = Timed::with_timeouts(server, HEAD, IDLE);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        read_some(&mut server).await.unwrap();
        phase.serving();
        phase.answered();
        let started = Instant::now();
        assert_eq!(
            read_some(&mut server).await.unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        assert_eq!(
            started.elapsed().as_secs(),
            120,
            "an idle keep-alive connection"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_http2_preface_is_closed_like_a_partial_head() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut server, _phase) = Timed::with_timeouts(server, HEAD, IDLE);
        client.write_all(b"PRI").await.unwrap();
        assert_eq!(read_some(&mut server).await.unwrap(), b"PRI");
        let started = Instant::now();
        let error = read_some(&mut server).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_is_timed_between_streams_and_not_during_them() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut server, phase) = Timed::with_timeouts(server, HEAD, IDLE);
        client.write_all(PREFACE).await.unwrap();
        read_some(&mut server).await.unwrap();
        // A stream is being served: pings and body frames may come and go, no timer runs.
        phase.serving();
        phase.serving();
        phase.answered();
        let pending = tokio::time::timeout(Duration::from_secs(3600), read_some(&mut server)).await;
        assert!(
            pending.is_err(),
            "an HTTP/2 connection was timed out during a stream"
        );
        // Every stream answered: the idle timer runs, and frames that open no stream (a ping)
        // do not move it.
        phase.answered();
        let started = Instant::now();
        let pinger = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let _ = client.write_all(b"\0\0\x08\x06\0\0\0\0\0pingping").await;
            client
        });
        let error = loop {
            match read_some(&mut server).await {
                Ok(_) => continue,
                Err(error) => break error,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 120);
        drop(pinger.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_that_opens_no_stream_closes_after_the_head_timeout() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut server, _phase) = Timed::with_timeouts(server, HEAD, IDLE);
        let started = Instant::now();
        client.write_all(PREFACE).await.unwrap();
        read_some(&mut server).await.unwrap();
        let error = read_some(&mut server).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 10);
    }
}
