//! Decoder cost per request: `cargo bench -p spamgate-policy --bench decode`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spamgate_policy::{Limits, PolicyDecoder, encode_action};

/// What Postfix 3.8 sends at RCPT time: every attribute, most of them empty.
const RCPT_REQUEST: &[u8] = b"request=smtpd_access_policy
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

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements(1));

    // One request per read, one decoder per connection: the usual server shape.
    let mut decoder = PolicyDecoder::new(Limits::default());
    group.bench_function("decode_rcpt_request", |b| {
        b.iter(|| {
            let mut input = black_box(RCPT_REQUEST);
            decoder.decode(&mut input).unwrap().unwrap()
        })
    });

    // The request arrives in three reads, so two partial lines are buffered.
    let mut decoder = PolicyDecoder::new(Limits::default());
    let (first, rest) = RCPT_REQUEST.split_at(100);
    let (second, third) = rest.split_at(300);
    group.bench_function("decode_rcpt_request_in_3_reads", |b| {
        b.iter(|| {
            for piece in [first, second] {
                let mut input = black_box(piece);
                assert!(decoder.decode(&mut input).unwrap().is_none());
            }
            let mut input = black_box(third);
            decoder.decode(&mut input).unwrap().unwrap()
        })
    });

    let mut reply = Vec::with_capacity(128);
    group.bench_function("encode_action", |b| {
        b.iter(|| {
            reply.clear();
            encode_action(
                black_box("DEFER_IF_PERMIT 4.7.1 Service unavailable, S25R check, be patient"),
                &mut reply,
            );
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
