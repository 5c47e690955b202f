//! Real Redis servers for the cluster tests, started and stopped by the tests on loopback. A missing
//! `redis-server` fails the test that needs it: `scripts/test` installs it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::PATIENCE;

/// A `redis-server` process, killed when dropped.
pub struct RedisServer {
    pub addr: SocketAddr,
    process: Child,
    dir: PathBuf,
    extra_args: Vec<String>,
}

impl RedisServer {
    /// A single Redis, without persistence.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A Redis with more `redis-server` arguments (for instance `--cluster-enabled yes`).
    pub fn start_with(extra_args: &[&str]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("zajel-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let extra_args: Vec<String> = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
        let process = spawn(port, &dir, &extra_args);
        let server = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            process,
            dir,
            extra_args,
        };
        server.wait_until_up();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Stops the server at once, as a crash would (SIGKILL).
    pub fn kill(&mut self) {
        self.process.kill().ok();
        self.process.wait().ok();
    }

    /// Starts it again on the same port, after [`Self::kill`].
    pub fn restart(&mut self) {
        self.process = spawn(self.addr.port(), &self.dir, &self.extra_args);
        self.wait_until_up();
    }

    /// Runs `redis-cli` against this server and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs (scripts/test installs Debian's redis-tools)");
        assert!(output.status.success(), "redis-cli {args:?} failed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen in time"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn spawn(port: u16, dir: &std::path::Path, extra_args: &[String]) -> Child {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--dir"])
        .arg(dir)
        .args(extra_args)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts (scripts/test installs Debian's redis-server)")
}

/// A TCP port nothing listens on now, for a server that cannot be told to pick its own.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A Redis Cluster of three masters (no replicas), each slot range on another process.
pub struct RedisCluster {
    pub masters: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let masters: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let addresses: Vec<String> = masters
            .iter()
            .map(|master| master.addr.to_string())
            .collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        masters[0].cli(&create);
        let cluster = Self { masters };
        cluster.wait_until_ready();
        cluster
    }

    /// Any master will do: clients learn the others from it.
    pub fn url(&self) -> String {
        self.masters[0].url()
    }

    /// Waits until every master sees all slots served (the cluster state settles a moment after the
    /// slots are assigned).
    fn wait_until_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        for master in &self.masters {
            while !master
                .cli(&["cluster", "info"])
                .contains("cluster_state:ok")
            {
                assert!(
                    Instant::now() < deadline,
                    "the Redis Cluster did not settle in time"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
