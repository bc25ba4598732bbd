//! The abuse desk as a service of the application layer: what `spamgate abuse|customer|
//! sessions ...` and the HTTP API call. The desk's own rules live in
//! `spamgate-desk`; this module runs its synchronous store off the async threads and
//! carries out what a ladder transition asks for: a suspended or terminated customer's
//! submission accounts get that status through [`AccountService`], so the running
//! daemon refuses them from its next request, with no reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use spamgate_desk::attribution::{Attribution, Query};
use spamgate_desk::case::{Case, CaseId, CaseState, Customer};
use spamgate_desk::desk::{self, DeskConfig, FileImport, HistoryFormat, IngestOutcome};
use spamgate_desk::export::Export;
use spamgate_desk::history::Identity;
use spamgate_desk::ladder::{Action, AuditRecord, Claim, Command, Ladder, Step, Transition};
use spamgate_desk::notice::{Notice, NoticeFacts, Sender, Templates};
use spamgate_desk::report::Category;
use spamgate_desk::store::{
    Delivery, DeliveryKind, DeliveryState, DeskError, DeskStore, ReportId, ReportState,
    RetryPolicy, StoredReport,
};
use spamgate_desk::time::{FixedOffset, UnixTime};
use spamgate_engine::outbound::AccountStatus;
use spamgate_store::{AccountAdmin, AccountStore};

use crate::accounts::{AccountError, AccountService, StatusChange};
use crate::op25b::Op25bSettings;

#[derive(Debug, thiserror::Error)]
pub enum DeskServiceError {
    #[error("{0}")]
    Desk(#[from] DeskError),
    #[error("{0}")]
    Account(#[from] AccountError),
    /// The step is committed; setting the accounts failed part-way.
    #[error(
        "the step for {customer} is recorded, but its accounts could not all be set: {error}; \
         run `spamgate abuse enforce {customer}` once the cause is fixed"
    )]
    Enforcement {
        customer: String,
        error: Box<DeskServiceError>,
    },
    #[error("desk store task failed: {0}")]
    Task(String),
}

