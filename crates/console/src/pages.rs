//! Each page's data, gathered through the application layer, rendered; and each form's
//! effect, carried out through the application layer. No HTTP here: the routes
//! translate requests to these calls. Every change checks the viewer's role itself (a
//! hidden button is not a permission).

use std::net::IpAddr;

use minijinja::context;
use serde::{Deserialize, Serialize};
use spamgate_app::accounts::AccountService;
use spamgate_app::allow::AllowService;
use spamgate_app::desk::DeskService;
use spamgate_app::{Clock, Mode, Resolver};
use spamgate_desk::case::{CaseId, CaseState};
use spamgate_desk::ladder::{Claim, Command, Step};
use spamgate_desk::store::ReportState;
use spamgate_store::GreylistFilter;

use crate::dashboard::{self, Dashboard};
use crate::i18n::Lang;
use crate::views::render;
use crate::{Console, ConsoleStore, Viewer, chart};

/// How many triplets the dashboard reads for delays and networks (newest first).
pub const TRIPLET_SAMPLE: usize = 5000;
/// Rows a listing shows.
const LIST_LIMIT: usize = 500;

/// A change the viewer asked for did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The role may not (403).
    Role,
    /// Bad input or a refused step (400), with the reason shown on the page.
    Invalid(String),
    /// Nothing by that id (404).
    NotFound,
    /// The store or desk failed (503): never the user's fault.
    Unavailable(String),
}

pub type Outcome = Result<String, Refusal>;

/// The page's own values over the common ones (user, role, csrf, flash).
fn with_base(mut base: serde_json::Value, page: serde_json::Value) -> minijinja::Value {
    if let (Some(b), serde_json::Value::Object(p)) = (base.as_object_mut(), page) {
        b.extend(p);
    }
    ser(base)
}

/// Any serde value as a template value.
fn ser<T: Serialize>(value: T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(value))
}

fn require(ok: bool) -> Result<(), Refusal> {
    if ok { Ok(()) } else { Err(Refusal::Role) }
}

fn desk_error(e: spamgate_app::desk::DeskServiceError) -> Refusal {
    use spamgate_desk::store::DeskError;
    match &e {
        spamgate_app::desk::DeskServiceError::Desk(DeskError::NotFound { .. }) => Refusal::NotFound,
        _ if e.is_usage() => Refusal::Invalid(e.to_string()),
        _ => Refusal::Unavailable(e.to_string()),
    }
}

/// The fields of the check form (what `spamgate check` takes).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct CheckForm {
    pub client: String,
    pub helo: String,
    pub sender: String,
    pub recipient: String,
    #[serde(skip_deserializing)]
    pub result: Option<String>,
}

/// The greylist search (a GET form: it changes nothing).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct GreylistSearch {
    pub network: String,
    pub sender: String,
    pub recipient: String,
    pub client: String,
}

impl GreylistSearch {
    fn is_empty(&self) -> bool {
        [&self.network, &self.sender, &self.recipient, &self.client]
            .iter()
            .all(|f| f.trim().is_empty())
    }

