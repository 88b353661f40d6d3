//! A TCP proxy in front of the database that the benchmark can cut: `scripts/bench.sh --outage`
//! puts it between clicktrack and MariaDB to measure an outage under load. The proxy itself is
//! the one the outage test uses (tests/api/proxy.rs).
//!
//! Usage: `db_proxy LISTEN UPSTREAM` (e.g. `db_proxy 127.0.0.1:13306 127.0.0.1:3306`);
//! SIGUSR1 cuts every connection and refuses new ones, SIGUSR2 restores.

#[path = "../tests/api/proxy.rs"]
mod proxy;

use std::net::SocketAddr;

use tokio::signal::unix::{SignalKind, signal};

fn addr(arg: Option<String>, what: &str) -> std::io::Result<SocketAddr> {
    arg.and_then(|a| a.parse().ok()).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("usage: db_proxy LISTEN UPSTREAM (bad or missing {what})"),
        )
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = addr(args.next(), "LISTEN")?;
    let upstream = addr(args.next(), "UPSTREAM")?;
    let proxy = proxy::CutProxy::start(listen, upstream).await?;
    eprintln!("db_proxy: {} -> {upstream}", proxy.addr);
    let mut cut = signal(SignalKind::user_defined1())?;
    let mut restore = signal(SignalKind::user_defined2())?;
    loop {
        tokio::select! {
            _ = cut.recv() => { proxy.cut(); eprintln!("db_proxy: cut"); }
            _ = restore.recv() => { proxy.restore(); eprintln!("db_proxy: restored"); }
        }
    }
}