impl DeskServiceError {
    /// The operator asked for something wrong (unknown customer, case, report or
    /// account; a refused ladder step), as opposed to a store failing.
    pub fn is_usage(&self) -> bool {
        match self {
            DeskServiceError::Desk(DeskError::NotFound { .. } | DeskError::Invalid(_)) => true,
            DeskServiceError::Account(e) => e.is_usage(),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, DeskServiceError>;

/// The operator's hook: a program run with the customer id and the step entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSettings {
    /// The program and its leading arguments; empty: no hook (hook deliveries stay queued).
    pub command: Vec<String>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

/// The customer notices: the SMTP relay they go through and what they say about the ISP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeSettings {
    /// The relay's host name or address; empty: no relay (notices stay queued).
    pub relay_host: String,
    pub relay_port: u16,
    /// The `From:` and envelope sender, and the desk address the notices name.
    pub from: String,
    /// The ISP's name as the notices sign it.
    pub isp_name: String,
    /// Operator templates (`ja/warned.txt`, ...) replacing the shipped ones file by file.
    pub templates: Option<PathBuf>,
    /// How long the customer has to answer (the notice's deadline).
    pub reply_within: i64,
    /// The longest a relay may take to answer one command.
    pub timeout: Duration,
}

impl Default for NoticeSettings {
    fn default() -> Self {
        NoticeSettings {
            relay_host: String::new(),
            relay_port: 25,
            from: "abuse@example.net".into(),
            isp_name: "Example ISP".into(),
            templates: None,
            reply_within: 7 * 86_400,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Which submission account events become internal reports (`abuse signals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalPolicy {
    /// Events are counted per account in fixed windows of this many seconds; only
    /// windows that have ended are filed, so each window's report is always the same
    /// bytes and filing it again (a rerun, a crash) is deduplicated by its hash.
    pub window: i64,
    /// How far back a run looks (whole windows), so a missed timer run is caught up.
    pub lookback: i64,
    /// Limit trips of one account within a window that make a report.
    pub min_limit_trips: u32,
    /// Refused sends of a suspended or terminated account within a window that make one.
    pub min_refused_sends: u32,
    /// Blocked port-25 attempts of one source (the kernel's OP25B hit table) that make
    /// an internal report for the address's holder; 0: OP25B hits are not read.
    pub min_op25b_hits: u64,
}

impl Default for SignalPolicy {
    fn default() -> Self {
        SignalPolicy {
            window: 3600,
            lookback: 86_400,
            min_limit_trips: 3,
            min_refused_sends: 1,
            min_op25b_hits: 0,
        }
    }
}

/// What a `abuse signals` run filed.
#[derive(Debug, Clone, Default)]
pub struct SignalsRun {
    /// Internal reports filed for the first time (report id, customer, case).
    pub filed: Vec<(ReportId, String, Option<CaseId>)>,
    /// Windows already filed by an earlier run (deduplicated by hash).
    pub already_filed: usize,
    /// Signals of accounts linked to no customer: not filed.
    pub unlinked: Vec<String>,
    /// OP25B sources above the threshold that no single customer held then: their
    /// reports went to triage (report id, source).
    pub triaged: Vec<(ReportId, std::net::IpAddr)>,
}

/// What the desk needs besides its store.
#[derive(Debug, Clone)]
pub struct DeskSettings {
    pub config: DeskConfig,
    /// Zone of times written without one, and of times shown.
    pub zone: FixedOffset,
    /// The operator's hook; its retry policy is the one of every delivery.
    pub hook: HookSettings,
    pub notice: NoticeSettings,
    pub signals: SignalPolicy,
    /// OP25B as managed here (`[op25b]` with pools); `None`: spamgate does not manage
    /// OP25B on this host, and the ladder's OP25B deliveries have nothing to do.
    pub op25b: Option<Op25bSettings>,
}

/// A submission account whose status a transition changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountChange {
    pub username: String,
    pub from: AccountStatus,
    pub to: AccountStatus,
}

/// A committed transition and what was done to carry it out.
#[derive(Debug, Clone)]
pub struct Enforced {
    pub transition: Transition,
    pub accounts: Vec<AccountChange>,
}

/// A case with its reports.
#[derive(Debug, Clone)]
pub struct CaseView {
    pub case: Case,
    pub reports: Vec<StoredReport>,
}

/// A customer with what the desk holds about them.
#[derive(Debug, Clone)]
pub struct CustomerView {
    pub customer: Customer,
    pub accounts: Vec<String>,
    pub ladder: Ladder,
    pub audit: Vec<(i64, AuditRecord)>,
}

/// One hook run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    pub delivery_id: i64,
    pub customer: String,
    pub step: String,
    /// `None`: it succeeded.
    pub error: Option<String>,
    /// After this run: pending (to be retried), done, or failed (out of attempts).
    pub state: DeliveryState,
}

/// One OP25B delivery run: the exemption sets brought in line with the customer's step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op25bRun {
    pub delivery_id: i64,
    pub customer: String,
    /// `revoke` or `restore`: what the step asked for.
    pub action: String,
    /// The customer's exemptions (`[op25b] exempt` entries naming it).
    pub prefixes: Vec<String>,
    /// Whether they are in force after the sync (`false`: revoked).
    pub in_force: bool,
    /// What happened when nothing was synced (`op25b not managed here`, `no exemptions
    /// linked`); `None` when the sets were synced.
    pub note: Option<String>,
    /// `None`: done.
    pub error: Option<String>,
    pub state: DeliveryState,
}

/// One notice mailed (or tried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRun {
    pub delivery_id: i64,
    pub customer: String,
    pub step: String,
    /// The contact address it went to, once the customer was found.
    pub to: Option<String>,
    /// `None`: the relay accepted it.
    pub error: Option<String>,
    /// After this run: pending (to be retried), done, or failed (out of attempts).
    pub state: DeliveryState,
}

/// One run of the delivery queue: every delivery tried, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueRun {
    pub op25b: Vec<Op25bRun>,
    pub hooks: Vec<HookRun>,
    pub notices: Vec<NoticeRun>,
}

/// The desk commands over the desk store and the account store.
pub struct DeskService<'a, S> {
    desk: Arc<dyn DeskStore>,
    accounts: AccountService<'a, S>,
    settings: DeskSettings,
}

impl<'a, S: AccountStore + AccountAdmin> DeskService<'a, S> {
    pub fn new(desk: Arc<dyn DeskStore>, accounts: &'a S, settings: DeskSettings) -> Self {
        DeskService {
            desk,
            accounts: AccountService::new(accounts),
            settings,
        }
    }

    pub fn settings(&self) -> &DeskSettings {
        &self.settings
    }

    /// Runs `work` on the desk store in a blocking thread (the store is synchronous).
    async fn blocking<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn DeskStore, &DeskSettings) -> spamgate_desk::store::Result<T>
            + Send
            + 'static,
    {
        let store = Arc::clone(&self.desk);
        let settings = self.settings.clone();
        tokio::task::spawn_blocking(move || work(store.as_ref(), &settings))
            .await
            .map_err(|e| DeskServiceError::Task(e.to_string()))?
            .map_err(DeskServiceError::from)
    }

    /// Stores one message (durably, first), then parses, attributes and files it.
    /// `Ok` means the raw bytes are stored: the MTA may forget the message.
    pub async fn ingest(&self, bytes: Vec<u8>, now: UnixTime) -> Result<IngestOutcome> {
        ingest(Arc::clone(&self.desk), &self.settings, bytes, now).await
    }

    pub async fn reports(
        &self,
        state: Option<ReportState>,
        limit: usize,
    ) -> Result<Vec<StoredReport>> {
        self.blocking(move |store, _| store.reports(state, limit))
            .await
    }

    pub async fn cases(&self, state: Option<CaseState>, limit: usize) -> Result<Vec<Case>> {
        self.blocking(move |store, _| store.cases(state, limit))
            .await
    }

    pub async fn case(&self, id: CaseId) -> Result<CaseView> {
        self.blocking(move |store, _| {
            let case = store.case(id)?.ok_or(not_found("case", id))?;
            let reports = store.case_reports(id)?;
            Ok(CaseView { case, reports })
        })
        .await
    }

    /// Files a triaged report against a customer a person named.
    pub async fn assign(
        &self,
        report: ReportId,
        customer: String,
        category: Option<Category>,
        actor: String,
        now: UnixTime,
    ) -> Result<CaseId> {
        self.blocking(move |store, s| {
            desk::assign(store, report, &customer, category, &actor, now, &s.config)
        })
        .await
    }

    /// Confirms a case as abuse: the escalation policy decides the step, which is enforced.
    pub async fn confirm(&self, case: CaseId, actor: String, now: UnixTime) -> Result<Enforced> {
        let transition = self
            .blocking(move |store, s| desk::confirm_case(store, case, &actor, now, &s.config))
            .await?;
        self.enforce(transition, now).await
    }

    /// Applies a ladder command to a customer, commits it, then enforces it. Accounts
    /// are checked before anything is committed, so an unknown linked account changes
    /// nothing.
    pub async fn decide(
        &self,
        customer: String,
        actor: String,
        command: Command,
        now: UnixTime,
    ) -> Result<Enforced> {
        let linked = self.linked_accounts(customer.clone()).await?;
        for username in &linked {
            self.accounts.show(username).await?;
        }
        let transition = self
            .blocking(move |store, s| {
                desk::decide(store, &customer, &actor, command, now, &s.config)
            })
            .await?;
        self.enforce(transition, now).await
    }

    async fn linked_accounts(&self, customer: String) -> Result<Vec<String>> {
        self.blocking(move |store, _| {
            store
                .customer(&customer)?
                .ok_or(not_found("customer", &customer))?;
            store.customer_accounts(&customer)
        })
        .await
    }

    /// Carries out a committed transition's account actions. Idempotent: each linked
    /// account is set to the status the customer's new step means.
    async fn enforce(&self, transition: Transition, now: UnixTime) -> Result<Enforced> {
        let mut accounts = Vec::new();
        for action in &transition.actions {
            let (customer, to, force) = match action {
                Action::SuspendAccounts { customer } => {
                    let to = if transition.ladder.step == Step::Terminated {
                        AccountStatus::Terminated
                    } else {
                        AccountStatus::Suspended
                    };
                    (customer, to, false)
                }
                // A forced resume of a terminated customer brings terminated accounts back.
                Action::ReinstateAccounts { customer } => {
                    (customer, AccountStatus::Active, transition.audit.forced)
                }
                // Queued in the desk store's delivery queue by the commit (OP25B: run
                // at once by `run_due_op25b`, retried like a hook).
                Action::RevokeOp25bExemptions { .. }
                | Action::RestoreOp25bExemptions { .. }
                | Action::RunHook { .. }
                | Action::NotifyCustomer { .. } => continue,
            };
            let note = format!(
                "abuse desk: customer {customer} {} by {} ({})",
                transition.ladder.step.as_str(),
                transition.audit.actor,
                transition.audit.reason
            );
            let changed = self
                .set_accounts(customer, to, force, &note, now)
                .await
                .map_err(|error| DeskServiceError::Enforcement {
                    customer: customer.clone(),
                    error: Box::new(error),
                })?;
            accounts.extend(changed);
        }
        Ok(Enforced {
            transition,
            accounts,
        })
    }

    /// Sets every account linked to `customer` to `to` (those already there are left).
    async fn set_accounts(
        &self,
        customer: &str,
        to: AccountStatus,
        force: bool,
        note: &str,
        now: UnixTime,
    ) -> Result<Vec<AccountChange>> {
        let mut changed = Vec::new();
        for username in self.linked_accounts(customer.to_string()).await? {
            let before = self.accounts.show(&username).await?;
            if before.status == to {
                continue;
            }
            let change = StatusChange {
                force,
                create: false,
            };
            self.accounts
                .set_status(&username, to, note.to_string(), change, now.max(0) as u64)
                .await?;
            changed.push(AccountChange {
                username,
                from: before.status,
                to,
            });
        }
        Ok(changed)
    }

    /// Brings the customer's linked accounts in line with a suspended or terminated
    /// step again: after an enforcement that failed half-way, or for an account linked
    /// after the step. Other steps change nothing (an account suspended by hand stays).
    pub async fn reapply(
        &self,
        customer: String,
        actor: String,
        now: UnixTime,
    ) -> Result<Vec<AccountChange>> {
        let c = customer.clone();
        let ladder = self
            .blocking(move |store, _| {
                store.customer(&c)?.ok_or(not_found("customer", &c))?;
                store.ladder(&c)
            })
            .await?;
        let to = match ladder.step {
            Step::Suspended => AccountStatus::Suspended,
            Step::Terminated => AccountStatus::Terminated,
            _ => return Ok(Vec::new()),
        };
        let note = format!(
            "abuse desk: customer {customer} {} (re-applied by {actor})",
            ladder.step.as_str()
        );
        self.set_accounts(&customer, to, false, &note, now).await
    }

    pub async fn claim(&self, claim: Claim, actor: String, now: UnixTime) -> Result<i64> {
        self.blocking(move |store, _| {
            for case in &claim.case_ids {
                let found = store.case(*case)?.ok_or(not_found("case", case))?;
                if found.customer != claim.customer {
                    return Err(DeskError::Invalid(format!(
                        "case {case} belongs to {}, not {}",
                        found.customer, claim.customer
                    )));
                }
            }
            store
                .customer(&claim.customer)?
                .ok_or(not_found("customer", &claim.customer))?;
            desk::file_claim(store, &claim, &actor, now)
        })
        .await
    }

    /// Writes the case folder for the legal team under `parent`.
    pub async fn export(&self, case: CaseId, parent: PathBuf, now: UnixTime) -> Result<Export> {
        self.blocking(move |store, s| {
            spamgate_desk::export::export_case(store, case, &parent, now, s.zone)
        })
        .await
    }

    /// The raw bytes of a stored report, as they came in (the evidence).
    pub async fn raw_report(&self, id: spamgate_desk::store::RawId) -> Result<Vec<u8>> {
        self.blocking(move |store, _| Ok(store.raw(id)?.ok_or(not_found("raw report", id))?.bytes))
            .await
    }

    /// The customer's claims for damages, oldest first.
    pub async fn claims(&self, customer: String) -> Result<Vec<(i64, Claim)>> {
        self.blocking(move |store, _| store.claims(&customer)).await
    }

    /// The notice the customer would get on entering `step` about `case_id`, rendered
    /// with the configured templates as the delivery worker would, sent nowhere.
    pub async fn preview_notice(
        &self,
        customer: String,
        step: Step,
        case_id: Option<CaseId>,
        now: UnixTime,
    ) -> Result<Notice> {
        let notice = self.settings.notice.clone();
        self.blocking(move |store, s| {
            let templates = match &notice.templates {
                Some(dir) => Templates::with_overrides(dir),
                None => Templates::builtin(),
            }
            .map_err(|e| DeskError::Invalid(format!("notice templates: {e}")))?;
            render_notice(
                store, &templates, &notice, s.zone, &customer, step, case_id, now,
            )
            .map_err(DeskError::Invalid)
        })
        .await
    }

    /// Who held the address (and port) then.
    pub async fn who(&self, query: Query) -> Result<Attribution> {
        self.blocking(move |store, s| desk::who(store, query, &s.config))
            .await
    }

    pub async fn put_customer(&self, customer: Customer) -> Result<()> {
        self.blocking(move |store, _| {
            // The ladder owns the status: an update keeps the stored one.
            let mut customer = customer;
            if let Some(existing) = store.customer(&customer.id)? {
                customer.status = existing.status;
            }
            store.upsert_customer(&customer)
        })
        .await
    }

    pub async fn import_customers(&self, customers: Vec<Customer>) -> Result<usize> {
        self.blocking(move |store, _| store.upsert_customers(&customers))
            .await
    }

    pub async fn customer(&self, id: String) -> Result<CustomerView> {
        self.blocking(move |store, _| {
            let customer = store.customer(&id)?.ok_or(not_found("customer", &id))?;
            Ok(CustomerView {
                accounts: store.customer_accounts(&id)?,
                ladder: store.ladder(&id)?,
                audit: store.audit(&id)?,
                customer,
            })
        })
        .await
    }

    pub async fn customers(&self, after: Option<String>, limit: usize) -> Result<Vec<Customer>> {
        self.blocking(move |store, _| store.customers(after.as_deref(), limit))
            .await
    }

    /// Links a submission account to a customer. The account must exist in the
    /// account store (no link to a misspelt name) and the customer in the desk's.
    pub async fn link_account(&self, account: String, customer: String) -> Result<()> {
        self.accounts.show(&account).await?;
        self.blocking(move |store, _| store.link_account(&account, &customer))
            .await
    }

    /// Maps a RADIUS user, hardware address or client id to a customer.
    pub async fn link_identity(&self, identity: Identity, customer: String) -> Result<()> {
        self.blocking(move |store, _| {
            store
                .customer(&customer)?
                .ok_or(not_found("customer", &customer))?;
            store.link_identity(&identity, &customer)
        })
        .await
    }

    pub async fn import_sessions(
        &self,
        path: PathBuf,
        format: HistoryFormat,
    ) -> Result<FileImport> {
        self.blocking(move |store, s| desk::import_history_file(store, &path, format, s.zone))
            .await
    }

    /// Imports one whole address-history document (an upload) under `source`; see
    /// [`desk::import_history_bytes`].
    pub async fn import_session_bytes(
        &self,
        source: String,
        bytes: Vec<u8>,
        format: HistoryFormat,
    ) -> Result<FileImport> {
        self.blocking(move |store, s| {
            desk::import_history_bytes(store, &source, &bytes, format, s.zone)
        })
        .await
    }

    /// Removes what is past `retention` at `now` (see [`DeskStore::purge`]).
    pub async fn purge(
        &self,
        retention: spamgate_desk::store::Retention,
        force: bool,
        now: UnixTime,
    ) -> Result<spamgate_desk::store::PurgeSummary> {
        self.blocking(move |store, _| store.purge(&retention.cutoffs(now, force)))
            .await
    }

    pub async fn deliveries(&self, state: DeliveryState, limit: usize) -> Result<Vec<Delivery>> {
        self.blocking(move |store, _| store.deliveries(state, limit))
            .await
    }

    /// Runs the operator's hook for every due hook delivery (customer id and step as
    /// its two last arguments; exit 0 is success). A failure is recorded and retried
    /// with backoff, then shown as failed; never dropped. Without a hook command
    /// nothing runs and the deliveries stay queued.
    pub async fn run_due_hooks(&self, now: UnixTime, limit: usize) -> Result<Vec<HookRun>> {
        if self.settings.hook.command.is_empty() {
            return Ok(Vec::new());
        }
        let due = self
            .blocking(move |store, _| store.due_deliveries_of(DeliveryKind::Hook, now, limit))
            .await?;
        self.run_hooks(due, now).await
    }

    /// Runs the hook for each of `due` (hook deliveries) and records the outcomes.
    async fn run_hooks(&self, due: Vec<Delivery>, now: UnixTime) -> Result<Vec<HookRun>> {
        let hook = self.settings.hook.clone();
        let mut runs = Vec::new();
        for delivery in due {
            let step = match serde_json::from_str::<Action>(&delivery.payload) {
                Ok(Action::RunHook { step, .. }) => Ok(step.as_str().to_string()),
                Ok(other) => Err(format!("not a hook action: {other:?}")),
                Err(e) => Err(format!("unreadable hook payload: {e}")),
            };
            let error = match &step {
                Ok(step) => run_hook(&hook, &delivery.customer, step).await.err(),
                Err(e) => Some(e.clone()),
            };
            let id = delivery.id;
            let recorded = error.clone();
            let state = self
                .blocking(move |store, s| record_delivery(store, s, id, now, recorded.as_deref()))
                .await?;
            runs.push(HookRun {
                delivery_id: id,
                customer: delivery.customer,
                step: step.unwrap_or_default(),
                error,
                state,
            });
        }
        Ok(runs)
    }

    /// What a ladder step queued, carried out now, as the CLI's `abuse suspend|...`
    /// and the API's ladder endpoints do after the step: every due OP25B sync, hook
    /// and notice (at most `limit` of each kind). A failed run stays queued for
    /// `abuse deliver` with the deliveries' backoff; hooks and notices without a hook
    /// command or relay stay queued untouched.
    pub async fn run_queued_now(&self, now: UnixTime, limit: usize) -> Result<QueueRun> {
        Ok(QueueRun {
            op25b: self.run_due_op25b(now, limit).await?,
            hooks: self.run_due_hooks(now, limit).await?,
            notices: self.run_due_notices(now, limit).await?,
        })
    }

    /// Makes one pending or failed delivery due now and runs it at once (an
    /// operator's "retry this one"): its outcome is recorded as any run's. Refused
    /// (`Invalid`) when nothing here could run it (a hook without `hook_command`, a
    /// notice without `notice_relay_host`), so it is not reset for nothing.
    pub async fn retry_delivery(&self, id: i64, now: UnixTime) -> Result<QueueRun> {
        let delivery = self
            .blocking(move |store, _| {
                store
                    .deliveries(DeliveryState::Pending, usize::MAX)?
                    .into_iter()
                    .chain(store.deliveries(DeliveryState::Failed, usize::MAX)?)
                    .find(|d| d.id == id)
                    .ok_or(not_found("pending or failed delivery", id))
            })
            .await?;
        let missing = match delivery.kind {
            DeliveryKind::Hook if self.settings.hook.command.is_empty() => Some("hook_command"),
            DeliveryKind::Notify if self.settings.notice.relay_host.is_empty() => {
                Some("notice_relay_host")
            }
            _ => None,
        };
        if let Some(key) = missing {
            return Err(DeskError::Invalid(format!(
                "delivery {id} is a {}, and [desk] {key} is not configured: nothing can run it",
                delivery.kind.as_str()
            ))
            .into());
        }
        let due = vec![
            self.blocking(move |store, _| store.retry_delivery(id, now))
                .await?,
        ];
        let mut run = QueueRun::default();
        match delivery.kind {
            DeliveryKind::Op25b => run.op25b = self.run_op25b_deliveries(due, now).await?,
            DeliveryKind::Hook => run.hooks = self.run_hooks(due, now).await?,
            DeliveryKind::Notify => run.notices = self.run_notices(due, now).await?,
        }
        Ok(run)
    }
}

impl<S: AccountStore + AccountAdmin> DeskService<'_, S> {
    /// Carries out every due OP25B delivery (queued by a suspension, termination or
    /// resume): the customer's exemptions are taken out of (or put back into) the
    /// loaded exemption sets by an `op25b sync` of the effective configuration, and
    /// the result is written to the customer's audit trail. A failed sync (nft missing,
    /// the table not loaded) is recorded and retried with the hooks' backoff, then
    /// shown as failed; never dropped. The sync reads the customers' steps as they are
    /// now, so a late retry never undoes a later step.
    pub async fn run_due_op25b(&self, now: UnixTime, limit: usize) -> Result<Vec<Op25bRun>> {
        let due = self
            .blocking(move |store, _| store.due_deliveries_of(DeliveryKind::Op25b, now, limit))
            .await?;
        self.run_op25b_deliveries(due, now).await
    }

