//! Hostile clients: idle floods, trickling, oversized input, many connections at once.
//! Each limit is configured small here so the tests run fast; the defaults are documented
//! in docs/configuration.md.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use spamgate_app::ManualClock;
use tokio::io::AsyncWriteExt;

const PROPER: [(&str, &str); 2] = [
    ("client_address", "192.0.2.10"),
    ("client_name", "mail.example.test"),
];

async fn harness(tweak: impl FnOnce(&mut spamgate::config::Config)) -> Harness {
    let dns = dns_builder().start().await.unwrap();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = config_for(dns.addr(), &dir.path().join("db.sqlite"));
    tweak(&mut config);
    Harness::start_with(config, Some(dns), dir, Arc::new(ManualClock::new(T0))).await
}

#[tokio::test]
async fn an_idle_flood_cannot_lock_out_new_clients() {
    let h = harness(|c| c.server.max_connections = Some(8)).await;
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(h.connect().await);
    }
    // Every new client still gets an answer: the longest-idle connections make room.
    for _ in 0..5 {
        assert_eq!(h.ask(&PROPER).await, "DUNNO");
    }
    let text = h.service.metrics().encode();
    assert!(text.contains("spamgate_connections_total"), "{text}");
    drop(flood);
}

#[tokio::test]
async fn a_busy_connection_is_never_evicted() {
    let h = harness(|c| c.server.max_connections = Some(2)).await;
    let mut a = h.connect().await;
    let mut b = h.connect().await;
    // Both finish requests; then a third client arrives and one idle one makes room.
    assert_eq!(a.ask(&PROPER).await, "DUNNO");
    assert_eq!(b.ask(&PROPER).await, "DUNNO");
    assert_eq!(h.ask(&PROPER).await, "DUNNO");
}

#[tokio::test]
async fn a_new_connection_waits_for_a_place_when_every_connection_is_busy() {
    let h = harness(|c| c.server.max_connections = Some(4)).await;
    // Four connections in the middle of a request: busy, never evicted.
    let mut busy = Vec::new();
    for _ in 0..4 {
        let mut conn = h.connect().await;
        conn.send_raw(b"request=smtpd_access_policy\nclient_address=192.0.2.10\n")
            .await;
        busy.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A fifth is queued, not closed...
    let queued = {
        let mut conn = h.connect().await;
        tokio::spawn(async move { conn.ask(&PROPER).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !queued.is_finished(),
        "answered or closed while every place was busy"
    );
    // ...and served once one of them finishes its request and falls idle.
    busy[0].send_raw(b"client_name=mail.example.test\n\n").await;
    assert_eq!(busy[0].read_reply().await.as_deref(), Some("DUNNO"));
    assert_eq!(queued.await.unwrap(), "DUNNO");
}

#[tokio::test]
async fn a_request_with_hundreds_of_attributes_is_answered_on_the_defaults() {
    let h = harness(|_| {}).await;
    let mut attributes: Vec<(String, String)> = (0..300)
        .map(|i| (format!("x_future_attribute_{i}"), "value".to_string()))
        .collect();
    attributes.extend(PROPER.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    let attributes: Vec<(&str, &str)> = attributes
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(h.ask(&attributes).await, "DUNNO");
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let h = harness(|c| c.server.idle_timeout = Duration::from_millis(300)).await;
    let mut idle = h.connect().await;
    assert_eq!(idle.read_reply().await, None, "closed by the server");
}

#[tokio::test]
async fn a_trickling_request_is_cut_at_the_request_timeout() {
    let h = harness(|c| c.server.request_timeout = Duration::from_millis(500)).await;
    let mut slow = h.connect().await;
    let trickle = tokio::spawn(async move {
        // One byte every 100 ms, never finishing the request.
        for byte in b"request=smtpd_access_policy\nprotocol_state=RCPT\nsender="
            .iter()
            .cycle()
            .take(200)
        {
            if slow.stream.write_all(&[*byte]).await.is_err() {
                return true; // the server hung up
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    // Others are served meanwhile.
    assert_eq!(h.ask(&PROPER).await, "DUNNO");
    assert!(
        trickle.await.unwrap(),
        "the trickling client was disconnected"
    );
}

#[tokio::test]
async fn a_hundred_megabytes_are_refused_early() {
    let h = harness(|_| {}).await;
    let mut big = h.connect().await;
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    while sent < 100 * 1024 * 1024 {
        if big.stream.write_all(&chunk).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    assert!(
        sent < 100 * 1024 * 1024,
        "the server stopped reading long before 100 MB ({sent} bytes)"
    );
    assert_eq!(h.ask(&PROPER).await, "DUNNO");
}

#[tokio::test]
async fn too_many_attributes_close_the_connection() {
    let h = harness(|c| c.server.max_attributes = 40).await;
    let mut many = h.connect().await;
    let mut request = Vec::new();
    for i in 0..41 {
        request.extend_from_slice(format!("x{i}=y\n").as_bytes());
    }
    request.push(b'\n');
    many.send_raw(&request).await;
    assert_eq!(many.read_reply().await, None);
}

#[tokio::test]
async fn many_connections_each_with_many_requests() {
    // CI-sized; scripts/load.sh runs 2,000 connections x 50 requests.
    const CONNECTIONS: usize = 200;
    const REQUESTS: usize = 20;
    let h = Arc::new(harness(|c| c.server.max_connections = Some(1024)).await);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CONNECTIONS {
        let h = h.clone();
        tasks.spawn(async move {
            let mut conn = h.connect().await;
            let mut answered = 0;
            for r in 0..REQUESTS {
                let client = format!("192.0.2.{}", 100 + (c + r) % 100);
                let rcpt = format!("u{c}-{r}@example.net");
                let reply = conn
                    .ask(&[("client_address", &client), ("recipient", &rcpt)])
                    .await;
                assert!(
                    reply == "DUNNO" || reply.starts_with("DEFER_IF_PERMIT 4.7.1"),
                    "{reply}"
                );
                answered += 1;
            }
            answered
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done.unwrap();
    }
    assert_eq!(total, CONNECTIONS * REQUESTS);
}
