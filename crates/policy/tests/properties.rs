//! Properties: hostile bytes never panic and split the same way; encode then decode is identity.

use std::net::IpAddr;

use proptest::prelude::*;
use spamgate_policy::{
    DecodeError, Limits, OtherAttributes, PolicyDecoder, PolicyRequest, ProtocolState,
};

/// Decodes everything in `input`, fed in pieces whose sizes cycle through `chunks`.
fn decode_all(
    limits: Limits,
    input: &[u8],
    chunks: &[usize],
) -> (Vec<PolicyRequest>, Option<DecodeError>) {
    let mut decoder = PolicyDecoder::new(limits);
    let mut requests = Vec::new();
    let mut rest = input;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap()).clamp(1, rest.len());
        let (mut piece, after) = rest.split_at(size);
        rest = after;
        loop {
            match decoder.decode(&mut piece) {
                Ok(Some(request)) => requests.push(request),
                Ok(None) => break,
                Err(error) => return (requests, Some(error)),
            }
        }
        assert!(decoder.buffered() <= limits.max_line_len);
    }
    (requests, None)
}

/// Bytes that are mostly attribute-shaped, so the fuzzing reaches past the first line.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"=".to_vec()),
        Just(b"request=smtpd_access_policy\n".to_vec()),
        Just(b"client_address=".to_vec()),
        Just(b"protocol_state=".to_vec()),
        Just(b"size=".to_vec()),
        Just(b"stress=yes\n".to_vec()),
        "[a-z_]{1,12}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// Text a value may hold: anything but the line breaks the encoder replaces.
fn value() -> impl Strategy<Value = String> {
    "[^\r\n]{0,24}"
}

fn text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(value())
}

fn protocol_state() -> impl Strategy<Value = ProtocolState> {
    prop_oneof![
        Just(ProtocolState::Connect),
        Just(ProtocolState::Ehlo),
        Just(ProtocolState::Helo),
        Just(ProtocolState::Mail),
        Just(ProtocolState::Rcpt),
        Just(ProtocolState::Data),
        Just(ProtocolState::Bdat),
        Just(ProtocolState::EndOfMessage),
        Just(ProtocolState::Vrfy),
        Just(ProtocolState::Etrn),
        "[A-Z]{1,10}".prop_filter_map("a known state", |text| {
            let state = ProtocolState::parse(&text);
            matches!(state, ProtocolState::Other(_)).then_some(state)
        }),
    ]
}

/// Names without a typed field, and non-empty values (empty unknowns are dropped by design).
fn other_attributes() -> impl Strategy<Value = OtherAttributes> {
    proptest::collection::vec(("x_[a-z_]{0,10}", "[^\r\n]{1,24}"), 0..4).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
    })
}

prop_compose! {
    fn request()(
        (protocol_state, protocol_name, helo_name, queue_id, sender, recipient)
            in (proptest::option::of(protocol_state()), text(), text(), text(), text(), text()),
        (recipient_count, client_address, client_name, reverse_client_name, instance)
            in (any::<Option<u64>>(), any::<Option<IpAddr>>(), text(), text(), text()),
        (sasl_method, sasl_username, sasl_sender, size, stress, client_port)
            in (text(), text(), text(), any::<Option<u64>>(), any::<bool>(), any::<Option<u16>>()),
        (server_address, server_port, policy_context)
            in (any::<Option<IpAddr>>(), any::<Option<u16>>(), text()),
        (encryption_protocol, encryption_cipher, encryption_keysize, other)
            in (text(), text(), any::<Option<u32>>(), other_attributes()),
    ) -> PolicyRequest {
        PolicyRequest {
            protocol_state, protocol_name, helo_name, queue_id, sender, recipient,
            recipient_count, client_address, client_name, reverse_client_name, instance,
            sasl_method, sasl_username, sasl_sender, size, stress, client_port,
            server_address, server_port, policy_context,
            encryption_protocol, encryption_cipher, encryption_keysize, other,
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_split_consistently(
        input in prop_oneof![wire_bytes(), proptest::collection::vec(any::<u8>(), 0..256)],
        chunks in proptest::collection::vec(1usize..16, 1..8),
        max_line_len in 1usize..64,
        max_attributes in 1usize..8,
        max_request_bytes in 1usize..256,
    ) {
        let limits = Limits { max_line_len, max_attributes, max_request_bytes };
        let whole = decode_all(limits, &input, &[usize::MAX]);
        let split = decode_all(limits, &input, &chunks);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn encode_then_decode_is_identity(
        requests in proptest::collection::vec(request(), 1..4),
        chunks in proptest::collection::vec(1usize..64, 1..4),
    ) {
        let mut bytes = Vec::new();
        for request in &requests {
            request.encode(&mut bytes);
        }
        let (decoded, error) = decode_all(Limits::default(), &bytes, &chunks);
        prop_assert_eq!(error, None);
        prop_assert_eq!(decoded, requests);
    }
}
