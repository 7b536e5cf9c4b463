//! What the process-level suites (`tests/chaos`, `tests/cluster`) share: free ports, polling
//! another process's state, a plain HTTP GET, and the real `customer-api serve` binary as a
//! child process started with a clean environment (nothing leaks in from the shell) and
//! killed when dropped, so a failing run leaves no process behind.
//!
//! Included by each suite with `#[path]`; each uses a part of it.
#![allow(dead_code)]

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio::process::{Child, Command};

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_customer-api");

/// A free port on 127.0.0.1 (bound and released: nothing else on this machine picks ports
/// from the ephemeral range for listening in the meantime).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `probe` every 20 ms until it yields a value; panics after `limit` saying `what`
/// was awaited. For state another process owns (readiness, HAProxy's view, a stream's
/// length), where no event can be awaited.
pub async fn until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET http://{addr}{path}` over HTTP/1.1: the status and body, or `None` when the
/// connection fails (nothing listens) or takes longer than 2 s.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let uri = format!("http://{addr}{path}").parse().expect("uri");
    let call = async {
        let response = client.get(uri).await.ok()?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(2), call)
        .await
        .ok()
        .flatten()
}

/// Spawns `command` with no input and its output appended to the file `log`; the child is
/// killed when dropped.
pub fn spawn_logged(command: &mut Command, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {:?}: {e}", command.as_std().get_program()))
}

/// `customer-api serve` on a fixed port (kept across restarts), logging to its own file.
pub struct Server {
    /// What messages call it (`the server`, `r0`, …).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// A server called `name` (not started) logging to `log`, with `env` as its whole
    /// environment.
    pub fn new(name: &str, log: PathBuf, mut env: Vec<(String, String)>) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        env.push(("LISTEN_ADDR".into(), addr.to_string()));
        Self {
            name: name.to_owned(),
            addr,
            env,
            log,
            child: None,
        }
    }

    /// Starts `customer-api serve`.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.child = Some(spawn_logged(&mut command, &self.log));
    }

    /// Whether `/readyz` answers 200.
    pub async fn ready(&self) -> bool {
        matches!(http_get(self.addr, "/readyz").await, Some((200, _)))
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        until(
            &format!("{} is ready", self.name),
            Duration::from_secs(60),
            || async { self.ready().await.then_some(()) },
        )
        .await;
    }

    /// The process id (while running).
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(Child::id)
            .unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    /// `kill -9`: the process dies at once, mid-request.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("SIGKILL");
    }

    /// `kill -TERM`: the process starts its graceful shutdown.
    pub fn terminate(&self) {
        // std has no signal API and unsafe code is forbidden: the shell's `kill` builtin.
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.pid())])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits (at most `limit`) for the process to exit and returns its status.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = tokio::time::timeout(limit, child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {limit:?}", self.name))
            .expect("wait");
        self.child = None;
        status
    }

    /// Kills the process if it runs (cleanup).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Runs a subcommand of the binary (`migrate`, `token`) with this server's environment.
    pub fn run(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(BIN)
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run customer-api");
        assert!(
            out.status.success(),
            "customer-api {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }
}