    async fn run_op25b_deliveries(
        &self,
        due: Vec<Delivery>,
        now: UnixTime,
    ) -> Result<Vec<Op25bRun>> {
        let mut runs = Vec::new();
        for delivery in due {
            let id = delivery.id;
            let payload = delivery.payload.clone();
            let customer = delivery.customer.clone();
            let run = self
                .blocking(move |store, s| {
                    let run = run_op25b(store, s.op25b.as_ref(), id, &customer, &payload, now)?;
                    let state = record_delivery(store, s, id, now, run.error.as_deref())?;
                    Ok(Op25bRun { state, ..run })
                })
                .await?;
            runs.push(run);
        }
        Ok(runs)
    }

    /// Mails every due notice through the relay, in the customer's language, and
    /// records each as done, or as failed to be retried with the deliveries' backoff
    /// (then shown as failed). Without a relay nothing is sent and notices stay queued.
    pub async fn run_due_notices(&self, now: UnixTime, limit: usize) -> Result<Vec<NoticeRun>> {
        if self.settings.notice.relay_host.is_empty() {
            return Ok(Vec::new());
        }
        let due = self
            .blocking(move |store, _| store.due_deliveries_of(DeliveryKind::Notify, now, limit))
            .await?;
        self.run_notices(due, now).await
    }

