//! The SMTP protocol stage a question is asked at, and which stages decide what.

use std::fmt;

/// The stage of the SMTP dialogue (Postfix's `protocol_state`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stage {
    Connect,
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    EndOfMessage,
    Vrfy,
    Etrn,
    /// A state this version does not know, as the front-end named it.
    Other(String),
}

impl Stage {
    /// The stages at which the inbound policy may be asked (`server.decide_at`).
    pub const INBOUND_CHOICES: [Stage; 5] = [
        Stage::Connect,
        Stage::Ehlo,
        Stage::Helo,
        Stage::Mail,
        Stage::Rcpt,
    ];

    /// Reads a protocol state, ignoring case; an unknown one is kept as [`Stage::Other`].
    pub fn parse(text: &str) -> Stage {
        const KNOWN: [(&str, Stage); 9] = [
            ("CONNECT", Stage::Connect),
            ("EHLO", Stage::Ehlo),
            ("HELO", Stage::Helo),
            ("MAIL", Stage::Mail),
            ("RCPT", Stage::Rcpt),
            ("DATA", Stage::Data),
            ("END-OF-MESSAGE", Stage::EndOfMessage),
            ("VRFY", Stage::Vrfy),
            ("ETRN", Stage::Etrn),
        ];
        KNOWN
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
            .map_or_else(|| Stage::Other(text.to_string()), |(_, stage)| stage)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Stage::Connect => "CONNECT",
            Stage::Ehlo => "EHLO",
            Stage::Helo => "HELO",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::EndOfMessage => "END-OF-MESSAGE",
            Stage::Vrfy => "VRFY",
            Stage::Etrn => "ETRN",
            Stage::Other(text) => text,
        }
    }

    /// The stages at which a submission may be charged (`submission.charge_at`).
    pub const CHARGE_CHOICES: [Stage; 2] = [Stage::Data, Stage::EndOfMessage];
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ignores_case_and_keeps_unknown_states() {
        for (text, stage) in [
            ("RCPT", Stage::Rcpt),
            ("rcpt", Stage::Rcpt),
            ("End-Of-Message", Stage::EndOfMessage),
            ("LOGIN", Stage::Other("LOGIN".into())),
        ] {
            assert_eq!(Stage::parse(text), stage, "{text}");
        }
        assert_eq!(Stage::parse("end-of-message").as_str(), "END-OF-MESSAGE");
        assert_eq!(Stage::parse("LOGIN").as_str(), "LOGIN");
    }
}
