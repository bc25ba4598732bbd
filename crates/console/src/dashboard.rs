//! The dashboard's figures, each from what the daemon already knows: the decision
//! timeline and the DNS list metrics of the running [`Service`], the greylist and the
//! account events in the store, the cases in the desk store. A figure that cannot be
//! had says so (an error text), never a made-up number.

use std::collections::BTreeMap;

use serde::Serialize;
use spamgate_desk::case::Case;
use spamgate_store::{AccountEvent, EventKind, StoreCounts, TripletRow};

use crate::chart::{self, Series};
use crate::i18n::Lang;

#[derive(Debug, Default, Serialize)]
pub struct Dashboard {
    pub total: u64,
    pub actions_svg: String,
    pub reasons_svg: String,
    pub greylist: GreylistPanel,
    pub top_svg: Option<String>,
    pub dns: Vec<ZoneRow>,
    pub limits: Vec<(String, u64)>,
    pub limits_error: Option<String>,
    pub cases_svg: String,
    pub cases_error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct GreylistPanel {
    pub error: Option<String>,
    pub pending: u64,
    pub passed: u64,
    pub awl: u64,
    /// Pending triplets whose first attempt is older than the greylist delay plus a
    /// minute: the sender has not come back (yet; most never do).
    pub never_retried: u64,
    pub delays_svg: String,
    /// Set when the delays come from the newest triplets only.
    pub sampled: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneRow {
    pub zone: String,
    pub queries: u64,
    pub errors: u64,
    pub mean_ms: String,
}

/// Labels for bucket starts: `HH:MM` (UTC).
pub fn minute_labels(starts: &[u64]) -> Vec<String> {
    starts
        .iter()
        .map(|s| format!("{:02}:{:02}", s / 3600 % 24, s / 60 % 60))
        .collect()
}

pub fn timeline_charts(
    snapshot: &spamgate_app::timeline::TimelineSnapshot,
    lang: Lang,
) -> (String, String) {
    let labels = minute_labels(&snapshot.starts);
    let series = |map: &BTreeMap<String, Vec<u64>>| -> Vec<Series> {
        let mut all: Vec<Series> = map
            .iter()
            .map(|(name, values)| Series {
                name: name.clone(),
                values: values.clone(),
            })
            .collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.values.iter().sum::<u64>()));
        all
    };
    (
        chart::stacked_bars(
            "chart-actions",
            lang.t("dash.actions"),
            &labels,
            &series(&snapshot.by_action),
        ),
        chart::stacked_bars(
            "chart-reasons",
            lang.t("dash.reasons"),
            &labels,
            &series(&snapshot.by_reason),
        ),
    )
}

/// Delay classes of passed triplets: first attempt → pass.
const DELAY_CLASSES: [(u64, &str); 5] = [
    (5 * 60, "< 5 min"),
    (15 * 60, "5–15 min"),
    (3600, "15–60 min"),
    (6 * 3600, "1–6 h"),
    (u64::MAX, "> 6 h"),
];

pub fn greylist_panel(
    counts: Result<StoreCounts, String>,
    triplets: Result<Vec<TripletRow>, String>,
    sample_limit: usize,
    min_delay: u64,
    now: u64,
    lang: Lang,
) -> GreylistPanel {
    let counts = match counts {
        Ok(c) => c,
        Err(error) => {
            return GreylistPanel {
                error: Some(error),
                ..GreylistPanel::default()
            };
        }
    };
    let mut panel = GreylistPanel {
        pending: counts.pending,
        passed: counts.passed,
        awl: counts.awl,
        ..GreylistPanel::default()
    };
    let rows = match triplets {
        Ok(rows) => rows,
        Err(error) => {
            panel.error = Some(error);
            return panel;
        }
    };
    let mut classes = [0u64; DELAY_CLASSES.len()];
    for row in &rows {
        match row.passed_at {
            Some(passed) => {
                let delay = passed.saturating_sub(row.first_seen);
                let class = DELAY_CLASSES
                    .iter()
                    .position(|(max, _)| delay < *max)
                    .unwrap_or(0);
                classes[class] += 1;
            }
            None if now.saturating_sub(row.first_seen) > min_delay + 60 => panel.never_retried += 1,
            None => {}
        }
    }
    let bars: Vec<(String, u64)> = DELAY_CLASSES
        .iter()
        .zip(classes)
        .map(|((_, label), n)| (label.to_string(), n))
        .collect();
    panel.delays_svg = chart::hbars("chart-delays", lang.t("dash.delays"), &bars);
    if rows.len() >= sample_limit {
        panel.sampled = Some(format!(
            "{} / {}",
            rows.len(),
            counts.pending + counts.passed
        ));
    }
    panel
}

/// Networks with the most pending (never passed) triplets, at most `n`.
pub fn top_networks(rows: &[TripletRow], n: usize) -> Vec<(String, u64)> {
    let mut by_network: BTreeMap<&str, u64> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.passed_at.is_none()) {
        *by_network.entry(&row.network).or_default() += 1;
    }
    let mut top: Vec<(String, u64)> = by_network
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(n);
    top
}

