//! The OpenAPI document against the real API, so neither can drift from the other:
//! - every route the router has ([`spamgate_admin::route_table`], built from the same
//!   lines as the router) is in the document, and every operation in the document is a
//!   route;
//! - a real `spamgate serve` (real SQLite, real policy socket) is called on every
//!   operation, happy path and error paths, and each JSON answer is validated against
//!   the schema the document gives for that path, method and status: a status the
//!   document does not list, a field it does not describe, a missing required field or
//!   a wrong type fails. Happy-path request bodies are validated against the
//!   document's request schema too (a body the server takes must be one it describes).
//!
//! The validator covers the subset utoipa emits (`$ref`, `type` as a name or a list,
//! `properties`, `required`, `additionalProperties`, `items`, `prefixItems`, `enum`,
//! `allOf`, `oneOf`, `anyOf`, `minimum`); an object's properties are closed across
//! `allOf` branches like JSON Schema's `unevaluatedProperties: false`, and a keyword
//! it does not know fails the test instead of being ignored.

mod api;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use api::{Client, Daemon, Response};
use serde_json::{Value, json};

// A hook that always fails: its deliveries stay pending, so a retry has one to run.
const DESK: &str = "[dnsbl]\nzones = []\n[desk]\nwarn_on_first = false\nsuspend_after = 1\n\
                    hook_command = [\"/bin/false\"]\n";

fn desk_fixture(kind: &str, name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../desk/tests")
        .join(kind)
        .join(name)
}

// --- the validator

/// Which properties of an object value a schema accounted for.
enum Evaluated {
    Any,
    Keys(BTreeSet<String>),
}

impl Evaluated {
    fn none() -> Evaluated {
        Evaluated::Keys(BTreeSet::new())
    }
    fn union(self, other: Evaluated) -> Evaluated {
        match (self, other) {
            (Evaluated::Keys(mut a), Evaluated::Keys(b)) => {
                a.extend(b);
                Evaluated::Keys(a)
            }
            _ => Evaluated::Any,
        }
    }
}

/// Annotations: they say nothing about validity.
const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "format",
    "example",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
];

struct Validator<'a> {
    doc: &'a Value,
}

impl Validator<'_> {
    /// `value` against `schema`, its object properties closed.
    fn check(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let evaluated = self.eval(schema, value, at)?;
        if let (Value::Object(map), Evaluated::Keys(keys)) = (value, evaluated) {
            for key in map.keys() {
                if !keys.contains(key) {
                    return Err(format!(
                        "{at}.{key}: the answer has it, the schema does not describe it"
                    ));
                }
            }
        }
        Ok(())
    }

    fn resolve(&self, reference: &str) -> Result<&Value, String> {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .ok_or_else(|| format!("unsupported $ref {reference}"))?;
        self.doc["components"]["schemas"]
            .get(name)
            .ok_or_else(|| format!("$ref {reference} names no schema"))
    }

    fn eval(&self, schema: &Value, value: &Value, at: &str) -> Result<Evaluated, String> {
        let schema = match schema {
            Value::Bool(true) => return Ok(Evaluated::Any),
            Value::Bool(false) => return Err(format!("{at}: the schema allows nothing here")),
            Value::Object(schema) => schema,
            other => return Err(format!("{at}: not a schema: {other}")),
        };
        let mut evaluated = Evaluated::none();
        let mut object_schema = false;
        for (keyword, arg) in schema {
            match keyword.as_str() {
                k if ANNOTATIONS.contains(&k) => {}
                "$ref" => {
                    let target = self.resolve(arg.as_str().unwrap_or_default())?;
                    evaluated = evaluated.union(self.eval(target, value, at)?);
                }
                "type" => {
                    let types: Vec<&str> = match arg {
                        Value::String(t) => vec![t.as_str()],
                        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                        _ => return Err(format!("{at}: bad type {arg}")),
                    };
                    if !types.iter().any(|t| type_matches(t, value)) {
                        return Err(format!("{at}: {value} is not of type {arg}"));
                    }
                    object_schema |= types.contains(&"object");
                }
                "enum" => {
                    let allowed = arg.as_array().ok_or("enum is not a list")?;
                    if !allowed.contains(value) {
                        return Err(format!("{at}: {value} is not one of {arg}"));
                    }
                }
                "minimum" => {
                    if let (Some(n), Some(min)) = (value.as_f64(), arg.as_f64())
                        && n < min
                    {
                        return Err(format!("{at}: {value} is below the minimum {min}"));
                    }
                }
                "maximum" => {
                    if let (Some(n), Some(max)) = (value.as_f64(), arg.as_f64())
                        && n > max
                    {
                        return Err(format!("{at}: {value} is above the maximum {max}"));
                    }
                }
                "required" => {
                    if let Value::Object(map) = value {
                        for name in arg.as_array().ok_or("required is not a list")? {
                            let name = name.as_str().unwrap_or_default();
                            if !map.contains_key(name) {
                                return Err(format!("{at}: required field {name:?} is missing"));
                            }
                        }
                    }
                }
                "properties" => {
                    object_schema = true;
                    let properties = arg.as_object().ok_or("properties is not a map")?;
                    if let Value::Object(map) = value {
                        for (name, sub) in properties {
                            if let Some(v) = map.get(name) {
                                self.check(sub, v, &format!("{at}.{name}"))?;
                            }
                        }
                    }
                    evaluated =
                        evaluated.union(Evaluated::Keys(properties.keys().cloned().collect()));
                }
                "additionalProperties" => {
                    object_schema = true;
                    if let Value::Object(map) = value {
                        let known: BTreeSet<&String> = schema
                            .get("properties")
                            .and_then(Value::as_object)
                            .map(|p| p.keys().collect())
                            .unwrap_or_default();
                        for (name, v) in map {
                            if !known.contains(name) {
                                self.check(arg, v, &format!("{at}.{name}"))?;
                            }
                        }
                    }
                    evaluated = Evaluated::Any;
                }
                "items" | "prefixItems" => {
                    let Value::Array(items) = value else { continue };
                    let prefix = schema
                        .get("prefixItems")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if keyword == "prefixItems" {
                        for (i, (sub, v)) in prefix.iter().zip(items).enumerate() {
                            self.check(sub, v, &format!("{at}[{i}]"))?;
                        }
                    } else {
                        for (i, v) in items.iter().enumerate().skip(prefix.len()) {
                            self.check(arg, v, &format!("{at}[{i}]"))?;
                        }
                    }
                }
                "allOf" => {
                    for (i, sub) in arg
                        .as_array()
                        .ok_or("allOf is not a list")?
                        .iter()
                        .enumerate()
                    {
                        let e = self
                            .eval(sub, value, at)
                            .map_err(|e| format!("{e} (allOf branch {i})"))?;
                        evaluated = evaluated.union(e);
                    }
                }
                "oneOf" | "anyOf" => {
                    let branches = arg.as_array().ok_or("oneOf is not a list")?;
                    let mut matched = Vec::new();
                    let mut errors = Vec::new();
                    for sub in branches {
                        match self.eval(sub, value, at) {
                            Ok(e) => matched.push(e),
                            Err(e) => errors.push(e),
                        }
                    }
                    match (keyword.as_str(), matched.len()) {
                        (_, 0) => {
                            return Err(format!(
                                "{at}: {value} matches no {keyword} branch: {}",
                                errors.join(" | ")
                            ));
                        }
                        ("oneOf", n) if n > 1 => {
                            return Err(format!("{at}: {value} matches {n} oneOf branches"));
                        }
                        _ => {
                            for e in matched {
                                evaluated = evaluated.union(e);
                            }
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "{at}: the validator does not know the keyword {other:?}"
                    ));
                }
            }
        }
        // `{"type": "object"}` alone: any object (a free-form value).
        if object_schema
            && !schema.contains_key("properties")
            && !schema.contains_key("additionalProperties")
        {
            evaluated = Evaluated::Any;
        }
        Ok(evaluated)
    }
}

