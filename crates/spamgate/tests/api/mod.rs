//! A real `spamgate serve` with the admin listener on loopback, real SQLite files, and a
//! small blocking HTTP/1.1 client over a real socket (shared by the API tests).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spamgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spamgate"))
}

/// The configuration text for a daemon in `dir`, with `extra` appended to `[admin]`
/// (admin listener on an ephemeral loopback port).
pub fn config_text(dir: &Path, admin_extra: &str, more: &str) -> String {
    format!(
        "log_level = \"info\"\n\
         [server]\nlisten = [\"unix:{dir}/policy.sock\"]\n\
         [store]\npath = \"{dir}/spamgate.db\"\n\
         [dns]\nnameservers = [\"127.0.0.1:9\"]\ntimeout = \"200ms\"\nattempts = 1\n\
         {more}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{admin_extra}\n",
        dir = dir.display()
    )
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with("", "")
    }

    /// Starts `spamgate serve`, waiting for the admin listener's address in its log.
    pub fn start_with(admin_extra: &str, more: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("spamgate.toml");
        std::fs::write(&config, config_text(dir.path(), admin_extra, more)).unwrap();
        Daemon::start_in(dir, config)
    }

    pub fn start_in(dir: tempfile::TempDir, config: PathBuf) -> Daemon {
        let mut child = spamgate()
            .args(["serve", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (send, found) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line
                    .split("admin API on http://")
                    .nth(1)
                    .or_else(|| line.split("admin API on https://").nth(1))
                {
                    let addr: String = rest.chars().take_while(|c| *c != '/').collect();
                    let _ = send.send(addr.parse::<SocketAddr>().ok());
                }
                // Keep draining so the daemon never blocks on a full pipe.
            }
        });
        let addr = found
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .flatten()
            .expect("the daemon logs its admin listener");
        let socket = dir.path().join("policy.sock");
        Daemon {
            child,
            addr,
            dir,
            config,
            socket,
        }
    }

    /// `spamgate ARGS... -c CONFIG` with `stdin`: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
        cli(&self.config, args, stdin)
    }

    /// Adds a user through the CLI (password = name repeated to 12+ characters).
    pub fn add_user(&self, name: &str, role: &str) -> String {
        let password = password_of(name);
        let (code, out, err) = self.cli(
            &["admin", "user", "add", name, "--role", role],
            &format!("{password}\n"),
        );
        assert_eq!(code, Some(0), "user add: {out}{err}");
        password
    }

    /// A token for `name` through the CLI.
    pub fn token(&self, name: &str) -> String {
        let (code, out, err) = self.cli(&["admin", "token", "add", name, "--label", "test"], "");
        assert_eq!(code, Some(0), "token add: {out}{err}");
        out.trim().to_string()
    }

    pub fn client(&self) -> Client {
        Client {
            addr: self.addr,
            auth: Auth::None,
        }
    }

    /// A client logged in through `POST /login` (JSON), with its session and CSRF token.
    pub fn login(&self, name: &str) -> Client {
        let response = self.client().login(name, &password_of(name));
        assert_eq!(response.status, 200, "{}", response.body);
        let cookie = response
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .unwrap()
            .to_string();
        let csrf = response.json()["csrf"].as_str().unwrap().to_string();
        Client {
            addr: self.addr,
            auth: Auth::Session { cookie, csrf },
        }
    }

    pub fn bearer(&self, name: &str) -> Client {
        Client {
            addr: self.addr,
            auth: Auth::Bearer(self.token(name)),
        }
    }
}

pub fn cli(config: &Path, args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let mut child = spamgate()
        .args(args)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn password_of(name: &str) -> String {
    format!("{name}-secret-password")
}

#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Session { cookie: String, csrf: String },
    Bearer(String),
}

#[derive(Clone, Debug)]
pub struct Client {
    pub addr: SocketAddr,
    pub auth: Auth,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

impl Client {
    pub fn without_csrf(&self) -> Client {
        let auth = match &self.auth {
            Auth::Session { cookie, .. } => Auth::Session {
                cookie: cookie.clone(),
                csrf: String::new(),
            },
            other => other.clone(),
        };
        Client {
            addr: self.addr,
            auth,
        }
    }

    pub fn get(&self, path: &str) -> Response {
        self.send("GET", path, &[], b"")
    }

    pub fn post(&self, path: &str) -> Response {
        self.send("POST", path, &[], b"")
    }

    pub fn delete(&self, path: &str) -> Response {
        self.send("DELETE", path, &[], b"")
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Response {
        self.post_raw(path, "application/json", body.to_string().as_bytes())
    }

    pub fn post_raw(&self, path: &str, content_type: &str, body: &[u8]) -> Response {
        self.send("POST", path, &[("Content-Type", content_type)], body)
    }

    pub fn send_json(&self, method: &str, path: &str, body: &serde_json::Value) -> Response {
        self.send(
            method,
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// `POST /login` as JSON-accepting form post.
    pub fn login(&self, user: &str, password: &str) -> Response {
        let body = format!("user={user}&password={password}");
        self.send(
            "POST",
            "/login",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Accept", "application/json"),
            ],
            body.as_bytes(),
        )
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        match &self.auth {
            Auth::None => {}
            Auth::Session { cookie, csrf } => {
                head.push_str(&format!("Cookie: {cookie}\r\n"));
                if !csrf.is_empty() {
                    head.push_str(&format!("X-CSRF-Token: {csrf}\r\n"));
                }
            }
            Auth::Bearer(token) => head.push_str(&format!("Authorization: Bearer {token}\r\n")),
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        // A server may answer (413) and close before reading a large body.
        let _ = stream.write_all(body);
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        parse(&raw)
    }
}

fn parse(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Starts a daemon whose store already follows one organisation (`example.org`: a
/// server of it passed greylisting once), written into the store before the daemon
/// opens it, as its request path would write it.
pub fn daemon_following_an_organisation(more: &str) -> Daemon {
    use spamgate_engine::learn::{LearnParams, Observation, ObservationKind};
    use spamgate_store::{LearnStore, SqliteOptions, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("spamgate.toml");
    std::fs::write(&config, config_text(dir.path(), "", more)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store =
                SqliteStore::open(&dir.path().join("spamgate.db"), SqliteOptions::default())
                    .unwrap();
            let seen = Observation {
                org: "example.org".into(),
                network: "192.0.2.0/24".into(),
                kind: ObservationKind::Passed,
            };
            store
                .learn_observe(&seen, &LearnParams::default(), now)
                .await
                .unwrap();
            store.close().await;
        });
    Daemon::start_in(dir, config)
}