    async fn run_notices(&self, due: Vec<Delivery>, now: UnixTime) -> Result<Vec<NoticeRun>> {
        let notice = self.settings.notice.clone();
        // Templates are read per run: an operator's edit needs no restart.
        let templates = match &notice.templates {
            Some(dir) => Templates::with_overrides(dir),
            None => Templates::builtin(),
        }
        .map_err(|e| DeskError::Invalid(format!("notice templates: {e}")))?;
        let templates = Arc::new(templates);
        let mut runs = Vec::new();
        for delivery in due {
            let id = delivery.id;
            let payload = delivery.payload.clone();
            let templates = Arc::clone(&templates);
            let settings = notice.clone();
            // Rendering reads the store and sending blocks: both off the async threads.
            let (step, to, error) = self
                .blocking(move |store, s| {
                    Ok(send_notice(
                        store, &templates, &settings, s.zone, id, &payload, now,
                    ))
                })
                .await?;
            let recorded = error.clone();
            let state = self
                .blocking(move |store, s| record_delivery(store, s, id, now, recorded.as_deref()))
                .await?;
            runs.push(NoticeRun {
                delivery_id: id,
                customer: delivery.customer,
                step,
                to,
                error,
                state,
            });
        }
        Ok(runs)
    }
}

/// Records one delivery's outcome: done, or (`error`) failed, to be retried with the
/// deliveries' backoff (`[desk] hook_attempts`, `hook_first_retry`, `hook_max_retry`)
/// and shown as failed once out of attempts.
fn record_delivery(
    store: &dyn DeskStore,
    settings: &DeskSettings,
    id: i64,
    now: UnixTime,
    error: Option<&str>,
) -> spamgate_desk::store::Result<DeliveryState> {
    match error {
        None => store.delivery_done(id, now).map(|()| DeliveryState::Done),
        Some(error) => store.delivery_failed(id, now, error, &settings.hook.retry),
    }
}

