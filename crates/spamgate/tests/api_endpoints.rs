//! Every `/api/v1` endpoint against a real `spamgate serve` with real SQLite files:
//! roles (401/403), the filters changing the daemon's answers, accounts, the desk's
//! ladder with approval, bad input changing nothing, the audit trail, OpenAPI.

mod api;
use std::io::Write;
use std::path::Path;

use api::{Client, Daemon, Response};
use serde_json::{Value, json};

const DESK: &str = "[dnsbl]\nzones = []\n[desk]\nwarn_on_first = false\nsuspend_after = 1\n";

fn desk_fixture(kind: &str, name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../desk/tests")
        .join(kind)
        .join(name)
}

/// Users of every role, each with a bearer token.
struct Team {
    viewer: Client,
    operator: Client,
    approver: Client,
    admin: Client,
}

fn team(daemon: &Daemon) -> Team {
    for (name, role) in [
        ("vera", "viewer"),
        ("otto", "operator"),
        ("anna", "approver"),
        ("adam", "admin"),
    ] {
        daemon.add_user(name, role);
    }
    Team {
        viewer: daemon.bearer("vera"),
        operator: daemon.bearer("otto"),
        approver: daemon.bearer("anna"),
        admin: daemon.bearer("adam"),
    }
}

fn expect(response: Response, status: u16, what: &str) -> Value {
    assert_eq!(response.status, status, "{what}: {}", response.body);
    if response.body.is_empty() {
        Value::Null
    } else {
        response.json()
    }
}

fn audit_actions(client: &Client) -> Vec<Value> {
    let audit = expect(client.get("/api/v1/audit?limit=1000"), 200, "audit");
    audit["entries"].as_array().unwrap().clone()
}

