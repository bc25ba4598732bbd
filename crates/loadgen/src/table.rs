//! One Markdown table (and the headline ratios) from many runs' reports.
//!
//! Labels decide the role of a row: `baseline` is the protocol limit, `spamgate` is the
//! headline configuration, other labels starting with `spamgate` are its variants, and
//! every other label is a peer.

use std::fmt::Write as _;

use crate::report::Report;

pub const BASELINE: &str = "baseline";
pub const SPAMGATE: &str = "spamgate";

fn is_peer(label: &str) -> bool {
    label != BASELINE && !label.starts_with(SPAMGATE)
}

fn find<'a>(reports: &'a [Report], label: &str, connections: usize) -> Option<&'a Report> {
    reports
        .iter()
        .find(|r| r.label == label && r.connections == connections)
}

fn fastest_peer(reports: &[Report], connections: usize) -> Option<&Report> {
    reports
        .iter()
        .filter(|r| is_peer(&r.label) && r.connections == connections && r.requests > 0)
        .max_by(|a, b| a.requests_per_second.total_cmp(&b.requests_per_second))
}

fn percent(n: u64, total: u64) -> f64 {
    100.0 * n as f64 / total.max(1) as f64
}

/// The results table, rows in the order given.
pub fn markdown(reports: &[Report]) -> String {
    let mut out = String::from(
        "| server | C | req/s | p50 µs | p99 µs | max µs | of baseline | server CPU µs/req | DUNNO | DEFER_IF_PERMIT | 4xx | 5xx | other | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in reports {
        let of_baseline = find(reports, BASELINE, r.connections)
            .filter(|b| b.requests_per_second > 0.0)
            .map_or("–".to_string(), |b| {
                format!(
                    "{:.0} %",
                    100.0 * r.requests_per_second / b.requests_per_second
                )
            });
        let a = &r.actions;
        let total = a.total();
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {:.1} % | {:.1} % | {:.1} % | {:.1} % | {:.1} % | {} |",
            r.label,
            r.connections,
            r.requests_per_second,
            r.latency_us.p50,
            r.latency_us.p99,
            r.latency_us.max,
            of_baseline,
            r.server_cpu_us_per_request
                .map_or("–".to_string(), |us| format!("{us:.0}")),
            percent(a.dunno, total),
            percent(a.defer_if_permit, total),
            percent(a.defer, total),
            percent(a.reject, total),
            percent(a.other, total),
            r.errors,
        );
    }
    out
}

/// The headline ratios per connection count.
pub fn ratios(reports: &[Report]) -> String {
    let mut levels: Vec<usize> = reports.iter().map(|r| r.connections).collect();
    levels.sort_unstable();
    levels.dedup();
    let mut out = String::new();
    for c in levels {
        let Some(ours) = find(reports, SPAMGATE, c) else {
            continue;
        };
        let mut parts = vec![format!(
            "C={c}: spamgate {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs",
            ours.requests_per_second, ours.latency_us.p50, ours.latency_us.p99
        )];
        if let Some(base) = find(reports, BASELINE, c) {
            parts.push(format!(
                "{:.0} % of the protocol limit ({:.0} req/s), p50 {:.2}× the baseline's",
                100.0 * ours.requests_per_second / base.requests_per_second.max(1e-9),
                base.requests_per_second,
                ours.latency_us.p50 / base.latency_us.p50.max(1e-9)
            ));
        }
        if let Some(peer) = fastest_peer(reports, c) {
            parts.push(format!(
                "{:.1}× the fastest peer ({} {:.0} req/s)",
                ours.requests_per_second / peer.requests_per_second.max(1e-9),
                peer.label,
                peer.requests_per_second
            ));
            let like_for_like = reports.iter().find(|r| {
                r.connections == c && r.label.starts_with(SPAMGATE) && r.label.contains("all")
            });
            if let Some(all) = like_for_like {
                parts.push(format!(
                    "{} (greylisting everyone) {:.1}× it",
                    all.label,
                    all.requests_per_second / peer.requests_per_second.max(1e-9)
                ));
            }
        }
        let _ = writeln!(out, "- {}", parts.join("; "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ActionMix, Latency};

    fn report(label: &str, connections: usize, rps: f64, p50: f64) -> Report {
        Report {
            label: label.into(),
            target: "127.0.0.1:1".into(),
            connections,
            requests: (rps * 10.0) as u64,
            errors: 0,
            seconds: 10.0,
            requests_per_second: rps,
            latency_us: Latency {
                p50,
                p99: p50 * 4.0,
                ..Latency::default()
            },
            actions: ActionMix {
                dunno: 90,
                defer_if_permit: 10,
                ..ActionMix::default()
            },
            latency_by_action_us: Default::default(),
            error_samples: Vec::new(),
            next_index: 0,
            server_cpu_us_per_request: Some(rps / 1000.0),
            client_cpu_us_per_request: None,
        }
    }

    #[test]
    fn table_has_one_row_per_report_with_shares() {
        let reports = [
            report("baseline", 1, 20_000.0, 40.0),
            report("spamgate", 1, 10_000.0, 60.0),
        ];
        let table = markdown(&reports);
        assert_eq!(table.lines().count(), 4);
        assert!(
            table.contains("| spamgate | 1 | 10000 | 60 | 240 | 0 | 50 % | 10 | 90.0 % | 10.0 % |"),
            "{table}"
        );
    }

    #[test]
    fn ratios_compare_with_the_baseline_and_the_fastest_peer() {
        let reports = [
            report("baseline", 64, 40_000.0, 1000.0),
            report("spamgate", 64, 30_000.0, 1500.0),
            report("spamgate-all", 64, 20_000.0, 2000.0),
            report("postgrey", 64, 1_000.0, 9000.0),
            report("gross", 64, 2_000.0, 9000.0),
        ];
        let text = ratios(&reports);
        assert!(text.contains("75 % of the protocol limit"), "{text}");
        assert!(text.contains("p50 1.50× the baseline's"), "{text}");
        assert!(
            text.contains("15.0× the fastest peer (gross 2000 req/s)"),
            "{text}"
        );
        assert!(
            text.contains("spamgate-all (greylisting everyone) 10.0× it"),
            "{text}"
        );
    }
}