impl<S: AccountStore + AccountAdmin> DeskService<'_, S> {
    /// Files the submission account events of the ended windows within the lookback
    /// (limit trips, refused sends of suspended accounts) as internal reports for the
    /// accounts' customers. Idempotent: a window's signal is the same bytes every run,
    /// and the desk stores and files a message once.
    pub async fn file_account_signals(&self, now: UnixTime) -> Result<SignalsRun> {
        use spamgate_desk::report::InternalSignal;
        use spamgate_store::EventKind;
        let policy = self.settings.signals;
        let window = policy.window.max(60);
        let end = now - now.rem_euclid(window);
        let start = end - (policy.lookback.max(window) / window) * window;
        let events = self
            .accounts
            .events(None, start.max(0) as u64, 1_000_000)
            .await?;
        // (window start, account, is refused) → (count, last event time)
        let mut counts: std::collections::BTreeMap<(i64, String, bool), (u32, i64)> =
            Default::default();
        for event in events {
            let at = event.at as i64;
            if at >= end {
                continue;
            }
            let refused = match event.kind {
                EventKind::LimitExceeded { .. } => false,
                EventKind::Rejected { .. } => true,
                EventKind::StatusChanged { .. } => continue,
            };
            let key = (at - at.rem_euclid(window), event.username, refused);
            let entry = counts.entry(key).or_insert((0, at));
            entry.0 += 1;
            entry.1 = entry.1.max(at);
        }
        let signals: Vec<(InternalSignal, i64)> = counts
            .into_iter()
            .filter_map(|((_, account, refused), (n, last))| {
                if refused && n >= policy.min_refused_sends.max(1) {
                    Some((
                        InternalSignal::RefusedWhileSuspended {
                            account,
                            attempts: n,
                        },
                        last,
                    ))
                } else if !refused && n >= policy.min_limit_trips.max(1) {
                    Some((
                        InternalSignal::SubmissionLimitTrips { account, trips: n },
                        last,
                    ))
                } else {
                    None
                }
            })
            .collect();
        self.blocking(move |store, s| {
            let mut run = SignalsRun::default();
            for (signal, observed_at) in signals {
                let account = signal.account().unwrap_or_default().to_string();
                if store.account_customer(&account)?.is_none() {
                    run.unlinked.push(account);
                    continue;
                }
                let outcome = desk::ingest_internal(store, &signal, observed_at, now, &s.config)?;
                if outcome.raw.duplicate {
                    run.already_filed += 1;
                } else {
                    run.filed.push((
                        outcome.report_id,
                        outcome.customer.unwrap_or_default(),
                        outcome.case_id,
                    ));
                }
            }
            Ok(run)
        })
        .await
    }
}

