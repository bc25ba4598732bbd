//! Incremental decoders: bytes in, requests (server side) or actions (client side) out.
//!
//! Both take `&mut &[u8]` and advance it past what they consumed, so a caller reads into a
//! fixed buffer and loops:
//!
//! ```
//! # use spamgate_policy::{Limits, PolicyDecoder};
//! let mut decoder = PolicyDecoder::new(Limits::default());
//! let chunk: &[u8] = b"protocol_state=RCPT\n\nprotocol_state=DATA\n\nprotocol_st";
//! let mut input = chunk;
//! let mut requests = Vec::new();
//! while let Some(request) = decoder.decode(&mut input).unwrap() {
//!     requests.push(request);
//! }
//! assert_eq!(requests.len(), 2);
//! assert!(input.is_empty() && decoder.in_progress());
//! ```

use std::mem;

use crate::request::PolicyRequest;

/// Bounds on what a peer may send. Any excess is a [`DecodeError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line in bytes, not counting its `\n` (a CR before it counts).
    pub max_line_len: usize,
    /// Most attribute lines in one request.
    pub max_attributes: usize,
    /// Largest request in bytes, every line end and the closing empty line included.
    pub max_request_bytes: usize,
}

impl Default for Limits {
    /// Generous for Postfix 3.x, which sends about 30 attributes and well under 2 KiB, while
    /// addresses are at most 256 bytes each (RFC 5321 §4.5.3.1.3).
    fn default() -> Self {
        Limits {
            max_line_len: 4096,
            max_attributes: 128,
            max_request_bytes: 65536,
        }
    }
}

/// Why input was refused. Postfix's contract for a server that cannot answer is to close the
/// connection without replying, so every error is final: the decoder repeats it from then on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("line of at least {len} bytes exceeds the limit of {limit}")]
    LineTooLong { len: usize, limit: usize },
    #[error("more than {limit} attributes in one request")]
    TooManyAttributes { limit: usize },
    #[error("request exceeds the limit of {limit} bytes")]
    RequestTooLarge { limit: usize },
    #[error("attribute line {line} has no '='")]
    MissingEquals { line: usize },
    #[error("attribute line {line} has an empty name")]
    EmptyName { line: usize },
    #[error("empty line where a request should start")]
    EmptyRequest,
    #[error("unsupported request {0:?} (expected smtpd_access_policy)")]
    UnsupportedRequest(String),
    #[error("reply without an action attribute")]
    MissingAction,
}

/// Splits bytes into lines, holding at most one partial line across calls.
#[derive(Debug, Default)]
struct LineFramer {
    partial: Vec<u8>,
    message_bytes: usize,
}

impl LineFramer {
    /// Takes the next complete line off `input` and hands it (without `\n` and one trailing
    /// CR) to `on_line`. Returns `Ok(None)` after buffering a partial line when `input` ends.
    fn next_line<R>(
        &mut self,
        input: &mut &[u8],
        limits: &Limits,
        on_line: impl FnOnce(&[u8]) -> Result<R, DecodeError>,
    ) -> Result<Option<R>, DecodeError> {
        let room = limits.max_line_len.saturating_sub(self.partial.len());
        // Look at most one byte past the limit, so an endless line is refused as soon as it
        // overflows, before it is buffered or even scanned in full.
        let window = &input[..input.len().min(room.saturating_add(1))];
        let Some(end) = window.iter().position(|&b| b == b'\n') else {
            // Count before judging the line so that, however the input is split, the first
            // byte over either limit decides which error is reported.
            self.count(window.len(), limits)?;
            if window.len() > room {
                return Err(DecodeError::LineTooLong {
                    len: self.partial.len() + window.len(),
                    limit: limits.max_line_len,
                });
            }
            self.partial.extend_from_slice(window);
            *input = &[];
            return Ok(None);
        };
        self.count(end + 1, limits)?;
        let line = &input[..end];
        *input = &input[end + 1..];
        if self.partial.is_empty() {
            on_line(strip_cr(line)).map(Some)
        } else {
            self.partial.extend_from_slice(line);
            let result = on_line(strip_cr(&self.partial));
            self.partial.clear();
            result.map(Some)
        }
    }

