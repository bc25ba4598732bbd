//! The admin API's authentication against a real `spamgate serve`: sessions, CSRF,
//! tokens from the CLI, roles, the login rate limit, and nothing answered to strangers.

mod api;
use api::{Auth, Client, Daemon, password_of};
use serde_json::json;

#[test]
fn only_health_and_login_answer_without_authentication() {
    let daemon = Daemon::start();
    let stranger = daemon.client();
    let health = stranger.get("/health");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    // (method, path) → 401 with a JSON error body, whatever the path.
    for (method, path) in [
        ("GET", "/api/v1/session"),
        ("GET", "/api/v1/no-such-thing"),
        ("GET", "/"),
        ("GET", "/anything"),
        ("POST", "/logout"),
    ] {
        let response = stranger.send(method, path, &[], b"");
        assert_eq!(response.status, 401, "{method} {path}: {}", response.body);
        assert_eq!(response.json()["status"], 401, "{method} {path}");
        assert!(
            response.json()["error"]
                .as_str()
                .unwrap()
                .contains("authentication")
        );
    }
    // A wrong bearer token is refused outright, never treated as no credential.
    let forged = Client {
        auth: Auth::Bearer("sgt_0000".into()),
        ..stranger.clone()
    };
    assert_eq!(forged.get("/health").status, 401);
    let malformed = stranger.send(
        "GET",
        "/api/v1/session",
        &[("Authorization", "Basic eA==")],
        b"",
    );
    assert_eq!(malformed.status, 401);
}

#[test]
fn a_browser_login_sets_a_strict_http_only_cookie_and_redirects_locally() {
    let daemon = Daemon::start();
    daemon.add_user("alice", "viewer");
    let form = |user: &str, password: &str, next: &str| {
        daemon.client().send(
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("user={user}&password={password}&next={next}").as_bytes(),
        )
    };
    let ok = form("alice", &password_of("alice"), "%2Fdesk");
    assert_eq!(ok.status, 303, "{ok:?}");
    assert_eq!(ok.header("location"), Some("/desk"));
    let cookie = ok.header("set-cookie").unwrap();
    for attribute in ["spamgate_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no TLS here and secure_cookie is off"
    );
    // Another site as `next` is not followed.
    let off_site = form("alice", &password_of("alice"), "%2F%2Fevil.example");
    assert_eq!(off_site.header("location"), Some("/"));
    let bad = form("alice", "wrong-password-here", "");
    assert_eq!(bad.status, 303);
    assert_eq!(bad.header("location"), Some("/login?failed=1"));
    assert!(bad.header("set-cookie").is_none());
}

#[test]
fn a_session_needs_its_csrf_token_for_every_change() {
    let daemon = Daemon::start();
    daemon.add_user("olga", "operator");
    let session = daemon.login("olga");
    let who = session.get("/api/v1/session");
    assert_eq!(who.status, 200, "{}", who.body);
    assert_eq!(who.json()["user"], "olga");
    assert_eq!(who.json()["role"], "operator");
    let Auth::Session { cookie, csrf } = session.auth.clone() else {
        unreachable!()
    };
    assert_eq!(who.json()["csrf"], csrf.as_str());

    // Without the token, or with another one: 403 before any handler, session intact.
    let refused = session.without_csrf().send("POST", "/logout", &[], b"");
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.json()["error"].as_str().unwrap().contains("CSRF"));
    let wrong = Client {
        auth: Auth::Session {
            cookie: cookie.clone(),
            csrf: "0".repeat(64),
        },
        ..session.clone()
    };
    assert_eq!(wrong.send("POST", "/logout", &[], b"").status, 403);
    // A form field with the wrong token is refused too; with the right one it passes.
    let form = |token: &str| {
        session.without_csrf().send(
            "POST",
            "/logout",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("csrf={token}").as_bytes(),
        )
    };
    assert_eq!(form("nope").status, 403);
    assert_eq!(
        session.get("/api/v1/session").status,
        200,
        "still logged in"
    );
    let out = form(&csrf);
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(out.header("location"), Some("/login"));
    // The session is gone: the cookie no longer authenticates.
    assert_eq!(session.get("/api/v1/session").status, 401);
}

