#![forbid(unsafe_code)]
//! Sans-IO codec for Postfix's SMTPD access policy delegation protocol.
//!
//! The protocol (Postfix `SMTPD_POLICY_README`): the client sends `name=value` lines ended by
//! `\n` and closes a request with an empty line; the server answers with one `action=...`
//! line and an empty line, then waits for the next request on the same connection.
//!
//! # Layout
//! - [`request`]: [`PolicyRequest`], the typed attributes spamgate reads, plus every other
//!   attribute by name ([`OtherAttributes`]); [`PolicyRequest::encode`] writes one (client side).
//! - [`decode`]: [`PolicyDecoder`] turns bytes into requests and [`ReplyDecoder`] turns bytes
//!   into actions, both bounded by [`Limits`]; no I/O, so any byte split works.
//! - [`encode`]: [`encode_action`] writes a sanitised, length-capped reply.
//!
//! **Invariant:** this crate never reads or writes a socket and never holds more than one
//! partial line (at most [`Limits::max_line_len`] bytes) of unparsed input.
//!
//! ```
//! use spamgate_policy::{encode_action, Limits, PolicyDecoder, ProtocolState};
//!
//! let mut decoder = PolicyDecoder::new(Limits::default());
//! let mut input: &[u8] = b"request=smtpd_access_policy\nprotocol_state=RCPT\n\
//!     client_address=192.0.2.7\nclient_name=unknown\n\n";
//! let request = decoder.decode(&mut input).unwrap().expect("a whole request");
//! assert_eq!(request.protocol_state, Some(ProtocolState::Rcpt));
//! assert_eq!(request.verified_client_name(), None);
//!
//! let mut reply = Vec::new();
//! encode_action("DUNNO", &mut reply);
//! assert_eq!(reply, b"action=DUNNO\n\n");
//! ```

pub mod decode;
pub mod encode;
pub mod request;

pub use decode::{DecodeError, Limits, PolicyDecoder, ReplyDecoder};
pub use encode::{MAX_ACTION_LEN, encode_action};
pub use request::{OtherAttributes, PolicyRequest, ProtocolState};
