//! The decision log line: one per answered request, written by the front-ends, read back
//! by `spamgate stats`. The format is defined here once, beside its reader.
//!
//! `action=greylist client=203.0.113.7 name=... helo=- sender=<a@example.org>
//! recipient=<u@example.net> state=RCPT queue_id=- reasons="client:generic(s25r-1)
//! greylist:new(retry_in=300s)" reply="DEFER_IF_PERMIT 4.7.1 ..."`, logged at `info`
//! under the target [`TARGET`].
//!
//! The same decision as one JSON object ([`DecisionLine::write_json`], `log_format =
//! "json"`): `{"timestamp":"...","level":"INFO","target":"spamgate::decision","action":
//! "greylist","client":"203.0.113.7","name":"...","helo":null,"sender":"a@example.org",
//! "recipient":"u@example.net","state":"RCPT","queue_id":null,"reasons":["client:generic(
//! s25r-1)","greylist:new(retry_in=300s)"],"reply":"DEFER_IF_PERMIT 4.7.1 ..."}`.
//!
//! A daemon that installs a [`DecisionSink`] gets each enabled line handed to it instead
//! of through tracing's event machinery (the line is formatted straight into the sink's
//! buffer); without one the line is a tracing event.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use spamgate_engine::{Transaction, Verdict};

/// The tracing target of decision lines (filter on it: `spamgate::decision=warn`).
pub const TARGET: &str = "spamgate::decision";

/// One decision, formatted as its log line by `Display`.
pub struct DecisionLine<'a> {
    pub transaction: &'a Transaction,
    pub verdict: &'a Verdict,
    /// The front-end's queue id, if it has one.
    pub queue_id: Option<&'a str>,
    /// The reply as the front-end sent it.
    pub reply: &'a str,
}

impl fmt::Display for DecisionLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let envelope = &self.transaction.envelope;
        write!(
            f,
            "action={} client={} name={} helo={} sender=<{}> recipient=<{}> state={} queue_id={} reasons=\"",
            self.verdict.action.id(),
            envelope.client_address,
            envelope
                .client_name
                .as_deref()
                .or(envelope.reverse_client_name.as_deref())
                .unwrap_or("unknown"),
            envelope.helo.as_deref().unwrap_or("-"),
            envelope.sender,
            envelope.recipient,
            self.transaction.stage,
            self.queue_id.filter(|q| !q.is_empty()).unwrap_or("-"),
        )?;
        for (i, reason) in self.verdict.reasons.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&reason.short())?;
        }
        write!(f, "\" reply=\"{}\"", self.reply)
    }
}

/// Where decision lines go when the process installed one ([`set_sink`]).
pub trait DecisionSink: Send + Sync {
    fn write(&self, line: &DecisionLine<'_>);
}

static SINK: OnceLock<Box<dyn DecisionSink>> = OnceLock::new();

/// Installs the process's decision sink; the first one stays. Says whether this one did.
pub fn set_sink(sink: Box<dyn DecisionSink>) -> bool {
    SINK.set(sink).is_ok()
}

impl DecisionLine<'_> {
    /// Logs the line at `info` under [`TARGET`]: to the installed [`DecisionSink`] when
    /// the tracing filter enables that target and level, else as a tracing event.
    pub fn log(&self) {
        match SINK.get() {
            Some(sink) => {
                if tracing::enabled!(target: TARGET, tracing::Level::INFO) {
                    sink.write(self);
                }
            }
            None => tracing::info!(target: TARGET, "{self}"),
        }
    }

    /// The decision's fields as JSON members, each preceded by a comma, appended to `out`
    /// (the caller writes the braces and the members before: timestamp, level, target).
    pub fn write_json_fields(&self, out: &mut String) {
        let envelope = &self.transaction.envelope;
        let name = envelope
            .client_name
            .as_deref()
            .or(envelope.reverse_client_name.as_deref())
            .unwrap_or("unknown");
        out.push_str(",\"action\":");
        json_str(out, self.verdict.action.id());
        out.push_str(",\"client\":\"");
        {
            use fmt::Write as _;
            // An IP address needs no escaping.
            let _ = write!(out, "{}", envelope.client_address);
        }
        out.push_str("\",\"name\":");
        json_str(out, name);
        out.push_str(",\"helo\":");
        json_opt(out, envelope.helo.as_deref());
        out.push_str(",\"sender\":");
        json_str(out, &envelope.sender);
        out.push_str(",\"recipient\":");
        json_str(out, &envelope.recipient);
        out.push_str(",\"state\":");
        json_str(out, &self.transaction.stage.to_string());
        out.push_str(",\"queue_id\":");
        json_opt(out, self.queue_id.filter(|q| !q.is_empty()));
        out.push_str(",\"reasons\":[");
        for (i, reason) in self.verdict.reasons.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(out, &reason.short());
        }
        out.push_str("],\"reply\":");
        json_str(out, self.reply);
    }
}

/// `value` as a JSON string, appended to `out`.
pub fn json_str(out: &mut String, value: &str) {
    out.push('"');
    let mut rest = value;
    while let Some(at) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ') {
        out.push_str(&rest[..at]);
        let c = rest[at..].chars().next().unwrap_or(' ');
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => {
                use fmt::Write as _;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.push_str(rest);
    out.push('"');
}

fn json_opt(out: &mut String, value: Option<&str>) {
    match value {
        Some(value) => json_str(out, value),
        None => out.push_str("null"),
    }
}

/// What `spamgate stats` reads back from a decision line, text or JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord<'a> {
    pub action: Cow<'a, str>,
    /// The reasons' short forms, space-separated.
    pub reasons: Cow<'a, str>,
    /// A JSON line's own `timestamp` (RFC 3339); a text line's time is its prefix.
    pub timestamp: Option<String>,
}

