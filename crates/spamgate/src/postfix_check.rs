//! `spamgate config check --postfix-main-cf/--postfix-master-cf`: reads Postfix's
//! configuration files and tells whether Postfix asks spamgate at the stage it charges
//! submissions at (`[submission] charge_at`). If it never does, no submission limit ever
//! applies, and nothing else would say so.
//!
//! Only what is needed is parsed: `name = value` parameters with continuation lines
//! (main.cf), `smtpd` services with their `-o name=value` and `-o { name = value }`
//! overrides (master.cf), and `$name` / `${name}` references to main.cf parameters.

use std::collections::HashMap;

/// main.cf parameters, continuation lines joined, comments dropped.
pub fn parse_main_cf(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some((_, value)) = current.as_mut() {
                value.push(' ');
                value.push_str(trimmed);
            }
            continue;
        }
        if let Some((name, value)) = current.take() {
            params.insert(name, value);
        }
        if let Some((name, value)) = trimmed.split_once('=') {
            current = Some((name.trim().to_string(), value.trim().to_string()));
        }
    }
    if let Some((name, value)) = current {
        params.insert(name, value);
    }
    params
}

/// One `smtpd` service of master.cf: its name (the listening `[host:]port`) and its
/// `-o` overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpdService {
    pub name: String,
    pub overrides: HashMap<String, String>,
}

/// Splits a master.cf entry into tokens, `{ ... }` kept as one token (braces removed).
fn tokens(entry: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = entry.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '{' {
            chars.next();
            let inner: String = chars.by_ref().take_while(|&c| c != '}').collect();
            out.push(inner.trim().to_string());
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push(word);
        }
    }
    out
}

/// The `inet` services whose command is `smtpd`.
pub fn parse_master_cf(text: &str) -> Vec<SmtpdService> {
    let mut entries: Vec<String> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some(last) = entries.last_mut() {
                last.push(' ');
                last.push_str(trimmed);
            }
        } else {
            entries.push(trimmed.to_string());
        }
    }
    entries
        .iter()
        .filter_map(|entry| {
            let tokens = tokens(entry);
            if tokens.len() < 8 || tokens[1] != "inet" || tokens[7] != "smtpd" {
                return None;
            }
            let mut overrides = HashMap::new();
            let mut args = tokens[8..].iter();
            while let Some(arg) = args.next() {
                if arg == "-o"
                    && let Some(setting) = args.next()
                    && let Some((name, value)) = setting.split_once('=')
                {
                    overrides.insert(name.trim().to_string(), value.trim().to_string());
                }
            }
            Some(SmtpdService {
                name: tokens[0].clone(),
                overrides,
            })
        })
        .collect()
}

/// The port a master.cf service name listens on: `587`, `host:587`, or a service name
/// of /etc/services that submission uses.
fn service_port(name: &str) -> Option<u16> {
    let port = name.rsplit_once(':').map_or(name, |(_, p)| p);
    match port {
        "smtp" => Some(25),
        "submission" => Some(587),
        "submissions" | "smtps" => Some(465),
        other => other.parse().ok(),
    }
}

/// `$name` and `${name}` replaced by main.cf's values (one level, as a reader would).
fn expand(value: &str, main: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (name, after) = if let Some(inner) = rest.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], &inner[end + 1..]),
                None => (inner, ""),
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        out.push_str(main.get(name).map_or("", String::as_str));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The restriction list Postfix asks at `charge_at`.
fn charge_parameter(charge_at: &str) -> &'static str {
    if charge_at.eq_ignore_ascii_case("END-OF-MESSAGE") {
        "smtpd_end_of_data_restrictions"
    } else {
        "smtpd_data_restrictions"
    }
}

const RESTRICTION_LISTS: [&str; 7] = [
    "smtpd_client_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_sender_restrictions",
    "smtpd_relay_restrictions",
    "smtpd_recipient_restrictions",
    "smtpd_data_restrictions",
    "smtpd_end_of_data_restrictions",
];

