//! `spamgate stats`: decisions per action and per reason, counted from the decision log
//! lines (`spamgate::decision: action=... reasons="..."`, or the JSON objects of
//! `log_format = "json"`, in any mix), so any period the logs cover can be asked about
//! (`journalctl -u spamgate --since ...`), on any host.

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

/// `spamgate stats --effectiveness`: what greylisting did, per day of the first
/// attempt, client class and rule, from the decision lines.
///
/// A `greylist:new` line is a first attempt, counted on its own day. A
/// `greylist:passed(waited=Ns)` line is a retry that passed after the delay (a real
/// server, delayed N seconds), counted on the day of its first attempt (the line's time
/// less N) under the class and rule of the retrying client. First attempts of a day
/// that have not passed when the log ends are `not_passed`; once the log reaches past
/// the day's end plus the retry window (`settled`), they can no longer pass: those
/// senders never came back. Lines need a timestamp first (the daemon's own lines, or
/// `journalctl -o short-iso`); lines without one are counted as `undated`.
#[derive(Debug, Default)]
pub struct Effectiveness {
    rows: BTreeMap<(String, String, String), EffectRow>,
    /// Greylisting decision lines without a timestamp to place them on a day.
    pub undated: u64,
    /// The latest line time seen.
    pub log_end: Option<i64>,
}

#[derive(Debug, Default)]
struct EffectRow {
    /// The day's first attempt times are not kept; only counts and pass delays.
    greylisted: u64,
    delays: Vec<u64>,
}

impl Effectiveness {
    pub fn read(&mut self, input: impl BufRead, zone: &crate::display::DisplayZone) {
        for line in input.lines().map_while(Result::ok) {
            self.add_line(&line, zone);
        }
    }

    pub fn add_line(&mut self, line: &str, zone: &crate::display::DisplayZone) {
        let LogLine::Decision(record) = decision_log::parse(line) else {
            return;
        };
        let mut class = ("unknown".to_string(), "-".to_string());
        let mut outcome = None;
        for token in record.reasons.split_whitespace() {
            if let Some(client) = token.strip_prefix("client:") {
                class = match client.split_once('(') {
                    Some((name, rule)) => (name.into(), rule.trim_end_matches(')').into()),
                    None => (client.into(), "-".into()),
                };
            } else if token.starts_with("greylist:new") {
                outcome = Some(None);
            } else if let Some(rest) = token.strip_prefix("greylist:passed(waited=") {
                let waited = rest.trim_end_matches(")").trim_end_matches('s');
                outcome = waited.parse::<u64>().ok().map(Some);
            }
        }
        let Some(waited) = outcome else {
            return;
        };
        // A JSON line carries its time; a text line starts with it.
        let Some(at) = record
            .timestamp
            .as_deref()
            .and_then(line_time)
            .or_else(|| line_time(line))
        else {
            self.undated += 1;
            return;
        };
        self.log_end = Some(self.log_end.map_or(at, |end| end.max(at)));
        let first = at.saturating_sub(waited.map_or(0, |w| i64::try_from(w).unwrap_or(0)));
        let row = self
            .rows
            .entry((zone.day(first), class.0, class.1))
            .or_default();
        match waited {
            None => row.greylisted += 1,
            Some(w) => row.delays.push(w),
        }
    }

