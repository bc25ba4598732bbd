//! The `/api/v1` endpoints for what the CLI does beyond the first API: address history
//! uploads (`spamgate sessions import`), identity links and customer imports
//! (`spamgate customer link|import`), re-enforcement (`abuse enforce`), the delivery
//! queue (`abuse deliveries|deliver`, and a retry of one), the desk's signals
//! (`abuse signals`), learned exemptions (`spamgate learned`), every greylist triplet
//! (`greylist list`) and every account's events (`account events`). Like `api.rs`,
//! handlers only translate to `spamgate-app`, check the role and audit the change.
//! Also [`run_queued`]: what a ladder step queued (OP25B sync, hook, notice), carried
//! out at once after the step, as the CLI does.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::answers as a;
use spamgate_app::accounts::AccountService;
use spamgate_app::desk::{AccountChange, DeskService, QueueRun};
use spamgate_app::learned::LearnedService;
use spamgate_desk::desk::HistoryFormat;
use spamgate_desk::history::Identity;
use spamgate_desk::store::DeliveryState;
use spamgate_store::{GreylistAdmin, Recovering};

use crate::api::ApiPath;
use crate::auth::{RequireRole, roles};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AdminState;

type Viewer = RequireRole<roles::Viewer>;
type Operator = RequireRole<roles::Operator>;
type ApiResult = Result<Response, ApiError>;

/// The largest listing one request returns (as in `api.rs`).
const MAX_LIMIT: usize = 1000;

/// How many due deliveries of each kind one run carries out (the CLI's number).
const RUN_LIMIT: usize = 100;

fn limit(given: Option<usize>) -> usize {
    given.unwrap_or(100).clamp(1, MAX_LIMIT)
}

fn ok<T: serde::Serialize>(value: T) -> ApiResult {
    Ok(ApiJson(value).into_response())
}

fn desk_now(state: &AdminState) -> i64 {
    i64::try_from(state.service().now()).unwrap_or(i64::MAX)
}

fn store_error(e: spamgate_store::StoreError) -> ApiError {
    ApiError::unavailable(format!("store: {e}"))
}

/// A raw body (not JSON): 413 over the body limit, 400 when empty.
fn raw_body(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    what: &str,
) -> Result<axum::body::Bytes, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(format!("an empty {what}")));
    }
    Ok(body)
}

crate::route_table! {
    /// The routes of this file, merged into the router beside [`crate::api::routes`].
    routes, ROUTES;
    post "/api/v1/import/sessions" => sessions_import,
    post "/api/v1/import/customers" => customers_import,
    post "/api/v1/customers/{id}/identities" => customer_link_identity,
    post "/api/v1/customers/{id}/enforce" => customer_enforce,
    get "/api/v1/deliveries" => deliveries_list,
    post "/api/v1/deliveries/run" => deliveries_run,
    post "/api/v1/deliveries/{id}/retry" => delivery_retry,
    post "/api/v1/signals" => signals_file,
    get "/api/v1/learned" => learned_list,
    delete "/api/v1/learned" => learned_clear,
    delete "/api/v1/learned/{domain}" => learned_remove,
    get "/api/v1/greylist/triplets" => greylist_triplets,
    get "/api/v1/events" => events_list,
}

// --- what a step queued, at once

/// Each run as JSON: `delivery_id`, `kind` (`op25b`, `hook`, `notify`), `customer`,
/// `state` after the run (`done`, `pending`: retried later, `failed`: out of
/// attempts), `error`, and what the kind says (`action`, `prefixes`, `in_force`,
/// `note`; `step`; `to`).
pub fn runs_json(run: &QueueRun) -> Vec<crate::answers::DeliveryRun> {
    crate::answers::delivery_runs(run)
}

/// After a ladder step (or a confirmation) through the API: carries out what it
/// queued at once ([`DeskService::run_queued_now`]): the runs, and an error. The
/// step is recorded whatever happens here: a run that fails stays queued for
/// `spamgate abuse deliver` (its error is in its entry), and should the queue itself
/// be unreadable, `runs_error` says so and the timer carries them out.
pub async fn run_queued(
    desk: &DeskService<'_, Recovering>,
    now: i64,
) -> (Vec<crate::answers::DeliveryRun>, Option<String>) {
    match desk.run_queued_now(now, RUN_LIMIT).await {
        Ok(run) => (runs_json(&run), None),
        Err(e) => (
            Vec::new(),
            Some(format!(
                "the step is recorded; its deliveries stay queued for `spamgate abuse deliver`: {e}"
            )),
        ),
    }
}

