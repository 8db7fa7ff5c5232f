//! A TCP proxy in front of the test PostgreSQL that a test can freeze (bytes
//! are read but not passed on, as a SIGSTOPped server's kernel keeps
//! accepting them) and thaw, or close (connections reset, new ones refused:
//! the database unreachable). Loopback only.

use std::{net::SocketAddr, sync::Arc};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};

pub struct FreezableProxy {
    pub port: u16,
    frozen: Arc<watch::Sender<bool>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FreezableProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(watch::channel(false).0);
        let f = frozen.clone();
        let accept = tokio::spawn(async move {
            // Dropping this set (a closed proxy) resets every connection.
            let mut conns = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                conns.spawn(pipe(cr, sw, f.subscribe()));
                conns.spawn(pipe(sr, cw, f.subscribe()));
            }
        });
        Self {
            port,
            frozen,
            accept,
        }
    }

    /// A proxy to the server of `url` (`postgres://user@host:port/db`), and
    /// `url` through it.
    pub async fn for_url(url: &str) -> (Self, String) {
        let authority = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .map(|a| a.rsplit('@').next().unwrap_or(a))
            .expect("a postgres:// URL");
        let hostport = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:5432")
        };
        let target = tokio::net::lookup_host(hostport.as_str())
            .await
            .expect("resolving the test server")
            .next()
            .expect("an address for the test server");
        let proxy = Self::start(target).await;
        let proxied = url.replacen(authority, &format!("127.0.0.1:{}", proxy.port), 1);
        (proxy, proxied)
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Resets every connection and refuses new ones.
    pub fn close(&self) {
        self.accept.abort();
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
