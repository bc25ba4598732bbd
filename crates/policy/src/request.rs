//! One policy request: typed attributes plus the rest by name.

use std::fmt;
use std::net::IpAddr;

use crate::decode::DecodeError;

/// The only `request=` value Postfix's SMTP server sends.
pub const SMTPD_ACCESS_POLICY: &str = "smtpd_access_policy";

/// The SMTP stage at which Postfix asks (`protocol_state`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProtocolState {
    Connect,
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    EndOfMessage,
    Vrfy,
    Etrn,
    /// A state this crate does not know, as sent.
    Other(String),
}

impl ProtocolState {
    /// Parses Postfix's spelling (`END-OF-MESSAGE`, ...), ignoring ASCII case.
    pub fn parse(text: &str) -> Self {
        const KNOWN: [(&str, ProtocolState); 10] = [
            ("CONNECT", ProtocolState::Connect),
            ("EHLO", ProtocolState::Ehlo),
            ("HELO", ProtocolState::Helo),
            ("MAIL", ProtocolState::Mail),
            ("RCPT", ProtocolState::Rcpt),
            ("DATA", ProtocolState::Data),
            ("BDAT", ProtocolState::Bdat),
            ("END-OF-MESSAGE", ProtocolState::EndOfMessage),
            ("VRFY", ProtocolState::Vrfy),
            ("ETRN", ProtocolState::Etrn),
        ];
        KNOWN
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
            .map_or_else(|| ProtocolState::Other(text.to_owned()), |(_, state)| state)
    }

    /// Postfix's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            ProtocolState::Connect => "CONNECT",
            ProtocolState::Ehlo => "EHLO",
            ProtocolState::Helo => "HELO",
            ProtocolState::Mail => "MAIL",
            ProtocolState::Rcpt => "RCPT",
            ProtocolState::Data => "DATA",
            ProtocolState::Bdat => "BDAT",
            ProtocolState::EndOfMessage => "END-OF-MESSAGE",
            ProtocolState::Vrfy => "VRFY",
            ProtocolState::Etrn => "ETRN",
            ProtocolState::Other(text) => text,
        }
    }
}

impl fmt::Display for ProtocolState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded `smtpd_access_policy` request.
///
/// Text fields are `Some` exactly when Postfix sent the name, even with an empty value: for
/// `sender` at MAIL or RCPT an empty value is the null sender `<>`. Numeric and address
/// fields are `None` when absent or empty; a value that does not parse leaves them `None`
/// and is kept verbatim in [`other`](Self::other) (see [`client_address_raw`](Self::client_address_raw)).
/// Non-UTF-8 bytes are replaced with U+FFFD rather than failing the request: Postfix with
/// SMTPUTF8 sends UTF-8, and a stray 8-bit HELO should not make Postfix fall back to its
/// default action (a temporary failure) for that mail. A name sent twice keeps its last value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRequest {
    pub protocol_state: Option<ProtocolState>,
    pub protocol_name: Option<String>,
    pub helo_name: Option<String>,
    pub queue_id: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub recipient_count: Option<u64>,
    /// IPv6 arrives without brackets.
    pub client_address: Option<IpAddr>,
    /// Postfix's verified name, or `unknown`: see [`verified_client_name`](Self::verified_client_name).
    pub client_name: Option<String>,
    /// The unverified PTR name, or `unknown`.
    pub reverse_client_name: Option<String>,
    pub instance: Option<String>,
    pub sasl_method: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_sender: Option<String>,
    pub size: Option<u64>,
    /// Postfix sends `stress=yes` when its SMTP server is overloaded.
    pub stress: bool,
    pub client_port: Option<u16>,
    pub server_address: Option<IpAddr>,
    pub server_port: Option<u16>,
    pub policy_context: Option<String>,
    pub encryption_protocol: Option<String>,
    pub encryption_cipher: Option<String>,
    pub encryption_keysize: Option<u32>,
    /// Attributes without a typed field (e.g. `ccert_*`, `mail_version`), in arrival order.
    /// Unknown names with empty values are dropped: Postfix sends empty for "missing".
    pub other: OtherAttributes,
}

impl PolicyRequest {
    /// `client_name` when Postfix verified it: `None` when absent, empty or `unknown`.
    pub fn verified_client_name(&self) -> Option<&str> {
        known_name(self.client_name.as_deref())
    }

    /// `reverse_client_name` when a PTR name was found: `None` when absent, empty or `unknown`.
    pub fn known_reverse_client_name(&self) -> Option<&str> {
        known_name(self.reverse_client_name.as_deref())
    }

    /// The `client_address` text that did not parse as an IP address (check it when
    /// [`client_address`](Self::client_address) is `None`).
    pub fn client_address_raw(&self) -> Option<&str> {
        self.other.get("client_address")
    }

