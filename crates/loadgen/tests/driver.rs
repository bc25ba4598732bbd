//! The generator against the baseline (and a broken server) over real loopback sockets.

use std::sync::Arc;
use std::time::Duration;

use spamgate_loadgen::baseline::{serve_tcp, serve_unix};
use spamgate_loadgen::{ActionMix, Report, RunOptions, Target, Workload, WorkloadConfig, run};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UnixListener};

fn workload(warmup: u64) -> Arc<Workload> {
    Arc::new(
        Workload::new(WorkloadConfig {
            clients: 300,
            warmup,
            ..WorkloadConfig::default()
        })
        .unwrap(),
    )
}

fn options(target: Target, connections: usize, requests: u64) -> RunOptions {
    RunOptions {
        target,
        connections,
        warmup_connections: 3,
        requests,
        first: 0,
        duration: None,
        request_timeout: Duration::from_secs(10),
        server_pid: Some(std::process::id()),
    }
}

fn assert_all_dunno(report: &Report, requests: u64) {
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert_eq!(report.requests, requests);
    assert_eq!(
        report.actions,
        ActionMix {
            dunno: requests,
            ..ActionMix::default()
        }
    );
    assert!(report.latency_us.p50 > 0.0 && report.latency_us.p50 <= report.latency_us.max);
    // The "server" is this test process.
    assert!(report.server_cpu_us_per_request.is_some_and(|us| us >= 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_over_tcp_answers_every_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = Target::Tcp(listener.local_addr().unwrap().to_string());
    tokio::spawn(serve_tcp(listener));
    for connections in [1, 8] {
        let report = run(workload(300), options(target.clone(), connections, 2_000))
            .await
            .unwrap();
        assert_eq!(report.connections, connections);
        assert_all_dunno(&report, 2_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_over_unix_answers_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(serve_unix(listener));
    let report = run(workload(0), options(Target::Unix(path), 4, 1_000))
        .await
        .unwrap();
    assert_all_dunno(&report, 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_hangs_up_is_counted_as_errors() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = Target::Tcp(listener.local_addr().unwrap().to_string());
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                // Read one request's first bytes, then close without replying.
                let mut buf = [0u8; 64];
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    let report = run(workload(0), options(target, 2, 100)).await.unwrap();
    assert_eq!(report.requests, 0);
    assert!(report.errors >= 2, "{report:?}");
    // Closed or reset, depending on whether unread bytes were left behind.
    assert!(
        report.error_samples[0].starts_with("request "),
        "{:?}",
        report.error_samples
    );
}

#[tokio::test]
async fn nothing_listening_is_an_error_before_the_run() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = Target::Tcp(listener.local_addr().unwrap().to_string());
    drop(listener);
    let error = run(workload(0), options(target, 1, 10)).await.unwrap_err();
    assert!(error.to_string().contains("cannot connect"), "{error}");
}

#[test]
fn targets_parse() {
    let check = |text: &str, expected: Result<Target, ()>| {
        assert_eq!(text.parse::<Target>().map_err(|_| ()), expected, "{text}");
    };
    check("127.0.0.1:10023", Ok(Target::Tcp("127.0.0.1:10023".into())));
    check("[::1]:10023", Ok(Target::Tcp("[::1]:10023".into())));
    check("unix:/run/p.sock", Ok(Target::Unix("/run/p.sock".into())));
    check("unix:", Err(()));
    check("localhost", Err(()));
}
