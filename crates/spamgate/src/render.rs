//! Rendering a [`Verdict`] as a Postfix access(5) action, with operator-editable texts.

use serde::{Deserialize, Serialize};
use spamgate_engine::client::ClientClass;
use spamgate_engine::{Action, Envelope, Reason, Verdict};

use crate::config::ConfigError;

/// The `[replies]` config table. Placeholders: `{client_address}`, `{client_name}`,
/// `{sender}`, `{recipient}`, `{class}`, `{rule}`, `{reason}`, `{retry_in}`, `{zone}`,
/// `{txt}` (`"; "` plus the list's TXT record, or empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Replies {
    /// Permanent rejection by DNSBL. Must start with a 5xx code.
    pub reject: String,
    /// Greylisting; sent as `DEFER_IF_PERMIT <text>`.
    pub greylist: String,
    /// spamgate's own trouble when `store.fail_mode = "defer"`; sent as `DEFER_IF_PERMIT`.
    pub tempfail: String,
    /// Human words for each suspicious class, used for `{reason}`.
    pub reason_no_ptr: String,
    pub reason_ptr_not_confirmed: String,
    pub reason_dns_tempfail: String,
    pub reason_generic: String,
    pub reason_other: String,
    /// Submission by a suspended or terminated account. Must start with a 5xx code.
    pub submission_refused: String,
    /// A request without SMTP AUTH on a submission port. Must start with a 5xx code.
    pub submission_unauthenticated: String,
    /// A submission over one of its account's limits. Must start with a 4xx code.
    pub submission_limit: String,
    /// A message with more recipients than the account may send at once: it can never
    /// fit, so it is refused for good. Must start with a 5xx code.
    pub submission_too_large: String,
    /// Add a header saying why mail passed (`PREPEND`); one per recipient at RCPT.
    pub prepend_header: bool,
    pub header_name: String,
}

impl Default for Replies {
    fn default() -> Self {
        Replies {
            reject:
                "554 5.7.1 Service unavailable; client [{client_address}] blocked using {zone}{txt}"
                    .into(),
            greylist: "4.7.1 Greylisted ({reason}): please resend in {retry_in} seconds".into(),
            tempfail: "4.3.0 Temporary server problem, please resend later".into(),
            reason_no_ptr: "reverse lookup failure".into(),
            reason_ptr_not_confirmed: "reverse name does not resolve back".into(),
            reason_dns_tempfail: "reverse lookup failure".into(),
            reason_generic: "S25R check, host name looks dynamic".into(),
            reason_other: "suspicious client".into(),
            submission_refused: "554 5.7.1 Sending refused: account {username} is {status}; please contact customer support".into(),
            submission_unauthenticated: "530 5.7.0 Authentication required: log in with SMTP AUTH to send on this port".into(),
            submission_limit: "451 4.7.1 Sending limit reached ({limit}), please try again in {retry_in} seconds".into(),
            submission_too_large: "554 5.5.3 Too many recipients for one message ({limit}); please send it in smaller parts".into(),
            prepend_header: false,
            header_name: "X-Spamgate".into(),
        }
    }
}

const PLACEHOLDERS: [&str; 13] = [
    "username",
    "status",
    "limit",
    "client_address",
    "client_name",
    "sender",
    "recipient",
    "class",
    "rule",
    "reason",
    "retry_in",
    "zone",
    "txt",
];

