//! Arbitrary bytes through the policy decoders, fed in input-chosen chunk sizes.
//!
//! Checks, beyond "no panic": the result does not depend on how the bytes are split, the
//! decoder never buffers past its line limit, and decoded requests survive encode/decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spamgate_policy::{
    DecodeError, Limits, PolicyDecoder, PolicyRequest, ReplyDecoder, encode_action,
};

/// Decodes `input` in pieces whose sizes come from `sizes` (cycled, each 1..=64).
fn decode_all(
    limits: Limits,
    input: &[u8],
    sizes: &[u8],
) -> (Vec<PolicyRequest>, Option<DecodeError>) {
    let mut decoder = PolicyDecoder::new(limits);
    let mut requests = Vec::new();
    let mut rest = input;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = sizes
            .next()
            .map_or(rest.len(), |&s| usize::from(s % 64) + 1);
        let (mut piece, after) = rest.split_at(size.min(rest.len()));
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

fn reencode(request: &PolicyRequest) -> PolicyRequest {
    let roomy = Limits {
        max_line_len: usize::MAX / 4,
        max_attributes: usize::MAX / 4,
        max_request_bytes: usize::MAX / 4,
    };
    let mut input = &request.to_bytes()[..];
    let decoded = PolicyDecoder::new(roomy)
        .decode(&mut input)
        .expect("an encoded request decodes")
        .expect("an encoded request is complete");
    assert!(input.is_empty());
    decoded
}

fuzz_target!(|data: &[u8]| {
    let [a, b, c, d, rest @ ..] = data else {
        return;
    };
    // Small limits from the input so every limit is reached; the split pattern follows.
    let limits = Limits {
        max_line_len: usize::from(*a) * 4 + 1,
        max_attributes: usize::from(*b % 40) + 1,
        max_request_bytes: usize::from(u16::from_le_bytes([*c, *d])) + 1,
    };
    let split_len = rest
        .first()
        .map_or(0, |&n| usize::from(n % 8))
        .min(rest.len());
    let (sizes, input) = rest.split_at(split_len);

    let whole = decode_all(limits, input, &[]);
    let split = decode_all(limits, input, sizes);
    assert_eq!(whole, split, "decoding depends on how input is split");

    for request in &whole.0 {
        // Values may hold a lone CR, which the encoder turns into a space: so compare the
        // first re-encoding with the second rather than with the original.
        let once = reencode(request);
        assert_eq!(reencode(&once), once);
    }

    let mut replies = ReplyDecoder::new(limits);
    let mut reply_input = input;
    while let Ok(Some(_)) = replies.decode(&mut reply_input) {}

    let mut out = Vec::new();
    encode_action(&String::from_utf8_lossy(input), &mut out);
    assert!(out.len() <= "action=".len() + spamgate_policy::MAX_ACTION_LEN + 2);
    assert!(out.ends_with(b"\n\n"));
    assert!(!out[..out.len() - 2].contains(&b'\n') && !out.contains(&b'\r'));
});