/// Warnings for the services (or, without master.cf, for main.cf itself) that ask the
/// policy service at some stage but not at `charge_at`: their submissions are never
/// charged. `ports` are `[submission] ports`; with master.cf, only services listening on
/// one of them are judged.
pub fn never_charged(
    main: &HashMap<String, String>,
    master: Option<&[SmtpdService]>,
    charge_at: &str,
    ports: &[u16],
) -> Vec<String> {
    let charge = charge_parameter(charge_at);
    let asks = |value: Option<String>| value.is_some_and(|v| v.contains("check_policy_service"));
    let judge = |what: &str, get: &dyn Fn(&str) -> Option<String>| -> Option<String> {
        let elsewhere: Vec<&str> = RESTRICTION_LISTS
            .iter()
            .copied()
            .filter(|list| *list != charge && asks(get(list)))
            .collect();
        (!elsewhere.is_empty() && !asks(get(charge))).then(|| {
            format!(
                "{what}: check_policy_service is in {} but not in {charge}: spamgate charges \
                 submissions at {charge_at} ([submission] charge_at), so no submission limit \
                 ever applies; add check_policy_service to {charge}",
                elsewhere.join(", ")
            )
        })
    };
    let main_value = |name: &str| main.get(name).map(|v| expand(v, main));
    match master {
        None => judge("main.cf", &main_value).into_iter().collect(),
        Some(services) => services
            .iter()
            .filter(|s| service_port(&s.name).is_some_and(|p| ports.contains(&p)))
            .filter_map(|service| {
                let get = |name: &str| {
                    service
                        .overrides
                        .get(name)
                        .map(|v| expand(v, main))
                        .or_else(|| main_value(name))
                };
                judge(&format!("master.cf service {}", service.name), &get)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBMISSION_OK: &str = "\
submission inet n       -       y       -       -       smtpd
  -o smtpd_sasl_auth_enable=yes
  -o { smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:10023, permit_sasl_authenticated, reject }
  -o { smtpd_data_restrictions = check_policy_service inet:127.0.0.1:10023 }
";

    const SUBMISSION_RCPT_ONLY: &str = "\
# the DATA check was forgotten
submission inet n       -       y       -       -       smtpd
  -o { smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:10023, permit_sasl_authenticated, reject }
smtp      inet  n       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
";

    const SUBMISSIONS_BY_REFERENCE: &str = "\
127.0.0.1:465 inet n - y - - smtpd
  -o smtpd_recipient_restrictions=$mua_policy
  -o smtpd_end_of_data_restrictions=${mua_policy}
";

    /// (main.cf, master.cf, charge_at, services warned about)
    fn check(main: &str, master: Option<&str>, charge_at: &str, expected: &[&str]) {
        let main_params = parse_main_cf(main);
        let services = master.map(parse_master_cf);
        let warnings = never_charged(&main_params, services.as_deref(), charge_at, &[587, 465]);
        let warned: Vec<&str> = warnings
            .iter()
            .map(|w| w.split(": ").next().unwrap())
            .collect();
        assert_eq!(warned, expected, "{warnings:?}");
    }

    #[test]
    fn services_asked_only_before_the_charge_stage_are_named() {
        let policy_main = "mua_policy = check_policy_service inet:127.0.0.1:10023,\n    permit_sasl_authenticated, reject\n";
        check("", Some(SUBMISSION_OK), "DATA", &[]);
        check(
            "",
            Some(SUBMISSION_OK),
            "END-OF-MESSAGE",
            &["master.cf service submission"],
        );
        // Port 25 (smtp) is inbound: not judged, though it asks nothing at DATA.
        check(
            "",
            Some(SUBMISSION_RCPT_ONLY),
            "DATA",
            &["master.cf service submission"],
        );
        check(
            policy_main,
            Some(SUBMISSIONS_BY_REFERENCE),
            "END-OF-MESSAGE",
            &[],
        );
        check(
            policy_main,
            Some(SUBMISSIONS_BY_REFERENCE),
            "DATA",
            &["master.cf service 127.0.0.1:465"],
        );
        // main.cf's lists apply where master.cf does not override them.
        check(
            "smtpd_data_restrictions = check_policy_service unix:private/spamgate\n",
            Some(SUBMISSION_RCPT_ONLY),
            "DATA",
            &[],
        );
        // main.cf alone.
        check(
            "smtpd_recipient_restrictions =\n  permit_mynetworks,\n  check_policy_service inet:127.0.0.1:10023\n",
            None,
            "DATA",
            &["main.cf"],
        );
        check(
            "smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:10023\n\
             smtpd_data_restrictions = check_policy_service inet:127.0.0.1:10023\n",
            None,
            "DATA",
            &[],
        );
        // No policy service at all: nothing to say about charging.
        check(
            "smtpd_recipient_restrictions = permit_mynetworks, reject\n",
            None,
            "DATA",
            &[],
        );
        // A commented-out DATA check does not count.
        check(
            "smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:10023\n\
             #smtpd_data_restrictions = check_policy_service inet:127.0.0.1:10023\n",
            None,
            "DATA",
            &["main.cf"],
        );
    }

    #[test]
    fn master_cf_entries_are_read_with_their_overrides() {
        let services = parse_master_cf(SUBMISSION_RCPT_ONLY);
        assert_eq!(
            services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["submission", "smtp"]
        );
        assert_eq!(
            services[0].overrides["smtpd_recipient_restrictions"],
            "check_policy_service inet:127.0.0.1:10023, permit_sasl_authenticated, reject"
        );
        let check = |name: &str, port: Option<u16>| assert_eq!(service_port(name), port, "{name}");
        check("submission", Some(587));
        check("submissions", Some(465));
        check("smtps", Some(465));
        check("[::1]:587", Some(587));
        check("2525", Some(2525));
        check("private/x", None);
    }
}