fn type_matches(t: &str, value: &Value) -> bool {
    match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

// --- calling the API with the document in hand

enum Body<'a> {
    None,
    Json(&'a Value),
    Raw(&'a str, &'a [u8]),
}

struct Conformance {
    doc: Value,
    /// (METHOD, path template, status) answered and validated.
    seen: RefCell<BTreeSet<(String, String, u16)>>,
}

impl Conformance {
    fn validator(&self) -> Validator<'_> {
        Validator { doc: &self.doc }
    }

    fn operation(&self, method: &str, template: &str) -> &Value {
        let op = &self.doc["paths"][template][method.to_ascii_lowercase()];
        assert!(
            op.is_object(),
            "{method} {template} is not in the OpenAPI document"
        );
        op
    }

    /// Calls `method path` (an instance of `template`) as `client`, expects `status`,
    /// and validates the answer against the document. Returns the JSON answer.
    fn call(
        &self,
        client: &Client,
        method: &str,
        template: &str,
        path: &str,
        body: Body,
        status: u16,
    ) -> Value {
        let what = format!("{method} {path}");
        let op = self.operation(method, template).clone();
        self.check_parameters(&op, template, path, (200..300).contains(&status));
        let response: Response = match body {
            Body::None => client.send(method, path, &[("Accept", "application/json")], b""),
            Body::Json(v) => {
                if (200..300).contains(&status) {
                    let schema = &op["requestBody"]["content"]["application/json"]["schema"];
                    assert!(!schema.is_null(), "{what}: no JSON request body documented");
                    if let Err(e) = self.validator().check(schema, v, "request") {
                        panic!(
                            "{what}: the request the server took is not in the document: {e}\n{v}"
                        );
                    }
                }
                client.send(
                    method,
                    path,
                    &[
                        ("Content-Type", "application/json"),
                        ("Accept", "application/json"),
                    ],
                    v.to_string().as_bytes(),
                )
            }
            Body::Raw(content_type, bytes) => client.send(
                method,
                path,
                &[
                    ("Content-Type", content_type),
                    ("Accept", "application/json"),
                ],
                bytes,
            ),
        };
        assert_eq!(response.status, status, "{what}: {}", response.body);
        let documented = &op["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{what}: status {status} is not in the document for {method} {template}"
        );
        self.seen
            .borrow_mut()
            .insert((method.to_string(), template.to_string(), status));
        let content = documented.get("content").and_then(Value::as_object);
        let Some(content) = content else {
            assert!(
                response.body.is_empty(),
                "{what}: the document says no body, the answer has one: {}",
                response.body
            );
            return Value::Null;
        };
        let content_type = response
            .header("content-type")
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let Some(media) = content.get(&content_type) else {
            panic!(
                "{what}: answered {content_type:?}, the document has {:?}",
                content.keys()
            );
        };
        let schema = &media["schema"];
        let value = if content_type == "application/json" {
            response.json()
        } else {
            Value::String(response.body.clone())
        };
        if let Err(e) = self.validator().check(schema, &value, "answer") {
            panic!("{what} {status}: the answer does not match the document: {e}\n{value}");
        }
        value
    }

    /// The template's `{segments}` are documented path parameters, each query
    /// parameter sent is a documented query parameter and, when the server is
    /// expected to take the request, its value fits the parameter's schema and every
    /// required one is there.
    fn check_parameters(&self, op: &Value, template: &str, path: &str, accepted: bool) {
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let param = |name: &str, place: &str| {
            params
                .iter()
                .find(|p| p["name"] == name && p["in"] == place)
                .cloned()
        };
        for segment in template.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                assert!(
                    param(name, "path").is_some(),
                    "{template}: path parameter {name} is not documented as one: {params:?}"
                );
            }
        }
        for p in &params {
            let name = p["name"].as_str().unwrap();
            match p["in"].as_str() {
                Some("path") => assert!(
                    template.contains(&format!("{{{name}}}")),
                    "{template}: {name} is documented as a path parameter"
                ),
                Some("query") => {}
                other => panic!("{template}: parameter {name} in {other:?}"),
            }
        }
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut sent = BTreeSet::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(p) = param(name, "query") else {
                panic!("{path}: query parameter {name} is not in the document");
            };
            sent.insert(name.to_string());
            if accepted {
                // A query value is text; read it as a number where the schema has one.
                let typed = value
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::String(value.to_string()));
                let text = Value::String(value.to_string());
                let v = self.validator();
                if v.check(&p["schema"], &typed, name).is_err()
                    && let Err(e) = v.check(&p["schema"], &text, name)
                {
                    panic!("{path}: the server took {name}={value}, the document not: {e}");
                }
            }
        }
        if accepted {
            for p in params
                .iter()
                .filter(|p| p["in"] == "query" && p["required"] == true)
            {
                let name = p["name"].as_str().unwrap();
                assert!(
                    sent.contains(name),
                    "{path}: the server took it without {name}, the document requires it"
                );
            }
        }
    }

    fn get(&self, client: &Client, template: &str, path: &str, status: u16) -> Value {
        self.call(client, "GET", template, path, Body::None, status)
    }
}

