//! A real SMTP receiver on loopback for notice tests: Postfix's `smtp-sink`, one file
//! per message it accepts. Shared by crates/app/tests/notices.rs and (by path)
//! crates/spamgate/tests/desk_notices.rs.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `smtp-sink` writing each message into its own file under `dir`.
pub struct Sink {
    child: Child,
    dir: PathBuf,
}

impl Sink {
    pub fn start(port: u16, dir: &Path) -> Sink {
        std::fs::create_dir_all(dir).unwrap();
        let mut command = Command::new("smtp-sink");
        // As root it insists on a user to drop to; the dump directory is ours.
        if is_root() {
            command.args(["-u", "root"]);
        }
        let child = command
            .arg("-d")
            .arg(format!("{}/%M.", dir.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("10")
            .stdin(Stdio::null())
            .spawn()
            .expect("smtp-sink (package postfix) must be installed");
        // Wait until it listens (no timing assertion: bounded polling only).
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Sink {
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// The messages received so far (smtp-sink's own `X-*` and `Received:` lines first).
    pub fn messages(&self, want: usize) -> Vec<Vec<u8>> {
        for _ in 0..200 {
            let mut files: Vec<_> = std::fs::read_dir(&self.dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            if files.len() >= want {
                return files.iter().map(|f| std::fs::read(f).unwrap()).collect();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("smtp-sink received fewer than {want} messages");
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
