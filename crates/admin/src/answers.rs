//! The JSON answers of the `/api/v1` endpoints as types: what a handler serializes is
//! what the OpenAPI document describes (both come from these structs, and from the
//! application layer's own values where a handler sends one as it is).
//! `crates/spamgate/tests/api_openapi.rs` validates every answer of a real daemon
//! against the document.

use serde::Serialize;
use spamgate_desk::attribution::Attribution;
use spamgate_desk::case::{Case, Customer};
use spamgate_desk::ladder::{Action as LadderAction, AuditRecord, Claim, Ladder};
use spamgate_desk::report::Report;
use spamgate_desk::store::StoredReport;
use spamgate_engine::outbound::{Account, AccountStatus};
use spamgate_engine::verdict::{AllowListKind, AllowScope, Verdict};
use spamgate_store::AccountEvent;
use spamgate_store::users::{AuditRecord as ApiAuditRecord, Role, TokenRecord, User};
use utoipa::ToSchema;

/// Greylist store counts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GreylistCounts {
    /// Triplets waiting for their retry.
    pub pending: u64,
    /// Triplets that passed and are still remembered.
    pub passed: u64,
    /// Auto-whitelisted client addresses.
    pub awl: u64,
}

/// `GET /api/v1/stats`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stats {
    pub greylist: GreylistCounts,
    /// Runtime allow-list entries.
    pub allow_entries: u64,
    /// The daemon's clock (Unix time).
    pub now: u64,
}

/// How the reverse-DNS rules see a name.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NameClassAnswer {
    /// Looks like an end-user line (greylisted as such).
    Generic,
    /// A generic rule matched, an exception or a mail-server rule overrode it.
    Excepted,
    /// Does not look generic.
    Proper,
}

/// `POST /api/v1/classify`: one name's class and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClassifyAnswer {
    pub name: String,
    pub class: NameClassAnswer,
    /// generic, excepted: the generic rule that matched first.
    pub rule: Option<String>,
    /// excepted: the exception entry (as written) or the mail-server rule that
    /// overrode `rule`.
    pub exception: Option<String>,
    /// What decided, in words: `rule s25r-1`, `no rule`, `exception E over rule R`,
    /// `mail-server rule M over rule R`, `not a host name`.
    pub decided_by: String,
    /// Every active rule that matched, generic rules in table order, then mail-server
    /// rules.
    pub matched_rules: Vec<String>,
}

impl ClassifyAnswer {
    pub fn new(name: &str, explanation: spamgate_rdns::Explanation) -> Self {
        use spamgate_rdns::{Decision, NameClass};
        let (class, rule, exception) = match explanation.class {
            NameClass::Generic { rule } => (NameClassAnswer::Generic, Some(rule), None),
            NameClass::Excepted { rule, exception } => {
                (NameClassAnswer::Excepted, Some(rule), Some(exception))
            }
            NameClass::Proper => (NameClassAnswer::Proper, None, None),
        };
        let decided_by = match explanation.decision {
            Decision::InvalidName => "not a host name".to_string(),
            Decision::NoRule => "no rule".to_string(),
            Decision::Rule { id } => format!("rule {id}"),
            Decision::Exception { rule, entry } => format!("exception {entry} over rule {rule}"),
            Decision::MailServerRule { rule, id } => {
                format!("mail-server rule {id} over rule {rule}")
            }
        };
        ClassifyAnswer {
            name: name.to_string(),
            class,
            rule,
            exception,
            decided_by,
            matched_rules: explanation.matched_rules,
        }
    }
}

/// `POST /api/v1/check`: the verdict and the line Postfix would get.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckAnswer {
    /// `null` when the daemon would answer nothing of its own (not a decision stage).
    pub verdict: Option<Verdict>,
    /// The `action=` text for Postfix (`DUNNO`, `DEFER_IF_PERMIT ...`, `REJECT ...`).
    pub postfix_action: String,
}

