//! Accepting connections, with every resource a client controls at the socket bounded.
//!
//! Guarantees:
//! * At most [`ConnLimits::max_connections`] connections are served at once; a connection
//!   beyond that is closed as soon as it is accepted, so descriptors are never exhausted by
//!   clients that connect and wait.
//! * A connection must deliver each request's headers within
//!   [`ConnLimits::header_read_timeout`], counted from the moment the server is ready to read
//!   them: this closes connections that send headers byte by byte (slowloris) and idle
//!   keep-alive connections alike. A TLS handshake must finish within
//!   [`ConnLimits::tls_handshake_timeout`].
//! * Request bodies are read under a time limit by the extractors and streaming handlers
//!   that read them (see `extract.rs`).
//! * On shutdown, connections finish the request in flight and close; the server stops
//!   waiting for them after [`SHUTDOWN_GRACE`].

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// How long shutdown waits for open connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut refused_logged: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was accepted: wait
                    // a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if refused_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    max = limits.max_connections,
                    "connection limit reached; closing new connections"
                );
                refused_logged = Some(std::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, limits, tls, stop) = (app.clone(), limits.clone(), tls.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_connection(stream, addr, app, &limits, stop).await,
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(http1_only(&tls));
                    match tokio::time::timeout(
                        limits.tls_handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => serve_connection(stream, addr, app, &limits, stop).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutting down with connections still open");
    }
    Ok(())
}

/// The current certificate's configuration, offering only HTTP/1.1 by ALPN (this server
/// speaks HTTP/1.1; the loaded configuration also offers h2). Derived again only when the
/// certificate is reloaded.
fn http1_only(
    tls: &axum_server::tls_rustls::RustlsConfig,
) -> Arc<tokio_rustls::rustls::ServerConfig> {
    type Derived = (
        Arc<tokio_rustls::rustls::ServerConfig>,
        Arc<tokio_rustls::rustls::ServerConfig>,
    );
    static DERIVED: std::sync::Mutex<Option<Derived>> = std::sync::Mutex::new(None);
    let current = tls.get_inner();
    let mut derived = DERIVED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((from, http1)) = derived.as_ref()
        && Arc::ptr_eq(from, &current)
    {
        return http1.clone();
    }
    let mut config = (*current).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http1 = Arc::new(config);
    *derived = Some((current, http1.clone()));
    http1
}

async fn serve_connection<I>(
    io: I,
    addr: SocketAddr,
    app: Router,
    limits: &ConnLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(addr));
        app.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let stopped = async move {
        // The guard `wait_for` returns is dropped at once: it must not live across an await.
        let _ = stop.wait_for(|s| *s).await.is_ok();
    };
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = stopped => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
