//! The one upstream the tap forwards to: its URL, how a client's path maps onto it, and how a byte stream to it is
//! opened (TCP, then TLS for https and wss). HTTP exchanges run over them in [`super::client`].
//!
//! TLS is rustls with the ring provider, trusting the webpki roots plus the system's store (which honours
//! `SSL_CERT_FILE` / `SSL_CERT_DIR`, so a private CA works without a flag). The system store is read only when the
//! upstream is https or wss.

use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Uri};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream to the upstream (plain TCP or TLS).
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

    /// The upstream's `Host`.
    pub(crate) fn host_header(&self) -> &HeaderValue {
        &self.host_header
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_maps() {
        let u = Upstream::parse("http://127.0.0.1:3001/mcp").unwrap();
        assert_eq!(u.map_path("/"), "/mcp");
        assert_eq!(u.map_path("/mcp"), "/mcp");
        assert_eq!(u.map_path("/message?sessionId=a"), "/message?sessionId=a");
        assert_eq!(u.host_header(), "127.0.0.1:3001");
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
