//! The desk's data behind one trait, [`DeskStore`], so a second backend
//! (PostgreSQL) can take over from the embedded SQLite one.
//!
//! The trait is synchronous: the daemon calls it from `spawn_blocking`. Every
//! backend must pass [`conformance`].

pub mod conformance;
pub mod sqlite;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::attribution::{Attribution, AttributionPolicy, Query, attribute};
use crate::case::{Case, CaseId, Customer, Fold, FoldPolicy};
use crate::history::{Identity, ImportBatch, Interval};
use crate::ladder::{AuditRecord, Claim, Ladder, Transition};
use crate::report::{Category, Report};
use crate::time::UnixTime;

pub type RawId = i64;
pub type ReportId = i64;

#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("store: {0}")]
    Backend(String),
    #[error("no such {kind}: {id}")]
    NotFound { kind: &'static str, id: String },
    #[error("invalid: {0}")]
    Invalid(String),
}

impl From<rusqlite::Error> for DeskError {
    fn from(e: rusqlite::Error) -> Self {
        DeskError::Backend(e.to_string())
    }
}

impl From<serde_json::Error> for DeskError {
    fn from(e: serde_json::Error) -> Self {
        DeskError::Backend(format!("stored JSON: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, DeskError>;

/// The answer to storing raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPut {
    pub id: RawId,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    /// The same bytes were stored before; this copy was only counted.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReport {
    pub id: RawId,
    pub sha256: String,
    pub bytes: Vec<u8>,
    pub first_seen: UnixTime,
    pub last_seen: UnixTime,
    /// How many times these bytes were fed in.
    pub copies: u32,
}

/// Where a report is in the desk's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportState {
    /// Parsed, not yet attributed.
    New,
    /// A person must decide (not understood, no address, no single customer).
    Triage,
    /// Folded into a case.
    Filed,
    /// A person decided it is nothing.
    Dismissed,
}

impl ReportState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportState::New => "new",
            ReportState::Triage => "triage",
            ReportState::Filed => "filed",
            ReportState::Dismissed => "dismissed",
        }
    }

    pub fn parse(text: &str) -> Option<ReportState> {
        match text {
            "new" => Some(ReportState::New),
            "triage" => Some(ReportState::Triage),
            "filed" => Some(ReportState::Filed),
            "dismissed" => Some(ReportState::Dismissed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    pub id: ReportId,
    pub raw_id: RawId,
    pub received_at: UnixTime,
    pub report: Report,
    pub state: ReportState,
    pub customer: Option<String>,
    pub case_id: Option<CaseId>,
    /// The attribution made for it, kept as evidence.
    pub attribution: Option<Attribution>,
}

/// What became of a report after attribution and folding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOutcome {
    pub state: ReportState,
    pub customer: Option<String>,
    pub case_id: Option<CaseId>,
    pub attribution: Option<Attribution>,
}

impl ReportOutcome {
    /// To triage, with nothing attributed: a person decides.
    pub fn triage() -> ReportOutcome {
        ReportOutcome {
            state: ReportState::Triage,
            customer: None,
            case_id: None,
            attribution: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryKind {
    /// A notice mailed to the customer.
    Notify,
    /// The operator's hook command.
    Hook,
    /// Bringing the OP25B exemption sets in line with the customers' steps (`op25b
    /// sync`): queued by a suspension, termination or resume, like a hook.
    Op25b,
}

impl DeliveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Notify => "notify",
            DeliveryKind::Hook => "hook",
            DeliveryKind::Op25b => "op25b",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Done,
    /// Out of attempts: shown to operators, never dropped.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Done => "done",
            DeliveryState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub kind: DeliveryKind,
    pub customer: String,
    /// The action as JSON (an [`crate::ladder::Action`]).
    pub payload: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt: UnixTime,
    pub last_error: Option<String>,
}

/// Exponential backoff for failed deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first_delay: i64,
    pub max_delay: i64,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay: 60,
            max_delay: 6 * 3600,
            max_attempts: 12,
        }
    }
}

impl RetryPolicy {
    /// The delay after `attempts` failures.
    pub fn delay(&self, attempts: u32) -> i64 {
        let shift = attempts.saturating_sub(1).min(30);
        self.first_delay
            .saturating_mul(1 << shift)
            .min(self.max_delay)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportSummary {
    pub upserted: usize,
    pub sessions_closed_by_nas_reset: usize,
    pub rejected: usize,
}

/// How long `abuse purge` keeps each kind of record, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Address history: intervals that ended longer ago go.
    pub sessions: i64,
    /// Reports in no case (triage, dismissed, new), their raw messages, and finished
    /// (done) deliveries.
    pub reports: i64,
    /// Closed or dismissed cases without a claim, with their reports and raw messages,
    /// by the time of their last report.
    pub cases: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            sessions: 183 * 86_400,
            reports: 365 * 86_400,
            cases: 3 * 365 * 86_400,
        }
    }
}