/// One OP25B delivery: sync, and on success an audit record. Store failures while
/// reading are the delivery's error (retried); the audit write's failure is the run's.
fn run_op25b(
    store: &dyn DeskStore,
    op25b: Option<&Op25bSettings>,
    delivery_id: i64,
    customer: &str,
    payload: &str,
    now: UnixTime,
) -> spamgate_desk::store::Result<Op25bRun> {
    let mut run = Op25bRun {
        delivery_id,
        customer: customer.to_string(),
        action: String::new(),
        prefixes: Vec::new(),
        in_force: true,
        note: None,
        error: None,
        state: DeliveryState::Pending,
    };
    match serde_json::from_str::<Action>(payload) {
        Ok(Action::RevokeOp25bExemptions { .. }) => run.action = "revoke".into(),
        Ok(Action::RestoreOp25bExemptions { .. }) => run.action = "restore".into(),
        Ok(other) => {
            run.error = Some(format!("not an OP25B action: {other:?}"));
            return Ok(run);
        }
        Err(e) => {
            run.error = Some(format!("unreadable OP25B payload: {e}"));
            return Ok(run);
        }
    }
    let Some(settings) = op25b else {
        run.note = Some("OP25B is not managed here ([op25b] has no pools)".into());
        return Ok(run);
    };
    run.prefixes = settings
        .config
        .customer_exemptions(customer)
        .map(|e| e.prefix.to_string())
        .collect();
    if run.prefixes.is_empty() {
        run.note = Some("no [op25b] exemption names this customer".into());
        return Ok(run);
    }
    match crate::op25b::sync(settings, Some(store), crate::op25b::system_time(now)) {
        Err(e) => {
            run.error = Some(format!("op25b sync: {e}"));
            Ok(run)
        }
        Ok((plan, effective)) => {
            run.in_force = !effective
                .revoked
                .iter()
                .any(|e| e.customer.as_deref() == Some(customer));
            let ladder = store.ladder(customer)?;
            store.append_audit(&AuditRecord {
                customer: customer.to_string(),
                at: now,
                actor: "spamgate".into(),
                action: format!("op25b-{}", run.action),
                from: ladder.step,
                to: ladder.step,
                reason: format!(
                    "OP25B exemptions {} {} (sets of table inet {} synced)",
                    run.prefixes.join(", "),
                    if run.in_force { "in force" } else { "revoked" },
                    plan.table()
                ),
                evidence: vec![format!("delivery:{delivery_id}")],
                rule: None,
                approver: None,
                forced: false,
            })?;
            Ok(run)
        }
    }
}