fn changes_json(changed: &[AccountChange]) -> Vec<a::AccountChange> {
    changed
        .iter()
        .map(|c| a::AccountChange {
            username: c.username.clone(),
            from: c.from,
            to: c.to,
        })
        .collect()
}

fn audit_value<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

// --- address history

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SessionsQuery {
    /// radius-detail, kea-csv, static or cgnat.
    pub format: String,
    /// A name for where the document came from (kept with the import), e.g. `nas1`.
    pub source: Option<String>,
}

/// `POST /api/v1/import/sessions?format=&source=`: imports an address-history
/// document (the body: a RADIUS detail file, a Kea lease CSV, a static or CGNAT
/// table, as `spamgate sessions import` reads them). Operator. The whole body is read
/// each time (no tailing): records are upserted by key. A body with no readable record
/// is refused (400) and nothing is written.
#[utoipa::path(post, path = "/api/v1/import/sessions", tag = "desk", params(SessionsQuery),
    request_body(content = String, content_type = "text/plain"),
    responses((status = 200, body = a::SessionsImported), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 413, body = crate::ErrorBody)))]
pub async fn sessions_import(
    who: Operator,
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<SessionsQuery>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    let format = HistoryFormat::parse(&q.format).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown format {:?}: radius-detail, kea-csv, static or cgnat",
            q.format
        ))
    })?;
    let source = q.source.unwrap_or_else(|| "api".into());
    if source.trim().is_empty() || source.len() > 200 || source.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "source: a name of 1 to 200 printable characters",
        ));
    }
    let body = raw_body(body, "history document")?;
    let length = body.len();
    let desk = state.desk()?;
    let import = desk
        .import_session_bytes(format!("api:{source}"), body.to_vec(), format)
        .await?;
    let rejected: Vec<a::RejectedRecord> = import
        .rejected
        .iter()
        .take(100)
        .map(|(offset, why)| a::RejectedRecord {
            offset: *offset,
            why: why.clone(),
        })
        .collect();
    if import.summary.upserted == 0 && !import.rejected.is_empty() {
        let first = &import.rejected[0];
        return Err(ApiError::bad_request(format!(
            "no readable {} record ({} refused; first at byte {}: {}); nothing imported",
            format.as_str(),
            import.rejected.len(),
            first.0,
            first.1
        )));
    }
    let value = a::SessionsImported {
        format: format.as_str().to_string(),
        source: source.clone(),
        length: length as u64,
        to_offset: import.to_offset,
        upserted: import.summary.upserted as u64,
        closed_by_nas_reset: import.summary.sessions_closed_by_nas_reset as u64,
        rejected,
        rejected_count: import.rejected.len() as u64,
    };
    who.audit(&state, "sessions.import", source, audit_value(&value));
    ok(value)
}

// --- customers

/// `POST /api/v1/import/customers`: imports customers from a CSV body
/// (`id,name,contact,language,plan`, as `spamgate customer import`). Operator. Any
/// refused line refuses the whole body (400, the lines named), nothing imported.
#[utoipa::path(post, path = "/api/v1/import/customers", tag = "desk",
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = a::CustomersImported), (status = 400, body = crate::ErrorBody),
        (status = 403, body = crate::ErrorBody), (status = 413, body = crate::ErrorBody)))]
