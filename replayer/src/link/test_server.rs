//! A tiny HTTP/1.1 server for the link tests: a thread per connection reads each request (line, lower-cased
//! header lines, a `Content-Length` body) and writes what the handler answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One request as the server read it.
pub(crate) struct Request {
    /// The request line without its line end (`POST /mcp HTTP/1.1`).
    pub line: String,
    /// Header lines, lower-cased, without their line ends.
    pub headers: Vec<String>,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (lower case), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find_map(|h| h.strip_prefix(name)?.strip_prefix(':').map(str::trim))
    }
}

/// What the handler answers: the bytes to write, and whether to close the connection after them.
pub(crate) struct Reply {
    pub bytes: String,
    pub close: bool,
}

/// Serves on a loopback port until the test ends; returns the URL of `/mcp` and the count of connections accepted.
pub(crate) fn serve(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let accepts = Arc::new(AtomicUsize::new(0));
    let (a, handler) = (accepts.clone(), Arc::new(handler));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            a.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            std::thread::spawn(move || {
                let mut w = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut headers = Vec::new();
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).unwrap();
                        let h = h.trim_end().to_ascii_lowercase();
                        if h.is_empty() {
                            break;
                        }
                        headers.push(h);
                    }
                    let mut req = Request {
                        line: line.trim_end().to_string(),
                        headers,
                        body: Vec::new(),
                    };
                    let len = req.header("content-length").map_or(0, |v| v.parse().unwrap());
                    req.body = vec![0; len];
                    r.read_exact(&mut req.body).unwrap();
                    let reply = handler(&req);
                    w.write_all(reply.bytes.as_bytes()).unwrap();
                    if reply.close {
                        return;
                    }
                }
            });
        }
    });
    (url, accepts)
}