    /// The report: one row per day, class and rule, oldest day first.
    pub fn report(
        &mut self,
        zone: &crate::display::DisplayZone,
        retry_window: std::time::Duration,
    ) -> EffectReport {
        let window = i64::try_from(retry_window.as_secs()).unwrap_or(i64::MAX);
        let rows = self
            .rows
            .iter_mut()
            .map(|((day, class, rule), row)| {
                row.delays.sort_unstable();
                let passed = row.delays.len() as u64;
                let pick = |q: f64| -> Option<u64> {
                    let last = row.delays.len().checked_sub(1)?;
                    row.delays
                        .get(((last as f64) * q).round() as usize)
                        .copied()
                };
                // Midnight after the day, in the zone: the first attempts' last chance
                // to pass ends a retry window later.
                let day_end = zone
                    .parse_time(day, 0)
                    .ok()
                    .and_then(|start| zone.parse_time("tomorrow", start).ok());
                EffectDay {
                    day: day.clone(),
                    class: class.clone(),
                    rule: rule.clone(),
                    greylisted: row.greylisted,
                    passed,
                    not_passed: row.greylisted.saturating_sub(passed),
                    pass_rate: (row.greylisted > 0)
                        .then(|| (passed.min(row.greylisted) as f64) / row.greylisted as f64),
                    delay_median: pick(0.5),
                    delay_p90: pick(0.9),
                    delay_max: row.delays.last().copied(),
                    settled: matches!((day_end, self.log_end),
                        (Some(end), Some(log_end)) if end.saturating_add(window) <= log_end),
                }
            })
            .collect();
        EffectReport {
            days: rows,
            undated: self.undated,
            log_end: self.log_end.map(|t| zone.time(t)),
            retry_window: crate::display::duration(retry_window),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EffectReport {
    pub days: Vec<EffectDay>,
    pub undated: u64,
    /// The latest greylisting line's time (RFC 3339), or `null` with none.
    pub log_end: Option<String>,
    /// `[greylist] retry_window`, which decides when a day is settled.
    pub retry_window: String,
}

#[derive(Debug, Serialize)]
pub struct EffectDay {
    /// The day of the first attempts (`2026-12-01`), in `[server] display_timezone`.
    pub day: String,
    pub class: String,
    /// The `generic` rule, or `-`.
    pub rule: String,
    /// First attempts greylisted that day.
    pub greylisted: u64,
    /// Of the day's first attempts, retries that passed after the delay.
    pub passed: u64,
    /// `greylisted - passed` (0 when the log began after some first attempts).
    pub not_passed: u64,
    /// `passed / greylisted`; `null` with no first attempt in the log.
    pub pass_rate: Option<f64>,
    /// Delays of the passed retries, seconds.
    pub delay_median: Option<u64>,
    pub delay_p90: Option<u64>,
    pub delay_max: Option<u64>,
    /// The log reaches past the day's end plus the retry window: `not_passed` senders
    /// never came back.
    pub settled: bool,
}

impl fmt::Display for EffectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "day\tclass\trule\tgreylisted\tpassed\tnot_passed\tpass_rate\tdelay_median\tdelay_p90\tdelay_max\tsettled"
        )?;
        let secs = |d: Option<u64>| {
            d.map_or_else(
                || "-".to_string(),
                |s| crate::display::duration(std::time::Duration::from_secs(s)),
            )
        };
        for d in &self.days {
            writeln!(
                f,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                d.day,
                d.class,
                d.rule,
                d.greylisted,
                d.passed,
                d.not_passed,
                d.pass_rate
                    .map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0)),
                secs(d.delay_median),
                secs(d.delay_p90),
                secs(d.delay_max),
                if d.settled { "yes" } else { "no" },
            )?;
        }
        if self.undated > 0 {
            writeln!(
                f,
                "({} greylisting lines without a timestamp were left out: use journalctl -o short-iso)",
                self.undated
            )?;
        }
        Ok(())
    }
}

/// The time a log line starts with: RFC 3339 (the daemon's own lines,
/// `2026-12-01T01:00:00.123456Z`) or `journalctl -o short-iso`'s
/// `2026-12-01T10:00:00+0900` / `-o short-iso-precise`.
fn line_time(line: &str) -> Option<i64> {
    use std::str::FromStr;
    let token = line.split_whitespace().next()?;
    if let Ok(at) = jiff::Timestamp::from_str(token) {
        return Some(at.as_second());
    }
    // `+0900` → `+09:00`.
    let (head, tail) = token.split_at(token.len().checked_sub(5)?);
    let bytes = tail.as_bytes();
    if (bytes[0] == b'+' || bytes[0] == b'-') && bytes[1..].iter().all(u8::is_ascii_digit) {
        let fixed = format!("{head}{}:{}", &tail[..3], &tail[3..]);
        return jiff::Timestamp::from_str(&fixed)
            .ok()
            .map(|t| t.as_second());
    }
    None
}

#[cfg(test)]
mod effectiveness_tests {
    use super::*;
    use crate::display::DisplayZone;

    fn line(at: &str, class: &str, greylist: &str) -> String {
        format!(
            "{at} host spamgate[7]: INFO spamgate::decision: action=x client=203.0.113.7 name=x helo=- \
             sender=<a@example.org> recipient=<u@example.net> state=RCPT queue_id=- \
             reasons=\"{class} {greylist}\" reply=\"x\"\n"
        )
    }