impl Replies {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, text) in [
            ("replies.reject", &self.reject),
            ("replies.greylist", &self.greylist),
            ("replies.tempfail", &self.tempfail),
        ] {
            check_placeholders(key, text)?;
        }
        for (key, text, class) in [
            ("replies.reject", &self.reject, b'5'),
            ("replies.submission_refused", &self.submission_refused, b'5'),
            (
                "replies.submission_unauthenticated",
                &self.submission_unauthenticated,
                b'5',
            ),
            ("replies.submission_limit", &self.submission_limit, b'4'),
            (
                "replies.submission_too_large",
                &self.submission_too_large,
                b'5',
            ),
        ] {
            check_placeholders(key, text)?;
            let code_ok = text.len() >= 3
                && text.as_bytes()[0] == class
                && text.as_bytes()[..3].iter().all(u8::is_ascii_digit);
            if !code_ok {
                let message = format!("must start with a {}xx code", class as char);
                return Err(invalid(key, text, &message));
            }
        }
        if self.header_name.is_empty()
            || !self
                .header_name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b':')
        {
            return Err(invalid(
                "replies.header_name",
                &self.header_name,
                "not a header field name",
            ));
        }
        Ok(())
    }

    /// The action line for Postfix (without `action=`).
    pub fn render(&self, verdict: &Verdict, envelope: &Envelope) -> String {
        match verdict.action {
            Action::Pass if self.prepend_header => format!(
                "PREPEND {}: pass; {}",
                self.header_name,
                sanitize(&verdict.reasons_short())
            ),
            Action::Pass => "DUNNO".to_string(),
            Action::Greylist { retry_in } => {
                format!(
                    "DEFER_IF_PERMIT {}",
                    self.expand(&self.greylist, verdict, envelope, Some(retry_in))
                )
            }
            Action::Reject => {
                let template = verdict.reasons.iter().find_map(|r| match r {
                    Reason::AccountStatus { .. } => Some(&self.submission_refused),
                    Reason::Unauthenticated { .. } => Some(&self.submission_unauthenticated),
                    Reason::RateLimit { .. } => Some(&self.submission_too_large),
                    _ => None,
                });
                self.expand(template.unwrap_or(&self.reject), verdict, envelope, None)
            }
            Action::Defer { retry_in } => {
                self.expand(&self.submission_limit, verdict, envelope, Some(retry_in))
            }
            Action::TempFail => {
                format!(
                    "DEFER_IF_PERMIT {}",
                    self.expand(&self.tempfail, verdict, envelope, None)
                )
            }
        }
    }

    fn reason_words(&self, class: Option<&ClientClass>) -> &str {
        match class {
            Some(ClientClass::NoPtr) => &self.reason_no_ptr,
            Some(ClientClass::PtrNotConfirmed { .. }) => &self.reason_ptr_not_confirmed,
            Some(ClientClass::DnsTempfail { .. }) => &self.reason_dns_tempfail,
            Some(ClientClass::Generic { .. }) => &self.reason_generic,
            _ => &self.reason_other,
        }
    }

    fn expand(
        &self,
        template: &str,
        verdict: &Verdict,
        envelope: &Envelope,
        retry_in: Option<u64>,
    ) -> String {
        let class = verdict.client_class();
        let (zone, txt) = {
            let lists: Vec<(&str, Option<&str>)> = verdict.rejecting_lists().collect();
            let zones: Vec<&str> = lists.iter().map(|(z, _)| *z).collect();
            let txt = lists.iter().find_map(|(_, t)| *t).map(|t| format!("; {t}"));
            (zones.join(", "), txt.unwrap_or_default())
        };
        let rule = match class {
            Some(ClientClass::Generic { rule, .. }) => rule.as_str(),
            _ => "",
        };
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) => {
                    let name = &after[..close];
                    match name {
                        "client_address" => out.push_str(&envelope.client_address.to_string()),
                        "client_name" => {
                            out.push_str(envelope.client_name.as_deref().unwrap_or("unknown"))
                        }
                        "sender" => out.push_str(&envelope.sender),
                        "recipient" => out.push_str(&envelope.recipient),
                        "class" => out.push_str(class.map_or("", ClientClass::id)),
                        "rule" => out.push_str(rule),
                        "reason" => out.push_str(self.reason_words(class)),
                        "retry_in" => out.push_str(&retry_in.unwrap_or(0).to_string()),
                        "zone" => out.push_str(&zone),
                        "txt" => out.push_str(&txt),
                        "username" | "status" | "limit" => {
                            out.push_str(&submission_field(verdict, name))
                        }
                        other => {
                            out.push('{');
                            out.push_str(other);
                            out.push('}');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str(&rest[open..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        sanitize(&out)
    }
}

/// `{username}`, `{status}`, `{limit}` from a submission verdict's reasons.
fn submission_field(verdict: &Verdict, name: &str) -> String {
    verdict
        .reasons
        .iter()
        .find_map(|r| match (name, r) {
            ("username", Reason::Submission { username }) => Some(username.clone()),
            ("status", Reason::AccountStatus { status }) => Some(status.id().to_string()),
            ("limit", Reason::RateLimit { limit, .. }) => Some(limit.id().to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

fn check_placeholders(key: &str, text: &str) -> Result<(), ConfigError> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(invalid(
                key,
                text,
                &format!("unknown placeholder {{{name}}}"),
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

fn invalid(key: &str, value: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: value.into(),
        message: message.into(),
    }
}

/// Reply texts go on one protocol line: no control characters, bounded length.
fn sanitize(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > 450 {
        let mut cut = 450;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}