impl<S: AccountStore + AccountAdmin> DeskService<'_, S> {
    /// Reads the kernel's OP25B hit table (`op25b hits`) with `[desk] op25b_nft`.
    /// `None`: OP25B is not managed here, or its hits are not signals.
    pub async fn op25b_hits(&self) -> Result<Option<Vec<crate::op25b::Hit>>> {
        let Some(op25b) = self.settings.op25b.clone() else {
            return Ok(None);
        };
        if self.settings.signals.min_op25b_hits == 0 {
            return Ok(None);
        }
        tokio::task::spawn_blocking(move || {
            spamgate_op25b::hits(&op25b.config.table, &op25b.nft)
                .map_err(|e| DeskError::Backend(format!("op25b hits: {e}")))
        })
        .await
        .map_err(|e| DeskServiceError::Task(e.to_string()))?
        .map(Some)
        .map_err(DeskServiceError::from)
    }

    /// Files the OP25B hits at or above `[desk] signal_op25b_hits` blocked packets as
    /// internal reports, each attributed to the customer who held the source address
    /// at its last attempt (the hit table's timeout minus what is left of it; the
    /// address history decides, as for any report: no single holder → triage).
    /// Idempotent per source and `signal_window` of the last attempt: a source that
    /// stopped is filed once however often it is read; one that keeps trying is filed
    /// once per window, folding into the same case.
    pub async fn file_op25b_signals(
        &self,
        hits: Vec<crate::op25b::Hit>,
        hits_timeout: i64,
        now: UnixTime,
    ) -> Result<SignalsRun> {
        use spamgate_desk::report::InternalSignal;
        let threshold = self.settings.signals.min_op25b_hits;
        let window = self.settings.signals.window.max(60);
        self.blocking(move |store, s| {
            let mut run = SignalsRun::default();
            for hit in hits
                .into_iter()
                .filter(|h| threshold > 0 && h.packets >= threshold)
            {
                let left = hit
                    .expires_secs
                    .map_or(hits_timeout, |e| e.min(i64::MAX as u64) as i64);
                let last = now - (hits_timeout - left).clamp(0, hits_timeout.max(0));
                let window_start = last - last.rem_euclid(window);
                let signal = InternalSignal::Op25bBlocked {
                    address: hit.source,
                    attempts: hit.packets.min(u32::MAX as u64) as u32,
                };
                let key = serde_json::json!({
                    "signal": "op25b-blocked",
                    "address": hit.source,
                    "window_start": window_start,
                    "window": window,
                    "threshold": threshold,
                });
                let outcome =
                    desk::ingest_internal_keyed(store, &signal, &key, last, now, &s.config)?;
                if outcome.raw.duplicate {
                    run.already_filed += 1;
                } else if let Some(customer) = outcome.customer {
                    run.filed
                        .push((outcome.report_id, customer, outcome.case_id));
                } else {
                    run.triaged.push((outcome.report_id, hit.source));
                }
            }
            Ok(run)
        })
        .await
    }
}

/// Renders one queued notice and hands it to the relay. Returns the step, the
/// address it went to, and the error if any (a store failure counts as one: the
/// delivery is retried like a relay failure).
/// The notice `customer` gets for entering `step` (about `case_id`), as it would be
/// mailed at `now`: for the delivery worker and the console's preview.
#[allow(clippy::too_many_arguments)]
fn render_notice(
    store: &dyn DeskStore,
    templates: &Templates,
    settings: &NoticeSettings,
    zone: FixedOffset,
    customer: &str,
    step: Step,
    case_id: Option<CaseId>,
    now: UnixTime,
) -> std::result::Result<Notice, String> {
    let customer = store
        .customer(customer)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("customer {customer} is gone"))?;
    let facts = notice_facts(
        store,
        &customer.id,
        step,
        case_id,
        now + settings.reply_within,
    )
    .map_err(|e| e.to_string())?;
    // The notice names the bare address to answer, not `Name <address>`.
    let desk_address = settings
        .from
        .parse::<lettre::message::Mailbox>()
        .map_or_else(|_| settings.from.clone(), |m| m.email.to_string());
    let sender = Sender {
        isp_name: settings.isp_name.clone(),
        desk_address,
        english_zone: zone,
    };
    templates
        .render(&customer, &facts, &sender)
        .map_err(|e| e.to_string())
}

