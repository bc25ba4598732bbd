//! A policy request as the application's [`Transaction`].

use spamgate_engine::{Envelope, Stage, Transaction};
use spamgate_policy::PolicyRequest;

/// The transaction a request describes, moving its strings out (the request path makes
/// no copies); `None` when the request has no usable `client_address`.
///
/// Postfix's reading is applied here, once, for the daemon and `spamgate check` alike:
/// an IPv4-mapped IPv6 address is the IPv4 client; `unknown` or empty names are no name;
/// an empty HELO or SASL login is none; no `protocol_state` means RCPT (Postfix < 2.1).
pub fn transaction_of(request: &mut PolicyRequest) -> Option<Transaction> {
    let client_address = request.client_address?.to_canonical();
    let verified = request.verified_client_name().is_some();
    let known_reverse = request.known_reverse_client_name().is_some();
    let envelope = Envelope {
        client_address,
        client_name: request.client_name.take().filter(|_| verified),
        reverse_client_name: request.reverse_client_name.take().filter(|_| known_reverse),
        helo: request.helo_name.take().filter(|h| !h.is_empty()),
        sender: request.sender.take().unwrap_or_default(),
        recipient: request.recipient.take().unwrap_or_default(),
    };
    Some(Transaction {
        envelope,
        stage: request.protocol_state.take().unwrap_or(Stage::Rcpt),
        sasl_username: request.sasl_username.take().filter(|u| !u.is_empty()),
        server_port: request.server_port,
        recipient_count: request
            .recipient_count
            .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        instance: request.instance.take().filter(|i| !i.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spamgate_policy::{Limits, PolicyDecoder};

    fn transaction(attributes: &str) -> Option<Transaction> {
        let bytes = format!("request=smtpd_access_policy\n{attributes}\n");
        let mut decoder = PolicyDecoder::new(Limits::default());
        let mut input = bytes.as_bytes();
        let mut request = decoder.decode(&mut input).unwrap().expect("one request");
        transaction_of(&mut request)
    }

    #[test]
    fn postfix_reading_of_a_request() {
        let t = transaction(
            "protocol_state=END-OF-MESSAGE\nclient_address=::ffff:192.0.2.7\n\
             client_name=unknown\nreverse_client_name=host.example.test\nhelo_name=\n\
             sender=\nrecipient=u@example.net\nsasl_username=\nserver_port=587\n\
             recipient_count=3\n",
        )
        .unwrap();
        assert_eq!(t.envelope.client_address.to_string(), "192.0.2.7");
        assert_eq!(t.envelope.client_name, None);
        assert_eq!(
            t.envelope.reverse_client_name.as_deref(),
            Some("host.example.test")
        );
        assert_eq!(t.envelope.helo, None);
        assert_eq!(t.envelope.sender, "");
        assert_eq!(t.stage, Stage::EndOfMessage);
        assert_eq!(t.sasl_username, None, "an empty login is no login");
        assert_eq!((t.server_port, t.recipient_count), (Some(587), 3));
        assert_eq!(t.instance, None, "no instance given");

        let t = transaction(
            "client_address=2001:db8::7\nsasl_username=taro@example.jp\ninstance=1a2b.5f3c.1\n",
        )
        .unwrap();
        assert_eq!(t.instance.as_deref(), Some("1a2b.5f3c.1"));
        assert_eq!(t.stage, Stage::Rcpt, "no protocol_state means RCPT");
        assert_eq!(t.sasl_username.as_deref(), Some("taro@example.jp"));
        assert_eq!(t.recipient_count, 1);
        assert_eq!(
            transaction("protocol_state=BDAT\nclient_address=192.0.2.7\n")
                .unwrap()
                .stage,
            Stage::Bdat
        );
        assert!(transaction("client_address=not-an-address\n").is_none());
    }
}