/// Limit trips per account, most first.
pub fn limit_trips(events: &[AccountEvent]) -> Vec<(String, u64)> {
    let mut by_account: BTreeMap<&str, u64> = BTreeMap::new();
    for event in events {
        if matches!(event.kind, EventKind::LimitExceeded { .. }) {
            *by_account.entry(&event.username).or_default() += 1;
        }
    }
    let mut rows: Vec<(String, u64)> = by_account
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows
}

/// Cases per state (open and confirmed: the ones still being worked on first).
pub fn cases_by_state(cases: &[Case]) -> Vec<(String, u64)> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for case in cases {
        *counts.entry(case.state.as_str()).or_default() += 1;
    }
    ["open", "confirmed", "closed", "dismissed"]
        .iter()
        .map(|s| (s.to_string(), counts.get(s).copied().unwrap_or(0)))
        .collect()
}

/// Per-zone lookups, errors and mean latency, read from the daemon's own metrics text
/// (`spamgate_dns_list_queries_total{zone,result}`, `spamgate_dns_list_seconds_{sum,count}`):
/// the same numbers Prometheus scrapes.
pub fn dns_rows(metrics: &str) -> Vec<ZoneRow> {
    #[derive(Default)]
    struct Zone {
        queries: u64,
        errors: u64,
        sum: f64,
        count: f64,
    }
    let mut zones: BTreeMap<String, Zone> = BTreeMap::new();
    for line in metrics.lines() {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Some(zone) = label(labels, "zone") else {
            continue;
        };
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        let entry = zones.entry(zone.to_string()).or_default();
        match name {
            "spamgate_dns_list_queries_total" => {
                let result = label(labels, "result").unwrap_or("");
                if result != "skipped" {
                    entry.queries += value as u64;
                }
                if result == "error" {
                    entry.errors += value as u64;
                }
            }
            "spamgate_dns_list_seconds_sum" => entry.sum = value,
            "spamgate_dns_list_seconds_count" => entry.count = value,
            _ => {}
        }
    }
    zones
        .into_iter()
        .map(|(zone, z)| ZoneRow {
            zone,
            queries: z.queries,
            errors: z.errors,
            mean_ms: if z.count > 0.0 {
                format!("{:.1}", z.sum / z.count * 1000.0)
            } else {
                "–".into()
            },
        })
        .collect()
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triplet(network: &str, first_seen: u64, passed_at: Option<u64>) -> TripletRow {
        TripletRow {
            network: network.into(),
            sender: "a@example.net".into(),
            recipient: "b@example.jp".into(),
            first_seen,
            last_seen: first_seen,
            attempts: 1,
            passed_at,
            expires_at: first_seen + 86_400,
        }
    }

    #[test]
    fn dns_rows_come_from_the_metrics_text() {
        let text = "\
spamgate_dns_list_queries_total{zone=\"bl.test\",result=\"listed\"} 3
spamgate_dns_list_queries_total{zone=\"bl.test\",result=\"error\"} 1
spamgate_dns_list_queries_total{zone=\"bl.test\",result=\"skipped\"} 5
spamgate_dns_list_seconds_sum{zone=\"bl.test\"} 0.02
spamgate_dns_list_seconds_count{zone=\"bl.test\"} 4
spamgate_decisions_total{action=\"defer\",reason=\"new\"} 9
";
        assert_eq!(
            dns_rows(text),
            vec![ZoneRow {
                zone: "bl.test".into(),
                queries: 4,
                errors: 1,
                mean_ms: "5.0".into()
            }]
        );
    }

    #[test]
    fn greylist_panel_sorts_delays_and_counts_the_never_retried() {
        let now = 100_000;
        let rows = vec![
            triplet("192.0.2.0/24", 1000, Some(1000 + 400)),
            triplet("192.0.2.0/24", 1000, Some(1000 + 7 * 3600)),
            triplet("198.51.100.0/24", now - 10_000, None),
            triplet("198.51.100.0/24", now - 10, None),
        ];
        let counts = StoreCounts {
            pending: 2,
            passed: 2,
            awl: 1,
        };
        let panel = greylist_panel(Ok(counts), Ok(rows.clone()), 1000, 300, now, Lang::En);
        assert_eq!(panel.never_retried, 1);
        assert!(
            panel
                .delays_svg
                .contains(r#"data-series="5–15 min" data-value="1""#),
            "{}",
            panel.delays_svg
        );
        assert!(
            panel
                .delays_svg
                .contains(r#"data-series="&gt; 6 h" data-value="1""#)
        );
        assert_eq!(
            top_networks(&rows, 5),
            vec![("198.51.100.0/24".to_string(), 2)]
        );
        let failed = greylist_panel(Err("store down".into()), Ok(rows), 1000, 300, now, Lang::En);
        assert_eq!(failed.error.as_deref(), Some("store down"));
        assert_eq!(failed.pending, 0);
    }
}