    /// Applies one attribute as the decoder reads it.
    pub(crate) fn apply(&mut self, name: &[u8], value: &[u8]) -> Result<(), DecodeError> {
        match name {
            b"request" => {
                if value != SMTPD_ACCESS_POLICY.as_bytes() {
                    return Err(DecodeError::UnsupportedRequest(bounded_text(value, 64)));
                }
            }
            b"protocol_state" => {
                self.protocol_state = (!value.is_empty())
                    .then(|| ProtocolState::parse(&String::from_utf8_lossy(value)));
            }
            b"protocol_name" => set_text(&mut self.protocol_name, value),
            b"helo_name" => set_text(&mut self.helo_name, value),
            b"queue_id" => set_text(&mut self.queue_id, value),
            b"sender" => set_text(&mut self.sender, value),
            b"recipient" => set_text(&mut self.recipient, value),
            b"recipient_count" => self.recipient_count = self.parsed(name, value),
            b"client_address" => self.client_address = self.parsed(name, value),
            b"client_name" => set_text(&mut self.client_name, value),
            b"reverse_client_name" => set_text(&mut self.reverse_client_name, value),
            b"instance" => set_text(&mut self.instance, value),
            b"sasl_method" => set_text(&mut self.sasl_method, value),
            b"sasl_username" => set_text(&mut self.sasl_username, value),
            b"sasl_sender" => set_text(&mut self.sasl_sender, value),
            b"size" => self.size = self.parsed(name, value),
            b"stress" => {
                self.stress = value.eq_ignore_ascii_case(b"yes");
                if !self.stress && !value.is_empty() && !value.eq_ignore_ascii_case(b"no") {
                    self.other.push_bytes(name, value);
                }
            }
            b"client_port" => self.client_port = self.parsed(name, value),
            b"server_address" => self.server_address = self.parsed(name, value),
            b"server_port" => self.server_port = self.parsed(name, value),
            b"policy_context" => set_text(&mut self.policy_context, value),
            b"encryption_protocol" => set_text(&mut self.encryption_protocol, value),
            b"encryption_cipher" => set_text(&mut self.encryption_cipher, value),
            b"encryption_keysize" => self.encryption_keysize = self.parsed(name, value),
            _ => {
                if !value.is_empty() {
                    self.other.push_bytes(name, value);
                }
            }
        }
        Ok(())
    }

    /// Parses a typed value; keeps unparsable text in `other` so nothing is silently lost.
    fn parsed<T: std::str::FromStr>(&mut self, name: &[u8], value: &[u8]) -> Option<T> {
        if value.is_empty() {
            return None;
        }
        let parsed = std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.parse().ok());
        if parsed.is_none() {
            self.other.push_bytes(name, value);
        }
        parsed
    }

    /// Writes the request as Postfix would (client side): `request=smtpd_access_policy`, the
    /// set fields, [`other`](Self::other), then the empty line. CR and LF inside values become
    /// spaces so a value can never end the request early.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put(out, "request", SMTPD_ACCESS_POLICY);
        if let Some(state) = &self.protocol_state {
            put(out, "protocol_state", state.as_str());
        }
        put_opt(out, "protocol_name", &self.protocol_name);
        put_opt(out, "helo_name", &self.helo_name);
        put_opt(out, "queue_id", &self.queue_id);
        put_opt(out, "sender", &self.sender);
        put_opt(out, "recipient", &self.recipient);
        put_num(out, "recipient_count", self.recipient_count);
        put_num(out, "client_address", self.client_address);
        put_opt(out, "client_name", &self.client_name);
        put_opt(out, "reverse_client_name", &self.reverse_client_name);
        put_opt(out, "instance", &self.instance);
        put_opt(out, "sasl_method", &self.sasl_method);
        put_opt(out, "sasl_username", &self.sasl_username);
        put_opt(out, "sasl_sender", &self.sasl_sender);
        put_num(out, "size", self.size);
        if self.stress {
            put(out, "stress", "yes");
        }
        put_num(out, "client_port", self.client_port);
        put_num(out, "server_address", self.server_address);
        put_num(out, "server_port", self.server_port);
        put_opt(out, "policy_context", &self.policy_context);
        put_opt(out, "encryption_protocol", &self.encryption_protocol);
        put_opt(out, "encryption_cipher", &self.encryption_cipher);
        put_num(out, "encryption_keysize", self.encryption_keysize);
        for (name, value) in self.other.iter() {
            put(out, name, value);
        }
        out.push(b'\n');
    }

    /// [`encode`](Self::encode) into a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.encode(&mut out);
        out
    }
}

fn known_name(name: Option<&str>) -> Option<&str> {
    name.filter(|name| !name.is_empty() && !name.eq_ignore_ascii_case("unknown"))
}