/// The instants before which `purge` removes records: `now` minus each retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeCutoffs {
    pub sessions: UnixTime,
    pub reports: UnixTime,
    pub cases: UnixTime,
    /// Also remove cases that are open or confirmed, or have a claim, and failed
    /// deliveries (the operator's explicit decision).
    pub force: bool,
}

impl Retention {
    pub fn cutoffs(&self, now: UnixTime, force: bool) -> PurgeCutoffs {
        PurgeCutoffs {
            sessions: now.saturating_sub(self.sessions),
            reports: now.saturating_sub(self.reports),
            cases: now.saturating_sub(self.cases),
            force,
        }
    }
}

/// What a purge removed, and the old cases it kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PurgeSummary {
    pub sessions: usize,
    pub cases: usize,
    pub reports: usize,
    pub raw_reports: usize,
    pub deliveries: usize,
    /// Cases past their retention kept because they are open or confirmed.
    pub kept_open_cases: usize,
    /// Cases past their retention kept because a claim names them.
    pub kept_claimed_cases: usize,
}

/// Everything the desk keeps.
pub trait DeskStore: Send + Sync {
    // --- raw reports and reports
    /// Stores the message bytes durably before anything else; the same bytes
    /// again are counted, not stored twice.
    fn put_raw(&self, bytes: &[u8], at: UnixTime) -> Result<RawPut>;
    fn raw(&self, id: RawId) -> Result<Option<RawReport>>;
    /// Stores the parsed report of a raw message; once per raw message (a second
    /// call returns the first id).
    fn put_report(&self, raw_id: RawId, report: &Report, at: UnixTime) -> Result<ReportId>;
    fn report(&self, id: ReportId) -> Result<Option<StoredReport>>;
    fn report_for_raw(&self, raw_id: RawId) -> Result<Option<StoredReport>>;
    fn set_report_outcome(&self, id: ReportId, outcome: &ReportOutcome) -> Result<()>;
    /// Newest first; `state` filters (e.g. the triage queue).
    fn reports(&self, state: Option<ReportState>, limit: usize) -> Result<Vec<StoredReport>>;
    fn case_reports(&self, case_id: CaseId) -> Result<Vec<StoredReport>>;

    // --- customers, accounts, identities
    fn upsert_customer(&self, customer: &Customer) -> Result<()>;
    /// Inserts or updates many customers in one transaction (`customer import`);
    /// an existing customer keeps its status (the ladder owns it).
    fn upsert_customers(&self, customers: &[Customer]) -> Result<usize>;
    fn customer(&self, id: &str) -> Result<Option<Customer>>;
    /// Customers ordered by id, after `after`.
    fn customers(&self, after: Option<&str>, limit: usize) -> Result<Vec<Customer>>;
    /// Links a submission account to a customer; an unknown customer is an error.
    fn link_account(&self, account: &str, customer: &str) -> Result<()>;
    fn account_customer(&self, account: &str) -> Result<Option<String>>;
    fn customer_accounts(&self, customer: &str) -> Result<Vec<String>>;
    /// Maps a RADIUS user, hardware address or client id to a customer.
    fn link_identity(&self, identity: &Identity, customer: &str) -> Result<()>;
    /// Many mappings in one transaction; every customer must exist.
    fn link_identities(&self, links: &[(Identity, String)]) -> Result<usize>;
    fn identity_customer(&self, identity: &Identity) -> Result<Option<String>>;

    // --- address history
    /// Applies an importer's batch at once: intervals merged by key, NAS
    /// resets, and the source's new offset (so a crash never half-imports).
    fn import_batch(&self, source: &str, batch: &ImportBatch) -> Result<ImportSummary>;
    fn import_offset(&self, source: &str) -> Result<u64>;
    /// Intervals whose network contains `address` (and whose port range, if
    /// any, contains `port`) and that start no later than `at + slack`: the
    /// most recent ones per network, enough for [`attribute`].
    fn intervals_at(
        &self,
        address: IpAddr,
        port: Option<u16>,
        at: UnixTime,
        slack: i64,
    ) -> Result<Vec<Interval>>;
    /// Removes intervals that ended before `cutoff` (retention).
    fn purge_intervals(&self, cutoff: UnixTime) -> Result<usize>;

