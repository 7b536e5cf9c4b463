//! The processes of the cluster: replicas of the real `customer-api` binary and HAProxy in
//! front of them, each started with a clean environment (nothing leaks in from the shell) and
//! killed when dropped, so a failing run leaves no process behind.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
    process::{Child, Command},
};

#[path = "../support/procs.rs"]
mod support;
pub use support::{BIN, Server as Replica, free_port, http_get, spawn_logged, until};

/// Replica `index` of the cluster: `r{index}` (also its HAProxy server name), logging to
/// `r{index}.log` in `dir`, with `env` as its whole environment.
pub fn replica(index: usize, dir: &Path, env: Vec<(String, String)>) -> Replica {
    let name = format!("r{index}");
    Replica::new(&name, dir.join(format!("{name}.log")), env)
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
        let mut command = Command::new(Self::executable());
        command.arg("-db").arg("-f").arg(&config_path).env_clear();
        let child = spawn_logged(&mut command, &dir.join("haproxy.log"));
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