pub async fn customers_import(
    who: Operator,
    State(state): State<AdminState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    let body = raw_body(body, "customer CSV")?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("the CSV is not UTF-8: {e}")))?;
    let (customers, rejected) = spamgate_desk::case::parse_customers_csv(text);
    if !rejected.is_empty() {
        let lines: Vec<String> = rejected
            .iter()
            .take(20)
            .map(|(line, why)| format!("line {line}: {why}"))
            .collect();
        return Err(ApiError::bad_request(format!(
            "{} lines refused, nothing imported: {}",
            rejected.len(),
            lines.join("; ")
        )));
    }
    if customers.is_empty() {
        return Err(ApiError::bad_request("no customer in the CSV"));
    }
    let ids: Vec<String> = customers.iter().take(100).map(|c| c.id.clone()).collect();
    let count = state.desk()?.import_customers(customers).await?;
    let value = a::CustomersImported {
        imported: count as u64,
        ids,
    };
    who.audit(
        &state,
        "customer.import",
        count.to_string(),
        audit_value(&value),
    );
    ok(value)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityRequest {
    /// radius-user (RADIUS User-Name), hwaddr (DHCP hardware address) or client-id
    /// (DHCP client identifier).
    pub kind: String,
    pub value: String,
}

/// `POST /api/v1/customers/{id}/identities`: links an address-history identity to the
/// customer (`spamgate customer link --radius-user|--hwaddr|--client-id`), so its
/// sessions attribute to it. Operator. A link replaces the identity's earlier one.
#[utoipa::path(post, path = "/api/v1/customers/{id}/identities", tag = "desk",
    params(("id" = String, Path, description = "the customer id")), request_body = IdentityRequest,
    responses((status = 200, body = a::IdentityLinked), (status = 403, body = crate::ErrorBody), (status = 400, body = crate::ErrorBody),
        (status = 404, body = crate::ErrorBody)))]
pub async fn customer_link_identity(
    who: Operator,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<IdentityRequest>,
) -> ApiResult {
    let value = body.value.trim();
    let identity = match body.kind.as_str() {
        "radius-user" | "hwaddr" | "client-id" if !value.is_empty() => {
            Identity::from_parts(&body.kind, value)
        }
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::bad_request(format!(
            "kind {:?} with value {:?}: kind radius-user, hwaddr or client-id and a value",
            body.kind, body.value
        ))
    })?;
    state
        .desk()?
        .link_identity(identity.clone(), id.clone())
        .await?;
    let value = a::IdentityLinked {
        customer: id.clone(),
        kind: identity.kind().to_string(),
        value: identity.value().to_string(),
    };
    who.audit(&state, "customer.link_identity", id, audit_value(&value));
    ok(value)
}

/// `POST /api/v1/customers/{id}/enforce`: sets the customer's linked accounts to its
/// suspended or terminated step again (`spamgate abuse enforce`: after an enforcement
/// that failed part-way, or an account linked later). Operator.
#[utoipa::path(post, path = "/api/v1/customers/{id}/enforce", tag = "desk",
    params(("id" = String, Path, description = "the customer id")),
    responses((status = 200, body = a::Reenforced), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn customer_enforce(
    who: Operator,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let changed = state
        .desk()?
        .reapply(id.clone(), who.user.clone(), desk_now(&state))
        .await?;
    let value = a::Reenforced {
        customer: id.clone(),
        accounts: changes_json(&changed),
    };
    who.audit(&state, "customer.enforce", id, audit_value(&value));
    ok(value)
}

// --- the delivery queue

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// pending (default), done or failed.
    pub state: Option<String>,
    pub limit: Option<usize>,
}

/// `GET /api/v1/deliveries?state=`: the delivery queue (OP25B syncs, hooks, notices;
/// `spamgate abuse deliveries`). Viewer.
#[utoipa::path(get, path = "/api/v1/deliveries", tag = "desk", params(DeliveriesQuery),
    responses((status = 200, body = a::Deliveries), (status = 400, body = crate::ErrorBody)))]
pub async fn deliveries_list(
    _: Viewer,
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult {
    let wanted = match q.state.as_deref().unwrap_or("pending") {
        "pending" => DeliveryState::Pending,
        "done" => DeliveryState::Done,
        "failed" => DeliveryState::Failed,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown delivery state {other:?}: pending, done or failed"
            )));
        }
    };
    let deliveries = state.desk()?.deliveries(wanted, limit(q.limit)).await?;
    let deliveries = deliveries
        .iter()
        .map(|d| a::Delivery {
            id: d.id,
            kind: d.kind.as_str().to_string(),
            customer: d.customer.clone(),
            payload: serde_json::from_str(&d.payload).ok(),
            state: d.state.as_str().to_string(),
            attempts: d.attempts,
            next_attempt: d.next_attempt,
            last_error: d.last_error.clone(),
        })
        .collect();
    ok(a::Deliveries { deliveries })
}