/// One greylist triplet.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Triplet {
    pub network: String,
    pub sender: String,
    pub recipient: String,
    pub first_seen: u64,
    pub last_seen: u64,
    pub attempts: u32,
    pub passed_at: Option<u64>,
    pub expires_at: u64,
}

impl From<&spamgate_store::TripletRow> for Triplet {
    fn from(t: &spamgate_store::TripletRow) -> Self {
        Triplet {
            network: t.network.clone(),
            sender: t.sender.clone(),
            recipient: t.recipient.clone(),
            first_seen: t.first_seen,
            last_seen: t.last_seen,
            attempts: t.attempts,
            passed_at: t.passed_at,
            expires_at: t.expires_at,
        }
    }
}

/// One auto-whitelisted client address.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AwlEntry {
    pub client: String,
    pub first_seen: u64,
    pub last_seen: u64,
    pub expires_at: u64,
}

/// `GET /api/v1/greylist`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GreylistEntries {
    pub triplets: Vec<Triplet>,
    /// The client's auto-whitelist entry (only when `client` was given and it has one).
    pub awl: Option<AwlEntry>,
}

/// `DELETE /api/v1/greylist`: how many entries went.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GreylistDeleted {
    pub triplets: u64,
    pub awl: u64,
}

/// One runtime allow-list entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AllowEntry {
    pub kind: AllowListKind,
    pub value: String,
    pub note: String,
    pub added_at: u64,
    pub scope: AllowScope,
    /// `null`: until removed.
    pub expires_at: Option<u64>,
}

impl From<&spamgate_store::AllowEntry> for AllowEntry {
    fn from(e: &spamgate_store::AllowEntry) -> Self {
        AllowEntry {
            kind: e.kind,
            value: e.value.clone(),
            note: e.note.clone(),
            added_at: e.added_at,
            scope: e.scope,
            expires_at: e.expires_at,
        }
    }
}

/// `GET /api/v1/allow`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AllowEntries {
    pub entries: Vec<AllowEntry>,
}

/// `DELETE /api/v1/allow/{kind}/{value}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AllowRemoved {
    pub kind: AllowListKind,
    pub value: String,
    /// Always `true` (a missing entry is a 404).
    pub removed: bool,
}

/// `GET /api/v1/accounts`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Accounts {
    pub accounts: Vec<Account>,
}

/// `GET /api/v1/accounts/{name}/events`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountEvents {
    pub events: Vec<AccountEvent>,
}

/// One stored abuse report, with what the desk made of it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StoredReportAnswer {
    pub id: i64,
    pub raw_id: i64,
    pub received_at: i64,
    /// new, triage, attached, duplicate or closed.
    pub state: String,
    pub report: Report,
    pub customer: Option<String>,
    pub case_id: Option<i64>,
    /// The attribution made for it, kept as evidence.
    pub attribution: Option<Attribution>,
}

impl From<&StoredReport> for StoredReportAnswer {
    fn from(r: &StoredReport) -> Self {
        StoredReportAnswer {
            id: r.id,
            raw_id: r.raw_id,
            received_at: r.received_at,
            state: r.state.as_str().to_string(),
            report: r.report.clone(),
            customer: r.customer.clone(),
            case_id: r.case_id,
            attribution: r.attribution.clone(),
        }
    }
}

/// `GET /api/v1/reports`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reports {
    pub reports: Vec<StoredReportAnswer>,
}

/// `POST /api/v1/reports`: what became of the report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ingested {
    pub raw_id: i64,
    /// The same bytes were stored before (counted, not parsed again).
    pub duplicate: bool,
    pub report_id: i64,
    /// new, triage, attached, duplicate or closed.
    pub state: String,
    pub customer: Option<String>,
    pub case_id: Option<i64>,
}

/// `POST /api/v1/reports/{id}/assign`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Assigned {
    pub report_id: i64,
    pub customer: String,
    pub case_id: i64,
}

/// `GET /api/v1/cases`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Cases {
    pub cases: Vec<Case>,
}

