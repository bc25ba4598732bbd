//! The admin listener's TLS: required off loopback, and a real handshake with the
//! configured certificate (rustls on both sides), with the session cookie marked Secure.

mod api;
use std::io::{Read, Write};
use std::sync::Arc;

use api::{Daemon, cli, config_text};

#[test]
fn a_listener_off_loopback_without_tls_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("spamgate.toml");
    // (the [admin] keys, text the refusal names)
    for (admin, text) in [
        ("listen = \"192.0.2.1:8025\"", "needs tls_cert"),
        (
            "listen = \"127.0.0.1:8025\"\ntls_cert = \"/x.pem\"",
            "give both",
        ),
        (
            "listen = \"127.0.0.1:8025\"\ntrusted_proxies = [\"proxy\"]",
            "trusted_proxies",
        ),
        ("login_failures = 0", "login_failures"),
    ] {
        let text_config = config_text(dir.path(), "", "").replace(
            "[admin]\nlisten = \"127.0.0.1:0\"\n",
            &format!("[admin]\n{admin}\n"),
        );
        std::fs::write(&config, text_config).unwrap();
        let (code, _, err) = cli(&config, &["config", "check"], "");
        assert_eq!(code, Some(78), "{admin}: {err}");
        assert!(err.contains(text), "{admin}: {err}");
    }
}

#[test]
fn the_listener_speaks_tls_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("admin.crt");
    let key_path = dir.path().join("admin.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let config = dir.path().join("spamgate.toml");
    let admin = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert_path.display(),
        key_path.display()
    );
    std::fs::write(&config, config_text(dir.path(), &admin, "")).unwrap();
    let daemon = Daemon::start_in(dir, config);
    daemon.add_user("tess", "viewer");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let request = |body: &str| {
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let connection =
            rustls::ClientConnection::new(Arc::new(client_config.clone()), name).unwrap();
        let socket = std::net::TcpStream::connect(daemon.addr).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut tls = rustls::StreamOwned::new(connection, socket);
        let text = format!(
            "POST /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(text.as_bytes()).unwrap();
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    };
    let response = request(&format!("user=tess&password={}", api::password_of("tess")));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let cookie = response
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = std::net::TcpStream::connect(daemon.addr).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"));
}
