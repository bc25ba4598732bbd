//! The abuse desk's commands: `spamgate abuse ...`, `spamgate customer ...` and
//! `spamgate sessions import`. They only translate arguments to
//! [`spamgate_app::desk::DeskService`] calls and its answers to lines (or JSON);
//! the rules are in the application layer and `spamgate-desk`.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use spamgate_app::desk::{DeskService, DeskServiceError, DeskSettings, Enforced};
use spamgate_app::{Clock, SystemClock};
use spamgate_desk::attribution::{Attribution, Query};
use spamgate_desk::case::{Case, CaseState, Customer, CustomerStatus, Language};
use spamgate_desk::desk::HistoryFormat;
use spamgate_desk::history::Identity;
use spamgate_desk::ladder::{Claim, ClaimItem, Command};
use spamgate_desk::report::Category;
use spamgate_desk::store::{DeliveryState, DeskStore, ReportState, StoredReport};
use spamgate_desk::time::{FixedOffset, UnixTime};

use crate::config::Config;
use crate::daemon::{self, Fatal, exit};

/// sysexits EX_TEMPFAIL: the MTA keeps the message and retries.
pub const EX_TEMPFAIL: i32 = 75;

/// `spamgate abuse ...`: reports, cases and the ladder.
#[derive(Args)]
pub struct AbuseArgs {
    #[command(subcommand)]
    pub command: AbuseCommand,
    /// Configuration file (its [desk] store); without it, the built-in defaults.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// JSON (one object per line for listings).
    #[arg(long, global = true)]
    pub json: bool,
    /// Who acts, for the audit trail; default: $USER.
    #[arg(long, global = true)]
    pub actor: Option<String>,
}

