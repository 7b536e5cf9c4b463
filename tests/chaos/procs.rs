//! The processes the chaos suite owns and hurts: a private PostgreSQL cluster (`initdb` and
//! `pg_ctl` from the installed binaries, as the `postgres` user when run as root), a private
//! `nats-server -js`, and the real `customer-api` binary. Each starts with a clean environment
//! (nothing leaks in from the shell) on a port of its own that it keeps across restarts, and
//! is killed and removed when dropped, so a failing run leaves nothing behind.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command as StdCommand, Stdio},
    time::Duration,
};

use tokio::process::{Child, Command};

#[path = "../support/procs.rs"]
mod support;
pub use support::{Server, free_port, http_get, spawn_logged, until};

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
        let mut command = Command::new(executable);
        command
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .env_clear();
        self.child = Some(spawn_logged(&mut command, &self.log));
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
