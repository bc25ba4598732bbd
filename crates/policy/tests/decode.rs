//! Decoder behaviour on Postfix-shaped transcripts, odd framing and hostile input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use spamgate_policy::{DecodeError, Limits, PolicyDecoder, PolicyRequest, ProtocolState};

/// Every attribute Postfix 3.8+ sends (SMTPD_POLICY_README), for an IPv4 client at RCPT.
const RCPT_V4: &str = "request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
helo_name=mail.example.net
queue_id=8045F2AB23
sender=alice@example.net
recipient=bob@example.org
recipient_count=0
client_address=192.0.2.25
client_name=mail.example.net
reverse_client_name=mail.example.net
instance=123.456.7
sasl_method=
sasl_username=
sasl_sender=
size=12345
ccert_subject=
ccert_issuer=
ccert_fingerprint=
encryption_protocol=TLSv1.3
encryption_cipher=TLS_AES_256_GCM_SHA384
encryption_keysize=256
etrn_domain=
stress=
ccert_pubkey_fingerprint=
client_port=41234
policy_context=
server_address=198.51.100.1
server_port=25
compatibility_level=3.6
mail_version=3.8.1

";

/// An IPv6 client without a verified name, at CONNECT, with SASL and a policy context.
const CONNECT_V6: &str = "request=smtpd_access_policy
protocol_state=CONNECT
protocol_name=SMTP
helo_name=
queue_id=
sender=
recipient=
recipient_count=0
client_address=2001:db8::25
client_name=unknown
reverse_client_name=host-25.dyn.example.com
instance=a2b.5c4d3e2f.1
sasl_method=PLAIN
sasl_username=carol
sasl_sender=
size=0
ccert_subject=
ccert_issuer=
ccert_fingerprint=
encryption_protocol=
encryption_cipher=
encryption_keysize=0
etrn_domain=
stress=yes
ccert_pubkey_fingerprint=
client_port=50025
policy_context=submission
server_address=2001:db8:1::1
server_port=587
compatibility_level=3.6
mail_version=3.8.1

";

/// Feeds `input` in `chunk`-byte pieces; returns the requests, then the error if any.
fn decode_in_chunks(
    limits: Limits,
    input: &[u8],
    chunk: usize,
) -> (Vec<PolicyRequest>, Option<DecodeError>) {
    let mut decoder = PolicyDecoder::new(limits);
    let mut requests = Vec::new();
    for piece in input.chunks(chunk) {
        let mut rest = piece;
        loop {
            match decoder.decode(&mut rest) {
                Ok(Some(request)) => requests.push(request),
                Ok(None) => {
                    assert!(rest.is_empty(), "None must mean all input was consumed");
                    break;
                }
                Err(error) => return (requests, Some(error)),
            }
        }
        assert!(decoder.buffered() <= limits.max_line_len);
    }
    (requests, None)
}

fn decode_one(input: &str) -> PolicyRequest {
    let (mut requests, error) = decode_in_chunks(Limits::default(), input.as_bytes(), usize::MAX);
    assert_eq!(error, None);
    assert_eq!(requests.len(), 1, "{input:?}");
    requests.pop().unwrap()
}

#[test]
fn ipv4_rcpt_transcript() {
    let request = decode_one(RCPT_V4);
    let expected = PolicyRequest {
        protocol_state: Some(ProtocolState::Rcpt),
        protocol_name: Some("ESMTP".into()),
        helo_name: Some("mail.example.net".into()),
        queue_id: Some("8045F2AB23".into()),
        sender: Some("alice@example.net".into()),
        recipient: Some("bob@example.org".into()),
        recipient_count: Some(0),
        client_address: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 25))),
        client_name: Some("mail.example.net".into()),
        reverse_client_name: Some("mail.example.net".into()),
        instance: Some("123.456.7".into()),
        sasl_method: Some(String::new()),
        sasl_username: Some(String::new()),
        sasl_sender: Some(String::new()),
        size: Some(12345),
        stress: false,
        client_port: Some(41234),
        server_address: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))),
        server_port: Some(25),
        policy_context: Some(String::new()),
        encryption_protocol: Some("TLSv1.3".into()),
        encryption_cipher: Some("TLS_AES_256_GCM_SHA384".into()),
        encryption_keysize: Some(256),
        other: [("compatibility_level", "3.6"), ("mail_version", "3.8.1")]
            .into_iter()
            .collect(),
    };
    assert_eq!(request, expected);
    assert_eq!(request.verified_client_name(), Some("mail.example.net"));
    assert_eq!(
        request.other.get("ccert_subject"),
        None,
        "empty unknowns are dropped"
    );
}