    fn count(&mut self, bytes: usize, limits: &Limits) -> Result<(), DecodeError> {
        self.message_bytes += bytes;
        if self.message_bytes > limits.max_request_bytes {
            return Err(DecodeError::RequestTooLarge {
                limit: limits.max_request_bytes,
            });
        }
        Ok(())
    }

    fn end_message(&mut self) {
        self.message_bytes = 0;
    }

    fn in_progress(&self) -> bool {
        self.message_bytes > 0
    }
}

/// Tolerates CRLF line ends (hand-typed sessions, Exim's readsocket).
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Server side: decodes the requests Postfix sends on one connection.
#[derive(Debug)]
pub struct PolicyDecoder {
    limits: Limits,
    framer: LineFramer,
    current: PolicyRequest,
    attributes: usize,
    failed: Option<DecodeError>,
}

impl PolicyDecoder {
    pub fn new(limits: Limits) -> Self {
        PolicyDecoder {
            limits,
            framer: LineFramer::default(),
            current: PolicyRequest::default(),
            attributes: 0,
            failed: None,
        }
    }

    /// Consumes bytes from `input` up to the end of the next request and returns it, or
    /// consumes all of `input` and returns `Ok(None)` when no request is complete yet. Call
    /// again while it returns `Some`: several requests may be in one buffer.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<PolicyRequest>, DecodeError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.decode_lines(input);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    fn decode_lines(&mut self, input: &mut &[u8]) -> Result<Option<PolicyRequest>, DecodeError> {
        let limits = self.limits;
        loop {
            let current = &mut self.current;
            let attributes = &mut self.attributes;
            let line_ended_request = self.framer.next_line(input, &limits, |line| {
                if line.is_empty() {
                    return if *attributes == 0 {
                        Err(DecodeError::EmptyRequest)
                    } else {
                        Ok(true)
                    };
                }
                *attributes += 1;
                if *attributes > limits.max_attributes {
                    return Err(DecodeError::TooManyAttributes {
                        limit: limits.max_attributes,
                    });
                }
                let line_no = *attributes;
                let eq = line
                    .iter()
                    .position(|&b| b == b'=')
                    .ok_or(DecodeError::MissingEquals { line: line_no })?;
                if eq == 0 {
                    return Err(DecodeError::EmptyName { line: line_no });
                }
                current.apply(&line[..eq], &line[eq + 1..])?;
                Ok(false)
            })?;
            match line_ended_request {
                None => return Ok(None),
                Some(false) => {}
                Some(true) => {
                    self.framer.end_message();
                    self.attributes = 0;
                    return Ok(Some(mem::take(&mut self.current)));
                }
            }
        }
    }

    /// True when part of a request has arrived (so an EOF now would cut it short).
    pub fn in_progress(&self) -> bool {
        self.framer.in_progress()
    }

    /// Bytes of an unfinished line held between calls; never more than `max_line_len`.
    pub fn buffered(&self) -> usize {
        self.framer.partial.len()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// Client side (load generator, tests): decodes `action=...` replies.
#[derive(Debug)]
pub struct ReplyDecoder {
    limits: Limits,
    framer: LineFramer,
    action: Option<String>,
    lines: usize,
    failed: Option<DecodeError>,
}

impl ReplyDecoder {
    pub fn new(limits: Limits) -> Self {
        ReplyDecoder {
            limits,
            framer: LineFramer::default(),
            action: None,
            lines: 0,
            failed: None,
        }
    }

    /// Like [`PolicyDecoder::decode`]; yields the action text (`DUNNO`, `DEFER_IF_PERMIT ...`).
    /// Other attributes in a reply are ignored; a reply without `action` is an error.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<String>, DecodeError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.decode_lines(input);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    fn decode_lines(&mut self, input: &mut &[u8]) -> Result<Option<String>, DecodeError> {
        let limits = self.limits;
        loop {
            let action = &mut self.action;
            let lines = &mut self.lines;
            let line_ended_reply = self.framer.next_line(input, &limits, |line| {
                if line.is_empty() {
                    return Ok(true);
                }
                *lines += 1;
                if *lines > limits.max_attributes {
                    return Err(DecodeError::TooManyAttributes {
                        limit: limits.max_attributes,
                    });
                }
                let eq = line
                    .iter()
                    .position(|&b| b == b'=')
                    .ok_or(DecodeError::MissingEquals { line: *lines })?;
                if &line[..eq] == b"action" {
                    *action = Some(String::from_utf8_lossy(&line[eq + 1..]).into_owned());
                }
                Ok(false)
            })?;
            match line_ended_reply {
                None => return Ok(None),
                Some(false) => {}
                Some(true) => {
                    self.framer.end_message();
                    self.lines = 0;
                    return self
                        .action
                        .take()
                        .map(Some)
                        .ok_or(DecodeError::MissingAction);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_limits() -> Limits {
        Limits {
            max_line_len: 16,
            max_attributes: 3,
            max_request_bytes: 40,
        }
    }

    #[test]
    fn endless_line_is_refused_without_buffering_past_the_limit() {
        let mut decoder = PolicyDecoder::new(small_limits());
        let mut input: &[u8] = &[b'x'; 16];
        assert_eq!(decoder.decode(&mut input), Ok(None));
        assert_eq!(decoder.buffered(), 16);
        let mut more: &[u8] = &[b'x'; 1_000_000];
        assert_eq!(
            decoder.decode(&mut more),
            Err(DecodeError::LineTooLong { len: 17, limit: 16 })
        );
        assert_eq!(decoder.buffered(), 16);
    }

    #[test]
    fn line_exactly_at_limit_is_accepted() {
        let mut decoder = PolicyDecoder::new(small_limits());
        let mut input: &[u8] = b"helo_name=abcdef\n\n";
        let request = decoder.decode(&mut input).unwrap().unwrap();
        assert_eq!(request.helo_name.as_deref(), Some("abcdef"));
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = PolicyDecoder::new(Limits::default());
        let mut input: &[u8] = b"noequals\n";
        let error = decoder.decode(&mut input).unwrap_err();
        assert_eq!(error, DecodeError::MissingEquals { line: 1 });
        let mut good: &[u8] = b"size=1\n\n";
        assert_eq!(decoder.decode(&mut good), Err(error));
    }

    #[test]
    fn in_progress_tracks_partial_requests() {
        let mut decoder = PolicyDecoder::new(Limits::default());
        assert!(!decoder.in_progress());
        let mut input: &[u8] = b"size=1\n";
        assert_eq!(decoder.decode(&mut input), Ok(None));
        assert!(decoder.in_progress());
        let mut end: &[u8] = b"\n";
        assert!(decoder.decode(&mut end).unwrap().is_some());
        assert!(!decoder.in_progress());
    }

    #[test]
    fn reply_decoder_reads_actions() {
        let mut decoder = ReplyDecoder::new(Limits::default());
        let mut input: &[u8] = b"action=DUNNO\n\naction=DEFER_IF_PERMIT 4.7.1 try later\r\n\r\n\n";
        assert_eq!(decoder.decode(&mut input), Ok(Some("DUNNO".to_owned())));
        assert_eq!(
            decoder.decode(&mut input),
            Ok(Some("DEFER_IF_PERMIT 4.7.1 try later".to_owned()))
        );
        assert_eq!(decoder.decode(&mut input), Err(DecodeError::MissingAction));
    }
}