/// `POST /api/v1/deliveries/run`: carries out every due delivery now (`spamgate abuse
/// deliver`, at most 100 of each kind): OP25B syncs always, hooks with `[desk]
/// hook_command`, notices with `notice_relay_host` (the ones not configured stay
/// queued; `unconfigured` names them). Operator.
#[utoipa::path(post, path = "/api/v1/deliveries/run", tag = "desk",
    responses((status = 200, body = a::DeliveriesRun), (status = 403, body = crate::ErrorBody)))]
pub async fn deliveries_run(who: Operator, State(state): State<AdminState>) -> ApiResult {
    let desk = state.desk()?;
    let run = desk.run_queued_now(desk_now(&state), RUN_LIMIT).await?;
    let settings = desk.settings();
    let mut unconfigured = Vec::new();
    if settings.hook.command.is_empty() {
        unconfigured.push("hook_command");
    }
    if settings.notice.relay_host.is_empty() {
        unconfigured.push("notice_relay_host");
    }
    let runs = runs_json(&run);
    let count = runs.len();
    let value = a::DeliveriesRun {
        runs,
        unconfigured: unconfigured.into_iter().map(String::from).collect(),
    };
    who.audit(
        &state,
        "deliveries.run",
        String::new(),
        json!({ "runs": count }),
    );
    ok(value)
}

/// `POST /api/v1/deliveries/{id}/retry`: makes one pending or failed delivery due
/// now and runs it (a failed one gets one more attempt). Operator. 404 for an unknown
/// or done delivery; 409 when nothing here can run its kind (no hook command, no relay).
#[utoipa::path(post, path = "/api/v1/deliveries/{id}/retry", tag = "desk",
    params(("id" = i64, Path)),
    responses((status = 200, body = a::DeliveryRetried), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
        (status = 409, body = crate::ErrorBody)))]
pub async fn delivery_retry(
    who: Operator,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult {
    let run = state.desk()?.retry_delivery(id, desk_now(&state)).await?;
    let value = a::DeliveryRetried {
        runs: runs_json(&run),
    };
    who.audit(
        &state,
        "delivery.retry",
        id.to_string(),
        audit_value(&value),
    );
    ok(value)
}

// --- signals

/// `POST /api/v1/signals`: files the submission account events of the ended windows
/// (limit trips, refused sends of suspended accounts) and, where OP25B is managed
/// here, the OP25B hits above `[desk] signal_op25b_hits`, as internal reports
/// (`spamgate abuse signals`; idempotent). Operator.
#[utoipa::path(post, path = "/api/v1/signals", tag = "desk",
    responses((status = 200, body = a::SignalsFiled), (status = 403, body = crate::ErrorBody), (status = 503, body = crate::ErrorBody)))]
pub async fn signals_file(who: Operator, State(state): State<AdminState>) -> ApiResult {
    let desk = state.desk()?;
    let now = desk_now(&state);
    let mut run = desk.file_account_signals(now).await?;
    if let Some(hits) = desk.op25b_hits().await? {
        let timeout = desk
            .settings()
            .op25b
            .as_ref()
            .map_or(86_400, |o| o.config.hits_timeout.as_secs() as i64);
        let op25b = desk.file_op25b_signals(hits, timeout, now).await?;
        run.filed.extend(op25b.filed);
        run.already_filed += op25b.already_filed;
        run.triaged.extend(op25b.triaged);
    }
    let value = a::SignalsFiled {
        filed: run
            .filed
            .iter()
            .map(|(report, customer, case)| a::SignalFiled {
                report_id: *report,
                customer: customer.clone(),
                case_id: *case,
            })
            .collect(),
        already_filed: run.already_filed as u64,
        unlinked: run.unlinked.clone(),
        triaged: run
            .triaged
            .iter()
            .map(|(report, source)| a::SignalTriaged {
                report_id: *report,
                source: source.to_string(),
            })
            .collect(),
    };
    who.audit(&state, "signals.file", String::new(), audit_value(&value));
    ok(value)
}

// --- learned exemptions

