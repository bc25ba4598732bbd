//! The dashboard's figures, each from what the daemon already knows: the decision
//! timeline and the DNS list metrics of the running [`Service`], the greylist and the
//! account events in the store, the cases in the desk store. A figure that cannot be
//! had says so (an error text), never a made-up number.

use std::collections::BTreeMap;

use serde::Serialize;
use spamgate_desk::case::Case;
use spamgate_store::{AccountEvent, EventKind, StoreCounts, TripletRow};

use spamgate_app::display::DisplayZone;
use spamgate_app::op25b_hits::{Reading, Series as Op25bSeries};

use crate::chart::{self, Series};
use crate::i18n::Lang;

#[derive(Debug, Default, Serialize)]
pub struct Dashboard {
    /// The display zone's offset now, for the charts' `HH:MM` labels (`UTC+09:00`).
    pub zone: String,
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
    pub op25b: Op25bPanel,
}

/// OP25B blocked attempts, from the kernel's counters through the daemon's monitor.
#[derive(Debug, Default, Serialize)]
pub struct Op25bPanel {
    /// `not-configured`, `unavailable` or `counts`.
    pub state: &'static str,
    /// Why the counts cannot be read (`unavailable`).
    pub error: Option<String>,
    /// When the counts were read (display zone).
    pub read_at: String,
    /// Blocked attempts in the hit tables now, and from how many sources.
    pub total: u64,
    pub sources: usize,
    /// The sources with the most attempts.
    pub top_svg: String,
    /// New attempts per minute over the last hour, as sampled.
    pub series_svg: String,
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

/// `UTC`, `UTC+09:00`: the zone's offset at `now`, as the charts' labels need it said.
pub fn zone_label(zone: &DisplayZone, now: u64) -> String {
    let text = zone.time_u64(now);
    match text.get(19..) {
        Some("Z") | None | Some("") => "UTC".into(),
        Some(offset) => format!("UTC{offset}"),
    }
}

/// Labels for bucket starts: `HH:MM` in the display zone.
pub fn minute_labels(starts: &[u64], zone: &DisplayZone) -> Vec<String> {
    starts
        .iter()
        .map(|s| {
            // RFC 3339: `2026-12-02T10:30:00+09:00`, the wall clock at 11..16.
            let text = zone.time_u64(*s);
            text.get(11..16).unwrap_or_default().to_string()
        })
        .collect()
}

pub fn timeline_charts(
    snapshot: &spamgate_app::timeline::TimelineSnapshot,
    lang: Lang,
    zone: &DisplayZone,
) -> (String, String) {
    let labels = minute_labels(&snapshot.starts, zone);
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

/// The OP25B panel of one reading: the top `n` sources and the last hour's series.
pub fn op25b_panel(
    reading: &Reading,
    series: &Op25bSeries,
    now: u64,
    n: usize,
    lang: Lang,
    zone: &DisplayZone,
) -> Op25bPanel {
    match reading {
        Reading::NotConfigured => Op25bPanel {
            state: "not-configured",
            ..Op25bPanel::default()
        },
        Reading::Unavailable { at, error } => Op25bPanel {
            state: "unavailable",
            error: Some(error.clone()),
            read_at: zone.time_u64(*at),
            ..Op25bPanel::default()
        },
        Reading::Counts { at, hits } => {
            let top: Vec<(String, u64)> = hits
                .iter()
                .take(n)
                .map(|h| (h.source.to_string(), h.packets))
                .collect();
            let window = series.window(now, 60);
            let starts: Vec<u64> = window.iter().map(|(m, _)| *m).collect();
            let values = window.iter().map(|(_, v)| v.unwrap_or(0)).collect();
            Op25bPanel {
                state: "counts",
                error: None,
                read_at: zone.time_u64(*at),
                total: hits.iter().map(|h| h.packets).sum(),
                sources: hits.len(),
                top_svg: chart::hbars("chart-op25b-sources", lang.t("dash.op25b_top"), &top),
                series_svg: chart::stacked_bars(
                    "chart-op25b",
                    lang.t("dash.op25b_series"),
                    &minute_labels(&starts, zone),
                    &[Series {
                        name: "blocked".into(),
                        values,
                    }],
                ),
            }
        }
    }
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
    fn minute_labels_are_in_the_display_zone() {
        // 2026-12-02T01:30:00Z
        let at = 1_796_175_000;
        assert_eq!(minute_labels(&[at], &DisplayZone::utc()), ["01:30"]);
        assert_eq!(zone_label(&DisplayZone::utc(), at), "UTC");
        assert_eq!(
            zone_label(&DisplayZone::fixed_seconds(9 * 3600), at),
            "UTC+09:00"
        );
        assert_eq!(
            minute_labels(&[at], &DisplayZone::fixed_seconds(9 * 3600)),
            ["10:30"]
        );
        assert_eq!(
            minute_labels(&[at], &DisplayZone::fixed_seconds(-(5 * 3600 + 1800))),
            ["20:00"]
        );
    }

    #[test]
    fn op25b_panel_shows_counts_or_says_why_not() {
        use spamgate_app::op25b_hits::Hit;
        let zone = DisplayZone::fixed_seconds(9 * 3600);
        let now = 1_796_175_000;
        let hit = |source: &str, packets| Hit {
            source: source.parse().unwrap(),
            packets,
            bytes: 0,
            expires_secs: None,
        };
        let mut series = Op25bSeries::default();
        series.record(now - 60, 0);
        series.record(now, 4);
        let reading = Reading::Counts {
            at: now,
            hits: vec![hit("198.51.100.10", 4), hit("2001:db8:100:1::10", 1)],
        };
        let panel = op25b_panel(&reading, &series, now, 10, Lang::En, &zone);
        assert_eq!((panel.state, panel.total, panel.sources), ("counts", 5, 2));
        assert_eq!(panel.read_at, "2026-12-02T10:30:00+09:00");
        assert!(
            panel
                .top_svg
                .contains(r#"data-series="198.51.100.10" data-value="4""#),
            "{}",
            panel.top_svg
        );
        assert!(
            panel.series_svg.contains(r#"data-value="4""#),
            "{}",
            panel.series_svg
        );
        let top1 = op25b_panel(&reading, &series, now, 1, Lang::En, &zone);
        assert!(!top1.top_svg.contains("2001:db8:100:1::10"));
        let na = op25b_panel(&Reading::NotConfigured, &series, now, 10, Lang::En, &zone);
        assert_eq!((na.state, na.total), ("not-configured", 0));
        let failed = Reading::Unavailable {
            at: now,
            error: "needs CAP_NET_ADMIN".into(),
        };
        let panel = op25b_panel(&failed, &series, now, 10, Lang::En, &zone);
        assert_eq!(panel.state, "unavailable");
        assert_eq!(panel.error.as_deref(), Some("needs CAP_NET_ADMIN"));
        assert!(panel.top_svg.is_empty());
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