fn j(v: &Value) -> Body<'_> {
    Body::Json(v)
}

fn routes_of(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                routes.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn every_route_is_in_the_document_and_every_operation_is_a_route() {
    let daemon = Daemon::start();
    daemon.add_user("vera", "viewer");
    let response = daemon.bearer("vera").get("/api/v1/openapi.json");
    assert_eq!(response.status, 200, "{}", response.body);
    let doc = response.json();
    let documented = routes_of(&doc);
    let routed: BTreeSet<(String, String)> = spamgate_admin::route_table()
        .into_iter()
        .map(|(m, p)| (m.to_ascii_uppercase(), p.to_string()))
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "operations in the document no route serves: {unrouted:?}"
    );
    // The table is the daemon's: each route answers on the real listener (never the
    // fallback's "no such endpoint", nor a 405 for a method the path lacks).
    daemon.add_user("adam", "admin");
    let admin = daemon.bearer("adam");
    let probe = admin.get("/api/v1/no-such-thing");
    assert!(
        probe.status == 404 && probe.body.contains("no such endpoint"),
        "{}",
        probe.body
    );
    for (method, path) in &routed {
        let concrete = path
            .replace("{kind}", "sender")
            .replace("{value}", "a@example.net")
            .replace("{name}", "nobody")
            .replace("{id}", "1");
        let answer = admin.send(method, &concrete, &[], b"");
        assert!(
            answer.status != 405 && !answer.body.contains("no such endpoint"),
            "{method} {concrete}: {} {}",
            answer.status,
            answer.body
        );
    }
}

/// The validator refuses what it must: a field the schema does not describe, a wrong
/// type, a missing required field, a value outside an enum, a tagged variant that does
/// not exist. Checked on the real document and a real answer.
#[test]
fn the_validator_refuses_answers_the_document_does_not_describe() {
    let daemon = Daemon::start_with("", DESK);
    daemon.add_user("vera", "viewer");
    let viewer = daemon.bearer("vera");
    let doc = viewer.get("/api/v1/openapi.json").json();
    let c = Conformance {
        doc,
        seen: RefCell::default(),
    };
    let stats = c.get(&viewer, "/api/v1/stats", "/api/v1/stats", 200);
    let schema = c.doc["paths"]["/api/v1/stats"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"]
        .clone();
    let v = c.validator();
    assert_eq!(v.check(&schema, &stats, "answer"), Ok(()));
    let check = |mutate: &dyn Fn(&mut Value), why: &str| {
        let mut bad = stats.clone();
        mutate(&mut bad);
        let result = v.check(&schema, &bad, "answer");
        assert!(result.is_err(), "{why}: {bad} passed");
        result.unwrap_err()
    };
    let e = check(&|s| s["extra"] = json!(1), "an undescribed field");
    assert!(e.contains("extra"), "{e}");
    let e = check(
        &|s| s["greylist"]["stale"] = json!(0),
        "an undescribed nested field",
    );
    assert!(e.contains("stale"), "{e}");
    check(&|s| s["now"] = json!("noon"), "a string for an integer");
    check(&|s| s["now"] = json!(-1), "a negative u64");
    check(
        &|s| {
            s.as_object_mut().unwrap().remove("greylist");
        },
        "a missing required field",
    );
    check(&|s| s["greylist"] = Value::Null, "null for an object");

    // Tagged enums (oneOf) and flattened fields (allOf): a real verdict.
    let verdict_schema = json!({"$ref": "#/components/schemas/Verdict"});
    let answer = c.call(
        &viewer,
        "POST",
        "/api/v1/check",
        "/api/v1/check",
        Body::Json(&json!({"client_address": "192.0.2.1", "recipient": "b@example.net"})),
        200,
    );
    let verdict = answer["verdict"].clone();
    assert_eq!(v.check(&verdict_schema, &verdict, "verdict"), Ok(()));
    let mut bad = verdict.clone();
    bad["action"] = json!("shrug");
    assert!(v.check(&verdict_schema, &bad, "verdict").is_err(), "{bad}");
    let mut bad = verdict.clone();
    bad["reasons"][0]["step"] = json!("no-such-step");
    assert!(v.check(&verdict_schema, &bad, "verdict").is_err(), "{bad}");
    let mut bad = verdict.clone();
    bad["reasons"][0]["surprise"] = json!(true);
    assert!(v.check(&verdict_schema, &bad, "verdict").is_err(), "{bad}");
    let mut bad = verdict;
    bad["flattened_extra"] = json!(true);
    assert!(v.check(&verdict_schema, &bad, "verdict").is_err(), "{bad}");
    // An unknown keyword is an error, not a pass.
    assert!(
        v.check(&json!({"patternProperties": {}}), &json!({}), "x")
            .is_err()
    );
}

fn policy_attempt(daemon: &Daemon, client: &str) -> String {
    let request = format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address={client}\n\
         client_name=unknown\nsender=a@example.org\nrecipient=b@example.net\n\n"
    );
    let mut socket = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    socket.write_all(request.as_bytes()).unwrap();
    let mut reply = [0u8; 256];
    let n = std::io::Read::read(&mut socket, &mut reply).unwrap();
    String::from_utf8_lossy(&reply[..n]).to_string()
}