/// Replaces the field's text, reusing its allocation when it was already set.
fn set_text(field: &mut Option<String>, value: &[u8]) {
    let text = String::from_utf8_lossy(value);
    match field {
        Some(existing) => {
            existing.clear();
            existing.push_str(&text);
        }
        None => *field = Some(text.into_owned()),
    }
}

/// Lossy text of at most `max` bytes, cut at a char boundary (for error messages).
fn bounded_text(value: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(value);
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn put(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    out.extend(
        value
            .bytes()
            .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    out.push(b'\n');
}

fn put_opt(out: &mut Vec<u8>, name: &str, value: &Option<String>) {
    if let Some(value) = value {
        put(out, name, value);
    }
}

fn put_num(out: &mut Vec<u8>, name: &str, value: Option<impl fmt::Display>) {
    use std::io::Write as _;
    if let Some(value) = value {
        // Writing to a Vec cannot fail.
        let _ = writeln!(out, "{name}={value}");
    }
}

/// Attributes without a typed field, kept in one buffer as `name=value\n` lines so a request
/// costs one allocation for all of them rather than two per attribute.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OtherAttributes {
    lines: String,
}

impl OtherAttributes {
    /// The value of the last attribute called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .filter(|(candidate, _)| *candidate == name)
            .last()
            .map(|(_, value)| value)
    }

    /// All attributes in arrival order (a repeated name appears each time).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines
            .split_terminator('\n')
            .filter_map(|line| line.split_once('='))
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Adds an attribute. An empty name is ignored; `=`, CR or LF in the name become `_`,
    /// and CR or LF in the value become spaces, so an entry always encodes as one line.
    pub fn push(&mut self, name: &str, value: &str) {
        if name.is_empty() {
            return;
        }
        self.lines.extend(name.chars().map(|c| match c {
            '=' | '\r' | '\n' => '_',
            c => c,
        }));
        self.lines.push('=');
        self.lines.extend(value.chars().map(|c| match c {
            '\r' | '\n' => ' ',
            c => c,
        }));
        self.lines.push('\n');
    }

    /// Decoder path: the name has no `=` and neither part has LF, so no sanitising is needed.
    fn push_bytes(&mut self, name: &[u8], value: &[u8]) {
        self.lines.push_str(&String::from_utf8_lossy(name));
        self.lines.push('=');
        self.lines.push_str(&String::from_utf8_lossy(value));
        self.lines.push('\n');
    }
}

impl fmt::Debug for OtherAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for OtherAttributes {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        let mut attributes = OtherAttributes::default();
        for (name, value) in iter {
            attributes.push(name, value);
        }
        attributes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_state_names_round_trip() {
        for text in [
            "CONNECT",
            "EHLO",
            "HELO",
            "MAIL",
            "RCPT",
            "DATA",
            "BDAT",
            "END-OF-MESSAGE",
            "VRFY",
            "ETRN",
        ] {
            let state = ProtocolState::parse(text);
            assert!(!matches!(state, ProtocolState::Other(_)), "{text}");
            assert_eq!(state.as_str(), text);
            assert_eq!(ProtocolState::parse(&text.to_ascii_lowercase()), state);
        }
        assert_eq!(
            ProtocolState::parse("AUTH"),
            ProtocolState::Other("AUTH".into())
        );
    }

    #[test]
    fn name_helpers_hide_unknown_and_empty() {
        fn check(client_name: Option<&str>, expected: Option<&str>) {
            let request = PolicyRequest {
                client_name: client_name.map(str::to_owned),
                reverse_client_name: client_name.map(str::to_owned),
                ..PolicyRequest::default()
            };
            assert_eq!(request.verified_client_name(), expected, "{client_name:?}");
            assert_eq!(
                request.known_reverse_client_name(),
                expected,
                "{client_name:?}"
            );
        }
        check(None, None);
        check(Some(""), None);
        check(Some("unknown"), None);
        check(Some("UNKNOWN"), None);
        check(Some("mail.example.net"), Some("mail.example.net"));
    }

    #[test]
    fn other_attributes_push_sanitises_and_get_returns_last() {
        let mut other = OtherAttributes::default();
        other.push("", "ignored");
        other.push("a=b\nc", "x\r\ny");
        other.push("k", "1");
        other.push("k", "2=3");
        assert_eq!(
            other.iter().collect::<Vec<_>>(),
            [("a_b_c", "x  y"), ("k", "1"), ("k", "2=3")]
        );
        assert_eq!(other.get("k"), Some("2=3"));
        assert_eq!(other.get("missing"), None);
        assert_eq!(other.len(), 3);
    }

    #[test]
    fn bounded_text_cuts_at_char_boundary() {
        assert_eq!(bounded_text("ééé".as_bytes(), 3), "é");
        assert_eq!(bounded_text(b"abc", 64), "abc");
    }
}
