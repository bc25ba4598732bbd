//! Helpers for tests that run the real `spamgate` binary as a process and talk to it over
//! a UNIX socket (shared by cli.rs, cluster.rs, logs.rs, json_listings.rs and others).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn spamgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spamgate"))
}

/// `spamgate ARGS... -c CONFIG` to its end: (exit code, stdout, stderr).
pub fn run_with_config(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = spamgate()
        .args(args)
        .arg("-c")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A child process killed on drop, so a failing test leaves nothing behind.
pub struct Killed(pub Child);

impl Killed {
    /// Stops it the way systemd does (SIGTERM), waiting for a clean exit: the store
    /// commits everything it answered.
    pub fn stop(mut self) {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let status = self.0.wait().unwrap();
        assert!(status.success(), "SIGTERM exits 0: {status:?}");
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `spamgate serve -c CONFIG`, once its socket exists.
pub fn serve(config: &Path, socket: &Path) -> Killed {
    serve_to(config, socket, Stdio::null())
}

/// [`serve`] with the daemon's stderr (its log, by default) written to `stderr`.
pub fn serve_logging_to(config: &Path, socket: &Path, stderr: &Path) -> Killed {
    serve_to(
        config,
        socket,
        std::fs::File::create(stderr).unwrap().into(),
    )
}

fn serve_to(config: &Path, socket: &Path, stderr: Stdio) -> Killed {
    let child = spamgate()
        .args(["serve", "-c"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let daemon = Killed(child);
    wait_for(socket);
    daemon
}

/// `spamgate ARGS... -c CONFIG` with `input` on stdin, to its end: (exit code, stdout,
/// stderr).
pub fn run_with_config_stdin(
    config: &Path,
    args: &[&str],
    input: impl AsRef<[u8]>,
) -> (Option<i32>, String, String) {
    let mut child = spamgate()
        .args(args)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // On its own thread: a child that answers before reading all of stdin cannot stall us.
    let mut stdin = child.stdin.take().unwrap();
    let input = input.as_ref().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Send one raw request on a fresh connection; the raw reply (empty if closed).
pub fn ask(socket: &Path, request: &str) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\n\n") {
        if stream.read(&mut byte).unwrap() == 0 {
            break;
        }
        reply.push(byte[0]);
    }
    String::from_utf8(reply).unwrap()
}