fn send_notice(
    store: &dyn DeskStore,
    templates: &Templates,
    settings: &NoticeSettings,
    zone: FixedOffset,
    delivery_id: i64,
    payload: &str,
    now: UnixTime,
) -> (String, Option<String>, Option<String>) {
    let (customer, step, case_id) = match serde_json::from_str::<Action>(payload) {
        Ok(Action::NotifyCustomer {
            customer,
            step,
            case_id,
        }) => (customer, step, case_id),
        Ok(other) => {
            return (
                String::new(),
                None,
                Some(format!("not a notice: {other:?}")),
            );
        }
        Err(e) => return (String::new(), None, Some(format!("unreadable notice: {e}"))),
    };
    let step_name = step.as_str().to_string();
    let rendered = render_notice(
        store, templates, settings, zone, &customer, step, case_id, now,
    );
    let notice = match rendered {
        Ok(n) => n,
        Err(e) => return (step_name, None, Some(e)),
    };
    let to = notice.to.clone();
    let error = mail_notice(settings, &notice, delivery_id, now).err();
    (step_name, Some(to), error)
}

/// What the notice names: the case's category, and the address, port and time of
/// its first report that has an address (or of its first report). A step taken by
/// hand names no case: the customer's latest case is the one the notice is about.
fn notice_facts(
    store: &dyn DeskStore,
    customer: &str,
    step: Step,
    case_id: Option<CaseId>,
    deadline: UnixTime,
) -> spamgate_desk::store::Result<NoticeFacts> {
    let case_id = match case_id {
        Some(id) => Some(id),
        None => store
            .customer_cases(customer, UnixTime::MIN)?
            .first()
            .map(|c| c.id),
    };
    let mut facts = NoticeFacts {
        step,
        category: Category::Spam,
        case_id,
        address: None,
        port: None,
        at: None,
        deadline: Some(deadline),
    };
    let Some(id) = case_id else {
        return Ok(facts);
    };
    let Some(case) = store.case(id)? else {
        return Ok(facts);
    };
    facts.category = case.category;
    facts.at = Some(case.opened_at);
    let reports = store.case_reports(id)?;
    let first = reports
        .iter()
        .find(|r| r.report.source_ip.is_some())
        .or(reports.first());
    if let Some(r) = first {
        facts.address = r.report.source_ip;
        facts.port = r.report.source_port;
        if let Some(t) = &r.report.time {
            facts.at = Some(t.utc);
        }
    }
    Ok(facts)
}

/// Builds the MIME message (UTF-8 text/plain, the subject RFC 2047-encoded by
/// lettre) and sends it through the relay, without TLS: the relay is the ISP's own.
fn mail_notice(
    settings: &NoticeSettings,
    notice: &Notice,
    delivery_id: i64,
    now: UnixTime,
) -> std::result::Result<(), String> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::{Message, SmtpTransport, Transport};
    let from: Mailbox = settings
        .from
        .parse()
        .map_err(|e| format!("from address {:?}: {e}", settings.from))?;
    let to: Mailbox = notice
        .to
        .parse()
        .map_err(|e| format!("contact address {:?}: {e}", notice.to))?;
    let domain = from.email.domain().to_string();
    let date = std::time::UNIX_EPOCH + Duration::from_secs(now.max(0) as u64);
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(notice.subject.clone())
        // One id per delivery: a retry after a lost answer is recognisably the same notice.
        .message_id(Some(format!("<notice-{delivery_id}@{domain}>")))
        .date(date)
        .header(ContentType::TEXT_PLAIN)
        .body(notice.body.clone())
        .map_err(|e| format!("building the notice: {e}"))?;
    let relay = SmtpTransport::builder_dangerous(settings.relay_host.as_str())
        .port(settings.relay_port)
        .timeout(Some(settings.timeout))
        .build();
    relay
        .send(&message)
        .map(drop)
        .map_err(|e| format!("relay {}:{}: {e}", settings.relay_host, settings.relay_port))
}

/// Runs the hook once: `command... CUSTOMER STEP`, within the timeout.
async fn run_hook(
    hook: &HookSettings,
    customer: &str,
    step: &str,
) -> std::result::Result<(), String> {
    let (program, args) = hook.command.split_first().ok_or("no hook command")?;
    let mut child = tokio::process::Command::new(program);
    child
        .args(args)
        .arg(customer)
        .arg(step)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output = child.output();
    match tokio::time::timeout(hook.timeout, output).await {
        Err(_) => Err(format!("{program}: no exit within {:?}", hook.timeout)),
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr.trim().chars().rev().take(300).collect();
            let tail: String = tail.chars().rev().collect();
            Err(format!("{program}: {} {tail}", out.status)
                .trim()
                .to_string())
        }
    }
}

/// [`DeskService::ingest`] without an account store: `abuse ingest` runs from the MTA,
/// often as another user, and needs nothing but the desk's file.
pub async fn ingest(
    store: Arc<dyn DeskStore>,
    settings: &DeskSettings,
    bytes: Vec<u8>,
    now: UnixTime,
) -> Result<IngestOutcome> {
    let config = settings.config.clone();
    tokio::task::spawn_blocking(move || desk::ingest(store.as_ref(), &bytes, now, &config))
        .await
        .map_err(|e| DeskServiceError::Task(e.to_string()))?
        .map_err(DeskServiceError::from)
}

fn not_found(kind: &'static str, id: impl ToString) -> DeskError {
    DeskError::NotFound {
        kind,
        id: id.to_string(),
    }
}

/// Opens the SQLite desk store, creating its directory.
pub fn open_sqlite_desk(path: &Path) -> Result<Arc<dyn DeskStore>> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| DeskError::Backend(format!("cannot create {}: {e}", dir.display())))?;
    }
    let store = spamgate_desk::store::sqlite::SqliteDeskStore::open(path).map_err(|e| match e {
        DeskError::Backend(m) => DeskError::Backend(format!("{}: {m}", path.display())),
        other => other,
    })?;
    Ok(Arc::new(store))
}