#[test]
fn each_endpoint_refuses_roles_below_its_own() {
    let daemon = Daemon::start_with("", DESK);
    let t = team(&daemon);
    // (method, path, body, the least role) — bodies are valid enough to pass the role
    // check; what happens after it is the other tests' business.
    let table: &[(&str, &str, Value, usize)] = &[
        ("GET", "/api/v1/stats", Value::Null, 0),
        (
            "POST",
            "/api/v1/check",
            json!({"client_address": "192.0.2.1", "recipient": "a@example.net"}),
            0,
        ),
        (
            "POST",
            "/api/v1/classify",
            json!({"names": ["mx1.example.org"]}),
            0,
        ),
        ("GET", "/api/v1/greylist?client=192.0.2.1", Value::Null, 0),
        (
            "DELETE",
            "/api/v1/greylist?client=192.0.2.1",
            Value::Null,
            1,
        ),
        ("GET", "/api/v1/allow", Value::Null, 0),
        (
            "POST",
            "/api/v1/allow",
            json!({"kind": "client-address", "value": "192.0.2.99"}),
            1,
        ),
        (
            "DELETE",
            "/api/v1/allow/client-address/192.0.2.99",
            Value::Null,
            1,
        ),
        ("GET", "/api/v1/accounts", Value::Null, 0),
        ("GET", "/api/v1/accounts/nobody@example.jp", Value::Null, 0),
        (
            "PUT",
            "/api/v1/accounts/x@example.jp/limits",
            json!({"messages_per_hour": 10}),
            1,
        ),
        (
            "POST",
            "/api/v1/accounts/x@example.jp/status",
            json!({"status": "suspended"}),
            1,
        ),
        (
            "GET",
            "/api/v1/accounts/x@example.jp/events",
            Value::Null,
            0,
        ),
        ("GET", "/api/v1/customers", Value::Null, 0),
        ("GET", "/api/v1/customers/C-X", Value::Null, 0),
        (
            "PUT",
            "/api/v1/customers/C-X",
            json!({"name": "X", "contact": "x@example.jp"}),
            1,
        ),
        (
            "POST",
            "/api/v1/customers/C-X/accounts",
            json!({"account": "x@example.jp"}),
            1,
        ),
        (
            "POST",
            "/api/v1/customers/C-X/ladder",
            json!({"step": "warn", "reason": "r"}),
            1,
        ),
        (
            "POST",
            "/api/v1/customers/C-X/ladder",
            json!({"step": "approve", "reason": "r"}),
            2,
        ),
        (
            "POST",
            "/api/v1/customers/C-X/ladder",
            json!({"step": "reject", "reason": "r"}),
            2,
        ),
        (
            "GET",
            "/api/v1/who?address=192.0.2.10&at=1796086800",
            Value::Null,
            0,
        ),
        ("GET", "/api/v1/reports", Value::Null, 0),
        (
            "POST",
            "/api/v1/reports/1/assign",
            json!({"customer": "C-X"}),
            1,
        ),
        ("GET", "/api/v1/cases", Value::Null, 0),
        ("GET", "/api/v1/cases/1", Value::Null, 0),
        ("POST", "/api/v1/cases/1/confirm", Value::Null, 1),
        ("POST", "/api/v1/cases/1/export", Value::Null, 0),
        ("POST", "/api/v1/claims", json!({}), 1),
        ("GET", "/api/v1/users", Value::Null, 3),
        (
            "POST",
            "/api/v1/users",
            json!({"name": "z", "role": "viewer", "password": "zzzzzzzzzzzzz"}),
            3,
        ),
        ("PATCH", "/api/v1/users/z", json!({"disabled": true}), 3),
        ("GET", "/api/v1/tokens", Value::Null, 3),
        ("POST", "/api/v1/tokens", json!({"user": "vera"}), 3),
        ("DELETE", "/api/v1/tokens/9999", Value::Null, 3),
        ("GET", "/api/v1/audit", Value::Null, 0),
        ("GET", "/api/v1/session", Value::Null, 0),
        // The CLI's remaining commands (api_desk.rs).
        (
            "POST",
            "/api/v1/import/sessions?format=static",
            Value::Null,
            1,
        ),
        ("POST", "/api/v1/import/customers", Value::Null, 1),
        (
            "POST",
            "/api/v1/customers/C-X/identities",
            json!({"kind": "hwaddr", "value": "aa:bb:cc:dd:ee:ff"}),
            1,
        ),
        ("POST", "/api/v1/customers/C-X/enforce", Value::Null, 1),
        ("GET", "/api/v1/deliveries", Value::Null, 0),
        ("POST", "/api/v1/deliveries/run", Value::Null, 1),
        ("POST", "/api/v1/deliveries/9999/retry", Value::Null, 1),
        ("POST", "/api/v1/signals", Value::Null, 1),
        ("GET", "/api/v1/learned", Value::Null, 0),
        ("DELETE", "/api/v1/learned/example.org", Value::Null, 1),
        ("DELETE", "/api/v1/learned", Value::Null, 1),
        ("GET", "/api/v1/greylist/triplets", Value::Null, 0),
        ("GET", "/api/v1/events", Value::Null, 0),
    ];
    let clients = [&t.viewer, &t.operator, &t.approver, &t.admin];
    let stranger = daemon.client();
    for (method, path, body, least) in table {
        let send = |client: &Client| {
            if body.is_null() {
                client.send(method, path, &[], b"")
            } else {
                client.send_json(method, path, body)
            }
        };
        let response = send(&stranger);
        assert_eq!(response.status, 401, "stranger {method} {path}");
        for (rank, client) in clients.iter().enumerate() {
            let response = send(client);
            if rank < *least {
                assert_eq!(
                    response.status, 403,
                    "rank {rank} {method} {path}: {}",
                    response.body
                );
                assert!(response.json()["error"].as_str().unwrap().contains("role"));
            } else {
                assert!(
                    ![401, 403].contains(&response.status),
                    "rank {rank} {method} {path}: {} {}",
                    response.status,
                    response.body
                );
            }
        }
    }
}

