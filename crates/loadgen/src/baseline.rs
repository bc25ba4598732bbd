//! The protocol limit: a server that frames requests by their empty line and answers
//! `action=DUNNO` to each, doing nothing else. Whatever a real policy server does on top
//! costs throughput relative to this.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

const REPLY: &[u8] = b"action=DUNNO\n\n";
const READ_BUFFER: usize = 4096;

/// Where a request ends: tracks line starts across reads, so any split works.
#[derive(Debug, Clone, Copy)]
pub struct Framer {
    at_line_start: bool,
    in_request: bool,
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            at_line_start: true,
            in_request: false,
        }
    }
}

impl Framer {
    /// How many requests end in `bytes`: an empty line after at least one attribute line.
    pub fn requests_ended(&mut self, bytes: &[u8]) -> usize {
        let mut ended = 0;
        for &b in bytes {
            if b == b'\n' {
                if self.at_line_start {
                    if self.in_request {
                        ended += 1;
                        self.in_request = false;
                    }
                } else {
                    self.at_line_start = true;
                }
            } else {
                self.at_line_start = false;
                self.in_request = true;
            }
        }
        ended
    }
}

/// Answers every request on one connection until the peer closes it. Memory is bounded:
/// a fixed read buffer, and at most one reply per two bytes read.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<u64> {
    let mut framer = Framer::default();
    let mut buf = [0u8; READ_BUFFER];
    let mut replies = Vec::with_capacity(REPLY.len() * 4);
    let mut answered = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(answered);
        }
        let ended = framer.requests_ended(&buf[..n]);
        if ended > 0 {
            replies.clear();
            for _ in 0..ended {
                replies.extend_from_slice(REPLY);
            }
            stream.write_all(&replies).await?;
            answered += ended as u64;
        }
    }
}

/// Accepts connections forever, one task each.
pub async fn serve_tcp(listener: TcpListener) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(serve_connection(stream));
    }
}

/// Accepts connections forever, one task each.
pub async fn serve_unix(listener: UnixListener) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve_connection(stream));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(chunks: &[&str], expected: &[usize]) {
        let mut framer = Framer::default();
        let ended: Vec<usize> = chunks
            .iter()
            .map(|c| framer.requests_ended(c.as_bytes()))
            .collect();
        assert_eq!(ended, expected, "{chunks:?}");
    }

    #[test]
    fn frames_requests_by_their_empty_line() {
        check(&["a=1\nb=2\n\n"], &[1]);
        check(&["a=1\n\nb=2\n\n"], &[2]);
        check(&["a=1\n", "\n"], &[0, 1]);
        check(&["a=1", "\n", "\n", "b=", "2\n\n"], &[0, 0, 1, 0, 1]);
        // An empty line where a request should start is not a request.
        check(&["\n\na=1\n\n\n"], &[1]);
        check(&["a=1\nb=2\n"], &[0]);
    }
}
