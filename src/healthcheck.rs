//! `customer-api healthcheck`: the container image's HEALTHCHECK. The runtime image
//! (distroless) has no shell and no curl, so the binary probes its own listener: one plain
//! HTTP/1.1 `GET` of `/readyz` (by default) on `LISTEN_ADDR`, success on `200`.
//!
//! A wildcard listen address (`0.0.0.0`, `::`) is probed on the loopback address of the same
//! family. A listener with TLS is not probed by this command (orchestrators probe it
//! themselves); see docs/deployment.md.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use clap::Args;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Arguments of `customer-api healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The service's listen address (the same variable `serve` reads).
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,
    /// The path to probe: `/readyz` (ready to serve) or `/healthz` (alive).
    #[arg(long, default_value = "/readyz")]
    pub path: String,
    /// Time allowed for the connection and the answer.
    #[arg(long, default_value = "2s", value_parser = crate::config::parse_duration)]
    pub timeout: Duration,
}

/// Why the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// Nothing accepted the connection.
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// The request or the answer failed midway.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// No answer in time.
    #[error("no answer from {0} within {1:?}")]
    Timeout(SocketAddr, Duration),
    /// An answer other than 200.
    #[error("{path} answered {status}")]
    Status {
        /// The probed path.
        path: String,
        /// The HTTP status line's code (or the line itself when it has none).
        status: String,
    },
}

/// The address to connect to for a listener bound to `listen`.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Probes `args.path` once; `Ok` when it answers 200.
pub async fn run(args: &HealthcheckArgs) -> Result<(), HealthcheckError> {
    let addr = probe_addr(args.listen_addr);
    tokio::time::timeout(args.timeout, probe(addr, &args.path))
        .await
        .unwrap_or(Err(HealthcheckError::Timeout(addr, args.timeout)))
}

async fn probe(addr: SocketAddr, path: &str) -> Result<(), HealthcheckError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| HealthcheckError::Connect(addr, e))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| HealthcheckError::Io(format!("sending to {addr}"), e))?;
    // The status line is all that matters; the probes' answers are a few bytes.
    let mut answer = Vec::with_capacity(256);
    stream
        .take(4096)
        .read_to_end(&mut answer)
        .await
        .map_err(|e| HealthcheckError::Io(format!("reading from {addr}"), e))?;
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).unwrap_or(status_line);
    if status == "200" {
        Ok(())
    } else {
        Err(HealthcheckError::Status {
            path: path.to_owned(),
            status: status.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_are_probed_on_loopback() {
        let probe = |text: &str| probe_addr(text.parse().unwrap()).to_string();
        assert_eq!(probe("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(probe("[::]:8080"), "[::1]:8080");
        assert_eq!(probe("10.1.2.3:9000"), "10.1.2.3:9000");
    }
}
