//! Real `redis-server` processes on loopback ports, owned by the test: started on a
//! free port, stopped (and restarted on the same port) at will, killed on drop.
//! A missing `redis-server` fails the test: it must not pass by testing nothing.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    extra: Vec<String>,
    /// A Sentinel: its config file (which it rewrites), monitoring `master_name`.
    sentinel: Option<PathBuf>,
    child: Option<Child>,
}

impl RedisServer {
    /// A server without persistence.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// A server with extra command-line settings (`["--appendonly", "yes"]`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            port: 0,
            dir: tempfile::tempdir().unwrap(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            sentinel: None,
            child: None,
        };
        // Another process may take the port between our probe and the server's bind:
        // try a few.
        for _ in 0..6 {
            server.port = free_port();
            if server.try_start() {
                return server;
            }
        }
        panic!(
            "redis-server did not start on any of 6 free ports; see {}",
            server.log().display()
        );
    }

    /// A replica of `master`.
    pub fn replica_of(master: &RedisServer) -> RedisServer {
        let port = master.port.to_string();
        RedisServer::start_with(&["--replicaof", "127.0.0.1", &port])
    }

    /// A Sentinel watching `master` as `master_name`, quick to fail over: the master
    /// is down after 300 ms without answers.
    pub fn sentinel_for(master: &RedisServer, master_name: &str) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "sentinel monitor {master_name} 127.0.0.1 {port} 1\n\
                 sentinel down-after-milliseconds {master_name} 300\n\
                 sentinel failover-timeout {master_name} 3000\n\
                 sentinel parallel-syncs {master_name} 1\n",
                port = master.port
            ),
        )
        .unwrap();
        let mut server = RedisServer {
            port: 0,
            dir,
            extra: Vec::new(),
            sentinel: Some(config),
            child: None,
        };
        for _ in 0..6 {
            server.port = free_port();
            if server.try_start() {
                return server;
            }
        }
        panic!("redis-server --sentinel did not start");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join(format!("redis-{}.log", self.port))
    }

    fn try_start(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        if let Some(config) = &self.sentinel {
            // The config file must come first.
            command.arg(config).arg("--sentinel");
        }
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .args(if self.sentinel.is_some() {
                &[][..]
            } else {
                &["--save", "", "--appendonly", "no"][..]
            })
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed: the Redis store tests need it \
                 (Debian: apt-get install redis-server; scripts/test-all.sh installs it)"
            ),
            Err(error) => panic!("cannot run redis-server: {error}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                // Exited: most likely the port was taken.
                eprintln!("redis-server on port {} exited: {status}", self.port);
                self.child = None;
                return false;
            }
            if ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer PING within 10 s",
            self.port
        );
    }

    /// Kills the server at once (like a crash: nothing is saved on the way out).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with the same settings and directory.
    pub fn restart(&mut self) {
        self.stop();
        // The port was ours a moment ago; retry briefly if the kernel still holds it.
        for _ in 0..50 {
            if self.try_start() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// Runs one command with redis-cli and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (package redis-tools) must be installed");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
