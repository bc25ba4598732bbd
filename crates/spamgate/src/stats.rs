//! `spamgate stats`: decisions per action and per reason, counted from the decision log
//! lines (`spamgate::decision: action=... reasons="..."`), so any period the logs cover
//! can be asked about (`journalctl -u spamgate --since ...`), on any host.

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;

use serde::Serialize;
use spamgate_app::decision_log::{self, LogLine};

#[derive(Debug, Default, Serialize)]
pub struct DecisionCounts {
    pub decisions: u64,
    pub by_action: BTreeMap<String, u64>,
    /// The step of each reason token (`client:generic(s25r-1)` counts under
    /// `client:generic(s25r-1)`; `dnsbl:bl.example=127.0.0.2*1` under `dnsbl:bl.example`).
    pub by_reason: BTreeMap<String, u64>,
    /// Lines that looked like decisions but could not be read.
    pub unreadable: u64,
}

impl DecisionCounts {
    pub fn read(&mut self, input: impl BufRead) {
        for line in input.lines().map_while(Result::ok) {
            self.add_line(&line);
        }
    }

    pub fn add_line(&mut self, line: &str) {
        match decision_log::parse(line) {
            LogLine::Other => {}
            LogLine::Unreadable => self.unreadable += 1,
            LogLine::Decision(record) => {
                self.decisions += 1;
                *self.by_action.entry(record.action.to_string()).or_default() += 1;
                for token in record.reasons.split_whitespace() {
                    *self.by_reason.entry(reason_key(token)).or_default() += 1;
                }
            }
        }
    }
}

/// A low-cardinality key: drop per-message details (waits, answers, weights).
fn reason_key(token: &str) -> String {
    let (step, detail) = token.split_once(':').unwrap_or((token, ""));
    let detail = match step {
        "dnsbl" | "dnswl" | "allow" => detail.split('=').next().unwrap_or(detail),
        "greylist" | "list-error" | "limit" | "store-error" => {
            detail.split('(').next().unwrap_or(detail)
        }
        "submission" | "dnsbl-score" | "stage" | "unauthenticated" => "",
        _ => detail,
    };
    if detail.is_empty() {
        step.to_string()
    } else {
        format!("{step}:{detail}")
    }
}

impl fmt::Display for DecisionCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "decisions\t{}", self.decisions)?;
        let share = |n: u64| {
            if self.decisions == 0 {
                0.0
            } else {
                n as f64 * 100.0 / self.decisions as f64
            }
        };
        writeln!(f, "\nby action")?;
        for (action, n) in &self.by_action {
            writeln!(f, "  {action:<12} {n:>10}  {:5.1} %", share(*n))?;
        }
        writeln!(f, "\nby reason")?;
        let mut reasons: Vec<_> = self.by_reason.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (reason, n) in reasons {
            writeln!(f, "  {reason:<40} {n:>10}  {:5.1} %", share(*n))?;
        }
        if self.unreadable > 0 {
            writeln!(f, "\nunreadable decision lines\t{}", self.unreadable)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_actions_and_reasons() {
        let log = r#"2026-11-28T09:00:00Z  INFO spamgate::decision: action=greylist client=203.0.113.7 name=203-0-113-7.dyn.example.net helo=- sender=<a@example.org> recipient=<u@example.net> state=RCPT queue_id=- reasons="client:generic(s25r-1) greylist:new(retry_in=300s)" reply="DEFER_IF_PERMIT 4.7.1 x"
2026-11-28T09:05:00Z  INFO spamgate::decision: action=pass client=203.0.113.7 name=x helo=- sender=<a@example.org> recipient=<u@example.net> state=RCPT queue_id=- reasons="client:generic(s25r-1) greylist:passed(waited=312s)" reply="DUNNO"
2026-11-28T09:06:00Z  INFO spamgate::decision: action=reject client=192.0.2.66 name=x helo=- sender=<> recipient=<u@example.net> state=RCPT queue_id=- reasons="dnsbl:bl.example=127.0.0.2*1 dnsbl-score:1/1 client:proper" reply="554 5.7.1 x"
2026-11-28T09:06:01Z  INFO spamgate: listening on 127.0.0.1:10023
2026-11-28T09:06:02Z  INFO spamgate::decision: action=pass broken line
"#;
        let mut counts = DecisionCounts::default();
        counts.read(log.as_bytes());
        assert_eq!(counts.decisions, 3);
        assert_eq!(counts.unreadable, 1);
        assert_eq!(counts.by_action["pass"], 1);
        assert_eq!(counts.by_action["greylist"], 1);
        assert_eq!(counts.by_action["reject"], 1);
        assert_eq!(counts.by_reason["client:generic(s25r-1)"], 2);
        assert_eq!(counts.by_reason["greylist:new"], 1);
        assert_eq!(counts.by_reason["greylist:passed"], 1);
        assert_eq!(counts.by_reason["dnsbl:bl.example"], 1);
        assert_eq!(counts.by_reason["client:proper"], 1);
        let text = counts.to_string();
        assert!(text.contains("decisions\t3"), "{text}");
    }
}
