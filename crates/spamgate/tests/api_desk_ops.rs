//! The API endpoints for the CLI's remaining commands (crates/admin/src/api_desk.rs),
//! against a real `spamgate serve` with real SQLite files: ladder steps that run their
//! hook at once and answer the runs, the delivery queue and a retry of one, history and
//! customer uploads, identity links, enforce, signals, learned exemptions, triplets and
//! events; bad input answered 4xx with nothing changed; the audit trail.
//! (The role of every endpoint is in api_endpoints.rs's table.)

mod api;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use api::{Client, Daemon, Response};
use serde_json::{Value, json};

fn desk_fixture(kind: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../desk/tests")
        .join(kind)
        .join(name)
}

fn expect(response: Response, status: u16, what: &str) -> Value {
    assert_eq!(response.status, status, "{what}: {}", response.body);
    if response.body.is_empty() {
        Value::Null
    } else {
        response.json()
    }
}

/// The audit actions, oldest first.
fn audit_actions(client: &Client) -> Vec<String> {
    let audit = expect(client.get("/api/v1/audit?limit=1000"), 200, "audit");
    let mut actions: Vec<String> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    actions.reverse();
    actions
}

struct Desk {
    // Kept alive for the test's length (dropping it stops the daemon).
    _daemon: Daemon,
    viewer: Client,
    operator: Client,
    approver: Client,
    hook_log: PathBuf,
}

/// A daemon whose desk suspends on the first confirmed case and whose hook appends
/// "CUSTOMER STEP" to hook.log — failing once first when `fail_first` (it leaves a
/// flag file and exits 3), as a CoA server that was down would.
fn desk(approval: bool, fail_first: bool) -> Desk {
    desk_with(approval, fail_first, "")
}

/// [`desk`] with more `[desk]` keys.
fn desk_with(approval: bool, fail_first: bool, desk_extra: &str) -> Desk {
    let dir = tempfile::tempdir().unwrap();
    let hook_log = dir.path().join("hook.log");
    let flag = dir.path().join("hook.failed-once");
    let script = if fail_first {
        format!(
            "if [ -e {flag} ]; then echo \\\"$1 $2\\\" >> {log}; else touch {flag}; echo coa down >&2; exit 3; fi",
            flag = flag.display(),
            log = hook_log.display()
        )
    } else {
        format!("echo \\\"$1 $2\\\" >> {}", hook_log.display())
    };
    let more = format!(
        "[dnsbl]\nzones = []\n[desk]\nwarn_on_first = false\nsuspend_after = 1\n\
         suspension_requires_approval = {approval}\n\
         hook_command = [\"sh\", \"-c\", \"{script}\", \"hook\"]\n{desk_extra}"
    );
    let config = dir.path().join("spamgate.toml");
    std::fs::write(&config, api::config_text(dir.path(), "", &more)).unwrap();
    let daemon = Daemon::start_in(dir, config);
    for (name, role) in [
        ("vera", "viewer"),
        ("otto", "operator"),
        ("anna", "approver"),
    ] {
        daemon.add_user(name, role);
    }
    Desk {
        viewer: daemon.bearer("vera"),
        operator: daemon.bearer("otto"),
        approver: daemon.bearer("anna"),
        hook_log,
        _daemon: daemon,
    }
}

/// Customer C-ALICE with the submission account alice-smtp@isp.example.jp linked.
fn alice(d: &Desk) -> &'static str {
    let account = "alice-smtp@isp.example.jp";
    expect(
        d.operator.send_json(
            "PUT",
            &format!("/api/v1/accounts/{account}/limits"),
            &json!({}),
        ),
        200,
        "account",
    );
    expect(
        d.operator.send_json(
            "PUT",
            "/api/v1/customers/C-ALICE",
            &json!({"name": "Alice", "contact": "alice@example.jp"}),
        ),
        200,
        "customer",
    );
    expect(
        d.operator.post_json(
            "/api/v1/customers/C-ALICE/accounts",
            &json!({"account": account}),
        ),
        200,
        "link",
    );
    account
}

fn hook_lines(d: &Desk) -> String {
    std::fs::read_to_string(&d.hook_log).unwrap_or_default()
}

fn runs_of<'a>(answer: &'a Value, kind: &str) -> Vec<&'a Value> {
    answer["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("runs in {answer}"))
        .iter()
        .filter(|r| r["kind"] == kind)
        .collect()
}

