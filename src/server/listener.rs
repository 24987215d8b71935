//! The HTTP listeners' accept loop: connection limits, header limits, optional TLS, and a drain
//! that does not break keep-alive clients.
//!
//! Every HTTP listener (worker codec, UI codec, admin) is served here rather than by
//! `axum::serve`, for three reasons:
//!
//! * **TLS and client certificates.** The handshake happens here and the verified client
//!   certificate's names travel with each request as a [`Peer`] extension.
//! * **Limits.** At most `max_connections` connections are open at once (the accept loop waits
//!   for a free slot; the kernel's backlog holds the rest), request heads are bounded in bytes
//!   (HTTP/1: `431`; HTTP/2: `max_header_list_size`), and a client has 10 s to send a head once
//!   it began one, while a keep-alive connection may idle for 120 s between requests
//!   ([`super::timed`]).
//! * **Drain without a keep-alive race.** Closing an idle keep-alive connection at the moment a
//!   client reuses it fails that client's request without the server ever having seen it
//!   (RFC 9112, section 9.3.1). So on SIGTERM the listener first stops accepting and, for a
//!   *linger* period, keeps serving open connections while marking every HTTP/1 response
//!   `Connection: close`: each active client learns from its next answer not to reuse the
//!   connection. Only connections still open after the linger are shut down gracefully
//!   (in-flight requests finish; HTTP/2 clients get a GOAWAY).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http::{HeaderValue, Request, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use super::timed::Timed;
use super::tls::{TlsReloader, client_cert_names};

/// Who is on the other end of a connection; given to the [`Handler`] with every request.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub address: SocketAddr,
    /// DNS names from a verified TLS client certificate (empty without one).
    pub client_cert_names: Arc<[String]>,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// What a listener serves: each request with the connection's [`Peer`] (`None` on a Unix
/// socket).
pub trait Handler: Clone + Send + Sync + 'static {
    /// Answers one request.
    fn call(
        &self,
        request: Request<Body>,
        peer: Option<Peer>,
    ) -> impl Future<Output = Response> + Send + 'static + use<Self>;
}

/// A router gets the peer as request extensions: [`Peer`] and axum's `ConnectInfo`.
impl Handler for Router {
    fn call(
        &self,
        mut request: Request<Body>,
        peer: Option<Peer>,
    ) -> impl Future<Output = Response> + Send + 'static + use<> {
        if let Some(peer) = peer {
            request.extensions_mut().insert(ConnectInfo(peer.address));
            request.extensions_mut().insert(peer);
        }
        let router = self.clone();
        async move {
            let Ok(response) = router.oneshot(request).await;
            response
        }
    }
}

/// One listener's settings.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// The listener's name, for logs.
    pub name: &'static str,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// TLS, if the listener serves HTTPS.
    pub tls: Option<Arc<TlsReloader>>,
    /// How long open connections keep being served (with `Connection: close`) after the drain
    /// starts, before they are shut down.
    pub linger: Duration,
}

/// How long a client has for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an HTTP/2 connection is pinged.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(20);
/// How long an HTTP/2 ping may go unanswered before the connection is closed.
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Most concurrent streams on one HTTP/2 connection (each codec call still needs a permit).
const HTTP2_MAX_STREAMS: u32 = 256;
/// hyper's smallest HTTP/1 read buffer.
const MIN_HEAD_BUFFER: usize = 8192;

/// A bound socket the accept loop serves.
#[derive(Debug)]
pub enum Bound {
    /// TCP: the peer's address is known, TLS is possible.
    Tcp(TcpListener),
    /// A Unix domain socket (the pod-local gRPC socket): no peer address, no TLS.
    Unix(tokio::net::UnixListener),
}

/// One accepted connection.
enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

impl Bound {
    async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Self::Tcp(listener) => {
                let (stream, address) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok(Accepted::Tcp(stream, address))
            }
            Self::Unix(listener) => Ok(Accepted::Unix(listener.accept().await?.0)),
        }
    }
}

impl From<TcpListener> for Bound {
    fn from(listener: TcpListener) -> Self {
        Self::Tcp(listener)
    }
}

/// Serves `app` on `listener` until `drain` turns true, then drains as the module describes and
/// returns once every connection has closed.
pub async fn serve(
    listener: impl Into<Bound>,
    app: impl Handler,
    options: ListenerOptions,
    mut drain: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = listener.into();
    let max = options.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let options = Arc::new(options);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = drained(&mut drain) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, a connection reset before accept: wait a little
                    // and go on; the listener itself is still good.
                    tracing::debug!(listener = options.name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = drained(&mut drain) => break,
        };
        let (app, options, drain) = (app.clone(), Arc::clone(&options), drain.clone());
        tokio::spawn(async move {
            match accepted {
                Accepted::Tcp(stream, address) => {
                    connection(stream, address, app, &options, drain).await;
                }
                Accepted::Unix(stream) => {
                    // On the pod-local socket any `:authority` is accepted (see `authority`).
                    let stream = super::authority::AuthorityFix::new(stream);
                    serve_io(stream, None, app, &options, drain).await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a slot: all slots back means all connections closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

/// Resolves once the drain has started (at once if it already has).
async fn drained(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|draining| *draining).await;
}

async fn connection(
    stream: tokio::net::TcpStream,
    address: SocketAddr,
    app: impl Handler,
    options: &ListenerOptions,
    drain: watch::Receiver<bool>,
) {
    let Some(tls) = &options.tls else {
        let peer = Peer {
            address,
            client_cert_names: Arc::from(Vec::new()),
            tls: false,
        };
        return serve_io(stream, Some(peer), app, options, drain).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(listener = options.name, %address, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(listener = options.name, %address, "TLS handshake timed out");
            return;
        }
    };
    let names = client_cert_names(stream.get_ref().1.peer_certificates());
    let peer = Peer {
        address,
        client_cert_names: Arc::from(names),
        tls: true,
    };
    serve_io(stream, Some(peer), app, options, drain).await;
}

/// Serves one connection's byte stream, under the head and idle timers of [`Timed`].
async fn serve_io<S>(
    stream: S,
    peer: Option<Peer>,
    app: impl Handler,
    options: &ListenerOptions,
    mut drain: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (stream, phase) = Timed::new(stream);
    let io = TokioIo::new(stream);
    let draining = drain.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let http1 = request.version() <= Version::HTTP_11;
        phase.serving();
        let answer = app.call(request.map(Body::new), peer.clone());
        let (draining, phase) = (draining.clone(), phase.clone());
        async move {
            let mut response = answer.await;
            phase.answered();
            // Tell a keep-alive client not to reuse this connection once the drain started.
            if http1 && *draining.borrow() {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Head and idle timeouts are `Timed`'s (see `super::timed`): hyper's would also close
        // idle keep-alive connections after the head timeout.
        .header_read_timeout(None)
        .max_buf_size(options.max_header_bytes.max(MIN_HEAD_BUFFER));
    // HTTP/2: `Timed` bounds the preface and the time without a stream; pings find peers that
    // went away without closing; a bounded number of streams per connection.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(HTTP2_PING_INTERVAL))
        .keep_alive_timeout(HTTP2_PING_TIMEOUT)
        .max_concurrent_streams(HTTP2_MAX_STREAMS)
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX));
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = drained(&mut drain) => {}
    }
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = tokio::time::sleep(options.linger) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}