    fn filter(&self) -> Result<GreylistFilter, String> {
        let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let client = match text(&self.client) {
            None => None,
            Some(c) => Some(c.parse::<IpAddr>().map_err(|e| format!("{c}: {e}"))?),
        };
        Ok(GreylistFilter {
            network: text(&self.network),
            sender: text(&self.sender).map(|s| s.to_ascii_lowercase()),
            recipient: text(&self.recipient).map(|s| s.to_ascii_lowercase()),
            client,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AllowForm {
    pub kind: String,
    pub value: String,
    pub comment: String,
    /// A duration (`7d`, `12h`); empty: until removed.
    pub expires: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StepForm {
    pub step: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClaimForm {
    pub amount: String,
    pub currency: String,
    pub basis: String,
}

/// A short line for flash messages.
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

fn flash_ctx(flash: Option<&Flash>) -> (Option<String>, &'static str) {
    match flash {
        Some(f) => (Some(f.text.clone()), if f.ok { "ok" } else { "err" }),
        None => (None, ""),
    }
}

pub fn login_page(lang: Lang, csrf: &str, next: &str, failed: bool) -> String {
    render(
        "login.html",
        lang,
        context! { csrf => csrf, next => next, failed => failed },
    )
}

pub fn message_page(viewer: Option<&Viewer>, lang: Lang, heading: &str, message: &str) -> String {
    render(
        "message.html",
        lang,
        context! {
            heading => heading,
            message => message,
            user => viewer.map(|v| v.user.clone()),
            role => viewer.map(|v| v.role.as_str()),
            csrf => viewer.map(|v| v.csrf.clone()),
        },
    )
}

impl<S: ConsoleStore, R: Resolver, C: Clock> Console<S, R, C> {
    fn base(&self, v: &Viewer, flash: Option<&Flash>) -> serde_json::Value {
        let (flash, flash_kind) = flash_ctx(flash);
        serde_json::json!({
            "user": v.user,
            "role": v.role.as_str(),
            "csrf": v.csrf,
            "can_change": v.can_change(),
            "can_approve": v.can_approve(),
            "flash": flash,
            "flash_kind": flash_kind,
        })
    }

    fn desk_service(&self) -> Option<DeskService<'_, S>> {
        self.desk
            .as_ref()
            .map(|d| DeskService::new(d.store.clone(), self.service.store(), d.settings.clone()))
    }

    // ---------------------------------------------------------------- dashboard

    pub async fn dashboard_data(&self, lang: Lang) -> Dashboard {
        let service = &self.service;
        let now = service.now();
        let snapshot = service.metrics().timeline().snapshot(now, 3600, 60);
        let (actions_svg, reasons_svg) = dashboard::timeline_charts(&snapshot, lang, &self.zone);
        let store = service.store();
        let counts = store.counts(now).await.map_err(|e| e.to_string());
        let triplets = store
            .list_triplets(TRIPLET_SAMPLE)
            .await
            .map_err(|e| e.to_string());
        let top = triplets
            .as_ref()
            .map(|rows| dashboard::top_networks(rows, 10))
            .unwrap_or_default();
        let min_delay = service
            .settings()
            .engine
            .greylist_params()
            .min_delay
            .as_secs();
        let greylist =
            dashboard::greylist_panel(counts, triplets, TRIPLET_SAMPLE, min_delay, now, lang);
        let (limits, limits_error) = match AccountService::new(store)
            .events(None, now.saturating_sub(86_400), 100_000)
            .await
        {
            Ok(events) => (dashboard::limit_trips(&events), None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        let (cases_svg, cases_error) = match self.desk_service() {
            None => (String::new(), Some("[desk] is not configured".to_string())),
            Some(desk) => match desk.cases(None, 100_000).await {
                Ok(cases) => (
                    chart::hbars(
                        "chart-cases",
                        lang.t("cases.by_state"),
                        &dashboard::cases_by_state(&cases),
                    ),
                    None,
                ),
                Err(e) => (String::new(), Some(e.to_string())),
            },
        };
        Dashboard {
            zone: dashboard::zone_label(&self.zone, now),
            total: snapshot.total,
            actions_svg,
            reasons_svg,
            greylist,
            top_svg: (!top.is_empty())
                .then(|| chart::hbars("chart-networks", lang.t("dash.top"), &top)),
            dns: dashboard::dns_rows(&service.metrics().encode()),
            limits,
            limits_error,
            cases_svg,
            cases_error,
            op25b: {
                let (reading, series) = self.op25b.current(now).await;
                dashboard::op25b_panel(&reading, &series, now, 10, lang, &self.zone)
            },
        }
    }

    pub async fn dashboard(&self, v: &Viewer) -> String {
        let d = self.dashboard_data(v.lang).await;
        render(
            "dashboard.html",
            v.lang,
            with_base(self.base(v, None), serde_json::json!({ "d": d })),
        )
    }

    // ---------------------------------------------------------------- filters

    pub async fn filters(
        &self,
        v: &Viewer,
        search: &GreylistSearch,
        check: &CheckForm,
        flash: Option<&Flash>,
    ) -> String {
        let store = self.service.store();
        let allow: Vec<serde_json::Value> = match AllowService::new(store).list().await {
            Ok(entries) => entries
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "kind": e.kind.id(),
                        "value": e.value,
                        "comment": e.note,
                        "expires": e.expires_at.map(|t| self.zone.time_u64(t)).unwrap_or_default(),
                    })
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut found = serde_json::json!({ "done": false });
        if !search.is_empty() {
            found = match search.filter() {
                Err(e) => serde_json::json!({ "error": e }),
                Ok(filter) => match store.find_greylist(&filter, LIST_LIMIT).await {
                    Err(e) => serde_json::json!({ "error": e.to_string() }),
                    Ok(entries) => serde_json::json!({
                        "done": true,
                        "triplets": entries.triplets.iter().map(|r| serde_json::json!({
                            "network": r.network, "sender": r.sender, "recipient": r.recipient,
                            "first_seen": self.zone.time_u64(r.first_seen), "attempts": r.attempts,
                            "passed": r.passed_at.map(|t| self.zone.time_u64(t)).unwrap_or_default(),
                        })).collect::<Vec<_>>(),
                        "awl": entries.awl.map(|a| format!("{} (last seen {})", a.client, self.zone.time_u64(a.last_seen))),
                    }),
                },
            };
        }
        let mut search_ctx = serde_json::to_value(search).unwrap_or_default();
        if let (Some(obj), Some(extra)) = (search_ctx.as_object_mut(), found.as_object()) {
            obj.extend(extra.clone());
        }
        render(
            "filters.html",
            v.lang,
            with_base(
                self.base(v, flash),
                serde_json::json!({
                    "allow": allow,
                    "allow_kinds": spamgate_engine::verdict::AllowListKind::RUNTIME.iter().map(|k| k.id()).collect::<Vec<_>>(),
                    "search": search_ctx,
                    "check": check,
                }),
            ),
        )
    }

    /// The classify form: how the daemon's reverse-DNS rules (as now loaded) see each
    /// name, one per line or separated by spaces, at most
    /// [`spamgate_admin::api::MAX_CLASSIFY_NAMES`]; the rest is said to be left out.
    pub fn classify(&self, v: &Viewer, names: &str) -> String {
        let all: Vec<&str> = names
            .split_whitespace()
            .map(|n| n.trim_end_matches('.'))
            .filter(|n| !n.is_empty())
            .collect();
        let max = spamgate_admin::api::MAX_CLASSIFY_NAMES;
        let rows: Vec<_> = all
            .iter()
            .take(max)
            .map(|name| {
                spamgate_admin::answers::ClassifyAnswer::new(name, self.service.classify(name))
            })
            .collect();
        render(
            "classify.html",
            v.lang,
            with_base(
                self.base(v, None),
                serde_json::json!({
                    "names": names,
                    "rows": rows,
                    "left_out": all.len().saturating_sub(max),
                }),
            ),
        )
    }

    /// The check form: the request Postfix would send, decoded by the daemon's decoder
    /// and answered by the daemon's `answer`, in dry-run mode (nothing recorded).
    pub async fn check(&self, form: &CheckForm) -> Result<String, Refusal> {
        let client: IpAddr = form
            .client
            .trim()
            .parse()
            .map_err(|e| Refusal::Invalid(format!("{}: {e}", form.client.trim())))?;
        let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let Some(recipient) = text(&form.recipient) else {
            return Err(Refusal::Invalid("name the recipient".into()));
        };
        let request = spamgate_policy::PolicyRequest {
            protocol_state: Some(spamgate_policy::ProtocolState::parse("RCPT")),
            client_address: Some(client),
            helo_name: text(&form.helo),
            sender: Some(form.sender.trim().to_string()),
            recipient: Some(recipient),
            ..spamgate_policy::PolicyRequest::default()
        };
        let bytes = request.to_bytes();
        let mut decoder = spamgate_policy::PolicyDecoder::new(self.codec_limits);
        let request = match decoder.decode(&mut bytes.as_slice()) {
            Ok(Some(r)) => r,
            Ok(None) => return Err(Refusal::Invalid("the request is incomplete".into())),
            Err(e) => {
                return Err(Refusal::Invalid(format!(
                    "the daemon would refuse this request: {e}"
                )));
            }
        };
        let mut action = String::new();
        let answer =
            spamgate_postfix::answer(&self.service, request, Mode::DryRun, &mut action).await;
        let mut out = format!(
            "action:  {}\npostfix: action={action}\nreasons:\n",
            answer.as_ref().map_or("pass", |a| a.verdict.action.id())
        );
        for reason in answer.iter().flat_map(|a| &a.verdict.reasons) {
            out.push_str(&format!("  - {}\n", reason.short()));
        }
        out.push_str("(dry run: state not changed)\n");
        Ok(out)
    }

    pub async fn allow_add(&self, v: &Viewer, form: &AllowForm) -> Outcome {
        require(v.can_change())?;
        let now = self.service.now();
        let expires_at = match form.expires.trim() {
            "" => None,
            text => Some(
                now + humantime::parse_duration(text)
                    .map_err(|e| Refusal::Invalid(format!("{text}: {e}")))?
                    .as_secs(),
            ),
        };
        let note = format!("{} (console: {})", form.comment.trim(), v.user)
            .trim()
            .to_string();
        let (entry, new) = AllowService::new(self.service.store())
            .add(&form.kind, &form.value, note, None, expires_at, now)
            .await
            .map_err(|e| {
                if e.is_usage() {
                    Refusal::Invalid(e.to_string())
                } else {
                    Refusal::Unavailable(e.to_string())
                }
            })?;
        // Effective at once: the daemon's own copy is refreshed now, not at its next poll.
        self.service
            .refresh_runtime_allow()
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        Ok(format!(
            "{} {} {}",
            if new { "added" } else { "updated" },
            entry.kind.id(),
            entry.value
        ))
    }

    pub async fn allow_remove(&self, v: &Viewer, form: &AllowForm) -> Outcome {
        require(v.can_change())?;
        let (kind, value) = AllowService::new(self.service.store())
            .remove(&form.kind, &form.value)
            .await
            .map_err(|e| {
                if e.is_usage() {
                    Refusal::Invalid(e.to_string())
                } else {
                    Refusal::Unavailable(e.to_string())
                }
            })?;
        self.service
            .refresh_runtime_allow()
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        Ok(format!("removed {} {value}", kind.id()))
    }

    pub async fn greylist_delete(&self, v: &Viewer, search: &GreylistSearch) -> Outcome {
        require(v.can_change())?;
        if search.is_empty() {
            return Err(Refusal::Invalid(
                "name a network, sender, recipient or client".into(),
            ));
        }
        let filter = search.filter().map_err(Refusal::Invalid)?;
        let deleted = self
            .service
            .store()
            .delete_greylist(&filter)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        Ok(format!(
            "deleted {} triplets, {} AWL entries",
            deleted.triplets, deleted.awl
        ))
    }

    // ---------------------------------------------------------------- desk

    fn no_desk(&self, v: &Viewer) -> String {
        message_page(
            Some(v),
            v.lang,
            v.lang.t("desk.title"),
            "[desk] is not configured",
        )
    }

    pub async fn desk(&self, v: &Viewer, flash: Option<&Flash>) -> String {
        let Some(desk) = self.desk_service() else {
            return self.no_desk(v);
        };
        let cases = desk.cases(None, LIST_LIMIT).await.unwrap_or_default();
        let mut proposals = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for case in cases
            .iter()
            .filter(|c| matches!(c.state, CaseState::Open | CaseState::Confirmed))
        {
            if !seen.insert(case.customer.clone()) {
                continue;
            }
            if let Ok(view) = desk.customer(case.customer.clone()).await
                && let Some(p) = view.ladder.proposal
            {
                proposals.push(serde_json::json!({
                    "case": p.case_id.unwrap_or(case.id), "customer": case.customer,
                    "kind": format!("{:?}", p.kind).to_lowercase(), "reason": p.reason,
                }));
            }
        }
        let triage = desk
            .reports(Some(ReportState::Triage), LIST_LIMIT)
            .await
            .unwrap_or_default();
        render(
            "desk.html",
            v.lang,
            with_base(
                self.base(v, flash),
                serde_json::json!({
                    "proposals": proposals,
                    "cases": cases.iter().map(|c| serde_json::json!({
                        "id": c.id, "customer": c.customer, "category": c.category.as_str(),
                        "state": c.state.as_str(), "reports": c.report_ids.len(), "opened": self.zone.time(c.opened_at),
                    })).collect::<Vec<_>>(),
                    "triage": triage.iter().map(|r| serde_json::json!({
                        "id": r.id, "received": self.zone.time(r.received_at), "summary": report_summary(&r.report),
                    })).collect::<Vec<_>>(),
                }),
            ),
        )
    }

    pub async fn case_page(
        &self,
        v: &Viewer,
        id: CaseId,
        flash: Option<&Flash>,
    ) -> Result<String, Refusal> {
        let Some(desk) = self.desk_service() else {
            return Ok(self.no_desk(v));
        };
        let view = desk.case(id).await.map_err(desk_error)?;
        let case = &view.case;
        let customer = desk
            .customer(case.customer.clone())
            .await
            .map_err(desk_error)?;
        let accounts_svc = AccountService::new(self.service.store());
        let mut accounts = Vec::new();
        for name in &customer.accounts {
            let status = match accounts_svc.show(name).await {
                Ok(a) => a.status.id().to_string(),
                Err(e) => e.to_string(),
            };
            accounts.push(serde_json::json!({ "name": name, "status": status }));
        }
        let mut reports = Vec::new();
        for r in &view.reports {
            let raw = match desk.raw_report(r.raw_id).await {
                Ok(bytes) => {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]).into_owned()
                }
                Err(e) => format!("({e})"),
            };
            reports.push(serde_json::json!({
                "id": r.id, "received": self.zone.time(r.received_at), "summary": report_summary(&r.report),
"attribution": r.attribution.as_ref().map(|a| attribution_summary(a, &self.zone)).unwrap_or_default(),
                "attribution_json": r.attribution.as_ref().and_then(|a| serde_json::to_string_pretty(a).ok()),
                "raw": raw,
            }));
        }
        let ladder = &customer.ladder;
        // The notice the next step would send: the proposal's, else a warning.
        let preview_step = match ladder.proposal.as_ref().map(|p| p.kind) {
            Some(spamgate_desk::ladder::ProposalKind::Suspend) => Step::Suspended,
            Some(spamgate_desk::ladder::ProposalKind::Terminate) => Step::Terminated,
            None if ladder.step == Step::None => Step::Warned,
            None if ladder.step == Step::Suspended => Step::Resumed,
            None => Step::Suspended,
        };
        let (preview, preview_error) = match desk
            .preview_notice(
                case.customer.clone(),
                preview_step,
                Some(id),
                self.service.now() as i64,
            )
            .await
        {
            Ok(n) => (
                Some(format!(
                    "To: {}\nSubject: {}\n\n{}",
                    n.to, n.subject, n.body
                )),
                None,
            ),
            Err(e) => (None, Some(e.to_string())),
        };
        let claims = desk.claims(case.customer.clone()).await.unwrap_or_default();
        let policy = &desk.settings().config.escalation;
        let approval_required = policy.suspension_requires_approval;
        let html = render(
            "case.html",
            v.lang,
            with_base(
                self.base(v, flash),
                serde_json::json!({
                    "c": serde_json::json!({
                        "id": case.id, "customer": case.customer, "category": case.category.as_str(),
                        "state": case.state.as_str(), "opened": self.zone.time(case.opened_at),
                    }),
                    "customer": serde_json::json!({ "name": customer.customer.name, "contact": customer.customer.contact }),
                    "ladder": serde_json::json!({
                        "step": ladder.step.as_str(),
                        "proposal": ladder.proposal.as_ref().map(|p| format!("{:?}: {}", p.kind, p.reason).to_lowercase()),
                    }),
                    "accounts": accounts,
                    "reports": reports,
                    "preview": preview,
                    "preview_error": preview_error,
                    "preview_step": preview_step.as_str(),
                    "audit": customer.audit.iter().map(|(_, a)| serde_json::json!({
                        "at": self.zone.time(a.at), "command": a.action, "from": a.from.as_str(), "to": a.to.as_str(),
                        "actor": a.actor, "approver": a.approver, "reason": a.reason,
                    })).collect::<Vec<_>>(),
                    "claims": claims.iter().map(|(cid, c)| serde_json::json!({
                        "id": cid, "amount": c.amount, "currency": c.currency, "basis": c.basis,
                    })).collect::<Vec<_>>(),
                    "approval_required": approval_required,
                    "approval_note": "A suspension needs a second person: confirming the case lets the policy propose it, and an approver approves it here.",
                }),
            ),
        );
        Ok(html)
    }

    /// A ladder button on a case page.
    pub async fn case_step(&self, v: &Viewer, id: CaseId, form: &StepForm) -> Outcome {
        let desk = self.desk_service().ok_or(Refusal::NotFound)?;
        let now = self.service.now() as i64;
        let case = desk.case(id).await.map_err(desk_error)?.case;
        let reason = match form.reason.trim() {
            "" => format!("case {id} (console)"),
            r => r.to_string(),
        };
        let evidence = vec![format!("case:{id}")];
        let command = match form.step.as_str() {
            "confirm" => {
                require(v.can_change())?;
                let done = desk
                    .confirm(id, v.user.clone(), now)
                    .await
                    .map_err(desk_error)?;
                return Ok(enforced_text(&done));
            }
            "warn" => {
                require(v.can_change())?;
                Command::Warn { reason, evidence }
            }
            "suspend" => {
                require(v.can_change())?;
                Command::Suspend {
                    reason,
                    evidence,
                    approver: None,
                }
            }
            "resume" => {
                require(v.can_change())?;
                Command::Resume {
                    reason,
                    force: false,
                }
            }
            "terminate" => {
                require(v.can_change())?;
                Command::Terminate { reason, evidence }
            }
            "approve" => {
                require(v.can_approve())?;
                Command::Approve { reason }
            }
            "reject" => {
                require(v.can_approve())?;
                Command::Reject { reason }
            }
            other => return Err(Refusal::Invalid(format!("unknown step {other:?}"))),
        };
        let done = desk
            .decide(case.customer, v.user.clone(), command, now)
            .await
            .map_err(desk_error)?;
        Ok(enforced_text(&done))
    }

    /// Files a triaged report against the customer a person named.
    pub async fn assign(&self, v: &Viewer, report: i64, customer: &str) -> Outcome {
        require(v.can_change())?;
        let desk = self.desk_service().ok_or(Refusal::NotFound)?;
        if customer.is_empty() {
            return Err(Refusal::Invalid("name the customer".into()));
        }
        let case = desk
            .assign(
                report,
                customer.to_string(),
                None,
                v.user.clone(),
                self.service.now() as i64,
            )
            .await
            .map_err(desk_error)?;
        Ok(format!("report {report} filed in case {case}"))
    }

    pub async fn claim(&self, v: &Viewer, id: CaseId, form: &ClaimForm) -> Outcome {
        require(v.can_change())?;
        let desk = self.desk_service().ok_or(Refusal::NotFound)?;
        let case = desk.case(id).await.map_err(desk_error)?.case;
        let amount: i64 = form.amount.trim().parse().map_err(|_| {
            Refusal::Invalid(format!("amount {:?} is not a whole number", form.amount))
        })?;
        let claim = Claim {
            customer: case.customer,
            case_ids: vec![id],
            amount,
            currency: form.currency.trim().to_ascii_uppercase(),
            basis: form.basis.trim().to_string(),
            items: Vec::new(),
        };
        let claim_id = desk
            .claim(claim, v.user.clone(), self.service.now() as i64)
            .await
            .map_err(desk_error)?;
        Ok(format!("claim {claim_id} filed"))
    }

    /// The case export (the folder `spamgate abuse export` writes) as one tar file.
    pub async fn export(&self, v: &Viewer, id: CaseId) -> Result<(String, Vec<u8>), Refusal> {
        require(v.can_change())?;
        let desk = self.desk_service().ok_or(Refusal::NotFound)?;
        let parent = std::env::temp_dir().join(format!(
            "spamgate-console-export-{}-{id}-{}",
            std::process::id(),
            self.service.now()
        ));
        std::fs::create_dir_all(&parent).map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let result = async {
            let export = desk
                .export(id, parent.clone(), self.service.now() as i64)
                .await
                .map_err(desk_error)?;
            let name = export
                .folder
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("case-{id}"));
            let bytes = crate::tar::folder(&export.folder, &name, 256 << 20)
                .map_err(|e| Refusal::Unavailable(e.to_string()))?;
            Ok((format!("{name}.tar"), bytes))
        }
        .await;
        let _ = std::fs::remove_dir_all(&parent);
        result
    }
}

/// One line for people: who, from which address and time, on how many sessions.
fn attribution_summary(
    a: &spamgate_desk::attribution::Attribution,
    zone: &spamgate_app::display::DisplayZone,
) -> String {
    let v = serde_json::to_value(a).unwrap_or_default();
    let q = &v["query"];
    let address = match q["port"].as_u64() {
        Some(port) => format!("{}:{port}", q["address"].as_str().unwrap_or("?")),
        None => q["address"].as_str().unwrap_or("?").to_string(),
    };
    let at = q["at"].as_i64().map(|t| zone.time(t)).unwrap_or_default();
    let sessions = v["evidence"].as_array().map_or(0, Vec::len);
    let who = match v["customer"].as_str() {
        Some(c) => c.to_string(),
        None => format!("triage ({})", v["reason"].as_str().unwrap_or("?")),
    };
    format!("{who} — {address} at {at}; {sessions} matching session(s)")
}

fn report_summary(report: &spamgate_desk::report::Report) -> String {
    let mut parts = Vec::new();
    if let Some(c) = report.category {
        parts.push(c.as_str().to_string());
    }
    if let Some(ip) = report.source_ip {
        parts.push(match report.source_port {
            Some(p) => format!("{ip}:{p}"),
            None => ip.to_string(),
        });
    }
    if let Some(r) = &report.reporter {
        parts.push(format!("from {r}"));
    }
    if let Some(s) = &report.subject {
        parts.push(format!("“{s}”"));
    }
    parts.join(" · ")
}

fn enforced_text(done: &spamgate_app::desk::Enforced) -> String {
    let mut text = format!(
        "{} → {}",
        done.transition.audit.action,
        done.transition.ladder.step.as_str()
    );
    for change in &done.accounts {
        text.push_str(&format!(
            "; {} {} → {}",
            change.username,
            change.from.id(),
            change.to.id()
        ));
    }
    text
}
