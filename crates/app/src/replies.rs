//! Reply texts: a [`Verdict`] becomes an SMTP reply (a kind, a basic code and a text),
//! from operator-editable templates. Nothing here knows a front-end's wire format: the
//! Postfix front-end adds its verbs (`DUNNO`, `DEFER_IF_PERMIT`), a milter would send the
//! code and text.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use spamgate_engine::client::ClientClass;
use spamgate_engine::{Action, Envelope, Reason, Refusal, Verdict};

/// What kind of reply a verdict is, for a front-end to choose its verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// No objection; later checks still run. The text, if any, is a header to add.
    Pass,
    /// Greylisting: a temporary error asking the client to resend.
    Greylist,
    /// spamgate's own trouble (store down, fail mode "defer"): a temporary error.
    TempFail,
    /// A permanent refusal.
    Reject,
    /// A temporary refusal of a submission over its limit.
    Defer,
}

/// The kind and the basic SMTP code of a verdict's reply; the text comes from
/// [`Replies::write_text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHead {
    pub kind: ReplyKind,
    /// 250 for a pass, 450/451 for temporary errors, the template's own code otherwise.
    pub code: u16,
}

/// A template that does not fit its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {value:?}: {message}")]
pub struct ReplyError {
    pub key: String,
    pub value: String,
    pub message: String,
}

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
    /// The first problem of [`Replies::problems`].
    pub fn validate(&self) -> Result<(), ReplyError> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every template that does not fit its key, once each: unknown placeholders, a
    /// refusal without its 5xx (or 4xx) code, and a temporary error (greylisting,
    /// spamgate's own trouble) that starts with a permanent 5xx code.
    pub fn problems(&self) -> Vec<ReplyError> {
        let mut problems = Vec::new();
        let coded = [
            ("replies.reject", &self.reject, Some(b'5')),
            ("replies.greylist", &self.greylist, None),
            ("replies.tempfail", &self.tempfail, None),
            (
                "replies.submission_refused",
                &self.submission_refused,
                Some(b'5'),
            ),
            (
                "replies.submission_unauthenticated",
                &self.submission_unauthenticated,
                Some(b'5'),
            ),
            (
                "replies.submission_limit",
                &self.submission_limit,
                Some(b'4'),
            ),
            (
                "replies.submission_too_large",
                &self.submission_too_large,
                Some(b'5'),
            ),
        ];
        for (key, text, class) in coded {
            if let Err(e) = check_placeholders(key, text) {
                problems.push(e);
            }
            let bytes = text.as_bytes();
            match class {
                Some(class) => {
                    let code_ok = bytes.len() >= 3
                        && bytes[0] == class
                        && bytes[..3].iter().all(u8::is_ascii_digit);
                    if !code_ok {
                        let message = format!("must start with a {}xx code", class as char);
                        problems.push(invalid(key, text, &message));
                    }
                }
                // Sent after DEFER_IF_PERMIT: a 5xx code (or 5.x.x status) in it would
                // turn a temporary error into a permanent one.
                None if bytes.first() == Some(&b'5') => problems.push(invalid(
                    key,
                    text,
                    "a temporary error must not start with a 5xx code or 5.x.x status",
                )),
                None => {}
            }
        }
        if self.header_name.is_empty()
            || !self
                .header_name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b':')
        {
            problems.push(invalid(
                "replies.header_name",
                &self.header_name,
                "not a header field name",
            ));
        }
        problems
    }

    /// The reply's kind and basic code.
    pub fn head(&self, verdict: &Verdict) -> ReplyHead {
        let (kind, code) = match verdict.action {
            // A tarpit's reply, once held, is a pass.
            Action::Pass | Action::Tarpit { .. } => (ReplyKind::Pass, 250),
            Action::Greylist { .. } => (ReplyKind::Greylist, 450),
            Action::TempFail => (ReplyKind::TempFail, 451),
            Action::Reject { refusal } => (ReplyKind::Reject, code_of(self.refusal(refusal))),
            Action::Defer { .. } => (ReplyKind::Defer, code_of(&self.submission_limit)),
        };
        ReplyHead { kind, code }
    }

    /// Appends the reply text, without the basic code, to `out`: placeholders filled in,
    /// control characters made spaces, the length bounded. A pass has no text unless
    /// `prepend_header` asks for a header (`X-Spamgate: pass; reasons`).
    pub fn write_text(&self, verdict: &Verdict, envelope: &Envelope, out: &mut String) {
        match verdict.action {
            Action::Pass | Action::Tarpit { .. } if self.prepend_header => {
                let start = out.len();
                out.push_str(&self.header_name);
                out.push_str(": pass; ");
                for (i, reason) in verdict.reasons.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(&reason.short());
                }
                sanitize_tail(out, start);
            }
            Action::Pass | Action::Tarpit { .. } => {}
            Action::Greylist { retry_in } => {
                self.expand(&self.greylist, verdict, envelope, Some(retry_in), out)
            }
            Action::Reject { refusal } => self.expand(
                without_code(self.refusal(refusal)),
                verdict,
                envelope,
                None,
                out,
            ),
            Action::Defer { retry_in } => self.expand(
                without_code(&self.submission_limit),
                verdict,
                envelope,
                Some(retry_in),
                out,
            ),
            Action::TempFail => self.expand(&self.tempfail, verdict, envelope, None, out),
        }
    }

    /// The template of a refusal.
    fn refusal(&self, refusal: Refusal) -> &str {
        match refusal {
            Refusal::Dnsbl => &self.reject,
            Refusal::AccountStatus => &self.submission_refused,
            Refusal::Unauthenticated => &self.submission_unauthenticated,
            Refusal::TooLarge => &self.submission_too_large,
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

    /// Appends `template` with its placeholders filled in, sanitised, to `out`.
    fn expand(
        &self,
        template: &str,
        verdict: &Verdict,
        envelope: &Envelope,
        retry_in: Option<u64>,
        out: &mut String,
    ) {
        let class = verdict.client_class();
        let rule = match class {
            Some(ClientClass::Generic { rule, .. }) => rule.as_str(),
            _ => "",
        };
        let start = out.len();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) => {
                    let name = &after[..close];
                    // Writing into a String cannot fail.
                    match name {
                        "client_address" => {
                            let _ = write!(out, "{}", envelope.client_address);
                        }
                        "client_name" => {
                            out.push_str(envelope.client_name.as_deref().unwrap_or("unknown"))
                        }
                        "sender" => out.push_str(&envelope.sender),
                        "recipient" => out.push_str(&envelope.recipient),
                        "class" => out.push_str(class.map_or("", ClientClass::id)),
                        "rule" => out.push_str(rule),
                        "reason" => out.push_str(self.reason_words(class)),
                        "retry_in" => {
                            let _ = write!(out, "{}", retry_in.unwrap_or(0));
                        }
                        "zone" => {
                            for (i, (zone, _)) in verdict.rejecting_lists().enumerate() {
                                if i > 0 {
                                    out.push_str(", ");
                                }
                                out.push_str(zone);
                            }
                        }
                        "txt" => {
                            if let Some(txt) = verdict.rejecting_lists().find_map(|(_, t)| t) {
                                out.push_str("; ");
                                out.push_str(txt);
                            }
                        }
                        "username" | "status" | "limit" => submission_field(verdict, name, out),
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
        sanitize_tail(out, start);
    }
}

/// Appends `{username}`, `{status}` or `{limit}` from a submission verdict's reasons.
fn submission_field(verdict: &Verdict, name: &str, out: &mut String) {
    let value = verdict.reasons.iter().find_map(|r| match (name, r) {
        ("username", Reason::Submission { username }) => Some(username.as_str()),
        ("status", Reason::AccountStatus { status }) => Some(status.id()),
        ("limit", Reason::RateLimit { limit, .. }) => Some(limit.id()),
        _ => None,
    });
    out.push_str(value.unwrap_or_default());
}

/// The basic code a template starts with (checked by [`Replies::validate`]).
fn code_of(template: &str) -> u16 {
    template
        .get(..3)
        .and_then(|c| c.parse().ok())
        .unwrap_or(451)
}

/// The template after its basic code and the space that follows it.
fn without_code(template: &str) -> &str {
    template
        .get(3..)
        .map_or("", |rest| rest.strip_prefix(' ').unwrap_or(rest))
}

fn check_placeholders(key: &str, text: &str) -> Result<(), ReplyError> {
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

fn invalid(key: &str, value: &str, message: &str) -> ReplyError {
    ReplyError {
        key: key.into(),
        value: value.into(),
        message: message.into(),
    }
}

/// Reply texts go on one protocol line: no control characters, bounded length. Applies to
/// `out[start..]`, the text just appended.
fn sanitize_tail(out: &mut String, start: usize) {
    if out[start..].chars().any(char::is_control) {
        let clean: String = out[start..]
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        out.truncate(start);
        out.push_str(&clean);
    }
    if out.len() - start > MAX_TEXT_LEN {
        out.truncate(out.floor_char_boundary(start + MAX_TEXT_LEN));
    }
}

const MAX_TEXT_LEN: usize = 450;

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            client_name: Some("host-1.dyn.example.test".into()),
            sender: "s@example.test".into(),
            recipient: "r@example.net".into(),
            ..Envelope::new("192.0.2.7".parse().unwrap())
        }
    }

    fn listed(zone: &str, weight: i32, txt: Option<&str>) -> Reason {
        Reason::Dnsbl {
            zone: zone.into(),
            weight,
            answers: vec!["127.0.0.2".parse().unwrap()],
            txt: txt.map(str::to_string),
        }
    }

    /// The head and the text of one verdict's reply.
    fn reply(replies: &Replies, verdict: &Verdict) -> (ReplyKind, u16, String) {
        let head = replies.head(verdict);
        let mut text = String::new();
        replies.write_text(verdict, &envelope(), &mut text);
        (head.kind, head.code, text)
    }

    #[test]
    fn reject_names_every_rejecting_list_and_the_first_txt() {
        let verdict = Verdict {
            action: Action::Reject {
                refusal: Refusal::Dnsbl,
            },
            reasons: vec![
                listed("a.test", 1, None),
                listed("wl.test", -5, Some("not me")),
                listed("b.test", 2, Some("see http://b.test/192.0.2.7")),
                listed("c.test", 1, Some("second txt")),
            ],
        };
        assert_eq!(
            reply(&Replies::default(), &verdict),
            (
                ReplyKind::Reject,
                554,
                "5.7.1 Service unavailable; client [192.0.2.7] blocked using \
                 a.test, b.test, c.test; see http://b.test/192.0.2.7"
                    .into()
            )
        );
    }

    #[test]
    fn greylist_and_placeholders_are_appended_to_what_is_in_the_buffer() {
        let replies = Replies {
            greylist: "{class}/{rule} {client_name} <{sender}> <{recipient}> \
                       {retry_in}s {reason} {unknown}{txt}{zone}"
                .into(),
            ..Replies::default()
        };
        let verdict = Verdict {
            action: Action::Greylist { retry_in: 300 },
            reasons: vec![Reason::Client {
                client: ClientClass::Generic {
                    name: "host-1.dyn.example.test".into(),
                    rule: "dyn".into(),
                },
            }],
        };
        let mut out = String::from("kept|");
        replies.write_text(&verdict, &envelope(), &mut out);
        assert_eq!(
            out,
            "kept|generic/dyn host-1.dyn.example.test <s@example.test> \
             <r@example.net> 300s S25R check, host name looks dynamic {unknown}"
        );
        assert_eq!(replies.head(&verdict).code, 450);
    }

    #[test]
    fn control_characters_become_spaces_and_long_texts_are_cut_on_a_char_boundary() {
        let verdict = Verdict {
            action: Action::Greylist { retry_in: 1 },
            reasons: vec![],
        };
        let envelope = Envelope {
            sender: "a\u{7}b\u{85}c".into(),
            ..envelope()
        };
        let replies = Replies {
            greylist: "<{sender}>".into(),
            ..Replies::default()
        };
        let mut out = String::new();
        replies.write_text(&verdict, &envelope, &mut out);
        assert_eq!(out, "<a b c>");

        // 449 ASCII bytes then a 2-byte character: the cut at 450 falls inside it.
        let long = Replies {
            greylist: format!("{}é and more", "x".repeat(449)),
            ..Replies::default()
        };
        let mut out = String::from("prefix ");
        long.write_text(&verdict, &envelope, &mut out);
        assert_eq!(out, format!("prefix {}", "x".repeat(449)));
    }

    #[test]
    fn a_pass_has_no_text_or_a_header_with_the_reasons() {
        let verdict = Verdict::pass(vec![
            Reason::Stage {
                protocol_state: "DATA".into(),
            },
            Reason::GreylistDisabled,
        ]);
        assert_eq!(
            reply(&Replies::default(), &verdict),
            (ReplyKind::Pass, 250, String::new())
        );
        let prepend = Replies {
            prepend_header: true,
            ..Replies::default()
        };
        assert_eq!(
            reply(&prepend, &verdict).2,
            "X-Spamgate: pass; stage:DATA greylist:disabled"
        );
    }

    #[test]
    fn each_refusal_has_its_own_template_and_code() {
        let submission = |refusal, reason| Verdict {
            action: Action::Reject { refusal },
            reasons: vec![
                Reason::Submission {
                    username: "taro@example.test".into(),
                },
                reason,
            ],
        };
        let suspended = submission(
            Refusal::AccountStatus,
            Reason::AccountStatus {
                status: spamgate_engine::outbound::AccountStatus::Suspended,
            },
        );
        assert_eq!(
            reply(&Replies::default(), &suspended),
            (
                ReplyKind::Reject,
                554,
                "5.7.1 Sending refused: account taro@example.test is suspended; \
                 please contact customer support"
                    .into()
            )
        );
        let unauthenticated = Verdict {
            action: Action::Reject {
                refusal: Refusal::Unauthenticated,
            },
            reasons: vec![Reason::Unauthenticated { server_port: 587 }],
        };
        let (kind, code, text) = reply(&Replies::default(), &unauthenticated);
        assert_eq!((kind, code), (ReplyKind::Reject, 530));
        assert!(text.starts_with("5.7.0 Authentication required"), "{text}");
        let too_large = submission(
            Refusal::TooLarge,
            Reason::RateLimit {
                limit: spamgate_engine::outbound::LimitKind::RecipientsPerDay,
                used: 0,
                cost: 300,
                allowed: 200,
                retry_in: 0,
            },
        );
        let (kind, code, text) = reply(&Replies::default(), &too_large);
        assert_eq!((kind, code), (ReplyKind::Reject, 554));
        assert!(
            text.starts_with("5.5.3 Too many recipients for one message (recipients-per-day)"),
            "{text}"
        );
    }
}