    #[test]
    fn first_attempts_and_passes_per_day_class_and_rule() {
        let zone = DisplayZone::parse("+09:00").unwrap();
        let s25r = "client:generic(s25r-1)";
        let log = [
            // Day 1 (JST): two s25r-1 first attempts, one passes 10 min later; a
            // no-ptr first attempt never comes back.
            line("2026-12-01T10:00:00+0900", s25r, "greylist:new(retry_in=300s)"),
            line("2026-12-01T10:01:00+09:00", s25r, "greylist:new(retry_in=300s)"),
            line("2026-12-01T01:10:00Z", s25r, "greylist:passed(waited=600s)"),
            line("2026-12-01T11:00:00+0900", "client:no-ptr", "greylist:new(retry_in=300s)"),
            // Too early and known triplets are not first attempts nor passes.
            line("2026-12-01T10:02:00+0900", s25r, "greylist:too-early(waited=120s,retry_in=180s)"),
            line("2026-12-01T12:00:00+0900", s25r, "greylist:known"),
            // 23:55 JST on day 1, passing at 00:25 on day 2: counted on day 1.
            line("2026-12-01T23:55:00+0900", s25r, "greylist:new(retry_in=300s)"),
            line("2026-12-02T00:25:00+0900", s25r, "greylist:passed(waited=1800s)"),
            // Day 3 (the log's last), still open.
            line("2026-12-03T09:00:00+0900", s25r, "greylist:new(retry_in=300s)"),
            // No timestamp.
            "INFO spamgate::decision: action=greylist client=x name=x helo=- sender=<> recipient=<u@example.net> state=RCPT queue_id=- reasons=\"client:no-ptr greylist:new(retry_in=300s)\" reply=\"x\"\n".into(),
        ]
        .concat();
        let mut effect = Effectiveness::default();
        effect.read(log.as_bytes(), &zone);
        let report = effect.report(&zone, std::time::Duration::from_secs(86_400));
        let rows: Vec<_> = report
            .days
            .iter()
            .map(|d| {
                (
                    d.day.as_str(),
                    d.class.as_str(),
                    d.rule.as_str(),
                    d.greylisted,
                    d.passed,
                    d.not_passed,
                    d.delay_max,
                    d.settled,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("2026-12-01", "generic", "s25r-1", 3, 2, 1, Some(1800), true),
                ("2026-12-01", "no-ptr", "-", 1, 0, 1, None, true),
                ("2026-12-03", "generic", "s25r-1", 1, 0, 1, None, false),
            ]
        );
        assert_eq!(report.days[0].delay_median, Some(1800));
        assert_eq!(report.days[0].pass_rate, Some(2.0 / 3.0));
        assert_eq!(report.undated, 1);
        assert_eq!(report.log_end.as_deref(), Some("2026-12-03T09:00:00+09:00"));
        let text = report.to_string();
        assert!(
            text.contains("2026-12-01\tgeneric\ts25r-1\t3\t2\t1\t66.7%\t30m\t30m\t30m\tyes"),
            "{text}"
        );
    }

    #[test]
    fn line_times_in_the_forms_logs_have() {
        for (line, want) in [
            ("2026-12-01T01:00:00Z INFO x", Some(1_796_086_800)),
            ("2026-12-01T01:00:00.123456Z  INFO x", Some(1_796_086_800)),
            (
                "2026-12-01T10:00:00+0900 host spamgate[1]: x",
                Some(1_796_086_800),
            ),
            (
                "2026-12-01T10:00:00.000001+0900 host x",
                Some(1_796_086_800),
            ),
            ("2026-12-01T10:00:00+09:00 x", Some(1_796_086_800)),
            ("Dec 01 10:00:00 host spamgate[1]: x", None),
            ("INFO spamgate::decision: x", None),
            ("", None),
        ] {
            assert_eq!(line_time(line), want, "{line:?}");
        }
    }
}

/// Text and JSON decision lines (`[server] log_format`) of the same decisions give the
/// same figures, in `stats` and in `stats --effectiveness`.
#[cfg(test)]
mod format_tests {
    use super::*;
    use crate::display::DisplayZone;
    use spamgate_app::decision_log::json_str;

    /// One decision: (time, action, reasons, sender).
    type Decision = (
        &'static str,
        &'static str,
        &'static [&'static str],
        &'static str,
    );

    /// The daemon's text line, as journald or a file holds it.
    fn text((at, action, reasons, sender): Decision) -> String {
        format!(
            "{at}  INFO spamgate::decision: action={action} client=203.0.113.7 name=x helo=- \
             sender=<{sender}> recipient=<u@example.net> state=RCPT queue_id=- \
             reasons=\"{}\" reply=\"DUNNO\"\n",
            reasons.join(" ")
        )
    }

