//! The admin listener against hostile clients (a real `spamgate serve`): a request head
//! sent a header at a time, a body dribbled a byte at a time, a connection left idle,
//! more connections than `[admin] max_connections`. Each must end on the server's
//! side; the client's own read timeout (far longer than the configured one) is only a
//! guard so that a failure fails instead of hanging.

mod api;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use api::Daemon;

/// Longer than any bound configured below: reaching it means the server did not act.
const GUARD: Duration = Duration::from_secs(20);

fn connect(daemon: &Daemon) -> TcpStream {
    let stream = TcpStream::connect(daemon.addr).unwrap();
    stream.set_read_timeout(Some(GUARD)).unwrap();
    stream.set_write_timeout(Some(GUARD)).unwrap();
    stream
}

/// Reads until the server closes; the bytes read, or `None` if the guard ran out.
fn read_until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(all),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Some(all),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn health(daemon: &Daemon) -> bool {
    let mut stream = connect(daemon);
    if stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    read_until_closed(&mut stream)
        .is_some_and(|bytes| String::from_utf8_lossy(&bytes).starts_with("HTTP/1.1 200"))
}

fn limited_daemon() -> Daemon {
    Daemon::start_with(
        "header_timeout = \"1s\"\nrequest_timeout = \"1s\"\nidle_timeout = \"2s\"\n",
        "",
    )
}

#[test]
fn a_request_head_sent_a_header_at_a_time_is_cut_off() {
    let daemon = limited_daemon();
    let mut stream = connect(&daemon);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // A header line every 200 ms: bytes keep moving (the idle timeout never fires),
    // but the head never ends. The server must close within header_timeout.
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < GUARD {
        std::thread::sleep(Duration::from_millis(200));
        if stream.write_all(b"X-Slow: 1\r\n").is_err() {
            closed = true;
            break;
        }
        stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte);
        stream.set_nonblocking(false).unwrap();
        match read {
            Ok(_) => {
                closed = true;
                break;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the server kept a never-ending request head open");
    // Others are still served.
    assert!(health(&daemon));
}

#[test]
fn a_body_dribbled_a_byte_at_a_time_is_refused() {
    let daemon = limited_daemon();
    let mut stream = connect(&daemon);
    stream
        .write_all(
            b"POST /login HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\nuser=",
        )
        .unwrap();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let started = Instant::now();
            while started.elapsed() < GUARD {
                std::thread::sleep(Duration::from_millis(200));
                if stream.write_all(b"a").is_err() {
                    return;
                }
            }
        })
    };
    let answer = read_until_closed(&mut stream).expect("the server waited for the body");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    drop(stream);
    writer.join().unwrap();
    assert!(health(&daemon));
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let daemon = limited_daemon();
    let mut stream = connect(&daemon);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // The answer comes, the connection stays open (keep-alive)... until idle_timeout.
    let answer = read_until_closed(&mut stream).expect("an idle connection stayed open");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("ok\n"), "{text}");
}

#[test]
fn connections_beyond_max_connections_are_closed_and_slots_come_back() {
    let daemon = Daemon::start_with(
        "max_connections = 2\nheader_timeout = \"60s\"\nidle_timeout = \"60s\"\n",
        "",
    );
    let held: Vec<TcpStream> = (0..2).map(|_| connect(&daemon)).collect();
    // Give the server time to take both (a connection it has not accepted yet would
    // not count); then the third is closed without an answer.
    let mut refused = false;
    let started = Instant::now();
    while started.elapsed() < GUARD && !refused {
        std::thread::sleep(Duration::from_millis(100));
        let mut third = connect(&daemon);
        let _ = third.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = read_until_closed(&mut third).expect("the third connection hung");
        refused = answer.is_empty();
    }
    assert!(
        refused,
        "a third connection was served with max_connections = 2"
    );
    drop(held);
    // The held ones are gone: a new connection is served again.
    let started = Instant::now();
    let mut served = false;
    while started.elapsed() < GUARD && !served {
        std::thread::sleep(Duration::from_millis(100));
        served = health(&daemon);
    }
    assert!(served, "slots were not given back when connections closed");
}
