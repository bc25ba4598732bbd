//! The decision log line: one per answered request, written by the front-ends, read back
//! by `spamgate stats`. The format is defined here once, beside its reader.
//!
//! `action=greylist client=203.0.113.7 name=... helo=- sender=<a@example.org>
//! recipient=<u@example.net> state=RCPT queue_id=- reasons="client:generic(s25r-1)
//! greylist:new(retry_in=300s)" reply="DEFER_IF_PERMIT 4.7.1 ..."`, logged at `info`
//! under the target [`TARGET`].

use std::fmt;

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

impl DecisionLine<'_> {
    /// Logs the line at `info` under [`TARGET`].
    pub fn log(&self) {
        tracing::info!(target: TARGET, "{self}");
    }
}

/// What `spamgate stats` reads back from a decision line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord<'a> {
    pub action: &'a str,
    /// The reasons' short forms, space-separated.
    pub reasons: &'a str,
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
/// journald fields), as long as the tracing target is there.
pub fn parse(line: &str) -> LogLine<'_> {
    let marker = "spamgate::decision: ";
    let Some(at) = line.find(marker) else {
        return LogLine::Other;
    };
    let record = &line[at + marker.len()..];
    let action = record
        .strip_prefix("action=")
        .and_then(|rest| rest.split(' ').next());
    let reasons = record.find(" reasons=\"").and_then(|start| {
        let rest = &record[start + " reasons=\"".len()..];
        rest.find('"').map(|end| &rest[..end])
    });
    match (action, reasons) {
        (Some(action), Some(reasons)) if !action.is_empty() => {
            LogLine::Decision(DecisionRecord { action, reasons })
        }
        _ => LogLine::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spamgate_engine::{Envelope, Reason, Stage};

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
        let logged = format!("2026-12-01T00:00:00Z  INFO {TARGET}: {line}");
        assert_eq!(
            parse(&logged),
            LogLine::Decision(DecisionRecord {
                action: "pass",
                reasons: "greylist:disabled"
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