#[test]
fn tokens_from_the_cli_authenticate_until_revoked_and_need_no_csrf() {
    let daemon = Daemon::start();
    daemon.add_user("bot", "viewer");
    let token = daemon.token("bot");
    assert!(token.starts_with("sgt_") && token.len() == 68, "{token}");
    let client = Client {
        auth: Auth::Bearer(token.clone()),
        ..daemon.client()
    };
    let who = client.get("/api/v1/session");
    assert_eq!(who.status, 200, "{}", who.body);
    assert_eq!(
        who.json(),
        json!({"user": "bot", "role": "viewer", "csrf": null})
    );
    assert_eq!(client.send("POST", "/logout", &[], b"").status, 204);

    let (code, listed, _) = daemon.cli(&["admin", "token", "list", "--json"], "");
    assert_eq!(code, Some(0));
    let listed: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(listed["user"], "bot");
    assert!(listed.get("secret").is_none() && !listed.to_string().contains(&token[4..]));
    let id = listed["id"].to_string();
    let (code, _, err) = daemon.cli(&["admin", "token", "revoke", &id], "");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(client.get("/api/v1/session").status, 401, "revoked");
    let (code, _, err) = daemon.cli(&["admin", "token", "revoke", &id], "");
    assert_eq!(code, Some(64), "revoking twice is a usage error: {err}");
}

#[test]
fn the_cli_refuses_bad_users_and_passwords() {
    let daemon = Daemon::start();
    // (args, stdin, exit code, text in stderr)
    let check = |args: &[&str], stdin: &str, code: i32, text: &str| {
        let (got, out, err) = daemon.cli(args, stdin);
        assert_eq!(got, Some(code), "{args:?}: {out}{err}");
        assert!(err.contains(text), "{args:?}: {err}");
    };
    check(
        &["admin", "user", "add", "a", "--role", "root"],
        "x\n",
        64,
        "unknown role",
    );
    check(
        &["admin", "user", "add", "a", "--role", "admin"],
        "short\n",
        64,
        "12 to 1024",
    );
    check(
        &["admin", "user", "add", "a b", "--role", "admin"],
        "long-enough-pass\n",
        64,
        "user name",
    );
    check(
        &["admin", "user", "add", "a", "--role", "admin"],
        "long-enough-pass\n",
        0,
        "",
    );
    check(
        &["admin", "user", "add", "a", "--role", "admin"],
        "long-enough-pass\n",
        64,
        "already exists",
    );
    check(&["admin", "token", "add", "nobody"], "", 64, "no user");
    let (_, out, _) = daemon.cli(&["admin", "user", "list"], "");
    assert_eq!(out, "a\tadmin\n");
}

#[test]
fn failed_logins_are_limited_per_user_and_per_address() {
    let daemon = Daemon::start_with("login_failures = 3\nlogin_window = \"1h\"\n", "");
    daemon.add_user("carol", "viewer");
    daemon.add_user("dave", "viewer");
    let client = daemon.client();
    for _ in 0..3 {
        assert_eq!(client.login("carol", "wrong-password-x").status, 401);
    }
    // Now refused without a password check, even with the right password.
    let limited = client.login("carol", &password_of("carol"));
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(
        limited.json()["error"]
            .as_str()
            .unwrap()
            .contains("too many")
    );
    // The address is over its limit too, so another user from it is refused as well.
    assert_eq!(client.login("dave", &password_of("dave")).status, 429);
    // The attempts are in the audit trail.
    let (code, out, _) = daemon.cli(&["admin", "audit", "--json"], "");
    assert_eq!(code, Some(0));
    let actions: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "login.failed").count(),
        3,
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| a == "login.refused"), "{actions:?}");
}
