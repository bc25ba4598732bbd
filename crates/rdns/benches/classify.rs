//! Cost of one classification on a mix of names like those an MX sees.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spamgate_rdns::{Classifier, ClassifierConfig};

const PROPER: &[&str] = &[
    "mail.example.com",
    "smtp1.example.net",
    "mx-01.example.org",
    "mail2.example.co.jp",
    "out1.mail.example.com",
    "mta-123.example.net",
    "wrqvxttq.outbound-mail.sendgrid.net",
    "mail42.atl61.mcsv.net",
];

const GENERIC: &[&str] = &[
    "123-123-123-123.adsl.example.net",
    "123.123.123.123.xxx.example.net",
    "c-73-15-2-1.hsd1.ca.comcast.example.net",
    "softbank126012034056.bbtec.example.net",
    "KD111239160140.ppp-bb.example.jp",
    "customer.203-0-113-5.example.net",
    "cbab71fe.dyn.example.net",
    "dynamic-5.example.net",
];

const EXCEPTED: &[&str] = &[
    "mail-eopbgr80071.outbound.protection.outlook.com",
    "a27-10.smtp-out.us-west-2.amazonses.com",
    "mail-pj1-f67.google.com",
    "sonic301-37.consmr.mail.bf2.yahoo.com",
];

fn bench(c: &mut Criterion) {
    let classifier = Classifier::new(&ClassifierConfig::default()).unwrap();
    let mixed: Vec<&str> = [PROPER, GENERIC, EXCEPTED].concat();
    let mut group = c.benchmark_group("classify");
    for (label, names) in [
        ("mixed", &mixed[..]),
        ("proper", PROPER),
        ("generic", GENERIC),
        ("excepted", EXCEPTED),
    ] {
        group.throughput(Throughput::Elements(names.len() as u64));
        group.bench_function(label, |b| {
            b.iter(|| {
                for name in names {
                    black_box(classifier.classify(black_box(name)));
                }
            })
        });
    }
    group.finish();
    c.bench_function("new_default", |b| {
        b.iter(|| Classifier::new(black_box(&ClassifierConfig::default())).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