#[test]
fn ipv6_connect_transcript() {
    let request = decode_one(CONNECT_V6);
    assert_eq!(request.protocol_state, Some(ProtocolState::Connect));
    assert_eq!(
        request.client_address,
        Some(IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x25
        )))
    );
    assert_eq!(request.server_address, "2001:db8:1::1".parse().ok());
    assert_eq!(request.client_name.as_deref(), Some("unknown"));
    assert_eq!(request.verified_client_name(), None);
    assert_eq!(
        request.known_reverse_client_name(),
        Some("host-25.dyn.example.com")
    );
    assert_eq!(request.sender.as_deref(), Some(""));
    assert_eq!(request.sasl_username.as_deref(), Some("carol"));
    assert_eq!(request.policy_context.as_deref(), Some("submission"));
    assert!(request.stress);
    assert_eq!(request.encryption_keysize, Some(0));
    assert_eq!(request.client_port, Some(50025));
    assert_eq!(request.server_port, Some(587));
}

#[test]
fn any_split_gives_the_same_requests() {
    let both = format!("{RCPT_V4}{CONNECT_V6}");
    let (whole, error) = decode_in_chunks(Limits::default(), both.as_bytes(), usize::MAX);
    assert_eq!(error, None);
    assert_eq!(whole.len(), 2);
    for chunk in [1, 2, 3, 7, 64, 511] {
        let (split, error) = decode_in_chunks(Limits::default(), both.as_bytes(), chunk);
        assert_eq!(error, None, "chunk {chunk}");
        assert_eq!(split, whole, "chunk {chunk}");
    }
}

#[test]
fn pipelined_requests_in_one_buffer_come_out_one_by_one() {
    let input = format!("{RCPT_V4}{CONNECT_V6}{RCPT_V4}protocol_state=DATA\n");
    let mut decoder = PolicyDecoder::new(Limits::default());
    let mut rest = input.as_bytes();
    let first = decoder.decode(&mut rest).unwrap().unwrap();
    assert_eq!(
        rest.len(),
        input.len() - RCPT_V4.len(),
        "stops right after a request"
    );
    let second = decoder.decode(&mut rest).unwrap().unwrap();
    let third = decoder.decode(&mut rest).unwrap().unwrap();
    assert_eq!(decoder.decode(&mut rest), Ok(None));
    assert!(decoder.in_progress());
    assert_eq!(first, third);
    assert_eq!(first.protocol_state, Some(ProtocolState::Rcpt));
    assert_eq!(second.protocol_state, Some(ProtocolState::Connect));
    let mut end: &[u8] = b"\n";
    let fourth = decoder.decode(&mut end).unwrap().unwrap();
    assert_eq!(fourth.protocol_state, Some(ProtocolState::Data));
    assert_eq!(
        fourth.client_address, None,
        "no state leaks between requests"
    );
}

#[test]
fn crlf_line_ends_are_tolerated() {
    let crlf = RCPT_V4.replace('\n', "\r\n");
    for chunk in [1, 5, usize::MAX] {
        let (requests, error) = decode_in_chunks(Limits::default(), crlf.as_bytes(), chunk);
        assert_eq!(error, None);
        assert_eq!(requests, [decode_one(RCPT_V4)], "chunk {chunk}");
    }
}

/// One table for how odd-but-valid attributes land.
#[test]
fn attribute_values() {
    fn check(lines: &str, expected: impl Fn(&PolicyRequest) -> bool) {
        let request = decode_one(&format!("{lines}\n\n"));
        assert!(expected(&request), "{lines:?} gave {request:?}");
    }
    check("client_address=not-an-ip", |r| {
        r.client_address.is_none() && r.client_address_raw() == Some("not-an-ip")
    });
    check("client_address=[2001:db8::1]", |r| {
        r.client_address.is_none() && r.client_address_raw() == Some("[2001:db8::1]")
    });
    check("client_address=", |r| {
        r.client_address.is_none() && r.client_address_raw().is_none()
    });
    check("client_address=::ffff:192.0.2.1", |r| {
        r.client_address == "::ffff:192.0.2.1".parse().ok()
    });
    check("size=", |r| r.size.is_none() && r.other.is_empty());
    check("size=-1", |r| {
        r.size.is_none() && r.other.get("size") == Some("-1")
    });
    check("client_port=70000", |r| {
        r.client_port.is_none() && r.other.get("client_port") == Some("70000")
    });
    check("protocol_state=rcpt", |r| {
        r.protocol_state == Some(ProtocolState::Rcpt)
    });
    check("protocol_state=END-OF-MESSAGE", |r| {
        r.protocol_state == Some(ProtocolState::EndOfMessage)
    });
    check("protocol_state=AUTH", |r| {
        r.protocol_state == Some(ProtocolState::Other("AUTH".into()))
    });
    check("protocol_state=", |r| r.protocol_state.is_none());
    check("stress=yes", |r| r.stress);
    check("stress=no", |r| !r.stress && r.other.is_empty());
    check("stress=maybe", |r| {
        !r.stress && r.other.get("stress") == Some("maybe")
    });
    check("sender=", |r| r.sender.as_deref() == Some(""));
    check("recipient=a=b@example.org", |r| {
        r.recipient.as_deref() == Some("a=b@example.org")
    });
    check("helo_name=  spaced  ", |r| {
        r.helo_name.as_deref() == Some("  spaced  ")
    });
    check("sender=old@example.net\nsender=new@example.net", |r| {
        r.sender.as_deref() == Some("new@example.net")
    });
    check("x_future=1\nx_future=2", |r| {
        r.other.get("x_future") == Some("2") && r.other.len() == 2
    });
    check("request=smtpd_access_policy", |r| {
        *r == PolicyRequest::default()
    });
    check("helo_name=caf\u{e9}.example", |r| {
        r.helo_name.as_deref() == Some("caf\u{e9}.example")
    });
}