#[test]
fn an_approved_suspension_runs_its_hook_at_once_and_answers_the_runs() {
    let d = desk(true, false);
    let account = alice(&d);
    // Attribution through the API: the identity link and the RADIUS history upload.
    expect(
        d.operator.post_json(
            "/api/v1/customers/C-ALICE/identities",
            &json!({"kind": "radius-user", "value": "alice@isp.example.jp"}),
        ),
        200,
        "identity",
    );
    let detail = std::fs::read(desk_fixture("history", "radius-detail")).unwrap();
    let imported = expect(
        d.operator.post_raw(
            "/api/v1/import/sessions?format=radius-detail&source=nas1",
            "text/plain",
            &detail,
        ),
        200,
        "sessions",
    );
    assert!(imported["upserted"].as_u64().unwrap() > 0, "{imported}");
    let report = std::fs::read_to_string(desk_fixture("reports", "arf-rfc5965.eml"))
        .unwrap()
        .replace("192.0.2.1", "192.0.2.10");
    let ingested = expect(
        d.operator
            .post_raw("/api/v1/reports", "message/rfc822", report.as_bytes()),
        201,
        "ingest",
    );
    assert_eq!(ingested["customer"], "C-ALICE", "{ingested}");
    let case_id = ingested["case_id"].as_i64().unwrap();

    // Confirming proposes the suspension: nothing is suspended, no hook runs yet.
    let confirmed = expect(
        d.operator.post(&format!("/api/v1/cases/{case_id}/confirm")),
        200,
        "confirm",
    );
    assert!(runs_of(&confirmed, "hook").is_empty(), "{confirmed}");
    assert_eq!(hook_lines(&d), "", "no step, no hook");

    let approved = expect(
        d.approver.post_json(
            "/api/v1/customers/C-ALICE/ladder",
            &json!({"step": "approve", "reason": "confirmed spam run"}),
        ),
        200,
        "approve",
    );
    assert_eq!(approved["accounts"][0]["to"], "suspended", "{approved}");
    let hooks = runs_of(&approved, "hook");
    assert_eq!(hooks.len(), 1, "{approved}");
    assert_eq!(
        (
            hooks[0]["state"].clone(),
            hooks[0]["step"].clone(),
            hooks[0]["error"].clone()
        ),
        (json!("done"), json!("suspended"), Value::Null),
        "{approved}"
    );
    // The hook ran before the answer, with the customer and the step.
    assert_eq!(hook_lines(&d), "C-ALICE suspended\n");
    // OP25B is not managed by this daemon: the revocation is carried out as "nothing
    // to do here", not left waiting.
    let op25b = runs_of(&approved, "op25b");
    assert_eq!(op25b.len(), 1, "{approved}");
    assert_eq!(op25b[0]["action"], "revoke");
    assert_eq!(op25b[0]["state"], "done");
    assert!(
        op25b[0]["note"].as_str().unwrap().contains("not managed"),
        "{approved}"
    );
    // Without a relay the notice stays queued for the timer, and is listed.
    assert!(runs_of(&approved, "notify").is_empty(), "{approved}");
    let pending = expect(
        d.viewer.get("/api/v1/deliveries?state=pending"),
        200,
        "pending",
    );
    let pending = pending["deliveries"].as_array().unwrap();
    assert!(
        pending.iter().all(|p| p["kind"] == "notify") && !pending.is_empty(),
        "{pending:?}"
    );
    let done = expect(d.viewer.get("/api/v1/deliveries?state=done"), 200, "done");
    assert_eq!(
        done["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["kind"] == "hook")
            .count(),
        1,
        "{done}"
    );
    // The account is refused at submission at once.
    let shown = expect(
        d.viewer.get(&format!("/api/v1/accounts/{account}")),
        200,
        "account",
    );
    assert_eq!(shown["status"], "suspended", "{shown}");
    // A notice retry without a relay is refused and changes nothing.
    let notice_id = pending[0]["id"].as_i64().unwrap();
    let refused = expect(
        d.operator
            .post(&format!("/api/v1/deliveries/{notice_id}/retry")),
        409,
        "no relay",
    );
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("notice_relay_host"),
        "{refused}"
    );
    let still = expect(d.viewer.get("/api/v1/deliveries"), 200, "pending");
    assert_eq!(still["deliveries"][0]["attempts"], 0, "{still}");

    let actions = audit_actions(&d.viewer);
    for action in [
        "customer.link_identity",
        "sessions.import",
        "case.confirm",
        "ladder.approve",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    assert!(
        !actions.iter().any(|a| a == "delivery.retry"),
        "{actions:?}"
    );
}

#[test]
fn a_failed_hook_stays_queued_and_a_retry_runs_it_once_more() {
    let d = desk(false, true);
    alice(&d);
    let suspended = expect(
        d.operator.post_json(
            "/api/v1/customers/C-ALICE/ladder",
            &json!({"step": "suspend", "reason": "spam run"}),
        ),
        200,
        "suspend",
    );
    let hooks = runs_of(&suspended, "hook");
    assert_eq!(hooks.len(), 1, "{suspended}");
    assert_eq!(hooks[0]["state"], "pending", "{suspended}");
    assert!(
        hooks[0]["error"].as_str().unwrap().contains("coa down"),
        "{suspended}"
    );
    assert_eq!(hook_lines(&d), "");
    let id = hooks[0]["delivery_id"].as_i64().unwrap();
    let pending = expect(d.viewer.get("/api/v1/deliveries"), 200, "pending");
    let queued = pending["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} queued: {pending}"));
    assert_eq!(
        (queued["kind"].clone(), queued["attempts"].clone()),
        (json!("hook"), json!(1))
    );
    assert!(queued["next_attempt"].as_i64().unwrap() > 0);

    // Not due yet: a run of the queue leaves it (backoff), a retry runs it now.
    let run = expect(d.operator.post("/api/v1/deliveries/run"), 200, "run");
    assert!(runs_of(&run, "hook").is_empty(), "backing off: {run}");
    assert_eq!(run["unconfigured"], json!(["notice_relay_host"]), "{run}");
    expect(
        d.viewer.post(&format!("/api/v1/deliveries/{id}/retry")),
        403,
        "viewers cannot retry",
    );
    let retried = expect(
        d.operator.post(&format!("/api/v1/deliveries/{id}/retry")),
        200,
        "retry",
    );
    let hooks = runs_of(&retried, "hook");
    assert_eq!(
        (
            hooks.len(),
            hooks[0]["delivery_id"].clone(),
            hooks[0]["state"].clone()
        ),
        (1, json!(id), json!("done")),
        "{retried}"
    );
    assert_eq!(hook_lines(&d), "C-ALICE suspended\n");
    // Done: a second retry is refused, and the hook does not run again.
    expect(
        d.operator.post(&format!("/api/v1/deliveries/{id}/retry")),
        404,
        "done",
    );
    expect(
        d.operator.post("/api/v1/deliveries/424242/retry"),
        404,
        "unknown",
    );
    expect(
        d.operator.post("/api/v1/deliveries/abc/retry"),
        400,
        "not a number",
    );
    expect(
        d.viewer.get("/api/v1/deliveries?state=stuck"),
        400,
        "bad state",
    );
    assert_eq!(hook_lines(&d), "C-ALICE suspended\n");
    let actions = audit_actions(&d.viewer);
    assert_eq!(
        actions.iter().filter(|a| *a == "delivery.retry").count(),
        1,
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| a == "deliveries.run"), "{actions:?}");
}