    /// The same decision as a `log_format = "json"` line (docs/operations.md, "JSON
    /// lines"), optionally behind a syslog-style prefix.
    fn json((at, action, reasons, sender): Decision, prefix: &str) -> String {
        let mut out = format!(
            "{prefix}{{\"timestamp\":\"{at}\",\"level\":\"INFO\",\"target\":\"spamgate::decision\",\"action\":"
        );
        json_str(&mut out, action);
        out.push_str(",\"client\":\"203.0.113.7\",\"name\":\"x\",\"helo\":null,\"sender\":");
        json_str(&mut out, sender);
        out.push_str(
            ",\"recipient\":\"u@example.net\",\"state\":\"RCPT\",\"queue_id\":null,\"reasons\":[",
        );
        for (i, reason) in reasons.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(&mut out, reason);
        }
        out.push_str("],\"reply\":\"DUNNO\"}\n");
        out
    }

    /// Both formats of `decisions` (and the text lines mixed with other log lines) count
    /// `expected` decisions, with the same figures.
    fn check(decisions: &[Decision], other_lines: &str, expected: u64) {
        let zone = DisplayZone::parse("+09:00").unwrap();
        let figures = |log: &str| {
            let mut counts = DecisionCounts::default();
            counts.read(log.as_bytes());
            let mut effect = Effectiveness::default();
            effect.read(log.as_bytes(), &zone);
            let report = effect.report(&zone, std::time::Duration::from_secs(86_400));
            (
                serde_json::to_value(&counts).unwrap(),
                serde_json::to_value(&report).unwrap(),
            )
        };
        let text_log: String = decisions.iter().map(|d| text(*d)).collect::<String>() + other_lines;
        let json_log: String =
            decisions.iter().map(|d| json(*d, "")).collect::<String>() + other_lines;
        let syslog_log: String = decisions
            .iter()
            .map(|d| json(*d, "<22>spamgate[7]: "))
            .collect();
        let want = figures(&text_log);
        assert_eq!(want.0["decisions"], expected, "{text_log}");
        assert_eq!(figures(&json_log), want, "{json_log}");
        assert_eq!(figures(&syslog_log).0["by_reason"], want.0["by_reason"]);
        // Half and half: one figure for the log, whichever format each line has.
        let mixed: String = decisions
            .iter()
            .enumerate()
            .map(|(i, d)| if i % 2 == 0 { text(*d) } else { json(*d, "") })
            .collect::<String>()
            + other_lines;
        assert_eq!(figures(&mixed), want, "{mixed}");
    }

    const S25R: &str = "client:generic(s25r-1)";

    #[test]
    fn text_and_json_lines_give_the_same_figures() {
        check(&[], "", 0);
        check(
            &[
                (
                    "2026-12-01T01:00:00Z",
                    "greylist",
                    &[S25R, "greylist:new(retry_in=300s)"],
                    "a@example.org",
                ),
                (
                    "2026-12-01T01:10:00Z",
                    "pass",
                    &[S25R, "greylist:passed(waited=600s)"],
                    "a@example.org",
                ),
                (
                    "2026-12-01T02:00:00Z",
                    "greylist",
                    &["client:no-ptr", "greylist:new(retry_in=300s)"],
                    "",
                ),
                (
                    "2026-12-01T03:00:00Z",
                    "reject",
                    &[
                        "dnsbl:bl.example=127.0.0.2*1",
                        "dnsbl-score:1/1",
                        "client:proper",
                    ],
                    "x@example.com",
                ),
                (
                    "2026-12-02T03:00:00Z",
                    "pass",
                    &["allow:client-address=198.51.100.0/28(scope=all)"],
                    "b@example.net",
                ),
                (
                    "2026-12-03T04:00:00Z",
                    "greylist",
                    &[S25R, "greylist:new(retry_in=300s)"],
                    "c@example.org",
                ),
            ],
            "2026-12-01T00:00:00Z  INFO spamgate: listening on 127.0.0.1:10023\n\
             {\"timestamp\":\"2026-12-01T00:00:00Z\",\"level\":\"INFO\",\"target\":\"spamgate::daemon\",\"message\":\"spamgate starting\"}\n",
            6,
        );
        // A sender that quotes the other format is only a sender. (A text line's sender
        // holding ` reasons="` can still fool the text reader: not a JSON matter.)
        check(
            &[(
                "2026-12-01T05:00:00Z",
                "pass",
                &["client:proper"],
                "\"spamgate::decision: action=reject\" {\"target\":\"spamgate::decision\",\"action\":\"reject\",\"reasons\":[]}@example.org",
            )],
            "",
            1,
        );
    }

    #[test]
    fn broken_json_decision_lines_are_unreadable_not_counted() {
        for (line, unreadable) in [
            (
                r#"{"timestamp":"2026-12-01T00:00:00Z","level":"INFO","target":"spamgate::decision","action":"pass","rea"#,
                1,
            ),
            (
                r#"{"timestamp":"2026-12-01T00:00:00Z","level":"INFO","target":"spamgate::decision","action":"pass"}"#,
                1,
            ),
            (
                r#"{"target":"spamgate::decision","action":"","reasons":[]}"#,
                1,
            ),
            (
                r#"{"target":"spamgate::decision","action":"pass","reasons":"client:proper"}"#,
                1,
            ),
            (
                r#"{"target":"spamgate::daemon","message":"spamgate::decision: action=pass"}"#,
                0,
            ),
            (r#"{"not":"a decision"}"#, 0),
        ] {
            let mut counts = DecisionCounts::default();
            counts.add_line(line);
            assert_eq!(
                (counts.decisions, counts.unreadable),
                (0, unreadable),
                "{line}"
            );
        }
    }
}
