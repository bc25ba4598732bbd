//! Prometheus metrics. Each observable event has one method here, so the metric names
//! and what they count live together (and the decision log line lives in `server.rs`).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use spamgate_engine::client::ClientClass;
use spamgate_engine::facts::{ListAnswer, RdnsFact};
use spamgate_engine::greylist::GreylistOutcome;
use spamgate_engine::tarpit::TarpitOutcome;
use spamgate_engine::verdict::Reason;
use spamgate_engine::{Action, Verdict};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    action: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ZoneResultLabels {
    zone: Arc<String>,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ZoneLabels {
    zone: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// The client class and, for `generic`, the rule that made it so (`-` otherwise): what
/// greylisted a client, for the effectiveness counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassRuleLabels {
    class: &'static str,
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// Greylisting delays: 1 min .. 2 days.
fn delay_histogram() -> Histogram {
    Histogram::new([
        60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0, 43_200.0, 86_400.0,
        172_800.0,
    ])
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// All of spamgate's metrics, registered in one registry.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    decision_seconds: Histogram,
    list_queries: Family<ZoneResultLabels, Counter>,
    list_seconds: Family<ZoneLabels, Histogram, fn() -> Histogram>,
    rdns_lookups: Family<ResultLabels, Counter>,
    store_seconds: Histogram,
    store_errors: Counter,
    greylist_entries: Family<StateLabels, Gauge>,
    connections_open: Gauge,
    connections_total: Counter,
    connections_refused: Counter,
    bad_requests: Family<ResultLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    tarpit: Family<ResultLabels, Counter>,
    tarpit_active: Gauge,
    learn: Family<ResultLabels, Counter>,
    spf: Family<ResultLabels, Counter>,
    store_opens: Family<ResultLabels, Counter>,
    store_up: Gauge,
    greylist_first: Family<ClassRuleLabels, Counter>,
    greylist_passed: Family<ClassRuleLabels, Counter>,
    greylist_delay: Family<ClassRuleLabels, Histogram, fn() -> Histogram>,
    timeline: crate::timeline::Timeline,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("spamgate");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Decisions by action and the reason that decided",
            decisions.clone(),
        );
        let decision_seconds = latency_histogram();
        registry.register(
            "decision_seconds",
            "Time from a complete request to its answer",
            decision_seconds.clone(),
        );
        let list_queries = Family::<ZoneResultLabels, Counter>::default();
        registry.register(
            "dns_list_queries",
            "DNSBL/DNSWL lookups by zone and result (listed, not_listed, error, skipped by the circuit breaker)",
            list_queries.clone(),
        );
        let list_seconds: Family<ZoneLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "dns_list_seconds",
            "DNSBL/DNSWL lookup latency by zone (cache hits included)",
            list_seconds.clone(),
        );
        let rdns_lookups = Family::<ResultLabels, Counter>::default();
        registry.register(
            "rdns_lookups",
            "Reverse lookups made by spamgate itself, by result",
            rdns_lookups.clone(),
        );
        let store_seconds = latency_histogram();
        registry.register(
            "store_seconds",
            "Greylist store operation latency",
            store_seconds.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Store operations that failed or timed out (the fail mode applied)",
            store_errors.clone(),
        );
        let greylist_entries = Family::<StateLabels, Gauge>::default();
        registry.register(
            "greylist_entries",
            "Greylist entries by state, as of the last cleanup",
            greylist_entries.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Policy connections open now",
            connections_open.clone(),
        );
        let connections_total = Counter::default();
        registry.register(
            "connections",
            "Policy connections accepted",
            connections_total.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed at once because server.max_connections was reached",
            connections_refused.clone(),
        );
        let bad_requests = Family::<ResultLabels, Counter>::default();
        registry.register(
            "bad_requests",
            "Connections closed because of a malformed or oversized request, or a timeout",
            bad_requests.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            reloads.clone(),
        );
        let tarpit = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tarpit",
            "Tarpit events: held (reply delayed), waited (next step seen: recorded as a passed retry), hung_up (no next step: greylisted on retry), full (cap reached: plain greylisting), cut (hold ended early)",
            tarpit.clone(),
        );
        let tarpit_active = Gauge::default();
        registry.register(
            "tarpit_active",
            "Replies being held by the tarpit now",
            tarpit_active.clone(),
        );
        let learn = Family::<ResultLabels, Counter>::default();
        registry.register(
            "learn_events",
            "Learned exemptions: clients exempted (exempted), and what a passed retry of a confirmed client did to its organisation (counted, learned, capped, refused, still_refused, not_tracked, error)",
            learn.clone(),
        );
        let spf = Family::<ResultLabels, Counter>::default();
        registry.register(
            "spf_checks",
            "SPF evaluations of clients about to be greylisted, by result (narrow_pass skipped greylisting; pass, fail, softfail, neutral, none, temperror, permerror and timeout did not)",
            spf.clone(),
        );
        let store_opens = Family::<ResultLabels, Counter>::default();
        registry.register(
            "store_open_attempts",
            "Attempts to open the store, by result (a store down at start is retried in the background)",
            store_opens.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "store_up",
            "1 when the store is open, 0 while it is being retried (requests get the fail mode)",
            store_up.clone(),
        );
        registry.register(
            "build",
            "The running spamgate's version (always 1)",
            Info::new(VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let greylist_first = Family::<ClassRuleLabels, Counter>::default();
        registry.register(
            "greylist_first_attempts",
            "Triplets greylisted for the first time (new, or again after their entry expired), by the client's class and rule",
            greylist_first.clone(),
        );
        let greylist_passed = Family::<ClassRuleLabels, Counter>::default();
        registry.register(
            "greylist_passed_retries",
            "Greylisted triplets whose retry came after the delay and passed (real servers delayed), by the retrying client's class and rule",
            greylist_passed.clone(),
        );
        let greylist_delay: Family<ClassRuleLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(delay_histogram);
        registry.register(
            "greylist_pass_delay_seconds",
            "Delay greylisting cost the mail that passed: its retry's time less its first attempt's, by class and rule",
            greylist_delay.clone(),
        );
        Metrics {
            registry,
            greylist_first,
            greylist_passed,
            greylist_delay,
            store_opens,
            store_up,
            decisions,
            decision_seconds,
            list_queries,
            list_seconds,
            rdns_lookups,
            store_seconds,
            store_errors,
            greylist_entries,
            connections_open,
            connections_total,
            connections_refused,
            bad_requests,
            reloads,
            tarpit,
            tarpit_active,
            learn,
            timeline: crate::timeline::Timeline::new(),
            spf,
        }
    }

    /// OpenMetrics 1.0 text, as prometheus-client writes it (`_total` counters under
    /// their family name, `info` metrics, `# EOF` last).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The same metrics in Prometheus text format 0.0.4 (what `promtool check metrics`
    /// reads, and what a scraper gets unless it asks for OpenMetrics): counter families
    /// named with their `_total`, `info` as a gauge named `_info`, no `# UNIT`, no
    /// `# EOF`. Sample lines are the same in both.
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode())
    }

    pub fn decision(&self, verdict: &Verdict, elapsed: Duration) {
        let labels = DecisionLabels {
            action: verdict.action.id(),
            reason: deciding_reason(verdict),
        };
        self.decisions.get_or_create(&labels).inc();
        self.decision_seconds.observe(elapsed.as_secs_f64());
        self.greylist_effect(verdict);
    }

    /// A first attempt greylisted, or a retry that passed after its delay, under the
    /// class and rule of this request's client.
    fn greylist_effect(&self, verdict: &Verdict) {
        let outcome = verdict.greylist_outcome();
        if !matches!(
            outcome,
            Some(GreylistOutcome::New { .. } | GreylistOutcome::Passed { .. })
        ) {
            return;
        }
        let labels = verdict
            .reasons
            .iter()
            .find_map(|r| match r {
                Reason::Client { client } => Some(ClassRuleLabels {
                    class: client.id(),
                    rule: match client {
                        ClientClass::Generic { rule, .. } => rule.clone(),
                        _ => "-".into(),
                    },
                }),
                _ => None,
            })
            .unwrap_or(ClassRuleLabels {
                class: "unknown",
                rule: "-".into(),
            });
        if let Some(GreylistOutcome::Passed { waited }) = outcome {
            self.greylist_passed.get_or_create(&labels).inc();
            self.greylist_delay
                .get_or_create(&labels)
                .observe(*waited as f64);
        } else {
            self.greylist_first.get_or_create(&labels).inc();
        }
    }

    /// A recorded decision (not a dry run) in the in-memory [`Timeline`] the console
    /// draws, under the same action and reason labels as `spamgate_decisions_total`.
    ///
    /// [`Timeline`]: crate::timeline::Timeline
    pub fn decision_at(&self, verdict: &Verdict, now: spamgate_engine::UnixTime) {
        self.timeline
            .record(now, verdict.action.id(), deciding_reason(verdict));
    }

    pub fn timeline(&self) -> &crate::timeline::Timeline {
        &self.timeline
    }

    pub fn list_lookup(&self, zone: &Arc<String>, answer: &ListAnswer, elapsed: Duration) {
        let result = match answer {
            ListAnswer::Listed { .. } => "listed",
            ListAnswer::NotListed => "not_listed",
            ListAnswer::Error { .. } => "error",
            ListAnswer::NotQueried => return,
        };
        self.list_queries
            .get_or_create(&ZoneResultLabels {
                zone: zone.clone(),
                result,
            })
            .inc();
        self.list_seconds
            .get_or_create(&ZoneLabels { zone: zone.clone() })
            .observe(elapsed.as_secs_f64());
    }

    pub fn list_skipped(&self, zone: &Arc<String>) {
        self.list_queries
            .get_or_create(&ZoneResultLabels {
                zone: zone.clone(),
                result: "skipped",
            })
            .inc();
    }

    pub fn rdns_lookup(&self, fact: &RdnsFact) {
        let result = match fact {
            RdnsFact::Confirmed { .. } => "confirmed",
            RdnsFact::NotConfirmed { .. } => "not_confirmed",
            RdnsFact::NoPtr => "no_ptr",
            RdnsFact::TempFail { .. } => "tempfail",
        };
        self.rdns_lookups
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn store_op(&self, elapsed: Duration, ok: bool) {
        self.store_seconds.observe(elapsed.as_secs_f64());
        if !ok {
            self.store_errors.inc();
        }
    }

    pub fn greylist_counts(&self, pending: u64, passed: u64, awl: u64) {
        for (state, value) in [("pending", pending), ("passed", passed), ("awl", awl)] {
            self.greylist_entries
                .get_or_create(&StateLabels { state })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    pub fn connection_opened(&self) {
        self.connections_total.inc();
        self.connections_open.inc();
    }

    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub fn bad_request(&self, kind: &'static str) {
        self.bad_requests
            .get_or_create(&ResultLabels { result: kind })
            .inc();
    }

    pub fn tarpit(&self, outcome: TarpitOutcome) {
        let result = match outcome {
            TarpitOutcome::Held { .. } => "held",
            TarpitOutcome::Waited => "waited",
            TarpitOutcome::Full { .. } => "full",
            TarpitOutcome::Cut => "cut",
            TarpitOutcome::HungUp => "hung_up",
        };
        self.tarpit.get_or_create(&ResultLabels { result }).inc();
    }

    /// A learned-exemption event: `exempted`, an observation's event id, or `error`.
    pub fn learn(&self, result: &'static str) {
        let result = match result {
            "still-refused" => "still_refused",
            "not-tracked" => "not_tracked",
            other => other,
        };
        self.learn.get_or_create(&ResultLabels { result }).inc();
    }

    /// One SPF evaluation: its result id (or `timeout`), and whether it passed narrowly.
    pub fn spf(&self, result: &'static str, narrow: bool) {
        let result = if narrow { "narrow_pass" } else { result };
        self.spf.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn tarpit_active(&self, change: i64) {
        self.tarpit_active.inc_by(change);
    }

    /// An attempt to open the store, and whether it is open now.
    pub fn store_open(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.store_opens
            .get_or_create(&ResultLabels { result })
            .inc();
        self.store_up.set(i64::from(ok));
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "rejected" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }
}

/// OpenMetrics text (as prometheus-client writes it) → text format 0.0.4.
fn openmetrics_to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // A family's HELP comes before its TYPE, which decides the name both carry.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "stateset" | "gaugehistogram" | "unknown" => (name.to_string(), "untyped"),
                other => (name.to_string(), other),
            };
            if let Some((_, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The one reason that decided, as a low-cardinality label.
fn deciding_reason(verdict: &Verdict) -> &'static str {
    let last_decisive = verdict.reasons.iter().rev().find_map(|r| match r {
        Reason::Stage { .. } => Some("stage"),
        Reason::Allowed { list, .. } => Some(list.id()),
        Reason::Dnswl { .. } => Some("dnswl"),
        Reason::DnsblScore { .. } if matches!(verdict.action, Action::Reject { .. }) => {
            Some("dnsbl")
        }
        Reason::Greylist { outcome, .. } => Some(outcome.id()),
        Reason::Tarpit { outcome } => Some(match outcome {
            TarpitOutcome::Held { .. } => "tarpit-held",
            TarpitOutcome::Waited => "tarpit-waited",
            TarpitOutcome::Full { .. } => "tarpit-full",
            TarpitOutcome::Cut => "tarpit-cut",
            TarpitOutcome::HungUp => "tarpit-hung-up",
        }),
        Reason::StoreError { .. } => Some("store-error"),
        Reason::Learned { .. } => Some("learned"),
        Reason::SpfPass { .. } => Some("spf-pass"),
        Reason::GreylistDisabled => Some("greylist-disabled"),
        Reason::ClassNotGreylisted { .. } => Some("class-not-greylisted"),
        Reason::Client { client } => Some(client.id()),
        Reason::AccountStatus { status } => Some(status.id()),
        Reason::Unauthenticated { .. } => Some("unauthenticated"),
        Reason::RateLimit { limit, .. } => Some(limit.id()),
        Reason::Submission { .. } => Some("submission"),
        _ => None,
    });
    last_decisive.unwrap_or("none")
}