#[test]
fn invalid_utf8_is_replaced_not_refused() {
    let mut input: &[u8] = b"helo_name=bad\xff\xfe.example\nx_\xc3=v\xe9\n\n";
    let request = PolicyDecoder::new(Limits::default())
        .decode(&mut input)
        .unwrap()
        .unwrap();
    assert_eq!(
        request.helo_name.as_deref(),
        Some("bad\u{fffd}\u{fffd}.example")
    );
    assert_eq!(request.other.get("x_\u{fffd}"), Some("v\u{fffd}"));
}

#[test]
fn refused_input() {
    fn check(limits: Limits, input: &[u8], expected: DecodeError) {
        for chunk in [1, 3, usize::MAX] {
            let (_, error) = decode_in_chunks(limits, input, chunk);
            assert_eq!(error.as_ref(), Some(&expected), "{input:?} chunk {chunk}");
        }
    }
    let default = Limits::default();
    check(
        default,
        b"size=1\nno equals sign\n\n",
        DecodeError::MissingEquals { line: 2 },
    );
    check(default, b"=value\n\n", DecodeError::EmptyName { line: 1 });
    check(default, b"\n", DecodeError::EmptyRequest);
    check(default, b"\r\n", DecodeError::EmptyRequest);
    check(default, b"size=1\n\n\n", DecodeError::EmptyRequest);
    check(
        default,
        b"request=smtpd_access_policy\n\nrequest=junk\n",
        DecodeError::UnsupportedRequest("junk".into()),
    );
    check(
        default,
        b"request=\n",
        DecodeError::UnsupportedRequest(String::new()),
    );
    let long = format!("request={}\n", "x".repeat(200));
    check(
        default,
        long.as_bytes(),
        DecodeError::UnsupportedRequest("x".repeat(64)),
    );

    let small = Limits {
        max_line_len: 20,
        max_attributes: 2,
        max_request_bytes: 50,
    };
    check(
        small,
        b"helo_name=01234567890\n\n",
        DecodeError::LineTooLong { len: 21, limit: 20 },
    );
    // The CR of a CRLF counts towards the line.
    check(
        small,
        b"helo_name=0123456789\r\n\n",
        DecodeError::LineTooLong { len: 21, limit: 20 },
    );
    check(
        small,
        b"a=1\nb=2\nc=3\n\n",
        DecodeError::TooManyAttributes { limit: 2 },
    );
    check(
        small,
        b"helo_name=abcdefghi\nsender=abcdefghijkl\nr=abcdefgh\n\n",
        DecodeError::RequestTooLarge { limit: 50 },
    );
    // A partial line counts towards the request size as it arrives.
    let partial = [b"a=1\nb=2\n".as_slice(), &[b'c'; 20], b"\n"].concat();
    check(
        Limits {
            max_line_len: 100,
            max_request_bytes: 20,
            ..small
        },
        &partial,
        DecodeError::RequestTooLarge { limit: 20 },
    );
}

#[test]
fn limits_apply_per_request_not_per_connection() {
    let limits = Limits {
        max_line_len: 40,
        max_attributes: 2,
        max_request_bytes: 40,
    };
    let one = "sender=a@example.net\nsize=1\n\n";
    let many = one.repeat(50);
    let (requests, error) = decode_in_chunks(limits, many.as_bytes(), 7);
    assert_eq!(error, None);
    assert_eq!(requests.len(), 50);
}

#[test]
fn encoded_transcripts_decode_back() {
    for transcript in [RCPT_V4, CONNECT_V6] {
        let request = decode_one(transcript);
        let bytes = request.to_bytes();
        assert!(bytes.starts_with(b"request=smtpd_access_policy\n"));
        assert!(bytes.ends_with(b"\n\n"));
        let (again, error) = decode_in_chunks(Limits::default(), &bytes, usize::MAX);
        assert_eq!(error, None);
        assert_eq!(again, [request]);
    }
}

#[test]
fn request_encoder_keeps_values_on_one_line() {
    let mut request = PolicyRequest {
        helo_name: Some("evil\nsender=forged@example.net\r".into()),
        ..PolicyRequest::default()
    };
    request.other.push("x=y", "1\n\n");
    let bytes = request.to_bytes();
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        "request=smtpd_access_policy\nhelo_name=evil sender=forged@example.net \nx_y=1  \n\n"
    );
    let decoded = decode_one(std::str::from_utf8(&bytes).unwrap());
    assert_eq!(decoded.sender, None);
}