#[derive(Subcommand)]
pub enum AbuseCommand {
    /// Read one message on stdin (the abuse@ alias pipes into it) and store it before
    /// anything else: exit 0 once stored, 75 (EX_TEMPFAIL) when it could not be, so the
    /// MTA retries. The same message again is stored once.
    Ingest,
    /// Reports, newest first.
    Reports {
        /// new, triage, filed or dismissed.
        #[arg(long)]
        state: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Cases, newest first.
    Cases {
        /// open, confirmed, closed or dismissed.
        #[arg(long)]
        state: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One case with its reports and their attribution.
    Show {
        /// The case number.
        case: i64,
    },
    /// The triage queue: reports a person must attribute (`abuse assign`).
    Triage {
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// File a triaged report against a customer (after looking at its evidence).
    Assign {
        /// The report number (as `abuse triage` lists it).
        report: i64,
        /// The customer id.
        customer: String,
        /// spam, overload, vandalism or illegal (default: the report's own).
        #[arg(long)]
        category: Option<String>,
    },
    /// Confirm a case as abuse: the escalation policy decides the next step.
    Confirm {
        /// The case number.
        case: i64,
    },
    /// Warn the customer (step 1).
    Warn {
        /// The customer id.
        customer: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
        /// Evidence references, e.g. case:12 (repeatable).
        #[arg(long)]
        evidence: Vec<String>,
    },
    /// Suspend the service (step 2): the customer's submission accounts are refused
    /// from the next request on.
    Suspend {
        /// The customer id.
        customer: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
        /// The second person approving, where the policy requires one.
        #[arg(long)]
        approver: Option<String>,
        /// Evidence references, e.g. case:12 (repeatable).
        #[arg(long)]
        evidence: Vec<String>,
    },
    /// Carry out the pending proposal (suspension or termination); you are the approver.
    Approve {
        /// The customer id.
        customer: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Drop the pending proposal.
    Reject {
        /// The customer id.
        customer: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Undo a suspension: the accounts it suspended send again.
    Resume {
        /// The customer id.
        customer: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
        /// Bring back a terminated customer (termination is otherwise final).
        #[arg(long)]
        force: bool,
    },
    /// Terminate the contract (step 3): final unless a forced resume.
    Terminate {
        /// The customer id.
        customer: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
        /// Evidence references, e.g. case:12 (repeatable).
        #[arg(long)]
        evidence: Vec<String>,
    },
    /// File a claim for the actual damage (step 4) against cases of the customer.
    Claim {
        /// The customer id.
        customer: String,
        /// A case the claim attaches to (repeatable, at least one).
        #[arg(long = "case", required = true)]
        cases: Vec<i64>,
        /// In the currency's minor unit (JPY has none).
        #[arg(long)]
        amount: i64,
        /// ISO 4217 currency code of --amount.
        #[arg(long, default_value = "JPY")]
        currency: String,
        /// How the damage was calculated.
        #[arg(long)]
        basis: String,
        /// `DESCRIPTION=AMOUNT` (repeatable; the items must add up to --amount).
        #[arg(long = "item")]
        items: Vec<String>,
    },
    /// Write the case folder for the legal team (case, raw reports, attribution, audit,
    /// claims, MANIFEST.sha256) under DIR.
    Export {
        /// The case number.
        case: i64,
        /// The directory the case folder is written under.
        dir: PathBuf,
    },
    /// Who held ADDRESS[:PORT] at TIME (RFC 3339, or a date in the configured zone).
    Who {
        /// The address, with an optional :PORT (for CGNAT).
        address: String,
        /// When: RFC 3339, or a date in the configured zone.
        time: String,
    },
    /// Set the customer's linked accounts to its suspended or terminated step again
    /// (after an enforcement that failed part-way, or an account linked later).
    Enforce {
        /// The customer id.
        customer: String,
    },
    /// Run the hook and mail the notice of every due delivery (retries included), e.g.
    /// from a timer.
    Deliver {
        /// Handle at most this many due deliveries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// File submission account events (limit trips, refused sends of suspended
    /// accounts) of the ended windows, and OP25B hits above [desk] signal_op25b_hits,
    /// as internal reports, e.g. from a timer. Idempotent.
    Signals,
    /// Remove what is past the [desk] retention_* keys: address history, reports in no
    /// case, finished deliveries, closed or dismissed cases without a claim (daily timer).
    Purge {
        /// Also remove open, confirmed and claimed cases past retention_cases, and
        /// failed deliveries.
        #[arg(long)]
        force: bool,
    },
    /// The delivery queue (hooks and notices): pending, done or failed.
    Deliveries {
        /// pending, done or failed.
        #[arg(long, default_value = "pending")]
        state: String,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// `spamgate customer ...`.
#[derive(Args)]
pub struct CustomerArgs {
    #[command(subcommand)]
    pub command: CustomerCommand,
    /// Configuration file (its [desk] store); without it, the built-in defaults.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// JSON (one object per line for listings).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum CustomerCommand {
    /// Add a customer, or update one (its status stays: the ladder owns it).
    Add {
        /// The customer id.
        id: String,
        /// The customer's name.
        #[arg(long, default_value = "")]
        name: String,
        /// Where notices go (an e-mail address).
        #[arg(long)]
        contact: String,
        /// ja or en.
        #[arg(long, default_value = "ja")]
        language: String,
        /// The customer's service plan (free text).
        #[arg(long, default_value = "")]
        plan: String,
    },
    /// Import a CSV of customers: `id,name,contact,language,plan`.
    Import {
        /// The file to import.
        file: PathBuf,
    },
    /// One customer: accounts, ladder step, audit trail.
    Show {
        /// The customer id.
        id: String,
    },
    /// Customers by id.
    List {
        /// Start after this customer id (paging).
        #[arg(long)]
        after: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Link a submission account (it must exist: `spamgate account add`) or an address
    /// history identity to a customer.
    Link {
        /// The customer id.
        customer: String,
        /// The submission account (SASL login) to link.
        #[arg(long)]
        account: Option<String>,
        /// RADIUS User-Name.
        #[arg(long)]
        radius_user: Option<String>,
        /// DHCP hardware address.
        #[arg(long)]
        hwaddr: Option<String>,
        /// DHCP client identifier.
        #[arg(long)]
        client_id: Option<String>,
    },
}

/// `spamgate sessions ...`.
#[derive(Args)]
pub struct SessionsArgs {
    #[command(subcommand)]
    pub command: SessionsCommand,
    /// Configuration file (its [desk] store); without it, the built-in defaults.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// JSON (one object per line for listings).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// Import address history; a file imported again continues where it stopped (a
    /// growing RADIUS detail file is tailed, nothing is imported twice).
    Import {
        /// radius-detail, kea-csv, static or cgnat.
        #[arg(long)]
        format: String,
        /// The file to import.
        file: PathBuf,
    },
}

fn usage(message: impl Into<String>) -> Fatal {
    Fatal {
        code: exit::USAGE,
        error: anyhow::anyhow!(message.into()),
    }
}

fn failed(error: DeskServiceError) -> Fatal {
    Fatal {
        code: if error.is_usage() {
            exit::USAGE
        } else {
            exit::STORE
        },
        error: error.into(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Fatal> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fatal {
            code: exit::OS,
            error: e.into(),
        })
}

struct Loaded {
    config: Config,
    settings: DeskSettings,
    desk: Arc<dyn DeskStore>,
}

fn load(path: Option<&PathBuf>, failure_code: Option<i32>) -> Result<Loaded, Fatal> {
    let with = |code: i32, error: anyhow::Error| Fatal {
        code: failure_code.unwrap_or(code),
        error,
    };
    let config = Config::load_or_default(path.map(PathBuf::as_path))
        .map_err(|e| with(exit::CONFIG, e.into()))?;
    crate::logging::init("warn");
    let settings = config
        .desk_settings()
        .map_err(|e| with(exit::CONFIG, e.into()))?;
    let desk_path = config.desk.store_path(&config.store);
    let desk = spamgate_app::desk::open_sqlite_desk(&desk_path)
        .map_err(|e| with(exit::STORE, e.into()))?;
    Ok(Loaded {
        config,
        settings,
        desk,
    })
}

fn now() -> UnixTime {
    SystemClock.now() as UnixTime
}

fn actor(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "operator".into())
}

/// Runs `work` with the desk service over the main store (for the accounts).
fn with_service<F>(loaded: Loaded, work: F) -> Result<(), Fatal>
where
    F: AsyncFnOnce(&DeskService<'_, spamgate_store::AnyStore>) -> Result<(), Fatal>,
{
    runtime()?.block_on(async {
        let store = daemon::open_store(&loaded.config).await?;
        let service = DeskService::new(loaded.desk, &store, loaded.settings);
        let result = work(&service).await;
        store.close().await;
        result
    })
}

fn print_json(value: &Value) {
    println!("{value}");
}

fn time(at: UnixTime, zone: FixedOffset) -> String {
    crate::display::DisplayZone::fixed_seconds(zone.0).time(at)
}

fn report_json(r: &StoredReport, zone: FixedOffset) -> Value {
    json!({
        "id": r.id,
        "raw_id": r.raw_id,
        "received_at": time(r.received_at, zone),
        "state": r.state.as_str(),
        "kind": r.report.kind,
        "category": r.report.category.map(Category::as_str),
        "source_ip": r.report.source_ip,
        "source_port": r.report.source_port,
        "time": r.report.time.as_ref().map(|t| time(t.utc, zone)),
        "reporter": r.report.reporter,
        "subject": r.report.subject,
        "original_message_id": r.report.original_message_id,
        "customer": r.customer,
        "case_id": r.case_id,
        "attribution": r.attribution.as_ref().map(|a| attribution_json(a, zone)),
        "notes": r.report.notes,
    })
}

fn report_line(r: &StoredReport, zone: FixedOffset) -> String {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    format!(
        "report {}\t{}\t{:?}\t{}\t{}\t{}\tcustomer={}\tcase={}\t{}",
        r.id,
        r.state.as_str(),
        r.report.kind,
        or_dash(r.report.category.map(|c| c.as_str().to_string())),
        or_dash(r.report.source_ip.map(|ip| match r.report.source_port {
            Some(port) => std::net::SocketAddr::new(ip, port).to_string(),
            None => ip.to_string(),
        })),
        or_dash(r.report.time.as_ref().map(|t| time(t.utc, zone))),
        or_dash(r.customer.clone()),
        or_dash(r.case_id.map(|c| c.to_string())),
        r.report.subject.clone().unwrap_or_default(),
    )
}

fn case_json(c: &Case, zone: FixedOffset) -> Value {
    json!({
        "id": c.id,
        "customer": c.customer,
        "category": c.category.as_str(),
        "state": c.state.as_str(),
        "opened_at": time(c.opened_at, zone),
        "last_report_at": time(c.last_report_at, zone),
        "reports": c.report_ids,
        "duplicates": c.duplicate_count,
    })
}

fn case_line(c: &Case, zone: FixedOffset) -> String {
    format!(
        "case {}\t{}\t{}\t{}\treports={}\tduplicates={}\topened={}\tlast={}",
        c.id,
        c.customer,
        c.category.as_str(),
        c.state.as_str(),
        c.report_ids.len(),
        c.duplicate_count,
        time(c.opened_at, zone),
        time(c.last_report_at, zone),
    )
}

fn customer_json(c: &Customer) -> Value {
    json!({
        "id": c.id, "name": c.name, "contact": c.contact,
        "language": c.language.as_str(), "plan": c.plan, "status": c.status.as_str(),
    })
}

fn customer_line(c: &Customer) -> String {
    format!(
        "customer {}\t{}\t{}\t{}\t{}\t{}",
        c.id,
        c.status.as_str(),
        c.language.as_str(),
        c.contact,
        c.plan,
        c.name
    )
}

fn attribution_json(a: &Attribution, zone: FixedOffset) -> Value {
    let (outcome, customer, reason) = match a {
        Attribution::Customer { customer, .. } => ("customer", Some(customer.clone()), None),
        Attribution::Triage { reason, .. } => ("triage", None, Some(*reason)),
    };
    let evidence: Vec<Value> = a
        .evidence()
        .iter()
        .map(|c| {
            json!({
                "network": c.interval.network.to_string(),
                "ports": c.interval.ports,
                "source": c.interval.source,
                "key": c.interval.key,
                "identity": c.interval.identity,
                "customer": c.customer,
                "start": time(c.interval.start, zone),
                "end": c.interval.end.map(|t| time(t, zone)),
                "effective_end": c.effective_end.map(|t| time(t, zone)),
            })
        })
        .collect();
    json!({ "outcome": outcome, "customer": customer, "reason": reason, "evidence": evidence })
}

fn print_attribution(a: &Attribution, zone: FixedOffset, as_json: bool) {
    if as_json {
        print_json(&attribution_json(a, zone));
        return;
    }
    match a {
        Attribution::Customer { customer, .. } => println!("customer\t{customer}"),
        Attribution::Triage { reason, .. } => println!(
            "triage\t{}",
            serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
    }
    for c in a.evidence() {
        let ports = c
            .interval
            .ports
            .map_or_else(String::new, |(a, b)| format!(":{a}-{b}"));
        println!(
            "evidence\t{}{ports}\t{}={}\tcustomer={}\t{} .. {}\tkey={}",
            c.interval.network,
            c.interval.identity.kind(),
            c.interval.identity.value(),
            c.customer.as_deref().unwrap_or("-"),
            time(c.interval.start, zone),
            c.effective_end
                .map_or_else(|| "open".to_string(), |t| time(t, zone)),
            c.interval.key,
        );
    }
}

fn proposal_json(p: &spamgate_desk::ladder::Proposal, zone: FixedOffset) -> Value {
    json!({"kind": p.kind, "case_id": p.case_id, "at": time(p.at, zone), "reason": p.reason})
}

fn print_enforced(e: &Enforced, zone: FixedOffset, as_json: bool) {
    let t = &e.transition;
    if as_json {
        let accounts: Vec<Value> = e
            .accounts
            .iter()
            .map(|a| json!({"username": a.username, "from": a.from.id(), "to": a.to.id()}))
            .collect();
        print_json(&json!({
            "customer": t.ladder.customer,
            "action": t.audit.action,
            "from": t.audit.from.as_str(),
            "to": t.audit.to.as_str(),
            "at": time(t.audit.at, zone),
            "actor": t.audit.actor,
            "reason": t.audit.reason,
            "rule": t.audit.rule,
            "proposal": t.ladder.proposal.as_ref().map(|p| proposal_json(p, zone)),
            "accounts": accounts,
            "actions": t.actions,
        }));
        return;
    }
    println!(
        "{}\t{}\t{} -> {}\t{}\t{}{}",
        t.ladder.customer,
        t.audit.action,
        t.audit.from.as_str(),
        t.audit.to.as_str(),
        time(t.audit.at, zone),
        t.audit.reason,
        t.audit
            .rule
            .as_ref()
            .map_or_else(String::new, |r| format!("\trule={r}")),
    );
    if let Some(p) = &t.ladder.proposal {
        println!(
            "proposal\t{:?}\t{}\t(approve with: spamgate abuse approve {} --reason ...)",
            p.kind, p.reason, t.ladder.customer
        );
    }
    for a in &e.accounts {
        println!("account\t{}\t{} -> {}", a.username, a.from.id(), a.to.id());
    }
}

/// Reads stdin whole, stores it, and says what became of it.
fn ingest(args: &AbuseArgs) -> Result<(), Fatal> {
    // Anything short of "stored" is a temporary failure to the MTA: it keeps the
    // message and tries again, so nothing accepted is lost.
    let tempfail = |error: anyhow::Error| Fatal {
        code: EX_TEMPFAIL,
        error,
    };
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .map_err(|e| tempfail(anyhow::anyhow!("reading stdin: {e}")))?;
    let loaded = load(args.config.as_ref(), Some(EX_TEMPFAIL))?;
    let outcome = runtime()
        .map_err(|f| tempfail(f.error))?
        .block_on(spamgate_app::desk::ingest(
            loaded.desk,
            &loaded.settings,
            bytes,
            now(),
        ))
        .map_err(|e| tempfail(e.into()))?;
    if args.json {
        print_json(&json!({
            "raw_id": outcome.raw.id,
            "sha256": outcome.raw.sha256,
            "duplicate": outcome.raw.duplicate,
            "report_id": outcome.report_id,
            "state": outcome.state.as_str(),
            "customer": outcome.customer,
            "case_id": outcome.case_id,
            "fold": outcome.fold,
        }));
    } else {
        println!(
            "{}\traw={}\tsha256={}\treport={}\t{}\tcustomer={}\tcase={}",
            if outcome.raw.duplicate {
                "duplicate"
            } else {
                "stored"
            },
            outcome.raw.id,
            outcome.raw.sha256,
            outcome.report_id,
            outcome.state.as_str(),
            outcome.customer.as_deref().unwrap_or("-"),
            outcome
                .case_id
                .map_or_else(|| "-".to_string(), |c| c.to_string()),
        );
    }
    Ok(())
}

fn parse_report_state(text: Option<&str>) -> Result<Option<ReportState>, Fatal> {
    text.map(|t| {
        ReportState::parse(t)
            .ok_or_else(|| usage(format!("--state {t:?}: new, triage, filed or dismissed")))
    })
    .transpose()
}

fn parse_case_state(text: Option<&str>) -> Result<Option<CaseState>, Fatal> {
    text.map(|t| {
        CaseState::parse(t).ok_or_else(|| {
            usage(format!(
                "--state {t:?}: open, confirmed, closed or dismissed"
            ))
        })
    })
    .transpose()
}

fn parse_time(text: &str, zone: FixedOffset) -> Result<UnixTime, Fatal> {
    spamgate_desk::time::parse_rfc3339(text)
        .or_else(|| spamgate_desk::time::find_datetime(text, zone).map(|(t, _)| t))
        .ok_or_else(|| {
            usage(format!(
                "{text:?} is not a time (e.g. 2026-12-01T10:30:00+09:00)"
            ))
        })
}

pub fn abuse(args: AbuseArgs) -> Result<(), Fatal> {
    if matches!(args.command, AbuseCommand::Ingest) {
        return ingest(&args);
    }
    let as_json = args.json;
    let who_acts = actor(args.actor.clone());
    let loaded = load(args.config.as_ref(), None)?;
    let zone = loaded.settings.zone;
    let at = now();
    // Checked before any store is touched: a bad argument changes nothing.
    let (customer, command) = match args.command {
        AbuseCommand::Warn {
            customer,
            reason,
            evidence,
        } => (customer, Command::Warn { reason, evidence }),
        AbuseCommand::Suspend {
            customer,
            reason,
            approver,
            evidence,
        } => (
            customer,
            Command::Suspend {
                reason,
                evidence,
                approver,
            },
        ),
        AbuseCommand::Approve { customer, reason } => (customer, Command::Approve { reason }),
        AbuseCommand::Reject { customer, reason } => (customer, Command::Reject { reason }),
        AbuseCommand::Resume {
            customer,
            reason,
            force,
        } => (customer, Command::Resume { reason, force }),
        AbuseCommand::Terminate {
            customer,
            reason,
            evidence,
        } => (customer, Command::Terminate { reason, evidence }),
        other => return abuse_other(other, loaded, as_json, who_acts, at),
    };
    with_service(loaded, async |desk| {
        let enforced = desk
            .decide(customer, who_acts, command, at)
            .await
            .map_err(failed)?;
        print_enforced(&enforced, zone, as_json);
        run_hooks_now(desk, at, as_json).await
    })
}

/// Runs the hooks and mails the notices a transition queued, once, at once;
/// failures stay queued for `abuse deliver` and are printed.
async fn run_hooks_now(
    desk: &DeskService<'_, spamgate_store::AnyStore>,
    at: UnixTime,
    as_json: bool,
) -> Result<(), Fatal> {
    let run = desk.run_queued_now(at, 100).await.map_err(failed)?;
    for run in &run.op25b {
        print_op25b_run(run, as_json);
    }
    for run in &run.hooks {
        print_hook_run(run, as_json);
    }
    for run in &run.notices {
        print_notice_run(run, as_json);
    }
    Ok(())
}

fn print_notice_run(run: &spamgate_app::desk::NoticeRun, as_json: bool) {
    if as_json {
        print_json(&json!({
            "notice": run.delivery_id, "customer": run.customer, "step": run.step,
            "to": run.to, "error": run.error, "state": run.state.as_str(),
        }));
    } else {
        println!(
            "notice {}\t{}\t{}\t{}\t{}\t{}",
            run.delivery_id,
            run.customer,
            run.step,
            run.to.as_deref().unwrap_or("-"),
            run.state.as_str(),
            run.error.as_deref().unwrap_or("ok")
        );
    }
}

fn print_op25b_run(run: &spamgate_app::desk::Op25bRun, as_json: bool) {
    if as_json {
        print_json(&json!({
            "op25b": run.delivery_id, "customer": run.customer, "action": run.action,
            "prefixes": run.prefixes, "in_force": run.in_force, "note": run.note,
            "error": run.error, "state": run.state.as_str(),
        }));
    } else {
        let what = match (&run.error, &run.note) {
            (Some(e), _) => e.clone(),
            (None, Some(note)) => note.clone(),
            (None, None) if run.in_force => format!("{} in force", run.prefixes.join(", ")),
            (None, None) => format!("{} revoked", run.prefixes.join(", ")),
        };
        println!(
            "op25b {}\t{}\t{}\t{}\t{}",
            run.delivery_id,
            run.customer,
            run.action,
            run.state.as_str(),
            what
        );
    }
}

fn print_hook_run(run: &spamgate_app::desk::HookRun, as_json: bool) {
    if as_json {
        print_json(&json!({
            "hook": run.delivery_id, "customer": run.customer, "step": run.step,
            "error": run.error, "state": run.state.as_str(),
        }));
    } else {
        println!(
            "hook {}\t{}\t{}\t{}\t{}",
            run.delivery_id,
            run.customer,
            run.step,
            run.state.as_str(),
            run.error.as_deref().unwrap_or("ok")
        );
    }
}

fn abuse_other(
    command: AbuseCommand,
    loaded: Loaded,
    as_json: bool,
    who_acts: String,
    at: UnixTime,
) -> Result<(), Fatal> {
    let zone = loaded.settings.zone;
    match command {
        AbuseCommand::Reports { state, limit } => {
            let state = parse_report_state(state.as_deref())?;
            with_service(loaded, async |desk| {
                for r in desk.reports(state, limit).await.map_err(failed)? {
                    print_report(&r, zone, as_json);
                }
                Ok(())
            })
        }
        AbuseCommand::Triage { limit } => with_service(loaded, async |desk| {
            for r in desk
                .reports(Some(ReportState::Triage), limit)
                .await
                .map_err(failed)?
            {
                print_report(&r, zone, as_json);
            }
            Ok(())
        }),
        AbuseCommand::Cases { state, limit } => {
            let state = parse_case_state(state.as_deref())?;
            with_service(loaded, async |desk| {
                for c in desk.cases(state, limit).await.map_err(failed)? {
                    if as_json {
                        print_json(&case_json(&c, zone));
                    } else {
                        println!("{}", case_line(&c, zone));
                    }
                }
                Ok(())
            })
        }
        AbuseCommand::Show { case } => with_service(loaded, async |desk| {
            let view = desk.case(case).await.map_err(failed)?;
            if as_json {
                let mut value = case_json(&view.case, zone);
                value["report_details"] =
                    view.reports.iter().map(|r| report_json(r, zone)).collect();
                print_json(&value);
            } else {
                println!("{}", case_line(&view.case, zone));
                for r in &view.reports {
                    println!("{}", report_line(r, zone));
                    if let Some(a) = &r.attribution {
                        print_attribution(a, zone, false);
                    }
                }
            }
            Ok(())
        }),
        AbuseCommand::Assign {
            report,
            customer,
            category,
        } => {
            let category = category
                .map(|c| {
                    Category::parse(&c).ok_or_else(|| {
                        usage(format!(
                            "--category {c:?}: spam, overload, vandalism or illegal"
                        ))
                    })
                })
                .transpose()?;
            with_service(loaded, async |desk| {
                let case = desk
                    .assign(report, customer.clone(), category, who_acts, at)
                    .await
                    .map_err(failed)?;
                if as_json {
                    print_json(&json!({"report": report, "customer": customer, "case_id": case}));
                } else {
                    println!("report {report}\tfiled\tcustomer={customer}\tcase={case}");
                }
                Ok(())
            })
        }
        AbuseCommand::Confirm { case } => with_service(loaded, async |desk| {
            let enforced = desk.confirm(case, who_acts, at).await.map_err(failed)?;
            print_enforced(&enforced, zone, as_json);
            run_hooks_now(desk, at, as_json).await
        }),
        AbuseCommand::Claim {
            customer,
            cases,
            amount,
            currency,
            basis,
            items,
        } => {
            let items = items
                .iter()
                .map(|item| {
                    let (description, amount) = item
                        .rsplit_once('=')
                        .and_then(|(d, a)| Some((d.trim().to_string(), a.trim().parse().ok()?)))
                        .ok_or_else(|| usage(format!("--item {item:?}: DESCRIPTION=AMOUNT")))?;
                    Ok(ClaimItem {
                        description,
                        amount,
                    })
                })
                .collect::<Result<Vec<_>, Fatal>>()?;
            let claim = Claim {
                customer,
                case_ids: cases,
                amount,
                currency,
                basis,
                items,
            };
            with_service(loaded, async |desk| {
                let id = desk
                    .claim(claim.clone(), who_acts, at)
                    .await
                    .map_err(failed)?;
                if as_json {
                    print_json(&json!({"claim": id, "customer": claim.customer,
                        "cases": claim.case_ids, "amount": claim.amount, "currency": claim.currency}));
                } else {
                    println!(
                        "claim {id}\t{}\t{} {}\tcases={:?}",
                        claim.customer, claim.amount, claim.currency, claim.case_ids
                    );
                }
                Ok(())
            })
        }
        AbuseCommand::Export { case, dir } => with_service(loaded, async |desk| {
            let export = desk.export(case, dir, at).await.map_err(failed)?;
            if as_json {
                print_json(&json!({"folder": export.folder, "files": export.files}));
            } else {
                println!("exported\t{}", export.folder.display());
                for (name, sha) in &export.files {
                    println!("{sha}  {name}");
                }
            }
            Ok(())
        }),
        AbuseCommand::Who { address, time } => {
            let (ip, port) =
                spamgate_desk::desk::parse_address_port(&address).ok_or_else(|| {
                    usage(format!(
                        "{address:?}: expected ADDRESS, ADDRESS:PORT or [IPv6]:PORT"
                    ))
                })?;
            let at = parse_time(&time, zone)?;
            with_service(loaded, async |desk| {
                let answer = desk
                    .who(Query {
                        address: ip,
                        port,
                        at,
                    })
                    .await
                    .map_err(failed)?;
                print_attribution(&answer, zone, as_json);
                Ok(())
            })
        }
        AbuseCommand::Enforce { customer } => with_service(loaded, async |desk| {
            let changed = desk
                .reapply(customer.clone(), who_acts, at)
                .await
                .map_err(failed)?;
            print_account_changes(&customer, &changed, as_json);
            Ok(())
        }),
        AbuseCommand::Deliver { limit } => with_service(loaded, async |desk| {
            let settings = desk.settings();
            // OP25B deliveries are always carried out (or recorded as having nothing
            // to do): they are never left waiting for a key the operator did not set.
            for run in desk.run_due_op25b(at, limit).await.map_err(failed)? {
                print_op25b_run(&run, as_json);
            }
            if settings.hook.command.is_empty() && settings.notice.relay_host.is_empty() {
                return Err(usage(
                    "neither [desk] hook_command nor notice_relay_host is configured: \
                     hook and notice deliveries stay queued",
                ));
            }
            for run in desk.run_due_hooks(at, limit).await.map_err(failed)? {
                print_hook_run(&run, as_json);
            }
            for run in desk.run_due_notices(at, limit).await.map_err(failed)? {
                print_notice_run(&run, as_json);
            }
            Ok(())
        }),
        AbuseCommand::Purge { force } => {
            let retention = loaded.config.desk.retention();
            with_service(loaded, async |desk| {
                let summary = desk.purge(retention, force, at).await.map_err(failed)?;
                if as_json {
                    print_json(&json!(summary));
                } else {
                    println!(
                        "removed {} sessions, {} cases, {} reports, {} raw messages, {} deliveries; \
                         kept {} open and {} claimed cases past their retention{}",
                        summary.sessions,
                        summary.cases,
                        summary.reports,
                        summary.raw_reports,
                        summary.deliveries,
                        summary.kept_open_cases,
                        summary.kept_claimed_cases,
                        if force { " (forced)" } else { "" }
                    );
                }
                Ok(())
            })
        }
        AbuseCommand::Signals => with_service(loaded, async |desk| {
            let mut run = desk.file_account_signals(at).await.map_err(failed)?;
            // OP25B hits (when [op25b] is managed here and signal_op25b_hits > 0). A
            // failure to read them is reported after the account signals are filed.
            let mut hits_error = None;
            match desk.op25b_hits().await {
                Ok(None) => {}
                Ok(Some(hits)) => {
                    let timeout = desk
                        .settings()
                        .op25b
                        .as_ref()
                        .map_or(86_400, |o| o.config.hits_timeout.as_secs() as i64);
                    let op25b = desk
                        .file_op25b_signals(hits, timeout, at)
                        .await
                        .map_err(failed)?;
                    run.filed.extend(op25b.filed);
                    run.already_filed += op25b.already_filed;
                    run.triaged.extend(op25b.triaged);
                }
                Err(e) => hits_error = Some(e),
            }
            if as_json {
                let filed: Vec<Value> = run
                    .filed
                    .iter()
                    .map(|(report, customer, case)| {
                        json!({ "report": report, "customer": customer, "case": case })
                    })
                    .collect();
                let triaged: Vec<Value> = run
                    .triaged
                    .iter()
                    .map(|(report, source)| json!({ "report": report, "source": source }))
                    .collect();
                print_json(&json!({
                    "filed": filed, "already_filed": run.already_filed,
                    "unlinked": run.unlinked, "triaged": triaged,
                }));
            } else {
                for (report, customer, case) in &run.filed {
                    let case = case.map_or_else(|| "-".to_string(), |c| c.to_string());
                    println!("filed report {report}\t{customer}\tcase {case}");
                }
                for account in &run.unlinked {
                    println!(
                        "unlinked account {account}: not filed (`spamgate customer link CUSTOMER --account ACCOUNT`)"
                    );
                }
                for (report, source) in &run.triaged {
                    println!("triage report {report}\t{source}: OP25B hits, no single holder");
                }
                println!(
                    "{} filed, {} already filed, {} unlinked, {} to triage",
                    run.filed.len(),
                    run.already_filed,
                    run.unlinked.len(),
                    run.triaged.len()
                );
            }
            match hits_error {
                Some(e) => Err(failed(e)),
                None => Ok(()),
            }
        }),
        AbuseCommand::Deliveries { state, limit } => {
            let state = match state.as_str() {
                "pending" => DeliveryState::Pending,
                "done" => DeliveryState::Done,
                "failed" => DeliveryState::Failed,
                other => return Err(usage(format!("--state {other:?}: pending, done or failed"))),
            };
            with_service(loaded, async |desk| {
                for d in desk.deliveries(state, limit).await.map_err(failed)? {
                    if as_json {
                        print_json(&json!({
                            "id": d.id, "kind": d.kind.as_str(), "customer": d.customer,
                            "payload": serde_json::from_str::<Value>(&d.payload).unwrap_or(Value::Null),
                            "state": d.state.as_str(), "attempts": d.attempts,
                            "next_attempt": time(d.next_attempt, zone), "last_error": d.last_error,
                        }));
                    } else {
                        println!(
                            "delivery {}\t{}\t{}\t{}\tattempts={}\tnext={}\t{}\t{}",
                            d.id,
                            d.kind.as_str(),
                            d.customer,
                            d.state.as_str(),
                            d.attempts,
                            time(d.next_attempt, zone),
                            d.payload,
                            d.last_error.as_deref().unwrap_or("")
                        );
                    }
                }
                Ok(())
            })
        }
        AbuseCommand::Ingest
        | AbuseCommand::Warn { .. }
        | AbuseCommand::Suspend { .. }
        | AbuseCommand::Approve { .. }
        | AbuseCommand::Reject { .. }
        | AbuseCommand::Resume { .. }
        | AbuseCommand::Terminate { .. } => unreachable!("handled in abuse()"),
    }
}

fn print_link(customer: &str, kind: &str, value: &str, as_json: bool) {
    if as_json {
        print_json(&json!({"linked": kind, "value": value, "customer": customer}));
    } else {
        println!("linked\t{kind}\t{value}\t{customer}");
    }
}

fn print_account_changes(
    customer: &str,
    changed: &[spamgate_app::desk::AccountChange],
    as_json: bool,
) {
    if as_json {
        let accounts: Vec<Value> = changed
            .iter()
            .map(|a| json!({"username": a.username, "from": a.from.id(), "to": a.to.id()}))
            .collect();
        print_json(&json!({"customer": customer, "accounts": accounts}));
    } else {
        for a in changed {
            println!("account\t{}\t{} -> {}", a.username, a.from.id(), a.to.id());
        }
    }
}

fn print_report(r: &StoredReport, zone: FixedOffset, as_json: bool) {
    if as_json {
        print_json(&report_json(r, zone));
    } else {
        println!("{}", report_line(r, zone));
    }
}

pub fn customer(args: CustomerArgs) -> Result<(), Fatal> {
    let as_json = args.json;
    let loaded = load(args.config.as_ref(), None)?;
    let zone = loaded.settings.zone;
    match args.command {
        CustomerCommand::Add {
            id,
            name,
            contact,
            language,
            plan,
        } => {
            let language = Language::parse(&language)
                .ok_or_else(|| usage(format!("--language {language:?}: ja or en")))?;
            if id.trim().is_empty() || !contact.contains('@') {
                return Err(usage("a customer needs an id and a contact e-mail address"));
            }
            let customer = Customer {
                id,
                name,
                contact,
                language,
                plan,
                status: CustomerStatus::Active,
            };
            with_service(loaded, async |desk| {
                desk.put_customer(customer.clone()).await.map_err(failed)?;
                let view = desk.customer(customer.id.clone()).await.map_err(failed)?;
                if as_json {
                    print_json(&customer_json(&view.customer));
                } else {
                    println!("{}", customer_line(&view.customer));
                }
                Ok(())
            })
        }
        CustomerCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| usage(format!("{}: {e}", file.display())))?;
            let (customers, rejected) = spamgate_desk::case::parse_customers_csv(&text);
            if !rejected.is_empty() {
                let lines: Vec<String> = rejected
                    .iter()
                    .map(|(line, why)| format!("  line {line}: {why}"))
                    .collect();
                // Nothing imported: a half-imported file is harder to fix than a refused one.
                return Err(usage(format!(
                    "{}: {} lines refused, nothing imported:\n{}",
                    file.display(),
                    rejected.len(),
                    lines.join("\n")
                )));
            }
            with_service(loaded, async |desk| {
                let count = desk.import_customers(customers).await.map_err(failed)?;
                if as_json {
                    print_json(&json!({"imported": count}));
                } else {
                    println!("imported\t{count} customers");
                }
                Ok(())
            })
        }
        CustomerCommand::Show { id } => with_service(loaded, async |desk| {
            let view = desk.customer(id).await.map_err(failed)?;
            if as_json {
                let mut value = customer_json(&view.customer);
                value["accounts"] = json!(view.accounts);
                value["step"] = json!(view.ladder.step.as_str());
                value["since"] = json!(time(view.ladder.since, zone));
                value["strikes"] = view
                    .ladder
                    .strikes
                    .iter()
                    .map(|s| json!({"case_id": s.case_id, "category": s.category.as_str(), "at": time(s.at, zone)}))
                    .collect();
                value["proposal"] = json!(
                    view.ladder
                        .proposal
                        .as_ref()
                        .map(|p| proposal_json(p, zone))
                );
                value["audit"] = view
                    .audit
                    .iter()
                    .map(|(id, a)| {
                        let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
                        v["id"] = json!(id);
                        v["at"] = json!(time(a.at, zone));
                        v
                    })
                    .collect();
                print_json(&value);
            } else {
                println!("{}", customer_line(&view.customer));
                println!(
                    "ladder\t{}\tsince={}\tstrikes={}",
                    view.ladder.step.as_str(),
                    time(view.ladder.since, zone),
                    view.ladder.strikes.len()
                );
                if let Some(p) = &view.ladder.proposal {
                    println!("proposal\t{:?}\t{}", p.kind, p.reason);
                }
                for account in &view.accounts {
                    println!("account\t{account}");
                }
                for (id, a) in &view.audit {
                    println!(
                        "audit {id}\t{}\t{}\t{}\t{} -> {}\t{}",
                        time(a.at, zone),
                        a.actor,
                        a.action,
                        a.from.as_str(),
                        a.to.as_str(),
                        a.reason
                    );
                }
            }
            Ok(())
        }),
        CustomerCommand::List { after, limit } => with_service(loaded, async |desk| {
            for c in desk.customers(after, limit).await.map_err(failed)? {
                if as_json {
                    print_json(&customer_json(&c));
                } else {
                    println!("{}", customer_line(&c));
                }
            }
            Ok(())
        }),
        CustomerCommand::Link {
            customer,
            account,
            radius_user,
            hwaddr,
            client_id,
        } => {
            let identities: Vec<Identity> = [
                radius_user.map(|v| ("radius-user", v)),
                hwaddr.map(|v| ("hwaddr", v)),
                client_id.map(|v| ("client-id", v)),
            ]
            .into_iter()
            .flatten()
            .filter_map(|(kind, value)| Identity::from_parts(kind, &value))
            .collect();
            if account.is_none() && identities.is_empty() {
                return Err(usage(
                    "name what to link: --account, --radius-user, --hwaddr or --client-id",
                ));
            }
            with_service(loaded, async |desk| {
                // Checked first, so an unknown customer or account links nothing.
                desk.customer(customer.clone()).await.map_err(failed)?;
                if let Some(account) = &account {
                    desk.link_account(account.clone(), customer.clone())
                        .await
                        .map_err(failed)?;
                    print_link(&customer, "account", account, as_json);
                    // An account linked to a suspended customer is suspended with it.
                    let changed = desk
                        .reapply(customer.clone(), actor(None), now())
                        .await
                        .map_err(failed)?;
                    print_account_changes(&customer, &changed, as_json);
                }
                for identity in identities {
                    desk.link_identity(identity.clone(), customer.clone())
                        .await
                        .map_err(failed)?;
                    print_link(&customer, identity.kind(), identity.value(), as_json);
                }
                Ok(())
            })
        }
    }
}

pub fn sessions(args: SessionsArgs) -> Result<(), Fatal> {
    let as_json = args.json;
    let SessionsCommand::Import { format, file } = args.command;
    let format = HistoryFormat::parse(&format).ok_or_else(|| {
        usage(format!(
            "--format {format:?}: radius-detail, kea-csv, static or cgnat"
        ))
    })?;
    if !file.is_file() {
        return Err(usage(format!("{}: no such file", file.display())));
    }
    let loaded = load(args.config.as_ref(), None)?;
    with_service(loaded, async |desk| {
        let import = desk
            .import_sessions(file.clone(), format)
            .await
            .map_err(failed)?;
        if as_json {
            let rejected: Vec<Value> = import
                .rejected
                .iter()
                .map(|(offset, why)| json!({"offset": offset, "why": why}))
                .collect();
            print_json(&json!({
                "file": file, "format": format.as_str(),
                "from_offset": import.from_offset, "to_offset": import.to_offset,
                "restarted": import.restarted, "upserted": import.summary.upserted,
                "closed_by_nas_reset": import.summary.sessions_closed_by_nas_reset,
                "rejected": rejected,
            }));
        } else {
            println!(
                "imported\t{}\t{}\tbytes {}..{}\tintervals={}\tclosed_by_nas_reset={}\trejected={}{}",
                file.display(),
                format.as_str(),
                import.from_offset,
                import.to_offset,
                import.summary.upserted,
                import.summary.sessions_closed_by_nas_reset,
                import.rejected.len(),
                if import.restarted {
                    "\t(file was shorter: read from the start)"
                } else {
                    ""
                }
            );
            for (offset, why) in &import.rejected {
                eprintln!("rejected at byte {offset}: {why}");
            }
        }
        Ok(())
    })
}