#[test]
fn an_allow_entry_changes_the_answer_at_once_and_is_audited() {
    let daemon = Daemon::start_with("", "[dnsbl]\nzones = []\n");
    let t = team(&daemon);
    let transaction = json!({
        "client_address": "192.0.2.20",
        "client_name": "unknown",
        "sender": "someone@example.org",
        "recipient": "user@example.net",
    });
    let before = expect(
        t.viewer.post_json("/api/v1/check", &transaction),
        200,
        "check",
    );
    assert_eq!(before["verdict"]["action"], "greylist", "{before}");
    assert!(
        before["postfix_action"]
            .as_str()
            .unwrap()
            .starts_with("DEFER_IF_PERMIT"),
        "{before}"
    );

    let entry =
        json!({"kind": "client-address", "value": "192.0.2.20", "note": "partner", "scope": "all"});
    let added = expect(
        t.operator.post_json("/api/v1/allow", &entry),
        201,
        "allow add",
    );
    assert_eq!(added["scope"], "all");
    expect(
        t.operator.post_json("/api/v1/allow", &entry),
        200,
        "the same entry again",
    );
    let listed = expect(t.viewer.get("/api/v1/allow"), 200, "allow list");
    assert_eq!(listed["entries"].as_array().unwrap().len(), 1);
    let after = expect(
        t.viewer.post_json("/api/v1/check", &transaction),
        200,
        "check",
    );
    assert_eq!(after["verdict"]["action"], "pass", "{after}");
    // The daemon itself answers the policy socket the same way.
    let stats = expect(t.viewer.get("/api/v1/stats"), 200, "stats");
    assert_eq!(stats["allow_entries"], 1);

    expect(
        t.operator.delete("/api/v1/allow/client-address/192.0.2.20"),
        200,
        "remove",
    );
    expect(
        t.operator.delete("/api/v1/allow/client-address/192.0.2.20"),
        404,
        "gone",
    );
    let again = expect(
        t.viewer.post_json("/api/v1/check", &transaction),
        200,
        "check",
    );
    assert_eq!(again["verdict"]["action"], "greylist");

    let entries = audit_actions(&t.viewer);
    let add = entries.iter().find(|e| e["action"] == "allow.add").unwrap();
    assert_eq!(add["user"], "otto");
    assert_eq!(add["address"], "127.0.0.1");
    assert!(add["via"].as_str().unwrap().starts_with("token:"));
    assert_eq!(add["target"], "client-address 192.0.2.20");
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["action"] == "allow.add")
            .count(),
        2
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["action"] == "allow.remove")
            .count(),
        1,
        "only the one that removed"
    );
}

#[test]
fn a_recorded_greylist_entry_is_found_and_deleted() {
    let daemon = Daemon::start_with("", "[dnsbl]\nzones = []\n");
    let t = team(&daemon);
    // A real attempt through the policy socket records a triplet.
    let request = "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.30\n\
                   client_name=unknown\nsender=a@example.org\nrecipient=b@example.net\n\n";
    let mut socket = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    socket.write_all(request.as_bytes()).unwrap();
    let mut reply = [0u8; 256];
    let n = std::io::Read::read(&mut socket, &mut reply).unwrap();
    assert!(String::from_utf8_lossy(&reply[..n]).starts_with("action=DEFER_IF_PERMIT"));

    let found = expect(
        t.viewer.get("/api/v1/greylist?client=192.0.2.30"),
        200,
        "find",
    );
    let triplets = found["triplets"].as_array().unwrap();
    assert_eq!(triplets.len(), 1, "{found}");
    assert_eq!(triplets[0]["sender"], "a@example.org");
    assert_eq!(triplets[0]["attempts"], 1);
    expect(
        t.viewer.get("/api/v1/greylist"),
        400,
        "a filter is required",
    );
    expect(
        t.viewer.get("/api/v1/greylist?client=not-an-ip"),
        400,
        "bad address",
    );
    let deleted = expect(
        t.operator.delete("/api/v1/greylist?client=192.0.2.30"),
        200,
        "delete",
    );
    assert_eq!(deleted["triplets"], 1);
    let found = expect(
        t.viewer.get("/api/v1/greylist?client=192.0.2.30"),
        200,
        "find",
    );
    assert!(found["triplets"].as_array().unwrap().is_empty());
}

