//! `mcptape serve --stdio`: answer NDJSON on stdin, on stdout; answers go out when their (injected) delay is over,
//! so a slow answer does not hold up the next one.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::serve::core::Server;

/// Serves until stdin closes and every pending answer is written.
pub async fn serve(server: Arc<Server>) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(msg) = rx.recv().await {
            let mut line = Vec::with_capacity(msg.len() + 1);
            line.extend_from_slice(&msg);
            line.push(b'\n');
            if out.write_all(&line).await.is_err() || out.flush().await.is_err() {
                break;
            }
        }
    });
    let mut pending: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut lines = BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if lines.read_until(b'\n', &mut buf).await? == 0 {
            break;
        }
        let Some(reply) = server.handle("stdio", buf.strip_suffix(b"\n").unwrap_or(&buf)) else {
            continue;
        };
        let (tx, server) = (tx.clone(), server.clone());
        pending.push(tokio::spawn(async move {
            server
                .deliver("stdio", reply, |b| {
                    let _ = tx.send(b);
                })
                .await;
        }));
        pending.retain(|t| !t.is_finished());
    }
    for t in pending {
        let _ = t.await;
    }
    drop(tx);
    let _ = writer.await;
    Ok(())
}