/// How a log line relates to decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine<'a> {
    /// Not a decision line.
    Other,
    /// A decision line that cannot be read (cut short, edited).
    Unreadable,
    Decision(DecisionRecord<'a>),
}

/// Reads a decision line from a log, whatever the log prefixes it with (timestamps,
/// journald fields, a syslog priority), as long as the tracing target is there: a text
/// line (`spamgate::decision: action=...`) or a JSON one (`log_format = "json"`: an
/// object whose `target` is [`TARGET`]). Which one is decided by what comes first, the
/// object's `{` or the text target (a sender or reply quoted inside one cannot pass for
/// the other).
pub fn parse(line: &str) -> LogLine<'_> {
    let marker = "spamgate::decision: ";
    let text_at = line.find(marker);
    match line.find('{') {
        Some(brace) if text_at.is_none_or(|at| brace < at) => parse_json(&line[brace..]),
        _ => match text_at {
            Some(at) => parse_text(&line[at + marker.len()..]),
            None => LogLine::Other,
        },
    }
}

fn parse_text(record: &str) -> LogLine<'_> {
    let action = record
        .strip_prefix("action=")
        .and_then(|rest| rest.split(' ').next());
    let reasons = record.find(" reasons=\"").and_then(|start| {
        let rest = &record[start + " reasons=\"".len()..];
        rest.find('"').map(|end| &rest[..end])
    });
    match (action, reasons) {
        (Some(action), Some(reasons)) if !action.is_empty() => LogLine::Decision(DecisionRecord {
            action: Cow::Borrowed(action),
            reasons: Cow::Borrowed(reasons),
            timestamp: None,
        }),
        _ => LogLine::Unreadable,
    }
}

fn parse_json(object: &str) -> LogLine<'static> {
    #[derive(serde::Deserialize)]
    struct Line {
        target: Option<String>,
        timestamp: Option<String>,
        action: Option<String>,
        reasons: Option<Vec<String>>,
    }
    // Only lines that name the target are decisions; a cut-short one still names it.
    if !object.contains(&format!("\"target\":\"{TARGET}\"")) {
        return LogLine::Other;
    }
    let Ok(line) = serde_json::from_str::<Line>(object.trim_end()) else {
        return LogLine::Unreadable;
    };
    if line.target.as_deref() != Some(TARGET) {
        return LogLine::Other;
    }
    match (line.action, line.reasons) {
        (Some(action), Some(reasons)) if !action.is_empty() => LogLine::Decision(DecisionRecord {
            action: Cow::Owned(action),
            reasons: Cow::Owned(reasons.join(" ")),
            timestamp: line.timestamp,
        }),
        _ => LogLine::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spamgate_engine::{Envelope, Reason, Stage};

    #[test]
    fn json_strings_escape_what_json_needs() {
        fn check(input: &str, expected: &str) {
            let mut out = String::new();
            json_str(&mut out, input);
            assert_eq!(out, expected, "{input:?}");
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, input);
        }
        check("", r#""""#);
        check("a@example.org", r#""a@example.org""#);
        check("say \"hi\"", r#""say \"hi\"""#);
        check("back\\slash", r#""back\\slash""#);
        check("line\nbreak\r\t", r#""line\nbreak\r\t""#);
        check("bell\u{7}nul\u{0}", r#""bell\u0007nul\u0000""#);
        check("日本語", r#""日本語""#);
    }

    #[test]
    fn a_written_line_reads_back() {
        let transaction = Transaction {
            stage: Stage::Rcpt,
            ..Transaction::at_rcpt(Envelope {
                sender: "a@example.org".into(),
                recipient: "u@example.net".into(),
                ..Envelope::new("203.0.113.7".parse().unwrap())
            })
        };
        let verdict = Verdict::pass(vec![Reason::GreylistDisabled]);
        let line = DecisionLine {
            transaction: &transaction,
            verdict: &verdict,
            queue_id: None,
            reply: "DUNNO",
        }
        .to_string();
        assert_eq!(
            line,
            "action=pass client=203.0.113.7 name=unknown helo=- sender=<a@example.org> \
             recipient=<u@example.net> state=RCPT queue_id=- reasons=\"greylist:disabled\" \
             reply=\"DUNNO\""
        );
        let mut json = String::from("{\"target\":\"spamgate::decision\"");
        DecisionLine {
            transaction: &transaction,
            verdict: &verdict,
            queue_id: None,
            reply: "DUNNO",
        }
        .write_json_fields(&mut json);
        json.push('}');
        let value: serde_json::Value = serde_json::from_str(&json).expect(&json);
        assert_eq!(
            value,
            serde_json::json!({
                "target": "spamgate::decision", "action": "pass", "client": "203.0.113.7",
                "name": "unknown", "helo": null, "sender": "a@example.org",
                "recipient": "u@example.net", "state": "RCPT", "queue_id": null,
                "reasons": ["greylist:disabled"], "reply": "DUNNO"
            })
        );
        let logged = format!("2026-12-01T00:00:00Z  INFO {TARGET}: {line}");
        assert_eq!(
            parse(&logged),
            LogLine::Decision(DecisionRecord {
                action: "pass".into(),
                reasons: "greylist:disabled".into(),
                timestamp: None,
            })
        );
        for (text, want) in [
            (
                "INFO spamgate: listening on 127.0.0.1:10023",
                LogLine::Other,
            ),
            (
                "INFO spamgate::decision: action=pass broken line",
                LogLine::Unreadable,
            ),
            (
                "INFO spamgate::decision: reasons=\"x\"",
                LogLine::Unreadable,
            ),
        ] {
            assert_eq!(parse(text), want, "{text}");
        }
    }
}