    /// Retention, in one transaction: intervals ended before `cutoffs.sessions`;
    /// closed or dismissed cases whose last report is before `cutoffs.cases` and that no
    /// claim names, with their reports; reports in no case received before
    /// `cutoffs.reports`; raw messages no report refers to, last seen before
    /// `cutoffs.reports`; done deliveries finished before it. Open or confirmed cases
    /// and claimed ones are kept (and counted) unless `cutoffs.force`, which also
    /// removes failed deliveries. Customers, ladders, the audit trail and claims are
    /// never removed.
    fn purge(&self, cutoffs: &PurgeCutoffs) -> Result<PurgeSummary>;

    /// Who held `query.address` then: [`attribute`] over this store's records.
    fn attribute(&self, query: Query, policy: &AttributionPolicy) -> Result<Attribution> {
        let intervals = self.intervals_at(query.address, query.port, query.at, policy.skew)?;
        let mut customers = std::collections::HashMap::new();
        for interval in &intervals {
            if !customers.contains_key(&interval.identity) {
                let customer = match &interval.identity {
                    Identity::Customer(id) => self.customer(id)?.map(|c| c.id),
                    other => self.identity_customer(other)?,
                };
                customers.insert(interval.identity.clone(), customer);
            }
        }
        Ok(attribute(
            query,
            &intervals,
            |identity| customers.get(identity).cloned().flatten(),
            policy,
        ))
    }

    // --- cases
    /// Folds a report into the customer's cases ([`crate::case::fold`]) and
    /// stores the result, atomically: parallel ingests for one customer must
    /// neither lose a report nor open two cases for one.
    fn file_into_case(
        &self,
        report_id: ReportId,
        customer: &str,
        category: Category,
        message_id: Option<&str>,
        at: UnixTime,
        policy: &FoldPolicy,
    ) -> Result<(CaseId, Fold)>;
    /// Stores a new case; its `id` is assigned and returned.
    fn create_case(&self, case: &Case) -> Result<CaseId>;
    fn save_case(&self, case: &Case) -> Result<()>;
    fn case(&self, id: CaseId) -> Result<Option<Case>>;
    /// A customer's cases whose last report is at or after `since`, newest first.
    fn customer_cases(&self, customer: &str, since: UnixTime) -> Result<Vec<Case>>;
    /// Cases in a state (all when `None`), newest first.
    fn cases(&self, state: Option<crate::case::CaseState>, limit: usize) -> Result<Vec<Case>>;

    // --- ladder, audit, claims
    /// The customer's ladder (a fresh one when none was stored).
    fn ladder(&self, customer: &str) -> Result<Ladder>;
    /// Commits a transition at once: the ladder, the customer's status, the
    /// audit record and one queued delivery per notify/hook action. Returns the
    /// audit record's id.
    fn commit_transition(&self, transition: &Transition, now: UnixTime) -> Result<i64>;
    fn append_audit(&self, record: &AuditRecord) -> Result<i64>;
    /// A customer's audit trail, oldest first.
    fn audit(&self, customer: &str) -> Result<Vec<(i64, AuditRecord)>>;
    fn add_claim(&self, claim: &Claim, audit: &AuditRecord) -> Result<i64>;
    fn claims(&self, customer: &str) -> Result<Vec<(i64, Claim)>>;

    // --- notification and hook queue
    fn enqueue_delivery(
        &self,
        kind: DeliveryKind,
        customer: &str,
        payload: &str,
        now: UnixTime,
    ) -> Result<i64>;
    /// Pending deliveries due at `now`, oldest first.
    fn due_deliveries(&self, now: UnixTime, limit: usize) -> Result<Vec<Delivery>>;
    /// Pending deliveries of one kind due at `now`, oldest first: hooks that nothing
    /// runs (no hook command) must not hold notices back, nor the reverse.
    fn due_deliveries_of(
        &self,
        kind: DeliveryKind,
        now: UnixTime,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        Ok(self
            .due_deliveries(now, usize::MAX)?
            .into_iter()
            .filter(|d| d.kind == kind)
            .take(limit)
            .collect())
    }
    fn delivery_done(&self, id: i64, now: UnixTime) -> Result<()>;
    /// Records a failure: retried later, or `Failed` once out of attempts.
    fn delivery_failed(
        &self,
        id: i64,
        now: UnixTime,
        error: &str,
        retry: &RetryPolicy,
    ) -> Result<DeliveryState>;
    fn deliveries(&self, state: DeliveryState, limit: usize) -> Result<Vec<Delivery>>;
    /// Makes one pending or failed delivery due at `now` again (an operator's "try it
    /// now"), keeping its attempts: a failed one gets one more try. `NotFound` for an
    /// unknown or done delivery.
    fn retry_delivery(&self, id: i64, now: UnixTime) -> Result<Delivery>;
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
