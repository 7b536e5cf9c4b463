//! A private PostgreSQL cluster for one test: `initdb` and `pg_ctl` from the installed
//! binaries (as the `postgres` user when the tests run as root, which `initdb` requires), on
//! a free port of 127.0.0.1, with the configuration and `pg_hba.conf` the test asks for and
//! the files it hands over (certificates). Stopped (`-m immediate`) and removed on drop.
//!
//! Missing binaries fail the test with what to install: tests never skip.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
};

/// A running cluster.
pub struct Cluster {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

/// The directory of `initdb`, `pg_ctl` and `postgres`: the newest `/usr/lib/postgresql/*/bin`,
/// else `pg_config --bindir`, else the directory of `initdb` on PATH.
pub fn server_binaries() -> PathBuf {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| complete(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return dir;
    }
    let from = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    };
    if let Some(dir) = from("pg_config", &["--bindir"]).filter(|dir| complete(dir)) {
        return dir;
    }
    if let Some(dir) = from("sh", &["-c", "command -v initdb"])
        .and_then(|path| path.parent().map(Path::to_owned))
        .filter(|dir| complete(dir))
    {
        return dir;
    }
    panic!(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) in /usr/lib/postgresql/*/bin, \
         pg_config --bindir or PATH: these tests start a private cluster. Install them \
         (Debian: apt-get install postgresql)"
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// `program args…`, as the `postgres` user when we are root. Panics with its output on
/// failure.
fn run(as_postgres: bool, program: &Path, args: &[&str]) {
    let mut command = if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    let out = command
        .args(args)
        .current_dir("/")
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

impl Cluster {
    /// Creates and starts a cluster with `conf` appended to `postgresql.conf`, `hba` as
    /// `pg_hba.conf`, and `files` (name, contents) written into the data directory, readable
    /// only by the server.
    pub fn start(conf: &str, hba: &str, files: &[(&str, &str)]) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let bin = server_binaries();
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!(
            "customer-api-cluster-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if as_postgres {
            run(
                false,
                Path::new("chown"),
                &["postgres", dir.to_str().unwrap()],
            );
        }
        let data = dir.join("data");
        let data_arg = data.to_str().unwrap().to_owned();
        run(
            as_postgres,
            &bin.join("initdb"),
            &[
                "-D",
                &data_arg,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        config.push_str(&format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n\
             fsync = off\nmax_connections = 60\n{conf}\n"
        ));
        std::fs::write(data.join("postgresql.conf"), config).unwrap();
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        for (name, contents) in files {
            let path = data.join(name);
            std::fs::write(&path, contents).unwrap();
            // The server refuses a key readable by others.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        if as_postgres {
            run(
                false,
                Path::new("chown"),
                &["-R", "postgres", dir.to_str().unwrap()],
            );
        }
        let log = dir.join("postgres.log");
        let cluster = Self { port, dir, bin };
        let started = std::panic::catch_unwind(|| cluster.start_again());
        if started.is_err() {
            panic!(
                "the private cluster did not start; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        cluster
    }

    /// Starts the server (again, after [`Cluster::stop`]) on the same port and data, and
    /// waits until it accepts connections.
    pub fn start_again(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("postgres.log");
        run(
            is_root(),
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// `pg_ctl stop -m fast`: the server goes away (its sessions end), the data stays.
    pub fn stop(&self) {
        let data = self.dir.join("data");
        run(
            is_root(),
            &self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
    }

    /// `postgres://user@host:port/database?params` (host as given: a name to check
    /// certificates against, the cluster listening on 127.0.0.1).
    pub fn url(&self, user: &str, host: &str, database: &str, params: &str) -> String {
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{params}")
        };
        format!("postgres://{user}@{host}:{}/{database}{query}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            command
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = command
            .args([
                "-D",
                data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .current_dir("/")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