/// `GET /api/v1/cases/{id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaseAnswer {
    pub case: Case,
    pub reports: Vec<StoredReportAnswer>,
}

/// A submission account a ladder step changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountChange {
    pub username: String,
    pub from: AccountStatus,
    pub to: AccountStatus,
}

/// A committed ladder transition and what was done to carry it out.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnforcedAnswer {
    pub ladder: Ladder,
    pub audit: AuditRecord,
    pub actions: Vec<LadderAction>,
    pub accounts: Vec<AccountChange>,
    /// The deliveries carried out at once after the step (OP25B syncs, hooks,
    /// notices; every due one, not only this step's). One that failed stays queued
    /// for `spamgate abuse deliver`.
    pub runs: Vec<DeliveryRun>,
    /// Set when the queue could not be run at all: the step is recorded and its
    /// deliveries are left to `spamgate abuse deliver`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_error: Option<String>,
}

/// What a delivery kind is.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryKind {
    Op25b,
    Hook,
    Notify,
}

/// One delivery run: an OP25B sync, a hook command or a customer notice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryRun {
    pub delivery_id: i64,
    pub kind: DeliveryKind,
    pub customer: String,
    /// The delivery's state after the run (`done`, `pending` for a retry, `failed`).
    pub state: String,
    pub error: Option<String>,
    /// op25b: what the sync did (`revoke`, `restore`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// op25b: the customer's prefixes it concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefixes: Option<Vec<String>>,
    /// op25b: whether the change is in force in the kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_force: Option<bool>,
    /// op25b: why nothing was changed, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// hook, notify: the ladder step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// notify: the address it was sent to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// The runs of a queue run, OP25B first, then hooks, then notices.
pub fn delivery_runs(run: &spamgate_app::desk::QueueRun) -> Vec<DeliveryRun> {
    let base =
        |delivery_id, kind, customer: &str, state: &str, error: &Option<String>| DeliveryRun {
            delivery_id,
            kind,
            customer: customer.to_string(),
            state: state.to_string(),
            error: error.clone(),
            action: None,
            prefixes: None,
            in_force: None,
            note: None,
            step: None,
            to: None,
        };
    let op25b = run.op25b.iter().map(|r| DeliveryRun {
        action: Some(r.action.clone()),
        prefixes: Some(r.prefixes.clone()),
        in_force: Some(r.in_force),
        note: r.note.clone(),
        ..base(
            r.delivery_id,
            DeliveryKind::Op25b,
            &r.customer,
            r.state.as_str(),
            &r.error,
        )
    });
    let hooks = run.hooks.iter().map(|r| DeliveryRun {
        step: Some(r.step.clone()),
        ..base(
            r.delivery_id,
            DeliveryKind::Hook,
            &r.customer,
            r.state.as_str(),
            &r.error,
        )
    });
    let notices = run.notices.iter().map(|r| DeliveryRun {
        step: Some(r.step.clone()),
        to: r.to.clone(),
        ..base(
            r.delivery_id,
            DeliveryKind::Notify,
            &r.customer,
            r.state.as_str(),
            &r.error,
        )
    });
    op25b.chain(hooks).chain(notices).collect()
}

/// The account changes a step or a link made.
pub fn account_changes(changed: &[spamgate_app::desk::AccountChange]) -> Vec<AccountChange> {
    changed
        .iter()
        .map(|a| AccountChange {
            username: a.username.clone(),
            from: a.from,
            to: a.to,
        })
        .collect()
}

impl From<&spamgate_app::desk::Enforced> for EnforcedAnswer {
    fn from(e: &spamgate_app::desk::Enforced) -> Self {
        let t = &e.transition;
        EnforcedAnswer {
            ladder: t.ladder.clone(),
            audit: t.audit.clone(),
            actions: t.actions.clone(),
            accounts: account_changes(&e.accounts),
            runs: Vec::new(),
            runs_error: None,
        }
    }
}

