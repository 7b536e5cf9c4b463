//! The processes of the cluster: replicas of the real `customer-api` binary and HAProxy in
//! front of them, each started with a clean environment (nothing leaks in from the shell) and
//! killed when dropped, so a failing run leaves no process behind.

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
    process::{Child, Command},
};

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

/// One replica: `customer-api serve` on a fixed port (so HAProxy's configuration names it
/// across restarts), logging to its own file.
pub struct Replica {
    /// `r0`, `r1`, … (also its HAProxy server name).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    /// A replica (not started) with `env` as its whole environment.
    pub fn new(index: usize, dir: &Path, env: Vec<(String, String)>) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut env = env;
        env.push(("LISTEN_ADDR".into(), addr.to_string()));
        Self {
            name: format!("r{index}"),
            addr,
            env,
            log: dir.join(format!("r{index}.log")),
            child: None,
        }
    }

    /// Starts `customer-api serve`.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("replica log");
        let child = Command::new(BIN)
            .arg("serve")
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start customer-api serve");
        self.child = Some(child);
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

    /// Stops the process if it runs (cleanup).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

/// HAProxy in front of the replicas: one frontend taking gRPC over h2c (prior knowledge) and
/// HTTP/1.1 on the same port, h2c to every backend, `/readyz` as the health check, and an
/// admin socket to read its view of the backends.
pub struct HaProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    socket: PathBuf,
    child: Option<Child>,
}

/// One backend server as HAProxy's `show stat` reports it.
#[derive(Debug, Clone)]
pub struct ServerStat {
    /// `UP`, `DOWN`, `UP 1/2` (going down), `DOWN 1/2` (coming up), `MAINT`, …
    pub status: String,
    /// Requests (streams) sent to it since HAProxy started.
    pub total: u64,
}

impl HaProxy {
    /// The HAProxy executable: on `PATH` or Debian's `/usr/sbin/haproxy`. Fails loudly.
    fn executable() -> PathBuf {
        let on_path = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|dir| dir.join("haproxy"))
            .chain([PathBuf::from("/usr/sbin/haproxy")])
            .find(|candidate| candidate.is_file());
        on_path.unwrap_or_else(|| {
            panic!(
                "haproxy is not installed: run `make cluster-test`, which installs Debian's \
                 package, or apt-get install haproxy"
            )
        })
    }

    /// Writes the configuration for `replicas` into `dir` and starts HAProxy on a free port.
    pub async fn start(dir: &Path, replicas: &[&Replica]) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let socket = dir.join("haproxy.sock");
        let servers: String = replicas
            .iter()
            .map(|replica| format!("    server {} {}\n", replica.name, replica.addr))
            .collect();
        // - `inter 100ms fall 1 rise 2`: a failed /readyz takes a server out at once; it
        //   comes back after two good checks.
        // - `proto h2`: h2c to the replicas for every request (REST arrives as HTTP/1.1 and
        //   is converted), health checks included.
        // - `retry-on conn-failure` + `redispatch`: a request that could not even connect
        //   (a killed replica not yet marked down) goes to another server; anything already
        //   sent is not replayed by HAProxy: the clients retry with their request_id.
        let config = format!(
            "global\n\
             \x20   stats socket {socket} mode 600 level admin\n\
             \x20   log stderr format short local0 notice\n\
             defaults\n\
             \x20   mode http\n\
             \x20   log global\n\
             \x20   timeout connect 1s\n\
             \x20   timeout client 60s\n\
             \x20   timeout server 60s\n\
             \x20   timeout http-keep-alive 10s\n\
             \x20   retries 3\n\
             \x20   retry-on conn-failure\n\
             \x20   option redispatch 1\n\
             frontend api\n\
             \x20   bind {addr}\n\
             \x20   default_backend replicas\n\
             backend replicas\n\
             \x20   balance roundrobin\n\
             \x20   option httpchk GET /readyz\n\
             \x20   http-check expect status 200\n\
             \x20   default-server proto h2 check inter 100ms fall 1 rise 2\n\
             {servers}",
            socket = socket.display(),
        );
        let config_path = dir.join("haproxy.cfg");
        std::fs::write(&config_path, config).expect("write haproxy.cfg");
        let log = std::fs::File::create(dir.join("haproxy.log")).expect("haproxy log");
        let child = Command::new(Self::executable())
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start haproxy");
        let proxy = Self {
            addr,
            socket,
            child: Some(child),
        };
        until(
            "HAProxy answers on its admin socket",
            Duration::from_secs(10),
            || async { proxy.try_stats().await },
        )
        .await;
        proxy
    }

    async fn try_stats(&self) -> Option<HashMap<String, ServerStat>> {
        let mut stream = UnixStream::connect(&self.socket).await.ok()?;
        stream.write_all(b"show stat\n").await.ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await.ok()?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let column = |name: &str| header.iter().position(|h| *h == name);
        let (proxy, server, status, total) = (
            column("pxname")?,
            column("svname")?,
            column("status")?,
            column("stot")?,
        );
        let mut servers = HashMap::new();
        for line in lines.filter(|line| !line.is_empty()) {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.get(proxy) != Some(&"replicas") {
                continue;
            }
            let name = fields.get(server)?;
            if *name == "BACKEND" {
                continue;
            }
            servers.insert(
                (*name).to_owned(),
                ServerStat {
                    status: (*fields.get(status)?).to_owned(),
                    total: fields.get(total)?.parse().ok()?,
                },
            );
        }
        Some(servers)
    }

    /// HAProxy's view of the backend server `name`.
    pub async fn server(&self, name: &str) -> ServerStat {
        let mut stats = self.try_stats().await.expect("HAProxy stats");
        stats
            .remove(name)
            .unwrap_or_else(|| panic!("no server {name} in HAProxy"))
    }

    /// Waits until HAProxy reports `name` with status exactly `status` (`UP` or `DOWN`).
    pub async fn wait_status(&self, name: &str, status: &str) -> ServerStat {
        until(
            &format!("HAProxy marks {name} {status}"),
            Duration::from_secs(30),
            || async {
                let stat = self.try_stats().await?.remove(name)?;
                (stat.status == status).then_some(stat)
            },
        )
        .await
    }

    /// Stops HAProxy (cleanup).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}