#[test]
fn enforce_sets_an_account_back_to_the_customers_step() {
    let d = desk(false, false);
    let account = alice(&d);
    expect(
        d.operator.post_json(
            "/api/v1/customers/C-ALICE/ladder",
            &json!({"step": "suspend", "reason": "spam run"}),
        ),
        200,
        "suspend",
    );
    // Someone lets the account send again by hand; enforce puts the desk's step back.
    expect(
        d.operator.post_json(
            &format!("/api/v1/accounts/{account}/status"),
            &json!({"status": "active"}),
        ),
        200,
        "by hand",
    );
    let enforced = expect(
        d.operator.post("/api/v1/customers/C-ALICE/enforce"),
        200,
        "enforce",
    );
    assert_eq!(
        enforced["accounts"],
        json!([{"username": account, "from": "active", "to": "suspended"}]),
        "{enforced}"
    );
    let again = expect(
        d.operator.post("/api/v1/customers/C-ALICE/enforce"),
        200,
        "enforce again",
    );
    assert_eq!(again["accounts"], json!([]), "nothing left to set: {again}");
    expect(
        d.operator.post("/api/v1/customers/C-NOBODY/enforce"),
        404,
        "unknown customer",
    );
    // A second account linked to the suspended customer is suspended with it (as the
    // CLI's `customer link --account`).
    let second = "alice-2@isp.example.jp";
    expect(
        d.operator.send_json(
            "PUT",
            &format!("/api/v1/accounts/{second}/limits"),
            &json!({}),
        ),
        200,
        "account",
    );
    let linked = expect(
        d.operator.post_json(
            "/api/v1/customers/C-ALICE/accounts",
            &json!({"account": second}),
        ),
        200,
        "link",
    );
    assert!(
        linked["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["username"] == second && a["to"] == "suspended"),
        "{linked}"
    );
    // Every account's events, newest first: the status changes are there.
    let events = expect(d.viewer.get("/api/v1/events?since=0"), 200, "events");
    let events = events["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["username"] == second), "{events:?}");
    assert!(
        events.iter().any(|e| e["username"] == account),
        "{events:?}"
    );
    expect(d.viewer.get("/api/v1/events?since=soon"), 400, "bad since");
    // Signals: nothing to file yet, but the run answers and is audited.
    let signals = expect(d.operator.post("/api/v1/signals"), 200, "signals");
    assert_eq!(signals["filed"], json!([]), "{signals}");
    let actions = audit_actions(&d.viewer);
    assert_eq!(
        actions.iter().filter(|a| *a == "customer.enforce").count(),
        2,
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| a == "signals.file"), "{actions:?}");
}

#[test]
fn uploads_import_customers_and_history_and_bad_ones_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("spamgate.toml");
    std::fs::write(
        &config,
        api::config_text(
            dir.path(),
            "max_body_size = 4096\n",
            "[dnsbl]\nzones = []\n[desk]\n",
        ),
    )
    .unwrap();
    let daemon = Daemon::start_in(dir, config);
    daemon.add_user("vera", "viewer");
    daemon.add_user("otto", "operator");
    let viewer = daemon.bearer("vera");
    let operator = daemon.bearer("otto");

    let csv = "id,name,contact,language,plan\n\
               C-STATIC-1,Static One,one@example.jp,ja,fiber\n\
               C-STATIC-2,Static Two,two@example.com,en,\n";
    expect(
        viewer.post_raw("/api/v1/import/customers", "text/csv", csv.as_bytes()),
        403,
        "viewers cannot import",
    );
    let imported = expect(
        operator.post_raw("/api/v1/import/customers", "text/csv", csv.as_bytes()),
        200,
        "customers",
    );
    assert_eq!(imported["imported"], 2, "{imported}");
    let customers = expect(viewer.get("/api/v1/customers"), 200, "list");
    let ids: Vec<&str> = customers["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["C-STATIC-1", "C-STATIC-2"]);
    let shown = expect(viewer.get("/api/v1/customers/C-STATIC-2"), 200, "show");
    assert_eq!(shown["customer"]["language"], "en", "{shown}");

    let table = std::fs::read(desk_fixture("history", "static.csv")).unwrap();
    let history = expect(
        operator.post_raw("/api/v1/import/sessions?format=static", "text/csv", &table),
        200,
        "static",
    );
    let upserted = history["upserted"].as_u64().unwrap();
    assert!(upserted >= 2, "{history}");
    let who = |at: i64| {
        expect(
            viewer.get(&format!("/api/v1/who?address=203.0.113.5&at={at}")),
            200,
            "who",
        )
    };
    // 2026-06-01: C-STATIC-1 held 203.0.113.0/28.
    assert_eq!(who(1780272000)["customer"], "C-STATIC-1");
    // The same table again: the same records, upserted by key, the same answer.
    let again = expect(
        operator.post_raw("/api/v1/import/sessions?format=static", "text/csv", &table),
        200,
        "again",
    );
    assert_eq!(again["upserted"].as_u64().unwrap(), upserted);
    assert_eq!(who(1780272000)["customer"], "C-STATIC-1");

    let before = audit_actions(&viewer).len();
    let big = vec![b'x'; 8192];
    // (path, body, status, what the error says)
    let table: &[(&str, &[u8], u16, &str)] = &[
        (
            "/api/v1/import/customers",
            b"C-NEW,New,new@example.jp,ja,\nC-BAD,Bad,no-at-sign,ja,\n",
            400,
            "line 2",
        ),
        (
            "/api/v1/import/customers",
            b"C-NEW,New,new@example.jp,fr,\n",
            400,
            "ja or en",
        ),
        ("/api/v1/import/customers", b"", 400, "empty"),
        (
            "/api/v1/import/customers",
            b"id,name,contact,language,plan\n",
            400,
            "no customer",
        ),
        (
            "/api/v1/import/customers",
            b"\xff\xfe,x,y@z,ja,\n",
            400,
            "UTF-8",
        ),
        ("/api/v1/import/customers", &big, 413, "too large"),
        (
            "/api/v1/import/sessions?format=static",
            b"this is not a table\n",
            400,
            "nothing imported",
        ),
        (
            "/api/v1/import/sessions?format=carrier-pigeon",
            b"C,203.0.113.0/28,2026-01-01T00:00:00Z\n",
            400,
            "unknown format",
        ),
        (
            "/api/v1/import/sessions",
            b"C,203.0.113.0/28,2026-01-01T00:00:00Z\n",
            400,
            "format",
        ),
        (
            "/api/v1/import/sessions?format=static",
            b"  \n",
            400,
            "empty",
        ),
        (
            "/api/v1/import/sessions?format=static",
            &big,
            413,
            "too large",
        ),
        (
            "/api/v1/import/sessions?format=static&bogus=1",
            b"C,203.0.113.0/28,2026-01-01T00:00:00Z\n",
            400,
            "bogus",
        ),
    ];
    for (path, body, status, says) in table {
        let response = operator.post_raw(path, "text/csv", body);
        assert_eq!(response.status, *status, "{path}: {}", response.body);
        let error = response.json();
        assert!(
            error["error"].as_str().unwrap().contains(says),
            "{path}: {error} should say {says:?}"
        );
    }
    // Identity links: bad ones refused.
    for (path, body, status) in [
        (
            "/api/v1/customers/C-STATIC-1/identities",
            json!({"kind": "ssn", "value": "123"}),
            400,
        ),
        (
            "/api/v1/customers/C-STATIC-1/identities",
            json!({"kind": "hwaddr", "value": " "}),
            400,
        ),
        (
            "/api/v1/customers/C-STATIC-1/identities",
            json!({"kind": "hwaddr", "value": "aa:bb", "extra": 1}),
            400,
        ),
        (
            "/api/v1/customers/C-NOBODY/identities",
            json!({"kind": "hwaddr", "value": "aa:bb:cc:dd:ee:ff"}),
            404,
        ),
    ] {
        let response = operator.post_json(path, &body);
        assert_eq!(response.status, status, "{body}: {}", response.body);
    }
    let malformed = operator.post_raw(
        "/api/v1/customers/C-STATIC-1/identities",
        "application/json",
        b"{\"kind\": ",
    );
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    // Nothing changed: the same customers, the same holder, no audit entry.
    let customers = expect(viewer.get("/api/v1/customers"), 200, "list");
    assert_eq!(customers["customers"].as_array().unwrap().len(), 2);
    assert_eq!(who(1780272000)["customer"], "C-STATIC-1");
    assert_eq!(audit_actions(&viewer).len(), before, "no change, no audit");
    let actions = audit_actions(&viewer);
    assert_eq!(
        actions.iter().filter(|a| *a == "sessions.import").count(),
        2
    );
    assert!(actions.iter().any(|a| a == "customer.import"));
}

#[test]
fn learned_and_triplets_are_listed_and_forgotten() {
    let daemon = api::daemon_following_an_organisation("[dnsbl]\nzones = []\n");
    daemon.add_user("vera", "viewer");
    daemon.add_user("otto", "operator");
    let viewer = daemon.bearer("vera");
    let operator = daemon.bearer("otto");
    // A real attempt through the policy socket records a triplet.
    let request = "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.31\n\
                   client_name=unknown\nsender=a@example.org\nrecipient=b@example.net\n\n";
    let mut socket = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    socket.write_all(request.as_bytes()).unwrap();
    let mut reply = [0u8; 256];
    let n = std::io::Read::read(&mut socket, &mut reply).unwrap();
    assert!(String::from_utf8_lossy(&reply[..n]).starts_with("action=DEFER_IF_PERMIT"));
    let triplets = expect(
        viewer.get("/api/v1/greylist/triplets?limit=10"),
        200,
        "triplets",
    );
    let triplets = triplets["triplets"].as_array().unwrap();
    assert_eq!(triplets.len(), 1, "{triplets:?}");
    assert_eq!(triplets[0]["sender"], "a@example.org");
    assert_eq!(triplets[0]["passed_at"], Value::Null);
    expect(
        viewer.get("/api/v1/greylist/triplets?limit=many"),
        400,
        "bad limit",
    );

    let learned = expect(viewer.get("/api/v1/learned"), 200, "learned");
    let orgs = learned["organisations"].as_array().unwrap();
    assert_eq!(orgs.len(), 1, "{learned}");
    assert_eq!(
        (
            orgs[0]["org"].clone(),
            orgs[0]["learned"].clone(),
            orgs[0]["refused_now"].clone()
        ),
        (json!("example.org"), json!(false), json!(false)),
        "followed, not yet learned: {learned}"
    );
    expect(
        viewer.delete("/api/v1/learned/example.org"),
        403,
        "viewers cannot forget",
    );
    // Any name under the organisation names it.
    let removed = expect(
        operator.delete("/api/v1/learned/mail.example.org"),
        200,
        "remove",
    );
    assert_eq!(removed["organisation"], "example.org", "{removed}");
    let learned = expect(viewer.get("/api/v1/learned"), 200, "learned");
    assert_eq!(learned["organisations"], json!([]));
    let gone = expect(
        operator.delete("/api/v1/learned/mail.example.org"),
        404,
        "not followed any more",
    );
    assert!(
        gone["error"].as_str().unwrap().contains("example.org"),
        "the organisation is named: {gone}"
    );
    let cleared = expect(operator.delete("/api/v1/learned"), 200, "clear");
    assert_eq!(cleared["removed"], 0);
    let actions: Vec<String> = audit_actions(&viewer)
        .into_iter()
        .filter(|a| a.starts_with("learned."))
        .collect();
    assert_eq!(
        actions,
        ["learned.remove", "learned.clear"],
        "only the changes are audited"
    );
}

struct Sink(Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Postfix's `smtp-sink` on a free loopback port, one file per message under `dir`.
fn sink(dir: &Path) -> (Sink, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new("smtp-sink");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if root {
        // As root it insists on a user to drop to.
        command.args(["-u", "root"]);
    }
    let child = command
        .arg("-d")
        .arg(format!("{}/%M.", dir.display()))
        .arg(format!("127.0.0.1:{port}"))
        .arg("10")
        .stdin(Stdio::null())
        .spawn()
        .expect("smtp-sink (package postfix) must be installed");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    (Sink(child), port)
}

#[test]
fn a_suspension_over_the_api_mails_its_notice_before_the_answer() {
    let mail = tempfile::tempdir().unwrap();
    let (_sink, port) = sink(mail.path());
    let d = desk_with(
        false,
        false,
        &format!(
            "notice_relay_host = \"127.0.0.1\"\nnotice_relay_port = {port}\n\
             notice_from = \"abuse@isp.example.jp\"\nnotice_isp_name = \"Example ISP\"\n"
        ),
    );
    alice(&d);
    let suspended = expect(
        d.operator.post_json(
            "/api/v1/customers/C-ALICE/ladder",
            &json!({"step": "suspend", "reason": "spam run"}),
        ),
        200,
        "suspend",
    );
    let notices = runs_of(&suspended, "notify");
    assert_eq!(notices.len(), 1, "{suspended}");
    assert_eq!(
        (
            notices[0]["state"].clone(),
            notices[0]["to"].clone(),
            notices[0]["step"].clone()
        ),
        (json!("done"), json!("alice@example.jp"), json!("suspended")),
        "{suspended}"
    );
    // The relay has it now, not after the timer.
    let mails: Vec<String> = std::fs::read_dir(mail.path())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(mails.len(), 1, "one notice mailed");
    assert!(mails[0].contains("alice@example.jp"), "{}", mails[0]);
    let pending = expect(d.viewer.get("/api/v1/deliveries"), 200, "pending");
    assert_eq!(pending["deliveries"], json!([]), "nothing left queued");
}