/// One file of an evidence bundle.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportFile {
    pub name: String,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// The file's text (invalid UTF-8 replaced).
    pub text: String,
}

/// `POST /api/v1/cases/{id}/export`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Export {
    pub case_id: i64,
    pub files: Vec<ExportFile>,
}

/// `POST /api/v1/claims`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClaimAdded {
    pub id: i64,
    pub claim: Claim,
}

/// `GET /api/v1/customers`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Customers {
    pub customers: Vec<Customer>,
}

/// `GET /api/v1/customers/{id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerAnswer {
    pub customer: Customer,
    /// Linked submission accounts.
    pub accounts: Vec<String>,
    pub ladder: Ladder,
    /// The customer's audit trail: `[id, record]` pairs, oldest first.
    #[schema(value_type = Vec<CustomerAuditLine>)]
    pub audit: Vec<(i64, AuditRecord)>,
}

/// One line of a customer's audit trail: `[id, record]`.
#[derive(ToSchema)]
#[schema(as = CustomerAuditLine)]
#[allow(dead_code)]
struct CustomerAuditLine((i64, AuditRecord));

/// `POST /api/v1/customers/{id}/accounts`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Linked {
    pub customer: String,
    pub account: String,
    /// Accounts the link changed (linked to a suspended customer: suspended with it).
    pub accounts: Vec<AccountChange>,
}

/// A console/API user (never the password hash).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserAnswer {
    pub name: String,
    pub role: Role,
    pub created_at: u64,
    pub disabled: bool,
}

impl From<&User> for UserAnswer {
    fn from(u: &User) -> Self {
        UserAnswer {
            name: u.name.clone(),
            role: u.role,
            created_at: u.created_at,
            disabled: u.disabled,
        }
    }
}

/// `GET /api/v1/users`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Users {
    pub users: Vec<UserAnswer>,
}

/// An API token (never its secret or hash).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenAnswer {
    pub id: i64,
    pub user: String,
    pub label: String,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub revoked_at: Option<u64>,
    pub last_used_at: Option<u64>,
}

impl From<&TokenRecord> for TokenAnswer {
    fn from(t: &TokenRecord) -> Self {
        TokenAnswer {
            id: t.id,
            user: t.user.clone(),
            label: t.label.clone(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            last_used_at: t.last_used_at,
        }
    }
}

/// `POST /api/v1/tokens`: the token and, in this answer only, its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NewTokenAnswer {
    #[serde(flatten)]
    pub token: TokenAnswer,
    /// The bearer secret; it is shown once and never stored in clear.
    pub secret: String,
}

/// `GET /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tokens {
    pub tokens: Vec<TokenAnswer>,
}

/// `GET /api/v1/audit`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntries {
    pub entries: Vec<ApiAuditRecord>,
}

/// The allow-list kinds an operator may add or remove at run time (the schema of the
/// `kind` the handlers take as text).
#[derive(ToSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)]
pub enum RuntimeAllowKind {
    ClientAddress,
    ClientName,
    Sender,
    Recipient,
}

/// A ladder step as `POST /api/v1/customers/{id}/ladder` takes it: warn, suspend,
/// resume, terminate (operator); approve, reject (approver).
#[derive(ToSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)]
pub enum LadderStep {
    Warn,
    Suspend,
    Resume,
    Terminate,
    Approve,
    Reject,
}

/// The JSON of an answer, for the audit trail's detail.
pub fn to_value<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

// --- the desk endpoints of `api_desk.rs`

/// A line of an address-history document that was refused.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RejectedRecord {
    /// Its byte offset in the body.
    pub offset: u64,
    pub why: String,
}

/// `POST /api/v1/import/sessions`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionsImported {
    /// radius-detail, kea-csv, static or cgnat.
    pub format: String,
    pub source: String,
    /// The body's length in bytes.
    pub length: u64,
    /// How far the document was read (the whole body: its length).
    pub to_offset: u64,
    /// Session records written (inserted or updated).
    pub upserted: u64,
    /// Sessions closed because their NAS restarted.
    pub closed_by_nas_reset: u64,
    /// The first 100 refused records.
    pub rejected: Vec<RejectedRecord>,
    pub rejected_count: u64,
}