#[test]
fn accounts_are_limited_suspended_and_terminated_through_the_rules() {
    let daemon = Daemon::start_with("", "[dnsbl]\nzones = []\n");
    let t = team(&daemon);
    let user = "taro@example.jp";
    let submission = json!({
        "client_address": "198.51.100.7", "sender": user, "recipient": "x@example.org",
        "sasl_username": user, "server_port": 587,
    });
    expect(
        t.viewer.get(&format!("/api/v1/accounts/{user}")),
        404,
        "unknown",
    );
    expect(
        t.operator.post_json(
            &format!("/api/v1/accounts/{user}/status"),
            &json!({"status": "suspended"}),
        ),
        404,
        "no silent creation",
    );
    let put = expect(
        t.operator.send_json(
            "PUT",
            &format!("/api/v1/accounts/{user}/limits"),
            &json!({"messages_per_hour": 20}),
        ),
        200,
        "limits",
    );
    assert_eq!(put["limits"]["messages_per_hour"], 20, "{put}");
    expect(
        t.operator.send_json(
            "PUT",
            &format!("/api/v1/accounts/{user}/limits"),
            &json!({"messages_per_hour": 0}),
        ),
        400,
        "zero is a suspension",
    );
    let sends = expect(
        t.viewer.post_json("/api/v1/check", &submission),
        200,
        "check",
    );
    assert_eq!(sends["verdict"]["action"], "pass", "{sends}");
    let suspended = expect(
        t.operator.post_json(
            &format!("/api/v1/accounts/{user}/status"),
            &json!({"status": "suspended", "note": "spam"}),
        ),
        200,
        "suspend",
    );
    assert_eq!(suspended["status"], "suspended");
    let refused = expect(
        t.viewer.post_json("/api/v1/check", &submission),
        200,
        "check",
    );
    assert_eq!(refused["verdict"]["action"], "reject", "{refused}");
    expect(
        t.operator.post_json(
            &format!("/api/v1/accounts/{user}/status"),
            &json!({"status": "terminated"}),
        ),
        200,
        "terminate",
    );
    expect(
        t.operator.post_json(
            &format!("/api/v1/accounts/{user}/status"),
            &json!({"status": "active"}),
        ),
        409,
        "termination is final",
    );
    expect(
        t.operator.post_json(
            &format!("/api/v1/accounts/{user}/status"),
            &json!({"status": "frozen"}),
        ),
        400,
        "bad status",
    );
    expect(
        t.operator.post_json(
            &format!("/api/v1/accounts/{user}/status"),
            &json!({"status": "active", "force": true}),
        ),
        200,
        "forced",
    );
    let events = expect(
        t.viewer.get(&format!("/api/v1/accounts/{user}/events")),
        200,
        "events",
    );
    assert_eq!(events["events"].as_array().unwrap().len(), 3, "{events}");
    let list = expect(t.viewer.get("/api/v1/accounts"), 200, "list");
    assert_eq!(list["accounts"][0]["username"], user);
}

