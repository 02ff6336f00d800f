//! The one upstream the tap forwards to: its URL, how a client's path maps onto it, and the connections to it
//! (for http/https one HTTP/1.1 connection per client connection, [`UpstreamConn`]; a fresh TCP or TLS stream per
//! WebSocket).
//!
//! TLS is rustls with the ring provider, trusting the webpki roots plus the system's store (which honours
//! `SSL_CERT_FILE` / `SSL_CERT_DIR`, so a private CA works without a flag). The system store is read only when the
//! upstream is https or wss.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream to a WebSocket upstream (plain TCP or TLS).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The upstream endpoint given with `--upstream`.
#[derive(Debug, Clone)]
pub struct Upstream {
    tls: bool,
    ws: bool,
    host: String,
    port: u16,
    authority: Authority,
    path: PathAndQuery,
    host_header: HeaderValue,
    /// Built at the first TLS connection (reading the system's certificate store is slow) and shared by the rest.
    tls_config: Arc<std::sync::OnceLock<Arc<rustls::ClientConfig>>>,
}

impl Upstream {
    /// Parses an `http://`, `https://`, `ws://` or `wss://` URL. Credentials in the URL are refused (send them
    /// as headers from the client: the tap passes them through and redacts them in the capture).
    pub fn parse(url: &str) -> Result<Upstream, String> {
        let uri: Uri = url.parse().map_err(|e| format!("--upstream {url}: not a URL ({e})"))?;
        let (tls, ws) = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http") => (false, false),
            Some("https") => (true, false),
            Some("ws") => (false, true),
            Some("wss") => (true, true),
            _ => {
                return Err(format!(
                    "--upstream {url}: must start with http://, https://, ws:// or wss://"
                ));
            }
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("--upstream {url}: no host"))?;
        if authority.as_str().contains('@') {
            return Err(
                "--upstream: credentials in the URL are not supported; have the client send them as headers".into(),
            );
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(format!("--upstream {url}: no host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let host_header =
            HeaderValue::from_str(authority.as_str()).map_err(|e| format!("--upstream {url}: bad host ({e})"))?;
        Ok(Upstream {
            tls,
            ws,
            host,
            port,
            authority,
            path,
            host_header,
            tls_config: Arc::default(),
        })
    }

    /// A WebSocket upstream (`ws://`, `wss://`).
    pub fn is_ws(&self) -> bool {
        self.ws
    }

    /// `https` or `http`: the scheme of this upstream's HTTP URLs.
    pub fn http_scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// The URL without its query (for metadata and logs: a query may hold a key).
    pub fn display(&self) -> String {
        let scheme = match (self.tls, self.ws) {
            (false, false) => "http",
            (true, false) => "https",
            (false, true) => "ws",
            (true, true) => "wss",
        };
        format!("{scheme}://{}{}", self.authority, self.path.path())
    }

    /// A file-name label: the upstream's host and port.
    pub fn label(&self) -> String {
        format!("{}-{}", self.host, self.port)
    }

    /// The upstream's path and query.
    pub fn path(&self) -> &str {
        self.path.as_str()
    }

    /// The upstream path-and-query a client's request goes to: `/` means the upstream URL itself, anything else
    /// is kept as the client sent it (so a legacy `/message?sessionId=` post lands on the upstream's `/message`).
    pub fn map_path<'a>(&'a self, client: &'a str) -> &'a str {
        if client == "/" || client.is_empty() {
            self.path.as_str()
        } else {
            client
        }
    }

    /// The request target (origin form) on the upstream for a client's path-and-query.
    pub fn http_uri(&self, client: &str) -> Result<Uri, http::Error> {
        Ok(Uri::from(PathAndQuery::try_from(self.map_path(client))?))
    }

    /// Sets the upstream's `Host` on a request's headers.
    pub fn set_host(&self, headers: &mut http::HeaderMap) {
        headers.insert(header::HOST, self.host_header.clone());
    }

    /// The ws(s) URL for a client's path-and-query.
    pub fn ws_url(&self, client: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority, self.map_path(client))
    }

    /// Is `url` (an absolute http(s) URL) on this upstream's origin? Returns its path-and-query if so.
    pub fn same_origin_path<'a>(&self, url: &'a str) -> Option<&'a str> {
        let (scheme, rest) = url.split_once("://")?;
        if !scheme.eq_ignore_ascii_case(self.http_scheme()) {
            return None;
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority: Authority = rest[..end].parse().ok()?;
        let port = authority.port_u16().unwrap_or(if self.tls { 443 } else { 80 });
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        if !host.eq_ignore_ascii_case(&self.host) || port != self.port {
            return None;
        }
        let path = &rest[end..];
        Some(if path.is_empty() { "/" } else { path })
    }

