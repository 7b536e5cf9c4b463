//! The processes the chaos suite owns and hurts: a private PostgreSQL cluster (`initdb` and
//! `pg_ctl` from the installed binaries, as the `postgres` user when run as root), a private
//! `nats-server -js`, and the real `customer-api` binary. Each starts with a clean environment
//! (nothing leaks in from the shell) on a port of its own that it keeps across restarts, and
//! is killed and removed when dropped, so a failing run leaves nothing behind.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command as StdCommand, ExitStatus, Stdio},
    time::Duration,
};

use tokio::process::{Child, Command};

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_customer-api");

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `probe` every 20 ms until it yields a value; panics after `limit` naming `what`.
pub async fn until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
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

fn is_root() -> bool {
    StdCommand::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The newest `/usr/lib/postgresql/*/bin` holding `initdb`, `pg_ctl` and `postgres`.
fn postgres_binaries() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| {
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|b| dir.join(b).is_file())
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: the chaos suite starts \
             a private cluster (Debian: apt-get install postgresql)"
        )
    })
}

/// A private PostgreSQL cluster on 127.0.0.1.
pub struct Postgres {
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

impl Postgres {
    /// `initdb` and start, with `fsync = off` (crash safety of the machine is not under
    /// test; the server's own crash recovery after `-m immediate` is).
    pub fn start(dir: &Path) -> Self {
        let bin = postgres_binaries();
        let as_postgres = is_root();
        let dir = dir.join("pg");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pg directory");
        let this = Self {
            port: free_port(),
            dir,
            bin,
            as_postgres,
        };
        if as_postgres {
            this.run(
                false,
                Path::new("chown"),
                &["-R", "postgres", this.dir.to_str().unwrap()],
            );
        }
        let data = this.data();
        this.run(
            as_postgres,
            &this.bin.join("initdb"),
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let conf = Path::new(&data).join("postgresql.conf");
        let mut config = std::fs::read_to_string(&conf).expect("postgresql.conf");
        config.push_str(&format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = ''\n\
             fsync = off\nmax_connections = 100\n",
            this.port
        ));
        std::fs::write(&conf, config).expect("write postgresql.conf");
        this.start_again();
        this
    }

    fn data(&self) -> String {
        self.dir
            .join("data")
            .to_str()
            .expect("utf-8 path")
            .to_owned()
    }

    fn run(&self, as_postgres: bool, program: &Path, args: &[&str]) {
        let mut command = if as_postgres {
            let mut command = StdCommand::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            StdCommand::new(program)
        };
        let out = command
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(
            out.status.success(),
            "{} {args:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data();
        let log = self.dir.join("postgres.log");
        let mut all = vec!["-D", &data, "-l", log.to_str().unwrap(), "-w", "-t", "60"];
        all.extend_from_slice(args);
        self.run(self.as_postgres, &self.bin.join("pg_ctl"), &all);
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_again(&self) {
        self.pg_ctl(&["start"]);
    }

    /// Stops the server: `fast` (sessions terminated, clean shutdown) or `immediate` (a
    /// crash: recovery on the next start).
    pub fn stop(&self, mode: &str) {
        self.pg_ctl(&["-m", mode, "stop"]);
    }

    /// `postgres://postgres@127.0.0.1:{port}/{database}`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let mut command = if self.as_postgres {
            let mut command = StdCommand::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            command
        } else {
            StdCommand::new(self.bin.join("pg_ctl"))
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .current_dir("/")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private `nats-server` with JetStream, its store in the run's directory (kept across
/// restarts, as a broker's disk is).
pub struct Nats {
    /// Its port.
    pub port: u16,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Nats {
    /// Starts it and waits until it accepts connections.
    pub async fn start(dir: &Path) -> Self {
        let mut nats = Self {
            port: free_port(),
            store: dir.join("nats"),
            log: dir.join("nats.log"),
            child: None,
        };
        nats.start_again().await;
        nats
    }

    /// `nats://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the (killed) server again on the same port and store.
    pub async fn start_again(&mut self) {
        let executable = [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .find(|path| Path::new(path).is_file())
        .unwrap_or_else(|| {
            panic!("nats-server is not installed (Debian: apt-get install nats-server)")
        });
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("nats log");
        let child = Command::new(executable)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        until(
            "nats-server accepts connections",
            Duration::from_secs(30),
            || async { tokio::net::TcpStream::connect(addr).await.ok().map(drop) },
        )
        .await;
    }

    /// `kill -9`: the broker dies at once.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("SIGKILL nats-server");
        }
    }
}

/// The service: `customer-api serve` on a fixed port, logging to its own file.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// A server (not started) with `env` as its whole environment.
    pub fn new(dir: &Path, mut env: Vec<(String, String)>) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        env.push(("LISTEN_ADDR".into(), addr.to_string()));
        Self {
            addr,
            env,
            log: dir.join("server.log"),
            child: None,
        }
    }

    /// Starts `customer-api serve`.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log");
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

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        until("the server is ready", Duration::from_secs(60), || async {
            (crate::http_get(self.addr, "/readyz")
                .await
                .map(|(status, _)| status)
                == Some(200))
            .then_some(())
        })
        .await;
    }

    /// `kill -9`: the process dies at once, mid-request.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("SIGKILL");
    }

    /// `kill -TERM`: graceful shutdown begins.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().and_then(Child::id).expect("running");
        // std has no signal API and unsafe code is forbidden: the shell's `kill`.
        let status = StdCommand::new("sh")
            .args(["-c", &format!("kill -TERM {pid}")])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits (at most `limit`) for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = tokio::time::timeout(limit, child.wait())
            .await
            .unwrap_or_else(|_| panic!("the server did not exit within {limit:?}"))
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
        let out = StdCommand::new(BIN)
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