#[test]
fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let daemon = Daemon::start_with("max_body_size = 4096\n", DESK);
    let t = team(&daemon);
    let before = audit_actions(&t.admin).len();
    // (method, path, content type, body, status)
    let big = vec![b'{'; 8192];
    let table: &[(&str, &str, &str, &[u8], u16)] = &[
        (
            "POST",
            "/api/v1/allow",
            "application/json",
            b"{\"kind\": ",
            400,
        ),
        ("POST", "/api/v1/allow", "application/json", b"[1, 2]", 400),
        (
            "POST",
            "/api/v1/allow",
            "application/json",
            b"{\"kind\": \"client-address\", \"value\": \"192.0.2.1\", \"bogus\": 1}",
            400,
        ),
        (
            "POST",
            "/api/v1/allow",
            "application/json",
            b"{\"kind\": \"client-address\", \"value\": \"not an address\"}",
            400,
        ),
        (
            "POST",
            "/api/v1/allow",
            "application/json",
            b"{\"kind\": \"sender\", \"value\": \"a@example.org\", \"scope\": \"all\"}",
            400,
        ),
        (
            "POST",
            "/api/v1/allow",
            "application/json",
            b"{\"kind\": \"client-address\", \"value\": \"192.0.2.1\", \"expires_at\": 1}",
            400,
        ),
        ("POST", "/api/v1/allow", "text/plain", b"{}", 415),
        ("POST", "/api/v1/allow", "application/json", &big, 413),
        ("POST", "/api/v1/reports", "message/rfc822", &big, 413),
        ("POST", "/api/v1/reports", "message/rfc822", b"", 400),
        (
            "POST",
            "/api/v1/check",
            "application/json",
            b"{\"client_address\": \"300.1.1.1\", \"recipient\": \"a\"}",
            400,
        ),
        ("GET", "/api/v1/accounts?limit=lots", "", b"", 400),
        ("GET", "/api/v1/cases/abc", "", b"", 400),
        ("GET", "/api/v1/cases/424242", "", b"", 404),
        ("GET", "/api/v1/customers/C-NOBODY", "", b"", 404),
        ("POST", "/api/v1/cases/424242/confirm", "", b"", 404),
        ("POST", "/api/v1/cases/424242/export", "", b"", 404),
        (
            "POST",
            "/api/v1/reports/424242/assign",
            "application/json",
            b"{\"customer\": \"C-NOBODY\"}",
            404,
        ),
        (
            "POST",
            "/api/v1/customers/C-NOBODY/ladder",
            "application/json",
            b"{\"step\": \"warn\", \"reason\": \"r\"}",
            404,
        ),
        (
            "POST",
            "/api/v1/customers/C-NOBODY/ladder",
            "application/json",
            b"{\"step\": \"explode\", \"reason\": \"r\"}",
            400,
        ),
        (
            "POST",
            "/api/v1/customers/C-NOBODY/accounts",
            "application/json",
            b"{\"account\": \"nobody@example.jp\"}",
            404,
        ),
        ("GET", "/api/v1/who?address=nowhere&at=1", "", b"", 400),
        ("GET", "/api/v1/reports?state=sideways", "", b"", 400),
        ("DELETE", "/api/v1/tokens/424242", "", b"", 404),
        ("PUT", "/api/v1/audit", "", b"", 405),
        (
            "PATCH",
            "/api/v1/users/nobody",
            "application/json",
            b"{\"disabled\": true}",
            404,
        ),
        (
            "PATCH",
            "/api/v1/users/vera",
            "application/json",
            b"{\"role\": \"root\", \"disabled\": true}",
            400,
        ),
        (
            "POST",
            "/api/v1/users",
            "application/json",
            b"{\"name\": \"vera\", \"role\": \"viewer\", \"password\": \"long-enough-pw\"}",
            409,
        ),
        (
            "POST",
            "/api/v1/users",
            "application/json",
            b"{\"name\": \"new\", \"role\": \"viewer\", \"password\": \"short\"}",
            400,
        ),
        (
            "POST",
            "/api/v1/tokens",
            "application/json",
            b"{\"user\": \"nobody\"}",
            404,
        ),
    ];
    for (method, path, content_type, body, status) in table {
        let headers: Vec<(&str, &str)> = if content_type.is_empty() {
            vec![]
        } else {
            vec![("Content-Type", content_type)]
        };
        let response = t.admin.send(method, path, &headers, body);
        assert_eq!(
            response.status, *status,
            "{method} {path}: {}",
            response.body
        );
        let error = response.json();
        assert_eq!(error["status"], *status, "{method} {path}: {error}");
        assert!(
            !error["error"].as_str().unwrap().is_empty(),
            "{method} {path}"
        );
    }
    // Nothing changed: no entries, no reports, no users; vera still a viewer, enabled.
    assert!(
        expect(t.viewer.get("/api/v1/allow"), 200, "allow")["entries"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        expect(t.viewer.get("/api/v1/reports"), 200, "reports")["reports"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let users = expect(t.admin.get("/api/v1/users"), 200, "users");
    let vera = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "vera")
        .unwrap()
        .clone();
    assert_eq!(
        (vera["role"].clone(), vera["disabled"].clone()),
        (json!("viewer"), json!(false))
    );
    assert_eq!(users["users"].as_array().unwrap().len(), 4);
    assert_eq!(
        audit_actions(&t.admin).len(),
        before,
        "no change, no audit entry"
    );
}

#[test]
fn a_report_becomes_a_case_whose_suspension_an_approver_approves() {
    let daemon = Daemon::start_with("", DESK);
    let t = team(&daemon);
    let account = "alice-smtp@isp.example.jp";
    // Provisioned through the API; the address history through the CLI (a file import).
    expect(
        t.operator.send_json(
            "PUT",
            &format!("/api/v1/accounts/{account}/limits"),
            &json!({}),
        ),
        200,
        "account",
    );
    let customer = expect(
        t.operator.send_json(
            "PUT",
            "/api/v1/customers/C-ALICE",
            &json!({"name": "Alice", "contact": "alice@example.jp"}),
        ),
        200,
        "customer",
    );
    assert_eq!(customer["status"], "active");
    expect(
        t.operator.post_json(
            "/api/v1/customers/C-ALICE/accounts",
            &json!({"account": account}),
        ),
        200,
        "link",
    );
    let (code, _, err) = daemon.cli(
        &[
            "customer",
            "link",
            "C-ALICE",
            "--radius-user",
            "alice@isp.example.jp",
        ],
        "",
    );
    assert_eq!(code, Some(0), "{err}");
    let detail = desk_fixture("history", "radius-detail");
    let (code, _, err) = daemon.cli(
        &[
            "sessions",
            "import",
            "--format",
            "radius-detail",
            detail.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(code, Some(0), "{err}");

    let who = expect(
        t.viewer.get("/api/v1/who?address=192.0.2.10&at=1796086800"),
        200,
        "who",
    );
    assert_eq!(who["outcome"], "customer", "{who}");
    assert_eq!(who["customer"], "C-ALICE");

    let report = std::fs::read_to_string(desk_fixture("reports", "arf-rfc5965.eml"))
        .unwrap()
        .replace("192.0.2.1", "192.0.2.10");
    let ingested = expect(
        t.operator
            .post_raw("/api/v1/reports", "message/rfc822", report.as_bytes()),
        201,
        "ingest",
    );
    assert_eq!(ingested["customer"], "C-ALICE", "{ingested}");
    let case_id = ingested["case_id"].as_i64().unwrap();
    let again = expect(
        t.operator
            .post_raw("/api/v1/reports", "message/rfc822", report.as_bytes()),
        201,
        "again",
    );
    assert_eq!(
        (again["duplicate"].clone(), again["report_id"].clone()),
        (json!(true), ingested["report_id"].clone())
    );
    let reports = expect(t.viewer.get("/api/v1/reports"), 200, "reports");
    assert_eq!(reports["reports"].as_array().unwrap().len(), 1);
    let cases = expect(t.viewer.get("/api/v1/cases?state=open"), 200, "cases");
    assert_eq!(cases["cases"][0]["id"], case_id, "{cases}");
    let case = expect(
        t.viewer.get(&format!("/api/v1/cases/{case_id}")),
        200,
        "case",
    );
    assert_eq!(
        case["reports"][0]["attribution"]["customer"], "C-ALICE",
        "the evidence: {case}"
    );

    let submission = json!({
        "client_address": "198.51.100.200", "sender": account, "recipient": "x@example.org",
        "sasl_username": account, "server_port": 587,
    });
    let sends = expect(
        t.viewer.post_json("/api/v1/check", &submission),
        200,
        "check",
    );
    assert_eq!(sends["verdict"]["action"], "pass");

    // A direct suspension needs a second person: over the API, only through a proposal.
    let direct = json!({"step": "suspend", "reason": "spam run"});
    let refused = expect(
        t.operator
            .post_json("/api/v1/customers/C-ALICE/ladder", &direct),
        409,
        "direct suspend",
    );
    assert!(
        refused["error"].as_str().unwrap().contains("approv"),
        "{refused}"
    );
    assert_eq!(
        expect(
            t.viewer.post_json("/api/v1/check", &submission),
            200,
            "check"
        )["verdict"]["action"],
        "pass"
    );
    // Confirming proposes a suspension (the policy wants approval); nothing enforced yet.
    let confirmed = expect(
        t.operator.post(&format!("/api/v1/cases/{case_id}/confirm")),
        200,
        "confirm",
    );
    assert!(confirmed["ladder"]["proposal"].is_object(), "{confirmed}");
    assert_eq!(
        expect(
            t.viewer.post_json("/api/v1/check", &submission),
            200,
            "check"
        )["verdict"]["action"],
        "pass"
    );
    let approve = json!({"step": "approve", "reason": "confirmed spam run"});
    expect(
        t.operator
            .post_json("/api/v1/customers/C-ALICE/ladder", &approve),
        403,
        "operators cannot approve",
    );
    let approved = expect(
        t.approver
            .post_json("/api/v1/customers/C-ALICE/ladder", &approve),
        200,
        "approve",
    );
    assert_eq!(approved["accounts"][0]["to"], "suspended", "{approved}");
    let refused = expect(
        t.viewer.post_json("/api/v1/check", &submission),
        200,
        "check",
    );
    assert_eq!(refused["verdict"]["action"], "reject", "{refused}");
    let shown = expect(t.viewer.get("/api/v1/customers/C-ALICE"), 200, "customer");
    assert_eq!(shown["customer"]["status"], "suspended", "{shown}");
    assert_eq!(shown["accounts"][0], account);

    let claim = json!({
        "customer": "C-ALICE", "case_ids": [case_id], "amount": 5000, "currency": "JPY",
        "basis": "abuse desk hours", "items": [{"description": "2 h handling", "amount": 5000}],
    });
    let filed = expect(t.operator.post_json("/api/v1/claims", &claim), 201, "claim");
    assert!(filed["id"].as_i64().unwrap() > 0, "{filed}");
    let mut stray = claim.clone();
    stray["case_ids"] = json!([424242]);
    expect(
        t.operator.post_json("/api/v1/claims", &stray),
        404,
        "unknown case",
    );
    let export = expect(
        t.viewer.post(&format!("/api/v1/cases/{case_id}/export")),
        200,
        "export",
    );
    let files = export["files"].as_array().unwrap();
    assert!(
        files
            .iter()
            .any(|f| f["text"].as_str().unwrap().contains("192.0.2.10")),
        "{export}"
    );
    assert!(
        files
            .iter()
            .all(|f| f["sha256"].as_str().unwrap().len() == 64)
    );

    let resumed = expect(
        t.operator.post_json(
            "/api/v1/customers/C-ALICE/ladder",
            &json!({"step": "resume", "reason": "cleaned"}),
        ),
        200,
        "resume",
    );
    assert_eq!(resumed["accounts"][0]["to"], "active", "{resumed}");
    assert_eq!(
        expect(
            t.viewer.post_json("/api/v1/check", &submission),
            200,
            "check"
        )["verdict"]["action"],
        "pass"
    );
    let entries = audit_actions(&t.viewer);
    let approval = entries
        .iter()
        .find(|e| e["action"] == "ladder.approve")
        .unwrap();
    assert_eq!(approval["user"], "anna");
    for action in [
        "report.ingest",
        "case.confirm",
        "ladder.resume",
        "customer.put",
        "case.export",
    ] {
        assert!(entries.iter().any(|e| e["action"] == action), "{action}");
    }
}

#[test]
fn admins_manage_users_and_tokens_over_the_api() {
    let daemon = Daemon::start();
    let t = team(&daemon);
    let added = expect(
        t.admin.post_json(
            "/api/v1/users",
            &json!({"name": "Neo", "role": "operator", "password": "neo-secret-password"}),
        ),
        201,
        "add",
    );
    assert_eq!(added["name"], "neo", "names are lowercased");
    let neo = daemon.login("neo");
    assert_eq!(
        expect(neo.get("/api/v1/session"), 200, "session")["role"],
        "operator"
    );
    let token = expect(
        t.admin
            .post_json("/api/v1/tokens", &json!({"user": "neo", "label": "ci"})),
        201,
        "token",
    );
    let secret = token["secret"].as_str().unwrap().to_string();
    let by_token = Client {
        auth: api::Auth::Bearer(secret.clone()),
        ..daemon.client()
    };
    expect(by_token.get("/api/v1/session"), 200, "token works");
    let listed = expect(t.admin.get("/api/v1/tokens?user=neo"), 200, "tokens");
    assert!(!listed.to_string().contains(&secret), "never shown again");
    // Disabling ends the session and stops the token; enabling brings the token back.
    expect(
        t.admin
            .send_json("PATCH", "/api/v1/users/neo", &json!({"disabled": true})),
        200,
        "disable",
    );
    expect(neo.get("/api/v1/session"), 401, "session ended");
    expect(by_token.get("/api/v1/session"), 401, "token stopped");
    let changed = expect(
        t.admin.send_json(
            "PATCH",
            "/api/v1/users/neo",
            &json!({"disabled": false, "role": "viewer"}),
        ),
        200,
        "enable",
    );
    assert_eq!(changed["role"], "viewer");
    let id = token["id"].as_i64().unwrap();
    assert_eq!(
        expect(by_token.get("/api/v1/session"), 200, "back")["role"],
        "viewer"
    );
    expect(
        t.admin.delete(&format!("/api/v1/tokens/{id}")),
        200,
        "revoke",
    );
    expect(by_token.get("/api/v1/session"), 401, "revoked");
    let entries = audit_actions(&t.admin);
    let add = entries.iter().find(|e| e["action"] == "user.add").unwrap();
    assert_eq!(
        (add["user"].clone(), add["target"].clone()),
        (json!("adam"), json!("neo"))
    );
    assert!(
        !entries.iter().any(|e| e.to_string().contains(&secret)),
        "secrets stay out of the audit"
    );
}

#[test]
fn the_openapi_document_describes_every_route() {
    let daemon = Daemon::start();
    // Like everything but /health, it needs a caller.
    expect(daemon.client().get("/api/v1/openapi.json"), 401, "openapi");
    daemon.add_user("vera", "viewer");
    let doc = expect(
        daemon.bearer("vera").get("/api/v1/openapi.json"),
        200,
        "openapi",
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/login",
        "/api/v1/check",
        "/api/v1/allow",
        "/api/v1/allow/{kind}/{value}",
        "/api/v1/accounts/{name}/status",
        "/api/v1/customers/{id}/ladder",
        "/api/v1/who",
        "/api/v1/reports",
        "/api/v1/cases/{id}/export",
        "/api/v1/claims",
        "/api/v1/tokens/{id}",
        "/api/v1/audit",
        "/api/v1/import/sessions",
        "/api/v1/import/customers",
        "/api/v1/customers/{id}/identities",
        "/api/v1/customers/{id}/enforce",
        "/api/v1/deliveries",
        "/api/v1/deliveries/run",
        "/api/v1/deliveries/{id}/retry",
        "/api/v1/signals",
        "/api/v1/learned",
        "/api/v1/learned/{domain}",
        "/api/v1/greylist/triplets",
        "/api/v1/events",
    ] {
        assert!(paths.contains_key(path), "{path} in {:?}", paths.keys());
    }
    assert!(doc["components"]["securitySchemes"]["token"].is_object());
}

/// `POST /api/v1/classify` answers what `spamgate classify --explain` answers for the
/// same configuration: its own exceptions and disabled rules included.
#[test]
fn classify_uses_the_daemons_rules_and_agrees_with_the_cli() {
    let daemon = Daemon::start_with(
        "",
        "[dnsbl]\nzones = []\n[rdns]\nexceptions = [\".mx.example.net\"]\n",
    );
    let t = team(&daemon);
    // (name, class the API must give)
    let table = [
        ("203-0-113-5.adsl.example.net", "generic"),
        ("p203-0-113-5.mx.example.net", "excepted"),
        ("mail.example.org", "proper"),
        ("  DHCP-198-51-100-7.pool.example.com.  ", "generic"),
        ("not a host name", "generic"),
    ];
    let names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
    let answers = expect(
        t.viewer
            .post_json("/api/v1/classify", &json!({ "names": names })),
        200,
        "classify",
    );
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), table.len());
    for ((name, class), answer) in table.iter().zip(answers) {
        assert_eq!(answer["class"], *class, "{name}: {answer}");
        // The CLI, on the same configuration, says the same rule and reason.
        let (code, out, err) = daemon.cli(&["classify", "--explain", "--json", name.trim()], "");
        assert_eq!(code, Some(0), "{err}");
        let cli: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(cli["class"]["class"], *class, "{name}: cli {cli}");
        assert_eq!(cli["class"]["rule"], answer["rule"], "{name}");
        assert_eq!(cli["matched_rules"], answer["matched_rules"], "{name}");
    }
    // Bounded: none, or more than the limit, is a 400.
    let too_many: Vec<String> = (0..1001).map(|i| format!("h{i}.example.net")).collect();
    for body in [json!({"names": []}), json!({ "names": too_many })] {
        expect(
            t.viewer.post_json("/api/v1/classify", &body),
            400,
            "classify bounds",
        );
    }
}