    /// Opens a byte stream to the upstream (TCP, then TLS for https and wss).
    pub(crate) async fn connect(&self, connect_timeout: Duration) -> std::io::Result<Box<dyn Io>> {
        let addr = (self.host.as_str(), self.port);
        let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        tcp.set_nodelay(true)?;
        if !self.tls {
            return Ok(Box::new(tcp));
        }
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let config = self.tls_config.get_or_init(|| Arc::new(tls_config()));
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let tls = tokio::time::timeout(connect_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        Ok(Box::new(tls))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Trusts the webpki roots and the system store (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured).
fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// One client connection's own HTTP/1.1 connection to the upstream, opened at its first request and kept while
/// the upstream keeps it open.
///
/// Why not a shared pool: a client connection carries one exchange at a time (hyper's server reads the next request
/// only once the previous answer is sent), so one upstream connection per client connection is always enough, and
/// hyper-util's pool cost a keyed checkout raced against a fresh connect, and larger futures, on every request
/// (the proxy thread's instructions per request under callgrind, start-up subtracted: 63,400 with the pool,
/// 50,600 without). Like
/// nginx's `keepalive` upstreams, but pinned: a client's requests also reach the upstream in the order it sent
/// them, on one connection.
#[derive(Debug, Default)]
pub(crate) struct UpstreamConn {
    send: std::sync::Mutex<Option<http1::SendRequest<Full<Bytes>>>>,
}

/// Why a request could not be sent upstream.
#[derive(Debug)]
pub(crate) enum SendError {
    /// Connecting (TCP, TLS or the HTTP/1.1 handshake) failed.
    Connect(std::io::Error),
    /// The connection failed while sending or waiting for the answer's head.
    Http(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "{e}"),
            SendError::Http(e) => write!(f, "{}", crate::http::proxy::chain(e)),
        }
    }
}

impl UpstreamConn {
    /// Sends `req` (origin-form target, `Host` set) and returns the answer's head. A request that a kept
    /// connection could not send at all (the upstream closed it while idle) is sent once more on a new one, as a
    /// pool would.
    pub async fn send(
        &self,
        upstream: &Upstream,
        connect_timeout: Duration,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, SendError> {
        let kept = self.take().filter(|s| !s.is_closed());
        let mut req = req;
        let mut reused = kept.is_some();
        let mut send = match kept {
            Some(s) => s,
            None => Box::pin(open(upstream, connect_timeout)).await?,
        };
        loop {
            let sent = match send.ready().await {
                Ok(()) => send
                    .try_send_request(req)
                    .await
                    .map_err(|mut e| (e.take_message(), e.into_error())),
                Err(e) => Err((Some(req), e)),
            };
            match sent {
                Ok(resp) => {
                    self.put(send);
                    return Ok(resp);
                }
                Err((Some(unsent), _)) if reused => {
                    req = unsent;
                    reused = false;
                    send = Box::pin(open(upstream, connect_timeout)).await?;
                }
                Err((_, e)) => return Err(SendError::Http(e)),
            }
        }
    }

    fn take(&self) -> Option<http1::SendRequest<Full<Bytes>>> {
        self.send.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn put(&self, send: http1::SendRequest<Full<Bytes>>) {
        *self.send.lock().unwrap_or_else(|e| e.into_inner()) = Some(send);
    }
}

/// A new HTTP/1.1 connection to the upstream; its connection task runs until either side closes it.
async fn open(upstream: &Upstream, connect_timeout: Duration) -> Result<http1::SendRequest<Full<Bytes>>, SendError> {
    let io = upstream.connect(connect_timeout).await.map_err(SendError::Connect)?;
    let (send, conn) = http1::handshake(TokioIo::new(io)).await.map_err(SendError::Http)?;
    tokio::spawn(async move {
        // An error here is the upstream going away; the exchange that sees it reports it.
        let _ = conn.await;
    });
    Ok(send)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_maps() {
        let u = Upstream::parse("http://127.0.0.1:3001/mcp").unwrap();
        assert_eq!(u.map_path("/"), "/mcp");
        assert_eq!(u.map_path("/mcp"), "/mcp");
        assert_eq!(u.map_path("/message?sessionId=a"), "/message?sessionId=a");
        assert_eq!(u.http_uri("/").unwrap().to_string(), "/mcp");
        let mut h = http::HeaderMap::new();
        u.set_host(&mut h);
        assert_eq!(h[header::HOST], "127.0.0.1:3001");
        assert_eq!(u.label(), "127.0.0.1-3001");
        let s = Upstream::parse("https://gw.example/api/mcp?k=1").unwrap();
        assert_eq!(s.display(), "https://gw.example/api/mcp");
        assert_eq!(s.path(), "/api/mcp?k=1");
        assert_eq!(s.same_origin_path("https://GW.example:443/m?x=1"), Some("/m?x=1"));
        assert_eq!(s.same_origin_path("https://gw.example"), Some("/"));
        assert_eq!(s.same_origin_path("http://gw.example/m"), None);
        assert_eq!(s.same_origin_path("https://other/m"), None);
        let w = Upstream::parse("ws://[::1]:9000/").unwrap();
        assert!(w.is_ws());
        assert_eq!(w.ws_url("/x"), "ws://[::1]:9000/x");
        for bad in ["ftp://x/", "localhost:80", "http://u:p@h/", "/mcp"] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }
}