/// `GET /api/v1/learned`: the organisations followed, with `learned` and
/// `refused_now` (`spamgate learned list`). Viewer.
#[utoipa::path(get, path = "/api/v1/learned", tag = "filters",
    responses((status = 200, body = a::LearnedOrgs)))]
pub async fn learned_list(_: Viewer, State(state): State<AdminState>) -> ApiResult {
    let service = state.service();
    let now = service.now();
    let records = LearnedService::new(service.store())
        .list(now)
        .await
        .map_err(store_error)?;
    let organisations = records.iter().map(|r| a::LearnedOrg::new(r, now)).collect();
    ok(a::LearnedOrgs { organisations })
}

/// `DELETE /api/v1/learned/{domain}`: forgets an organisation (its exemption, what
/// it earned, a refusal) by its domain or any name under it. Operator. 404 when it
/// is not followed.
#[utoipa::path(delete, path = "/api/v1/learned/{domain}", tag = "filters",
    params(("domain" = String, Path)),
    responses((status = 200, body = a::LearnedRemoved), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn learned_remove(
    who: Operator,
    State(state): State<AdminState>,
    ApiPath(domain): ApiPath<String>,
) -> ApiResult {
    let (org, removed) = LearnedService::new(state.service().store())
        .remove(&domain)
        .await
        .map_err(store_error)?;
    if !removed {
        return Err(ApiError::not_found(format!(
            "{org}: not learned or followed"
        )));
    }
    let value = a::LearnedRemoved {
        organisation: org.clone(),
        removed: true,
    };
    who.audit(&state, "learned.remove", org, audit_value(&value));
    ok(value)
}

/// `DELETE /api/v1/learned`: forgets every organisation. Operator.
#[utoipa::path(delete, path = "/api/v1/learned", tag = "filters",
    responses((status = 200, body = a::LearnedCleared), (status = 403, body = crate::ErrorBody)))]
pub async fn learned_clear(who: Operator, State(state): State<AdminState>) -> ApiResult {
    let count = LearnedService::new(state.service().store())
        .clear()
        .await
        .map_err(store_error)?;
    let value = a::LearnedCleared {
        removed: count as u64,
    };
    who.audit(&state, "learned.clear", String::new(), audit_value(&value));
    ok(value)
}

// --- listings the CLI has

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<usize>,
}

/// `GET /api/v1/greylist/triplets?limit=`: triplets, the latest-expiring first
/// (`spamgate greylist list`). Viewer.
#[utoipa::path(get, path = "/api/v1/greylist/triplets", tag = "filters", params(ListQuery),
    responses((status = 200, body = a::Triplets)))]
pub async fn greylist_triplets(
    _: Viewer,
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult {
    let rows = state
        .service()
        .store()
        .list_triplets(limit(q.limit))
        .await
        .map_err(store_error)?;
    ok(a::Triplets {
        triplets: rows.iter().map(a::Triplet::from).collect(),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AllEventsQuery {
    /// Unix time: only events at or after it (default: 30 days ago).
    pub since: Option<u64>,
    pub limit: Option<usize>,
}

/// `GET /api/v1/events?since=`: every account's events (limit trips, refused sends,
/// status changes), newest first (`spamgate account events` without an account).
/// Viewer.
#[utoipa::path(get, path = "/api/v1/events", tag = "accounts", params(AllEventsQuery),
    responses((status = 200, body = a::AccountEvents)))]
pub async fn events_list(
    _: Viewer,
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<AllEventsQuery>,
) -> ApiResult {
    let service = state.service();
    let since = q
        .since
        .unwrap_or_else(|| service.now().saturating_sub(30 * 86_400));
    let events = AccountService::new(service.store())
        .events(None, since, limit(q.limit))
        .await?;
    ok(a::AccountEvents { events })
}

/// The OpenAPI paths of this module, merged into [`crate::openapi::document`].
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        sessions_import,
        customers_import,
        customer_link_identity,
        customer_enforce,
        deliveries_list,
        deliveries_run,
        delivery_retry,
        signals_file,
        learned_list,
        learned_remove,
        learned_clear,
        greylist_triplets,
        events_list,
    ),
    components(schemas(IdentityRequest))
)]
pub struct DeskOpsDoc;
