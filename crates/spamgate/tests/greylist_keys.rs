//! `greylist show|delete --client` finds the client's triplets whichever way the daemon
//! keyed them: by its network, or by its PTR domain (a forward-confirmed name that is not
//! generic). Real daemon and CLI processes, an in-process DNS server on loopback.

mod common;
mod process;

use process::{ask, run_with_config, serve};

#[test]
fn show_and_delete_by_client_find_domain_keyed_triplets() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dns = rt
        .block_on(common::dns_builder().start())
        .expect("test DNS");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("policy.sock");
    let text = common::config_text(
        dns.addr(),
        &dir.path().join("spamgate.db"),
        &format!("unix:{}", socket.display()),
    )
    // Greylist every class, so a proper (domain-keyed) client has triplets.
    .replace(
        "[greylist]\n",
        "[greylist]\nclasses = [\"no-ptr\", \"ptr-not-confirmed\", \"dns-tempfail\", \"generic\", \"proper\"]\n",
    )
    .replace("[dns]\n", "[dns]\nalways_lookup = true\n");
    let config = dir.path().join("spamgate.toml");
    std::fs::write(&config, text).unwrap();
    let daemon = serve(&config, &socket);
    // 192.0.2.10 is mail.example.test, forward-confirmed: keyed as domain:example.test.
    let reply = ask(
        &socket,
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.10\n\
         client_name=mail.example.test\nsender=a@example.org\nrecipient=b@example.net\n\n",
    );
    assert!(reply.contains("please resend"), "{reply}");

    let run = |args: &[&str]| {
        let (code, out, err) = run_with_config(&config, args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        out
    };
    let shown = run(&["greylist", "show", "--client", "192.0.2.10"]);
    assert!(
        shown.contains("triplet\tdomain:example.test\t<a@example.org>\t<b@example.net>"),
        "{shown}"
    );
    let deleted = run(&["greylist", "delete", "--client", "192.0.2.10"]);
    assert_eq!(deleted, "deleted\ttriplets=1\tawl=0\n");
    let shown = run(&["greylist", "show", "--client", "192.0.2.10"]);
    assert!(!shown.contains("triplet"), "{shown}");
    drop(daemon);
}