#[test]
fn every_answer_of_a_real_daemon_matches_the_document() {
    let daemon = api::daemon_following_an_organisation(DESK);
    for (name, role) in [
        ("vera", "viewer"),
        ("otto", "operator"),
        ("anna", "approver"),
        ("adam", "admin"),
    ] {
        daemon.add_user(name, role);
    }
    let viewer = daemon.bearer("vera");
    let operator = daemon.bearer("otto");
    let approver = daemon.bearer("anna");
    let admin = daemon.bearer("adam");
    let nobody = daemon.client();
    let doc = viewer.get("/api/v1/openapi.json").json();
    let c = Conformance {
        doc,
        seen: RefCell::default(),
    };

    // The one open endpoint; the document itself needs a caller.
    c.get(&nobody, "/health", "/health", 200);
    c.get(&nobody, "/api/v1/openapi.json", "/api/v1/openapi.json", 401);
    let own = c.get(&viewer, "/api/v1/openapi.json", "/api/v1/openapi.json", 200);
    assert_eq!(own["openapi"], c.doc["openapi"]);

    // Sessions: login (JSON), whoami, a change without CSRF, logout.
    let form = format!("user=otto&password={}", api::password_of("otto"));
    c.call(
        &nobody,
        "POST",
        "/login",
        "/login",
        Body::Raw("application/x-www-form-urlencoded", form.as_bytes()),
        200,
    );
    c.call(
        &nobody,
        "POST",
        "/login",
        "/login",
        Body::Raw(
            "application/x-www-form-urlencoded",
            b"user=otto&password=wrong-password-here",
        ),
        401,
    );
    let session = daemon.login("otto");
    let me = c.get(&session, "/api/v1/session", "/api/v1/session", 200);
    assert_eq!(me["user"], "otto");
    c.get(&nobody, "/api/v1/session", "/api/v1/session", 401);
    c.call(
        &session.without_csrf(),
        "POST",
        "/api/v1/allow",
        "/api/v1/allow",
        j(&json!({"kind": "sender", "value": "x@example.org"})),
        403,
    );
    c.call(&session, "POST", "/logout", "/logout", Body::None, 204);
    c.call(&nobody, "POST", "/logout", "/logout", Body::None, 401);

    // Filters.
    c.get(&nobody, "/api/v1/stats", "/api/v1/stats", 401);
    assert!(policy_attempt(&daemon, "192.0.2.30").starts_with("action=DEFER_IF_PERMIT"));
    let stats = c.get(&viewer, "/api/v1/stats", "/api/v1/stats", 200);
    assert_eq!(stats["greylist"]["pending"], 1, "{stats}");
    let check = json!({"client_address": "192.0.2.30", "client_name": "unknown",
        "sender": "a@example.org", "recipient": "b@example.net"});
    let answer = c.call(
        &viewer,
        "POST",
        "/api/v1/check",
        "/api/v1/check",
        j(&check),
        200,
    );
    assert_eq!(answer["verdict"]["action"], "greylist", "{answer}");
    // classify: the daemon's reverse-DNS rules, with the reason.
    let classified = c.call(
        &viewer,
        "POST",
        "/api/v1/classify",
        "/api/v1/classify",
        j(&json!({"names": ["203-0-113-5.adsl.example.net", "mx1.example.org", "not a name"]})),
        200,
    );
    assert_eq!(classified[0]["class"], "generic", "{classified}");
    c.call(
        &viewer,
        "POST",
        "/api/v1/classify",
        "/api/v1/classify",
        j(&json!({"names": []})),
        400,
    );
    let submission = json!({"client_address": "198.51.100.7", "sender": "s@example.jp",
        "recipient": "x@example.org", "sasl_username": "s@example.jp", "server_port": 587});
    c.call(
        &viewer,
        "POST",
        "/api/v1/check",
        "/api/v1/check",
        j(&submission),
        200,
    );
    c.call(
        &viewer,
        "POST",
        "/api/v1/check",
        "/api/v1/check",
        Body::Raw("application/json", b"{not json"),
        400,
    );
    c.call(
        &viewer,
        "POST",
        "/api/v1/check",
        "/api/v1/check",
        Body::Raw("text/plain", b"{}"),
        415,
    );
    let huge = format!(
        "{{\"client_address\": \"192.0.2.1\", \"recipient\": \"{}\"}}",
        "a".repeat(2 << 20)
    );
    c.call(
        &viewer,
        "POST",
        "/api/v1/check",
        "/api/v1/check",
        Body::Raw("application/json", huge.as_bytes()),
        413,
    );
    let found = c.get(
        &viewer,
        "/api/v1/greylist",
        "/api/v1/greylist?client=192.0.2.30",
        200,
    );
    assert_eq!(found["triplets"].as_array().unwrap().len(), 1, "{found}");
    c.get(&viewer, "/api/v1/greylist", "/api/v1/greylist", 400);
    c.get(
        &viewer,
        "/api/v1/greylist",
        "/api/v1/greylist?client=not-an-ip",
        400,
    );
    c.call(
        &viewer,
        "DELETE",
        "/api/v1/greylist",
        "/api/v1/greylist?client=192.0.2.30",
        Body::None,
        403,
    );
    let deleted = c.call(
        &operator,
        "DELETE",
        "/api/v1/greylist",
        "/api/v1/greylist?client=192.0.2.30",
        Body::None,
        200,
    );
    assert_eq!(deleted["triplets"], 1);

    let entry = json!({"kind": "client-address", "value": "192.0.2.55", "note": "partner",
        "scope": "all", "expires_at": 4102444800u64});
    c.call(
        &operator,
        "POST",
        "/api/v1/allow",
        "/api/v1/allow",
        j(&entry),
        201,
    );
    c.call(
        &operator,
        "POST",
        "/api/v1/allow",
        "/api/v1/allow",
        j(&entry),
        200,
    );
    let sender = json!({"kind": "sender", "value": "news@example.org"});
    c.call(
        &operator,
        "POST",
        "/api/v1/allow",
        "/api/v1/allow",
        j(&sender),
        201,
    );
    c.call(
        &operator,
        "POST",
        "/api/v1/allow",
        "/api/v1/allow",
        j(&json!({"kind": "planet", "value": "mars"})),
        400,
    );
    c.call(
        &viewer,
        "POST",
        "/api/v1/allow",
        "/api/v1/allow",
        j(&json!({"kind": "sender", "value": "v@example.org"})),
        403,
    );
    let list = c.get(&viewer, "/api/v1/allow", "/api/v1/allow", 200);
    assert_eq!(list["entries"].as_array().unwrap().len(), 2, "{list}");
    let allowed = c.call(
        &viewer,
        "POST",
        "/api/v1/check",
        "/api/v1/check",
        j(&json!({"client_address": "192.0.2.55", "recipient": "b@example.net"})),
        200,
    );
    let reasons = allowed["verdict"]["reasons"].as_array().unwrap();
    assert!(reasons.iter().any(|r| r["step"] == "allowed"), "{allowed}");
    c.call(
        &operator,
        "DELETE",
        "/api/v1/allow/{kind}/{value}",
        "/api/v1/allow/sender/news@example.org",
        Body::None,
        200,
    );
    c.call(
        &operator,
        "DELETE",
        "/api/v1/allow/{kind}/{value}",
        "/api/v1/allow/sender/news@example.org",
        Body::None,
        404,
    );

    // Accounts.
    let account = "alice-smtp@isp.example.jp";
    let limits = format!("/api/v1/accounts/{account}/limits");
    c.call(
        &operator,
        "PUT",
        "/api/v1/accounts/{name}/limits",
        &limits,
        j(&json!({"messages_per_hour": 50, "note": "new plan"})),
        200,
    );
    c.call(
        &operator,
        "PUT",
        "/api/v1/accounts/{name}/limits",
        &limits,
        j(&json!({"messages_per_hour": "many"})),
        400,
    );
    c.get(
        &viewer,
        "/api/v1/accounts",
        "/api/v1/accounts?limit=10",
        200,
    );
    c.get(
        &viewer,
        "/api/v1/accounts",
        "/api/v1/accounts?limit=lots",
        400,
    );
    c.get(
        &viewer,
        "/api/v1/accounts/{name}",
        &format!("/api/v1/accounts/{account}"),
        200,
    );
    c.get(
        &viewer,
        "/api/v1/accounts/{name}",
        "/api/v1/accounts/nobody@example.jp",
        404,
    );
    let status = "/api/v1/accounts/{name}/status";
    let bob = "/api/v1/accounts/bob@example.jp/status";
    c.call(
        &operator,
        "POST",
        status,
        bob,
        j(&json!({"status": "suspended", "note": "spam"})),
        404,
    );
    c.call(
        &operator,
        "POST",
        status,
        bob,
        j(&json!({"status": "suspended", "note": "spam", "create": true})),
        200,
    );
    c.call(
        &operator,
        "POST",
        status,
        bob,
        j(&json!({"status": "terminated"})),
        200,
    );
    c.call(
        &operator,
        "POST",
        status,
        bob,
        j(&json!({"status": "active"})),
        409,
    );
    c.call(
        &operator,
        "POST",
        status,
        bob,
        j(&json!({"status": "asleep"})),
        400,
    );
    c.call(
        &operator,
        "POST",
        status,
        bob,
        j(&json!({"status": "active", "force": true})),
        200,
    );
    let events = c.get(
        &viewer,
        "/api/v1/accounts/{name}/events",
        "/api/v1/accounts/bob@example.jp/events?since=0&limit=50",
        200,
    );
    assert!(events["events"].as_array().unwrap().len() >= 3, "{events}");
    c.get(
        &viewer,
        "/api/v1/accounts/{name}/events",
        "/api/v1/accounts/nobody@example.jp/events",
        404,
    );

    // The desk: a customer, an address history, a report, a case, the ladder.
    let customer = c.call(
        &operator,
        "PUT",
        "/api/v1/customers/{id}",
        "/api/v1/customers/C-ALICE",
        j(
            &json!({"name": "Alice", "contact": "alice@example.jp", "language": "en",
            "plan": "home"}),
        ),
        200,
    );
    assert_eq!(customer["status"], "active");
    c.call(
        &operator,
        "PUT",
        "/api/v1/customers/{id}",
        "/api/v1/customers/C-BAD",
        j(&json!({"name": "Bad", "contact": "bad@example.jp", "language": "fr"})),
        400,
    );
    c.call(
        &operator,
        "POST",
        "/api/v1/customers/{id}/accounts",
        "/api/v1/customers/C-ALICE/accounts",
        j(&json!({"account": account})),
        200,
    );
    c.call(
        &operator,
        "POST",
        "/api/v1/customers/{id}/accounts",
        "/api/v1/customers/C-NOBODY/accounts",
        j(&json!({"account": account})),
        404,
    );
    c.get(
        &viewer,
        "/api/v1/customers",
        "/api/v1/customers?limit=5",
        200,
    );
    c.get(
        &viewer,
        "/api/v1/customers/{id}",
        "/api/v1/customers/C-NOBODY",
        404,
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
    let who = c.get(
        &viewer,
        "/api/v1/who",
        "/api/v1/who?address=192.0.2.10&at=1796086800",
        200,
    );
    assert_eq!(who["outcome"], "customer", "{who}");
    c.get(
        &viewer,
        "/api/v1/who",
        "/api/v1/who?address=203.0.113.250:40000&at=1796086800",
        200,
    );
    c.get(
        &viewer,
        "/api/v1/who",
        "/api/v1/who?address=nowhere&at=1",
        400,
    );
    c.get(
        &viewer,
        "/api/v1/who",
        "/api/v1/who?address=192.0.2.10",
        400,
    );

    let report = std::fs::read_to_string(desk_fixture("reports", "arf-rfc5965.eml"))
        .unwrap()
        .replace("192.0.2.1", "192.0.2.10");
    let ingested = c.call(
        &operator,
        "POST",
        "/api/v1/reports",
        "/api/v1/reports",
        Body::Raw("message/rfc822", report.as_bytes()),
        201,
    );
    let case_id = ingested["case_id"].as_i64().expect("attributed to a case");
    c.call(
        &operator,
        "POST",
        "/api/v1/reports",
        "/api/v1/reports",
        Body::Raw("message/rfc822", b""),
        400,
    );
    // A report nobody can attribute goes to triage, then is assigned by hand.
    let stray = report.replace("192.0.2.10", "203.0.113.77");
    let triage = c.call(
        &operator,
        "POST",
        "/api/v1/reports",
        "/api/v1/reports",
        Body::Raw("message/rfc822", stray.as_bytes()),
        201,
    );
    assert_eq!(triage["state"], "triage", "{triage}");
    c.get(
        &viewer,
        "/api/v1/reports",
        "/api/v1/reports?state=triage",
        200,
    );
    c.get(&viewer, "/api/v1/reports", "/api/v1/reports", 200);
    c.get(
        &viewer,
        "/api/v1/reports",
        "/api/v1/reports?state=lost",
        400,
    );
    let assign = format!("/api/v1/reports/{}/assign", triage["report_id"]);
    c.call(
        &operator,
        "POST",
        "/api/v1/reports/{id}/assign",
        &assign,
        j(&json!({"customer": "C-ALICE", "category": "spam"})),
        200,
    );
    c.call(
        &operator,
        "POST",
        "/api/v1/reports/{id}/assign",
        "/api/v1/reports/424242/assign",
        j(&json!({"customer": "C-ALICE"})),
        404,
    );
    c.call(
        &operator,
        "POST",
        "/api/v1/reports/{id}/assign",
        "/api/v1/reports/x/assign",
        j(&json!({"customer": "C-ALICE"})),
        400,
    );
    c.get(&viewer, "/api/v1/cases", "/api/v1/cases?state=open", 200);
    c.get(&viewer, "/api/v1/cases", "/api/v1/cases?state=lost", 400);
    let case_path = format!("/api/v1/cases/{case_id}");
    let case = c.get(&viewer, "/api/v1/cases/{id}", &case_path, 200);
    assert!(case["reports"][0]["report"].is_object(), "{case}");
    c.get(&viewer, "/api/v1/cases/{id}", "/api/v1/cases/424242", 404);
    c.call(
        &operator,
        "POST",
        "/api/v1/customers/{id}/ladder",
        "/api/v1/customers/C-ALICE/ladder",
        j(&json!({"step": "suspend", "reason": "spam run"})),
        409,
    );
    c.call(
        &operator,
        "POST",
        "/api/v1/customers/{id}/ladder",
        "/api/v1/customers/C-ALICE/ladder",
        j(&json!({"step": "dance", "reason": "why not"})),
        400,
    );
    c.call(
        &operator,
        "POST",
        "/api/v1/customers/{id}/ladder",
        "/api/v1/customers/C-ALICE/ladder",
        j(&json!({"step": "warn", "reason": "first notice", "evidence": ["case"]})),
        200,
    );
    let confirmed = c.call(
        &operator,
        "POST",
        "/api/v1/cases/{id}/confirm",
        &format!("{case_path}/confirm"),
        Body::None,
        200,
    );
    assert!(confirmed["ladder"]["proposal"].is_object(), "{confirmed}");
    c.call(
        &operator,
        "POST",
        "/api/v1/cases/{id}/confirm",
        "/api/v1/cases/424242/confirm",
        Body::None,
        404,
    );
    let approve = json!({"step": "approve", "reason": "confirmed"});
    c.call(
        &operator,
        "POST",
        "/api/v1/customers/{id}/ladder",
        "/api/v1/customers/C-ALICE/ladder",
        j(&approve),
        403,
    );
    let approved = c.call(
        &approver,
        "POST",
        "/api/v1/customers/{id}/ladder",
        "/api/v1/customers/C-ALICE/ladder",
        j(&approve),
        200,
    );
    assert_eq!(approved["accounts"][0]["to"], "suspended", "{approved}");
    let shown = c.get(
        &viewer,
        "/api/v1/customers/{id}",
        "/api/v1/customers/C-ALICE",
        200,
    );
    assert!(shown["audit"].as_array().unwrap().len() >= 2, "{shown}");
    let claim = json!({"customer": "C-ALICE", "case_ids": [case_id], "amount": 5000,
        "currency": "JPY", "basis": "desk hours",
        "items": [{"description": "2 h handling", "amount": 5000}]});
    c.call(
        &operator,
        "POST",
        "/api/v1/claims",
        "/api/v1/claims",
        j(&claim),
        201,
    );
    let mut unknown = claim.clone();
    unknown["case_ids"] = json!([424242]);
    c.call(
        &operator,
        "POST",
        "/api/v1/claims",
        "/api/v1/claims",
        j(&unknown),
        404,
    );
    c.call(
        &operator,
        "POST",
        "/api/v1/claims",
        "/api/v1/claims",
        j(&json!({"customer": "C-ALICE"})),
        400,
    );
    let export = c.call(
        &viewer,
        "POST",
        "/api/v1/cases/{id}/export",
        &format!("{case_path}/export"),
        Body::None,
        200,
    );
    assert!(!export["files"].as_array().unwrap().is_empty());
    c.call(
        &viewer,
        "POST",
        "/api/v1/cases/{id}/export",
        "/api/v1/cases/424242/export",
        Body::None,
        404,
    );
    // The desk operations of api_desk.rs, while C-ALICE is suspended.
    let op = |client: &Client, method: &str, template: &str, path: &str, status: u16| {
        c.call(client, method, template, path, Body::None, status)
    };
    let csv = "id,name,contact,language,plan\nC-OAPI-1,One,one@example.jp,ja,fiber\n";
    let imported = c.call(
        &operator,
        "POST",
        "/api/v1/import/customers",
        "/api/v1/import/customers",
        Body::Raw("text/csv", csv.as_bytes()),
        200,
    );
    assert_eq!(imported["ids"], json!(["C-OAPI-1"]), "{imported}");
    for (client, body, status) in [
        (&viewer, csv.as_bytes(), 403),
        (&operator, b"id,name\nC-X\n".as_slice(), 400),
        (&operator, b"  \n".as_slice(), 400),
    ] {
        c.call(
            client,
            "POST",
            "/api/v1/import/customers",
            "/api/v1/import/customers",
            Body::Raw("text/csv", body),
            status,
        );
    }
    let detail = std::fs::read(desk_fixture("history", "radius-detail")).unwrap();
    let sessions = c.call(
        &operator,
        "POST",
        "/api/v1/import/sessions",
        "/api/v1/import/sessions?format=radius-detail&source=nas1",
        Body::Raw("text/plain", &detail),
        200,
    );
    assert!(sessions["upserted"].as_u64().unwrap() > 0, "{sessions}");
    for (client, path, status) in [
        (&operator, "/api/v1/import/sessions?format=nope", 400),
        (&operator, "/api/v1/import/sessions?format=static", 400),
        (&viewer, "/api/v1/import/sessions?format=static", 403),
    ] {
        c.call(
            client,
            "POST",
            "/api/v1/import/sessions",
            path,
            Body::Raw("text/plain", b"not a table at all\n"),
            status,
        );
    }
    let identity = json!({"kind": "radius-user", "value": "alice@isp.example.jp"});
    for (path, body, status) in [
        (
            "/api/v1/customers/C-ALICE/identities",
            identity.clone(),
            200,
        ),
        (
            "/api/v1/customers/C-ALICE/identities",
            json!({"kind": "ssn", "value": "1"}),
            400,
        ),
        (
            "/api/v1/customers/C-NOBODY/identities",
            identity.clone(),
            404,
        ),
    ] {
        c.call(
            &operator,
            "POST",
            "/api/v1/customers/{id}/identities",
            path,
            j(&body),
            status,
        );
    }
    let enforced = op(
        &operator,
        "POST",
        "/api/v1/customers/{id}/enforce",
        "/api/v1/customers/C-ALICE/enforce",
        200,
    );
    assert_eq!(enforced["customer"], "C-ALICE", "{enforced}");
    op(
        &operator,
        "POST",
        "/api/v1/customers/{id}/enforce",
        "/api/v1/customers/C-NOBODY/enforce",
        404,
    );
    op(
        &viewer,
        "POST",
        "/api/v1/customers/{id}/enforce",
        "/api/v1/customers/C-ALICE/enforce",
        403,
    );
    // The suspension queued a hook (that failed: pending) and a notice (no relay).
    let pending = c.get(&viewer, "/api/v1/deliveries", "/api/v1/deliveries", 200);
    let id_of = |kind: &str| {
        pending["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("a pending {kind}: {pending}"))["id"]
            .as_i64()
            .unwrap()
    };
    let (hook, notice) = (id_of("hook"), id_of("notify"));
    c.get(
        &viewer,
        "/api/v1/deliveries",
        "/api/v1/deliveries?state=done&limit=10",
        200,
    );
    c.get(
        &viewer,
        "/api/v1/deliveries",
        "/api/v1/deliveries?state=stuck",
        400,
    );
    let run = op(
        &operator,
        "POST",
        "/api/v1/deliveries/run",
        "/api/v1/deliveries/run",
        200,
    );
    assert_eq!(run["unconfigured"], json!(["notice_relay_host"]), "{run}");
    op(
        &viewer,
        "POST",
        "/api/v1/deliveries/run",
        "/api/v1/deliveries/run",
        403,
    );
    let retry = "/api/v1/deliveries/{id}/retry";
    let retried = op(
        &operator,
        "POST",
        retry,
        &format!("/api/v1/deliveries/{hook}/retry"),
        200,
    );
    assert_eq!(retried["runs"][0]["delivery_id"], hook, "{retried}");
    assert!(retried["runs"][0]["error"].is_string(), "{retried}");
    op(
        &operator,
        "POST",
        retry,
        &format!("/api/v1/deliveries/{notice}/retry"),
        409,
    );
    op(
        &operator,
        "POST",
        retry,
        "/api/v1/deliveries/424242/retry",
        404,
    );
    op(
        &operator,
        "POST",
        retry,
        "/api/v1/deliveries/abc/retry",
        400,
    );
    op(&viewer, "POST", "/api/v1/signals", "/api/v1/signals", 403);
    let signals = op(&operator, "POST", "/api/v1/signals", "/api/v1/signals", 200);
    assert!(signals["filed"].is_array(), "{signals}");
    assert!(policy_attempt(&daemon, "192.0.2.41").starts_with("action=DEFER_IF_PERMIT"));
    let triplets = c.get(
        &viewer,
        "/api/v1/greylist/triplets",
        "/api/v1/greylist/triplets?limit=10",
        200,
    );
    assert!(
        !triplets["triplets"].as_array().unwrap().is_empty(),
        "{triplets}"
    );
    c.get(
        &viewer,
        "/api/v1/greylist/triplets",
        "/api/v1/greylist/triplets?limit=many",
        400,
    );
    let events = c.get(
        &viewer,
        "/api/v1/events",
        "/api/v1/events?since=0&limit=50",
        200,
    );
    assert!(!events["events"].as_array().unwrap().is_empty(), "{events}");
    c.get(&viewer, "/api/v1/events", "/api/v1/events?since=soon", 400);
    let learned = c.get(&viewer, "/api/v1/learned", "/api/v1/learned", 200);
    assert_eq!(
        learned["organisations"][0]["org"], "example.org",
        "{learned}"
    );
    let forget = "/api/v1/learned/{domain}";
    op(
        &viewer,
        "DELETE",
        forget,
        "/api/v1/learned/example.org",
        403,
    );
    op(
        &operator,
        "DELETE",
        forget,
        "/api/v1/learned/example.org",
        200,
    );
    op(
        &operator,
        "DELETE",
        forget,
        "/api/v1/learned/example.org",
        404,
    );
    op(&viewer, "DELETE", "/api/v1/learned", "/api/v1/learned", 403);
    let cleared = op(
        &operator,
        "DELETE",
        "/api/v1/learned",
        "/api/v1/learned",
        200,
    );
    assert_eq!(cleared["removed"], 0, "{cleared}");

    c.call(
        &operator,
        "POST",
        "/api/v1/customers/{id}/ladder",
        "/api/v1/customers/C-ALICE/ladder",
        j(&json!({"step": "resume", "reason": "cleaned"})),
        200,
    );

    // Users and tokens.
    c.get(&operator, "/api/v1/users", "/api/v1/users", 403);
    c.get(&admin, "/api/v1/users", "/api/v1/users", 200);
    let user = json!({"name": "carol", "role": "viewer", "password": "carol-password-1"});
    c.call(
        &admin,
        "POST",
        "/api/v1/users",
        "/api/v1/users",
        j(&user),
        201,
    );
    c.call(
        &admin,
        "POST",
        "/api/v1/users",
        "/api/v1/users",
        j(&user),
        409,
    );
    c.call(
        &admin,
        "POST",
        "/api/v1/users",
        "/api/v1/users",
        j(&json!({"name": "dave", "role": "king", "password": "dave-password-1"})),
        400,
    );
    c.call(
        &admin,
        "PATCH",
        "/api/v1/users/{name}",
        "/api/v1/users/carol",
        j(&json!({"role": "operator", "disabled": false})),
        200,
    );
    c.call(
        &admin,
        "PATCH",
        "/api/v1/users/{name}",
        "/api/v1/users/nobody",
        j(&json!({"disabled": true})),
        404,
    );
    let token = c.call(
        &admin,
        "POST",
        "/api/v1/tokens",
        "/api/v1/tokens",
        j(&json!({"user": "carol", "label": "script", "expires_at": 4102444800u64})),
        201,
    );
    assert!(!token["secret"].as_str().unwrap().is_empty());
    c.call(
        &admin,
        "POST",
        "/api/v1/tokens",
        "/api/v1/tokens",
        j(&json!({"user": "nobody"})),
        404,
    );
    c.get(&admin, "/api/v1/tokens", "/api/v1/tokens?user=carol", 200);
    c.get(&admin, "/api/v1/tokens", "/api/v1/tokens", 200);
    c.call(
        &admin,
        "DELETE",
        "/api/v1/tokens/{id}",
        &format!("/api/v1/tokens/{}", token["id"]),
        Body::None,
        200,
    );
    c.call(
        &admin,
        "DELETE",
        "/api/v1/tokens/{id}",
        "/api/v1/tokens/424242",
        Body::None,
        404,
    );
    let audit = c.get(&viewer, "/api/v1/audit", "/api/v1/audit?limit=1000", 200);
    assert!(audit["entries"].as_array().unwrap().len() > 20, "{audit}");
    c.get(
        &viewer,
        "/api/v1/audit",
        "/api/v1/audit?action=ladder.&limit=5",
        200,
    );
    c.get(&viewer, "/api/v1/audit", "/api/v1/audit?before=x", 400);

    // Every operation in the document was answered with success at least once.
    let seen = c.seen.borrow();
    let missing: Vec<_> = routes_of(&c.doc)
        .into_iter()
        .filter(|(m, p)| {
            !seen
                .iter()
                .any(|(sm, sp, s)| sm == m && sp == p && (200..300).contains(s))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "operations never called successfully: {missing:?}"
    );
    let errors: BTreeSet<u16> = seen
        .iter()
        .map(|(_, _, s)| *s)
        .filter(|s| *s >= 400)
        .collect();
    assert_eq!(
        errors,
        BTreeSet::from([400, 401, 403, 404, 409, 413, 415]),
        "the error statuses exercised"
    );
}

/// Without a `[desk]` section the desk's endpoints answer 503, as documented.
#[test]
fn the_desk_endpoints_answer_503_without_a_desk_as_documented() {
    // A desk file that cannot be opened (its directory is a device): the API starts
    // without the desk.
    let daemon = Daemon::start_with(
        "",
        "[dnsbl]\nzones = []\n[desk]\npath = \"/dev/null/desk.db\"\n",
    );
    daemon.add_user("vera", "viewer");
    let viewer = daemon.bearer("vera");
    let doc = viewer.get("/api/v1/openapi.json").json();
    let c = Conformance {
        doc,
        seen: RefCell::default(),
    };
    let answer = c.get(&viewer, "/api/v1/customers", "/api/v1/customers", 503);
    assert_eq!(answer["status"], 503);
    c.get(&viewer, "/api/v1/cases", "/api/v1/cases", 503);
}
