//! What a run measured.

use std::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Replies by kind. Servers differ in spelling (`dunno`, `DUNNO`, `450 ...`), so the first
/// word is compared without case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionMix {
    pub dunno: u64,
    /// `DEFER_IF_PERMIT`: the usual greylisting answer.
    pub defer_if_permit: u64,
    /// `DEFER`, `DEFER_IF_REJECT` or a `4NN` code.
    pub defer: u64,
    /// `REJECT` or a `5NN` code.
    pub reject: u64,
    /// `OK`, `PREPEND`, `WARN`, ...: anything else.
    pub other: u64,
}

impl ActionMix {
    /// Counts `action` and says which kind it was.
    pub fn count(&mut self, action: &str) -> ActionKind {
        let kind = ActionKind::of(action);
        *match kind {
            ActionKind::Dunno => &mut self.dunno,
            ActionKind::DeferIfPermit => &mut self.defer_if_permit,
            ActionKind::Defer => &mut self.defer,
            ActionKind::Reject => &mut self.reject,
            ActionKind::Other => &mut self.other,
        } += 1;
        kind
    }

    pub fn add(&mut self, other: &ActionMix) {
        self.dunno += other.dunno;
        self.defer_if_permit += other.defer_if_permit;
        self.defer += other.defer;
        self.reject += other.reject;
        self.other += other.other;
    }

    pub fn total(&self) -> u64 {
        self.dunno + self.defer_if_permit + self.defer + self.reject + self.other
    }
}

/// The kinds [`ActionMix`] counts, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionKind {
    Dunno,
    DeferIfPermit,
    Defer,
    Reject,
    Other,
}

impl ActionKind {
    pub const ALL: [ActionKind; 5] = [
        ActionKind::Dunno,
        ActionKind::DeferIfPermit,
        ActionKind::Defer,
        ActionKind::Reject,
        ActionKind::Other,
    ];

    pub fn of(action: &str) -> ActionKind {
        let word = action.split_ascii_whitespace().next().unwrap_or("");
        if word.eq_ignore_ascii_case("DUNNO") {
            ActionKind::Dunno
        } else if word.eq_ignore_ascii_case("DEFER_IF_PERMIT") {
            ActionKind::DeferIfPermit
        } else if word.eq_ignore_ascii_case("DEFER")
            || word.eq_ignore_ascii_case("DEFER_IF_REJECT")
            || is_code(word, b'4')
        {
            ActionKind::Defer
        } else if word.eq_ignore_ascii_case("REJECT") || is_code(word, b'5') {
            ActionKind::Reject
        } else {
            ActionKind::Other
        }
    }

    /// The name used in reports (the field names of [`ActionMix`]).
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Dunno => "dunno",
            ActionKind::DeferIfPermit => "defer_if_permit",
            ActionKind::Defer => "defer",
            ActionKind::Reject => "reject",
            ActionKind::Other => "other",
        }
    }
}

fn is_code(word: &str, class: u8) -> bool {
    let b = word.as_bytes();
    b.len() == 3 && b[0] == class && b[1].is_ascii_digit() && b[2].is_ascii_digit()
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// From a histogram of nanoseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// What was measured (`baseline`, `spamgate`, `postgrey`, ...), for tables.
    pub label: String,
    pub target: String,
    pub connections: usize,
    /// Requests answered in the measured phase (warm-up excluded).
    pub requests: u64,
    /// Connection failures, protocol errors and closed connections.
    pub errors: u64,
    /// Wall time of the measured phase.
    pub seconds: f64,
    pub requests_per_second: f64,
    pub latency_us: Latency,
    pub actions: ActionMix,
    /// Latency of each kind of answer that occurred (by [`ActionKind::name`]): shows
    /// whether a tail belongs to the answers that touched the store.
    #[serde(default)]
    pub latency_by_action_us: std::collections::BTreeMap<String, Latency>,
    /// The first few error messages, for diagnosis.
    pub error_samples: Vec<String>,
    /// The request index after the last one sent: `--first` for a run that continues.
    pub next_index: u64,
    /// CPU time (user + system) the server spent per measured request, when its pid was given.
    #[serde(default)]
    pub server_cpu_us_per_request: Option<f64>,
    /// CPU time the load generator itself spent per measured request.
    #[serde(default)]
    pub client_cpu_us_per_request: Option<f64>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency_us;
        let a = &self.actions;
        writeln!(
            f,
            "{}target {}  connections {}  requests {}  errors {}  time {:.2} s",
            if self.label.is_empty() {
                String::new()
            } else {
                format!("{}  ", self.label)
            },
            self.target,
            self.connections,
            self.requests,
            self.errors,
            self.seconds
        )?;
        writeln!(f, "throughput {:.0} req/s", self.requests_per_second)?;
        writeln!(
            f,
            "latency µs  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        let share = |n: u64| 100.0 * n as f64 / a.total().max(1) as f64;
        writeln!(
            f,
            "actions  DUNNO {} ({:.1}%)  DEFER_IF_PERMIT {} ({:.1}%)  4xx/DEFER {} ({:.1}%)  5xx/REJECT {} ({:.1}%)  other {} ({:.1}%)",
            a.dunno,
            share(a.dunno),
            a.defer_if_permit,
            share(a.defer_if_permit),
            a.defer,
            share(a.defer),
            a.reject,
            share(a.reject),
            a.other,
            share(a.other)
        )?;
        for (kind, l) in &self.latency_by_action_us {
            writeln!(
                f,
                "  {kind:<16} p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
                l.p50, l.p90, l.p99, l.max
            )?;
        }
        if let Some(server) = self.server_cpu_us_per_request {
            writeln!(f, "server CPU {server:.1} µs per request")?;
        }
        if let Some(client) = self.client_cpu_us_per_request {
            writeln!(f, "generator CPU {client:.1} µs per request")?;
        }
        for sample in &self.error_samples {
            writeln!(f, "error: {sample}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(action: &str, expected: ActionMix) {
        let mut mix = ActionMix::default();
        mix.count(action);
        assert_eq!(mix, expected, "{action:?}");
    }

    #[test]
    fn classifies_actions_by_first_word() {
        let one = ActionMix::default();
        check("DUNNO", ActionMix { dunno: 1, ..one });
        check("dunno", ActionMix { dunno: 1, ..one });
        check(
            "DEFER_IF_PERMIT Greylisted, see http://postgrey.schweikert.ch/",
            ActionMix {
                defer_if_permit: 1,
                ..one
            },
        );
        check(
            "defer_if_permit Greylisted",
            ActionMix {
                defer_if_permit: 1,
                ..one
            },
        );
        check("451 4.7.1 Please try later", ActionMix { defer: 1, ..one });
        check("DEFER later", ActionMix { defer: 1, ..one });
        check(
            "554 5.7.1 Listed on bl.test",
            ActionMix { reject: 1, ..one },
        );
        check("REJECT listed", ActionMix { reject: 1, ..one });
        check(
            "PREPEND X-Greylist: delayed 301 seconds",
            ActionMix { other: 1, ..one },
        );
        check("4500 not a code", ActionMix { other: 1, ..one });
        check("", ActionMix { other: 1, ..one });
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let l = Latency::from_histogram(&h);
        assert!((l.p50 - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99 - 990.0).abs() < 1.0, "{l:?}");
        assert!((l.max - 1000.0).abs() < 1.0, "{l:?}");
    }
}
