//! Noticing that submission limits can never apply: spamgate charges a message at
//! `[submission] charge_at` (`DATA` or `END-OF-MESSAGE`), but it can only charge when
//! Postfix asks at that stage. A `main.cf` whose `check_policy_service` sits only in
//! `smtpd_recipient_restrictions` (or only in `smtpd_end_of_data_restrictions` while
//! spamgate charges at `DATA`) sends no request at the charge stage, so no limit ever
//! trips. The daemon cannot read `main.cf`, but it sees the stages requests arrive at:
//! after [`ChargeWatch::THRESHOLD`] submission requests none of which was at the charge
//! stage it warns, once.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use spamgate_engine::Stage;

/// Counts submission requests until one arrives at the charge stage. Lock-free: one
/// atomic load on the request path once a charge-stage request has been seen.
#[derive(Debug)]
pub struct ChargeWatch {
    threshold: u64,
    /// Set for good by the first request at the charge stage in force.
    charged: AtomicBool,
    warned: AtomicBool,
    /// Submission requests seen while `charged` was not set.
    requests: AtomicU64,
    /// The stages those requests arrived at (one bit per [`stage_bit`]).
    stages: AtomicU32,
}

/// What to tell the operator, once: the requests counted and the stages they came at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeverCharged {
    pub requests: u64,
    /// Postfix's spellings (`RCPT`, `END-OF-MESSAGE`), in protocol order.
    pub stages_seen: Vec<&'static str>,
}

const STAGES: [(Stage, &str); 10] = [
    (Stage::Connect, "CONNECT"),
    (Stage::Ehlo, "EHLO"),
    (Stage::Helo, "HELO"),
    (Stage::Mail, "MAIL"),
    (Stage::Rcpt, "RCPT"),
    (Stage::Data, "DATA"),
    (Stage::Bdat, "BDAT"),
    (Stage::EndOfMessage, "END-OF-MESSAGE"),
    (Stage::Vrfy, "VRFY"),
    (Stage::Etrn, "ETRN"),
];

fn stage_bit(stage: &Stage) -> u32 {
    STAGES
        .iter()
        .position(|(s, _)| s == stage)
        .map_or(1 << STAGES.len(), |i| 1 << i)
}

impl Default for ChargeWatch {
    fn default() -> Self {
        ChargeWatch::new(ChargeWatch::THRESHOLD)
    }
}

impl ChargeWatch {
    /// Submission requests without one at the charge stage before the warning: Postfix
    /// asks at RCPT for every recipient, so a few messages' worth.
    pub const THRESHOLD: u64 = 50;

    pub fn new(threshold: u64) -> Self {
        ChargeWatch {
            threshold: threshold.max(1),
            charged: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            stages: AtomicU32::new(0),
        }
    }

    /// One submission request at `stage` while spamgate charges at `charge_at`. Returns
    /// `Some` exactly once, for the request that reaches the threshold without any
    /// request at `charge_at` before it.
    pub fn observe(&self, stage: &Stage, charge_at: &Stage) -> Option<NeverCharged> {
        if self.charged.load(Ordering::Relaxed) {
            return None;
        }
        if stage == charge_at {
            self.charged.store(true, Ordering::Relaxed);
            return None;
        }
        self.stages.fetch_or(stage_bit(stage), Ordering::Relaxed);
        let requests = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if requests < self.threshold || self.warned.swap(true, Ordering::Relaxed) {
            return None;
        }
        let bits = self.stages.load(Ordering::Relaxed);
        let mut stages_seen: Vec<&'static str> = STAGES
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, (_, name))| *name)
            .collect();
        if bits & (1 << STAGES.len()) != 0 {
            stages_seen.push("other");
        }
        Some(NeverCharged {
            requests,
            stages_seen,
        })
    }

    /// A reload may change `charge_at`: start counting again for the new stage.
    pub fn reset(&self) {
        self.charged.store(false, Ordering::Relaxed);
        self.warned.store(false, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
        self.stages.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stages` (Postfix spellings) with `charge_at`, threshold 3; returns the
    /// 1-based request numbers that warned, with what they said.
    fn check(charge_at: &str, stages: &[&str], expected: &[(usize, u64, &[&'static str])]) {
        let watch = ChargeWatch::new(3);
        let charge_at = Stage::parse(charge_at);
        let got: Vec<(usize, NeverCharged)> = stages
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                watch
                    .observe(&Stage::parse(s), &charge_at)
                    .map(|w| (i + 1, w))
            })
            .collect();
        let want: Vec<(usize, NeverCharged)> = expected
            .iter()
            .map(|(i, requests, seen)| {
                (
                    *i,
                    NeverCharged {
                        requests: *requests,
                        stages_seen: seen.to_vec(),
                    },
                )
            })
            .collect();
        assert_eq!(got, want, "charge_at={charge_at:?} stages={stages:?}");
    }

    #[test]
    fn warns_once_when_no_request_arrives_at_the_charge_stage() {
        // Postfix asks only at RCPT while spamgate charges at DATA: warned at the third.
        check(
            "DATA",
            &["RCPT", "RCPT", "RCPT", "RCPT", "RCPT"],
            &[(3, 3, &["RCPT"])],
        );
        // Asked at RCPT and END-OF-MESSAGE while charging at DATA.
        check(
            "DATA",
            &["END-OF-MESSAGE", "RCPT", "END-OF-MESSAGE"],
            &[(3, 3, &["RCPT", "END-OF-MESSAGE"])],
        );
        // Charging at END-OF-MESSAGE, Postfix asks at RCPT and DATA only.
        check(
            "END-OF-MESSAGE",
            &["RCPT", "DATA", "RCPT", "DATA"],
            &[(3, 3, &["RCPT", "DATA"])],
        );
        // A state spamgate does not know counts, and is named as "other".
        check(
            "DATA",
            &["RCPT", "XCLIENT", "RCPT"],
            &[(3, 3, &["RCPT", "other"])],
        );
    }

    #[test]
    fn a_request_at_the_charge_stage_silences_it_for_good() {
        check(
            "DATA",
            &["RCPT", "DATA", "RCPT", "RCPT", "RCPT", "RCPT"],
            &[],
        );
        check("DATA", &["RCPT", "RCPT", "DATA", "RCPT"], &[]);
        check(
            "END-OF-MESSAGE",
            &["RCPT", "END-OF-MESSAGE", "RCPT", "RCPT"],
            &[],
        );
        // Too few requests to tell.
        check("DATA", &["RCPT", "RCPT"], &[]);
        // Once warned, a later charge-stage request does not warn again.
        check(
            "DATA",
            &["RCPT", "RCPT", "RCPT", "DATA", "RCPT"],
            &[(3, 3, &["RCPT"])],
        );
    }

    #[test]
    fn a_reset_counts_again() {
        let watch = ChargeWatch::new(2);
        let (rcpt, data) = (Stage::Rcpt, Stage::Data);
        assert_eq!(watch.observe(&data, &data), None);
        watch.reset();
        assert_eq!(watch.observe(&rcpt, &data), None);
        assert!(watch.observe(&rcpt, &data).is_some());
        watch.reset();
        assert_eq!(watch.observe(&rcpt, &data), None);
        assert!(watch.observe(&rcpt, &data).is_some());
    }
}