/// `POST /api/v1/import/customers`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomersImported {
    pub imported: u64,
    /// The first 100 customer ids of the body.
    pub ids: Vec<String>,
}

/// `POST /api/v1/customers/{id}/identities`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IdentityLinked {
    pub customer: String,
    /// radius-user, hwaddr or client-id.
    pub kind: String,
    pub value: String,
}

/// `POST /api/v1/customers/{id}/enforce`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reenforced {
    pub customer: String,
    /// The accounts whose status changed.
    pub accounts: Vec<AccountChange>,
}

/// One entry of the delivery queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    pub id: i64,
    /// op25b, hook or notify.
    pub kind: String,
    pub customer: String,
    /// The ladder action it carries out; `null` if the stored one is unreadable.
    pub payload: Option<LadderAction>,
    /// pending, done or failed.
    pub state: String,
    pub attempts: u32,
    pub next_attempt: i64,
    pub last_error: Option<String>,
}

/// `GET /api/v1/deliveries`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Deliveries {
    pub deliveries: Vec<Delivery>,
}

/// `POST /api/v1/deliveries/run`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveriesRun {
    pub runs: Vec<DeliveryRun>,
    /// The settings missing for some kinds (`hook_command`, `notice_relay_host`):
    /// those deliveries stay queued.
    pub unconfigured: Vec<String>,
}

/// `POST /api/v1/deliveries/{id}/retry`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryRetried {
    pub runs: Vec<DeliveryRun>,
}

/// An internal report filed by `POST /api/v1/signals`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignalFiled {
    pub report_id: i64,
    pub customer: String,
    /// The case it was attached to, if any.
    pub case_id: Option<i64>,
}

/// A signal filed for triage (no customer found for it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignalTriaged {
    pub report_id: i64,
    /// The OP25B source address.
    pub source: String,
}

/// `POST /api/v1/signals`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignalsFiled {
    pub filed: Vec<SignalFiled>,
    /// Signals already filed by an earlier run.
    pub already_filed: u64,
    /// Accounts with signals but linked to no customer: not filed.
    pub unlinked: Vec<String>,
    pub triaged: Vec<SignalTriaged>,
}

/// A network an organisation's mail came from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LearnedNetwork {
    pub network: String,
    pub first_seen: u64,
    pub last_seen: u64,
    pub passes: u32,
}

/// One organisation followed for learned exemptions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LearnedOrg {
    pub org: String,
    pub networks: Vec<LearnedNetwork>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned_until: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_until: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Exempted now.
    pub learned: bool,
    /// Evidence against it blocks learning now.
    pub refused_now: bool,
}

impl LearnedOrg {
    pub fn new(r: &spamgate_engine::learn::LearnRecord, now: u64) -> Self {
        LearnedOrg {
            org: r.org.clone(),
            networks: r
                .networks
                .iter()
                .map(|n| LearnedNetwork {
                    network: n.network.clone(),
                    first_seen: n.first_seen,
                    last_seen: n.last_seen,
                    passes: n.passes,
                })
                .collect(),
            learned_at: r.learned_at,
            learned_until: r.learned_until,
            refused_until: r.refused_until,
            refused: r.refused.clone(),
            learned: r.is_learned(now),
            refused_now: r.is_refused(now),
        }
    }
}

/// `GET /api/v1/learned`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LearnedOrgs {
    pub organisations: Vec<LearnedOrg>,
}

/// `DELETE /api/v1/learned/{domain}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LearnedRemoved {
    pub organisation: String,
    pub removed: bool,
}

/// `DELETE /api/v1/learned`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LearnedCleared {
    /// How many organisations were forgotten.
    pub removed: u64,
}

/// `GET /api/v1/greylist/triplets`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Triplets {
    pub triplets: Vec<Triplet>,
}
