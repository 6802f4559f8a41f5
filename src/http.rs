//! Serving HTTP so that no client can starve the others: a cap on open connections, a deadline for a
//! request's headers (which also closes idle connections), a deadline for its body, a body-size limit
//! answered with 413 before any handler runs, and the process's open-files limit raised at start.
//! Every refusal here is JSON `{"error", "reason"}`, whichever route was asked for.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use oee_core::Config;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

/// What one client may take of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// The `[http]` settings.
    pub fn of(config: &Config) -> Limits {
        Limits {
            max_body_bytes: config.http_body_limit(),
            header_read_timeout: Duration::from_secs(config.http.header_read_timeout_s.max(1)),
            body_read_timeout: Duration::from_secs(config.http.body_read_timeout_s.max(1)),
            max_connections: config.http.max_connections.max(1),
        }
    }
}

/// `router` with every request's body read whole, within the size and time limits, before its handler runs.
pub fn with_body_limits(router: Router, limits: Limits) -> Router {
    router
        .layer(axum::middleware::from_fn_with_state(limits, read_body))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
}

/// A refusal of the request as a whole, before any route sees it.
fn refuse(status: StatusCode, reason: &str, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message, "reason": reason }))).into_response()
}

fn too_large(limit: usize) -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the request body is larger than {limit} bytes (http.max_body_bytes): send less in one request"),
    )
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Bodies over the limit but at most this large are read to their end (and dropped) before the 413 is
/// sent, so that a client still sending gets the answer instead of a reset connection. Larger ones are
/// answered at once and the connection is closed.
const DRAIN_MAX: u64 = 16 * 1024 * 1024;

/// Why a body was not read.
enum BodyFault {
    TooLarge,
    Unreadable(String),
}

/// Reads the body (all of it, at most `max_body_bytes`, within `body_read_timeout`) and hands the request on.
/// A body declared larger than [`DRAIN_MAX`] is refused before a byte of it is read.
async fn read_body(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let limit = limits.max_body_bytes;
    if declared_length(&parts.headers).is_some_and(|n| n > DRAIN_MAX) {
        return too_large(limit);
    }
    let bytes = match tokio::time::timeout(limits.body_read_timeout, read_at_most(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(BodyFault::TooLarge)) => return too_large(limit),
        Ok(Err(BodyFault::Unreadable(e))) => {
            return refuse(StatusCode::BAD_REQUEST, "unreadable_body", format!("the request body is unreadable: {e}"));
        }
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} s (http.body_read_timeout_s): send it at once",
                    limits.body_read_timeout.as_secs()
                ),
            );
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// The whole body when it has at most `limit` bytes. A larger one is read on to its end (up to
/// [`DRAIN_MAX`]) without being kept.
async fn read_at_most(mut body: Body, limit: usize) -> Result<Bytes, BodyFault> {
    let mut kept = BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyFault::Unreadable(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        seen += data.len() as u64;
        if seen > DRAIN_MAX {
            return Err(BodyFault::TooLarge);
        }
        if seen <= limit as u64 {
            kept.extend_from_slice(&data);
        }
    }
    if seen > limit as u64 { Err(BodyFault::TooLarge) } else { Ok(kept.freeze()) }
}

/// Serves `router` on `listener` until `stop` fires, then lets requests in flight finish.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, mut stop: oneshot::Receiver<()>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Each connection holds a receiver: the sender learns when the last one is gone.
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut full = false;
    loop {
        if slots.available_permits() == 0 && !full {
            tracing::warn!(
                "{} HTTP connections are open (http.max_connections): new ones wait until one closes",
                limits.max_connections
            );
        }
        full = slots.available_permits() == 0;
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    wait_after_accept_error(&e).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        // Answers are small and sent whole: waiting to fill a packet only adds latency.
        let (stream, peer) = stream;
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Counted { stream, _slot: slot });
        // Handlers that need the client's address (the sign-in rate limit) read it from the request.
        let with_peer = tower::util::MapRequestLayer::new(move |mut req: axum::extract::Request<_>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            req
        });
        let service = TowerToHyperService::new(tower::Layer::layer(&with_peer, router.clone()));
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            let conn = builder.serve_connection(io, service).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("HTTP connection ended: {e}");
                    }
                    return;
                }
                _ = closing.changed() => conn.as_mut().graceful_shutdown(),
            }
            if let Err(e) = conn.await {
                tracing::debug!("HTTP connection ended: {e}");
            }
        });
    }
    drop(listener);
    drop(closing_rx);
    let _ = closing_tx.send(true);
    closing_tx.closed().await;
}

/// After a failed accept: a client that gave up meanwhile is no matter; anything else (out of file
/// descriptors above all) is logged and given a moment to pass instead of spinning.
async fn wait_after_accept_error(e: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::warn!("cannot accept an HTTP connection: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A connection that holds one of the server's connection slots for as long as its socket is open, also
/// after it became a websocket.
struct Counted {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Raises this process's soft limit of open files to its hard limit, so that the connection caps, not the
/// default soft limit (often 1024), decide how many clients are served; says so when even the hard limit is
/// below the `connections` the caps allow.
pub fn raise_open_files_limit(connections: usize) {
    match raise_soft_files_limit() {
        Ok(n) if n < connections as u64 => tracing::warn!(
            "at most {n} files may be open, fewer than the {connections} connections http.max_connections and \
             broker.max_connections allow: raise the hard limit (LimitNOFILE in the systemd unit, `ulimit -Hn`)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-files limit: {e}"),
    }
}

/// Sets the soft limit of open files to the hard limit; the limit now in force.
#[allow(unsafe_code)]
fn raise_soft_files_limit() -> io::Result<libc::rlim_t> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // An unlimited hard limit is still bounded by the kernel (`fs.nr_open`, 1048576 by default).
    let target = if limit.rlim_max == libc::RLIM_INFINITY { 1 << 20 } else { limit.rlim_max };
    if limit.rlim_cur < target {
        let raised = libc::rlimit { rlim_cur: target, rlim_max: limit.rlim_max };
        // SAFETY: `raised` is a valid rlimit that only asks for what the hard limit already allows.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}
