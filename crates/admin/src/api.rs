//! The `/api/v1` endpoints. Each handler reads its input, calls the application layer
//! and writes its answer; rules live in `spamgate-app`. Roles: viewer reads (and may
//! dry-run a decision), operator changes filters, accounts and the desk, approver
//! approves or rejects ladder steps held for approval, admin manages users and tokens.
//! Every change is audited with the caller.

use std::net::IpAddr;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use spamgate_app::Mode;
use spamgate_app::accounts::{AccountError, AccountService, StatusChange};
use spamgate_app::allow::{AllowCommandError, AllowService};
use spamgate_app::desk::DeskServiceError;
use spamgate_app::users::{AuditFilter, Role};
use spamgate_desk::store::DeskError;
use spamgate_engine::outbound::{AccountStatus, LimitOverrides};
use spamgate_engine::verdict::AllowScope;
use spamgate_store::{GreylistAdmin, GreylistFilter, StoreError};

use crate::answers;
use crate::auth::{RequireRole, roles};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AdminState;

type Viewer = RequireRole<roles::Viewer>;
type Operator = RequireRole<roles::Operator>;
type Admin = RequireRole<roles::Admin>;
type ApiResult = Result<Response, ApiError>;

/// The largest listing one request returns.
const MAX_LIMIT: usize = 1000;

fn limit(given: Option<usize>) -> usize {
    given.unwrap_or(100).clamp(1, MAX_LIMIT)
}

fn ok<T: serde::Serialize>(value: T) -> ApiResult {
    Ok(ApiJson(value).into_response())
}

fn created<T: serde::Serialize>(value: T) -> ApiResult {
    Ok((StatusCode::CREATED, ApiJson(value)).into_response())
}

/// `axum::extract::Path` with a JSON 400 when a segment does not parse.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

// --- error translation

fn store_error(e: StoreError) -> ApiError {
    ApiError::unavailable(format!("store: {e}"))
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        let status = match &e {
            AccountError::Invalid(_) => StatusCode::BAD_REQUEST,
            AccountError::Unknown(_) => StatusCode::NOT_FOUND,
            AccountError::Terminated(_) => StatusCode::CONFLICT,
            AccountError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<AllowCommandError> for ApiError {
    fn from(e: AllowCommandError) -> Self {
        let status = match &e {
            AllowCommandError::NoSuchEntry { .. } => StatusCode::NOT_FOUND,
            AllowCommandError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<DeskServiceError> for ApiError {
    fn from(e: DeskServiceError) -> Self {
        let status = match &e {
            DeskServiceError::Desk(DeskError::NotFound { .. }) => StatusCode::NOT_FOUND,
            DeskServiceError::Desk(DeskError::Invalid(_)) => StatusCode::CONFLICT,
            DeskServiceError::Account(a) => {
                return ApiError::new(StatusCode::BAD_REQUEST, e.to_string()).with_status_of(a);
            }
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

impl ApiError {
    fn with_status_of(mut self, e: &AccountError) -> ApiError {
        self.status = match e {
            AccountError::Invalid(_) => StatusCode::BAD_REQUEST,
            AccountError::Unknown(_) => StatusCode::NOT_FOUND,
            AccountError::Terminated(_) => StatusCode::CONFLICT,
            AccountError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        self
    }
}

crate::route_table! {
    /// The routes, for [`crate::router`]; [`ROUTES`] lists them.
    routes, ROUTES;
    get "/api/v1/stats" => stats,
    post "/api/v1/check" => check,
    post "/api/v1/classify" => classify,
    get "/api/v1/greylist" => greylist_find,
    delete "/api/v1/greylist" => greylist_delete,
    get "/api/v1/allow" => allow_list,
    post "/api/v1/allow" => allow_add,
    delete "/api/v1/allow/{kind}/{value}" => allow_remove,
    get "/api/v1/accounts" => accounts_list,
    get "/api/v1/accounts/{name}" => account_show,
    put "/api/v1/accounts/{name}/limits" => account_limits,
    post "/api/v1/accounts/{name}/status" => account_status,
    get "/api/v1/accounts/{name}/events" => account_events,
    get "/api/v1/customers" => customers_list,
    get "/api/v1/customers/{id}" => customer_show,
    put "/api/v1/customers/{id}" => customer_put,
    post "/api/v1/customers/{id}/accounts" => customer_link_account,
    post "/api/v1/customers/{id}/ladder" => ladder_step,
    get "/api/v1/who" => who,
    get "/api/v1/reports" => reports_list,
    post "/api/v1/reports" => report_ingest,
    post "/api/v1/reports/{id}/assign" => report_assign,
    get "/api/v1/cases" => cases_list,
    get "/api/v1/cases/{id}" => case_show,
    post "/api/v1/cases/{id}/confirm" => case_confirm,
    post "/api/v1/cases/{id}/export" => case_export,
    post "/api/v1/claims" => claim_add,
    get "/api/v1/users" => users_list,
    post "/api/v1/users" => user_add,
    patch "/api/v1/users/{name}" => user_change,
    get "/api/v1/tokens" => tokens_list,
    post "/api/v1/tokens" => token_add,
    delete "/api/v1/tokens/{id}" => token_revoke,
    get "/api/v1/audit" => audit,
}

// --- decisions and stats

/// `GET /api/v1/stats`: live greylist entries and allow-list size.
#[utoipa::path(get, path = "/api/v1/stats", tag = "filters",
    responses((status = 200, body = answers::Stats)))]
pub async fn stats(_: Viewer, State(state): State<AdminState>) -> ApiResult {
    let service = state.service();
    let now = service.now();
    let counts = service.store().counts(now).await.map_err(store_error)?;
    let allow = AllowService::new(service.store()).list().await?;
    ok(answers::Stats {
        greylist: answers::GreylistCounts {
            pending: counts.pending,
            passed: counts.passed,
            awl: counts.awl,
        },
        allow_entries: allow.len() as u64,
        now,
    })
}

/// A transaction as Postfix would send it, for a dry-run decision.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    #[schema(value_type = String, example = "192.0.2.10")]
    pub client_address: IpAddr,
    pub client_name: Option<String>,
    pub reverse_client_name: Option<String>,
    pub helo_name: Option<String>,
    #[serde(default)]
    pub sender: String,
    pub recipient: String,
    pub sasl_username: Option<String>,
    pub server_port: Option<u16>,
    pub recipient_count: Option<u64>,
    /// `RCPT` by default.
    pub protocol_state: Option<String>,
}

/// The most names one classify request may carry.
pub const MAX_CLASSIFY_NAMES: usize = 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    /// Host names (at most 1000), as a PTR record or Postfix's `client_name` has them.
    pub names: Vec<String>,
}

/// `POST /api/v1/classify`: how the daemon's reverse-DNS rules see each name, and
/// why (`spamgate classify --explain --json`). Read-only: a viewer may ask.
#[utoipa::path(post, path = "/api/v1/classify", tag = "filters", request_body = ClassifyRequest,
    responses((status = 200, body = Vec<answers::ClassifyAnswer>),
        (status = 400, body = crate::ErrorBody)))]
pub async fn classify(
    _: Viewer,
    State(state): State<AdminState>,
    ApiJson(body): ApiJson<ClassifyRequest>,
) -> ApiResult {
    if body.names.is_empty() || body.names.len() > MAX_CLASSIFY_NAMES {
        return Err(ApiError::bad_request(format!(
            "names: give 1 to {MAX_CLASSIFY_NAMES} host names"
        )));
    }
    let service = state.service();
    let answers: Vec<answers::ClassifyAnswer> = body
        .names
        .iter()
        .map(|name| {
            let name = name.trim().trim_end_matches('.');
            answers::ClassifyAnswer::new(name, service.classify(name))
        })
        .collect();
    ok(answers)
}

/// `POST /api/v1/check`: what the daemon would answer, without changing any state
/// (`spamgate check`). Read-only: a viewer may ask.
#[utoipa::path(post, path = "/api/v1/check", tag = "filters", request_body = CheckRequest,
    responses((status = 200, body = answers::CheckAnswer)))]
pub async fn check(
    _: Viewer,
    State(state): State<AdminState>,
    ApiJson(body): ApiJson<CheckRequest>,
) -> ApiResult {
    let request = spamgate_policy::PolicyRequest {
        protocol_state: Some(spamgate_policy::ProtocolState::parse(
            body.protocol_state.as_deref().unwrap_or("RCPT"),
        )),
        client_address: Some(body.client_address),
        client_name: body.client_name,
        reverse_client_name: body.reverse_client_name,
        helo_name: body.helo_name,
        sender: Some(body.sender),
        recipient: Some(body.recipient),
        sasl_username: body.sasl_username,
        server_port: body.server_port,
        recipient_count: body.recipient_count,
        ..spamgate_policy::PolicyRequest::default()
    };
    // Read back through the daemon's own decoder: what it would refuse, this refuses.
    let bytes = request.to_bytes();
    let mut decoder = spamgate_policy::PolicyDecoder::new(spamgate_policy::Limits::default());
    let request = match decoder.decode(&mut bytes.as_slice()) {
        Ok(Some(request)) => request,
        Ok(None) => return Err(ApiError::bad_request("the request is incomplete")),
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "the daemon would refuse this request: {e}"
            )));
        }
    };
    let mut action = String::new();
    let answer =
        spamgate_postfix::answer(state.service(), request, Mode::DryRun, &mut action).await;
    ok(answers::CheckAnswer {
        verdict: answer.map(|a| a.verdict),
        postfix_action: action,
    })
}

// --- greylist

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GreylistQuery {
    /// A client address: its auto-whitelist entry and its network's triplets.
    #[param(value_type = Option<String>)]
    pub client: Option<IpAddr>,
    /// `192.0.2.0/24`, `2001:db8::/64` or `domain:example.net`.
    pub network: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub limit: Option<usize>,
}

fn greylist_filter(state: &AdminState, q: &GreylistQuery) -> Result<GreylistFilter, ApiError> {
    use spamgate_engine::greylist::{client_network, normalise_sender};
    if q.client.is_none() && q.network.is_none() && q.sender.is_none() && q.recipient.is_none() {
        return Err(ApiError::bad_request(
            "name the entries: client, network, sender and/or recipient",
        ));
    }
    let network = q.network.clone().or_else(|| {
        q.client
            .map(|c| client_network(c, state.keys()).to_string())
    });
    Ok(GreylistFilter {
        network,
        sender: q.sender.as_deref().map(normalise_sender),
        recipient: q
            .recipient
            .as_deref()
            .map(|r| r.trim().to_ascii_lowercase()),
        client: q.client,
    })
}

/// `GET /api/v1/greylist?client=&network=&sender=&recipient=`: the entries named.
#[utoipa::path(get, path = "/api/v1/greylist", tag = "filters", params(GreylistQuery),
    responses((status = 200, body = answers::GreylistEntries)))]
pub async fn greylist_find(
    _: Viewer,
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<GreylistQuery>,
) -> ApiResult {
    let filter = greylist_filter(&state, &q)?;
    let found = state
        .service()
        .store()
        .find_greylist(&filter, limit(q.limit))
        .await
        .map_err(store_error)?;
    ok(answers::GreylistEntries {
        triplets: found.triplets.iter().map(answers::Triplet::from).collect(),
        awl: found.awl.as_ref().map(|a| answers::AwlEntry {
            client: a.client.clone(),
            first_seen: a.first_seen,
            last_seen: a.last_seen,
            expires_at: a.expires_at,
        }),
    })
}

/// `DELETE /api/v1/greylist?...`: deletes the entries named, so the next attempt
/// starts over. Operator.
#[utoipa::path(delete, path = "/api/v1/greylist", tag = "filters", params(GreylistQuery),
    responses((status = 200, body = answers::GreylistDeleted), (status = 403, body = crate::ErrorBody)))]
pub async fn greylist_delete(
    who: Operator,
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<GreylistQuery>,
) -> ApiResult {
    let filter = greylist_filter(&state, &q)?;
    let deleted = state
        .service()
        .store()
        .delete_greylist(&filter)
        .await
        .map_err(store_error)?;
    let result = answers::GreylistDeleted {
        triplets: deleted.triplets,
        awl: deleted.awl,
    };
    who.audit(
        &state,
        "greylist.delete",
        format!("{filter:?}"),
        answers::to_value(&result),
    );
    ok(result)
}

// --- allow-list

/// `GET /api/v1/allow`: the runtime allow-list.
#[utoipa::path(get, path = "/api/v1/allow", tag = "filters",
    responses((status = 200, body = answers::AllowEntries)))]
pub async fn allow_list(_: Viewer, State(state): State<AdminState>) -> ApiResult {
    let entries = AllowService::new(state.service().store()).list().await?;
    ok(answers::AllowEntries {
        entries: entries.iter().map(answers::AllowEntry::from).collect(),
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowRequest {
    /// client-address, client-name, sender or recipient.
    #[schema(value_type = answers::RuntimeAllowKind)]
    pub kind: String,
    pub value: String,
    #[serde(default)]
    pub note: String,
    /// `greylist` or `all`; default: the kind's.
    #[schema(value_type = Option<AllowScope>)]
    pub scope: Option<String>,
    /// Unix time the entry stops applying.
    pub expires_at: Option<u64>,
}

/// `POST /api/v1/allow`: adds (or updates) an entry; in force at once on this daemon.
/// Operator. 201 when new, 200 when it replaced one.
#[utoipa::path(post, path = "/api/v1/allow", tag = "filters", request_body = AllowRequest,
    responses((status = 201, description = "a new entry", body = answers::AllowEntry), (status = 200, description = "an entry replaced", body = answers::AllowEntry), (status = 403, body = crate::ErrorBody)))]
pub async fn allow_add(
    who: Operator,
    State(state): State<AdminState>,
    ApiJson(body): ApiJson<AllowRequest>,
) -> ApiResult {
    let scope = match body.scope.as_deref() {
        None => None,
        Some(text) => Some(AllowScope::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!("unknown scope {text:?}: greylist or all"))
        })?),
    };
    let service = state.service();
    let (entry, new) = AllowService::new(service.store())
        .add(
            &body.kind,
            &body.value,
            body.note,
            scope,
            body.expires_at,
            service.now(),
        )
        .await?;
    refresh_allow(&state).await;
    let value = answers::AllowEntry::from(&entry);
    who.audit(
        &state,
        "allow.add",
        format!("{} {}", entry.kind.id(), entry.value),
        answers::to_value(&value),
    );
    if new { created(value) } else { ok(value) }
}

async fn refresh_allow(state: &AdminState) {
    if let Err(e) = state.service().refresh_runtime_allow().await {
        tracing::warn!("allow-list changed, but cannot reload it now (next poll will): {e}");
    }
}

/// `DELETE /api/v1/allow/{kind}/{value}`: removes an entry; 404 when there is none.
#[utoipa::path(delete, path = "/api/v1/allow/{kind}/{value}", tag = "filters",
    params(("kind" = answers::RuntimeAllowKind, Path), ("value" = String, Path)),
    responses((status = 200, body = answers::AllowRemoved), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn allow_remove(
    who: Operator,
    State(state): State<AdminState>,
    ApiPath((kind, value)): ApiPath<(String, String)>,
) -> ApiResult {
    let (kind, value) = AllowService::new(state.service().store())
        .remove(&kind, &value)
        .await?;
    refresh_allow(&state).await;
    let result = answers::AllowRemoved {
        kind,
        value,
        removed: true,
    };
    who.audit(
        &state,
        "allow.remove",
        format!("{} {}", kind.id(), result.value),
        answers::to_value(&result),
    );
    ok(result)
}

// --- accounts

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    pub limit: Option<usize>,
}

/// `GET /api/v1/accounts`: submission accounts.
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts", params(LimitQuery),
    responses((status = 200, body = answers::Accounts)))]
pub async fn accounts_list(
    _: Viewer,
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> ApiResult {
    let accounts = AccountService::new(state.service().store())
        .list(limit(q.limit))
        .await?;
    ok(answers::Accounts { accounts })
}

/// `GET /api/v1/accounts/{name}`.
#[utoipa::path(get, path = "/api/v1/accounts/{name}", tag = "accounts",
    params(("name" = String, Path)),
    responses((status = 200, body = spamgate_engine::outbound::Account), (status = 404, body = crate::ErrorBody)))]
pub async fn account_show(
    _: Viewer,
    State(state): State<AdminState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    let account = AccountService::new(state.service().store())
        .show(&name)
        .await?;
    ok(account)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    pub messages_per_hour: Option<u32>,
    pub recipients_per_day: Option<u32>,
    #[serde(default)]
    pub note: String,
}

/// `PUT /api/v1/accounts/{name}/limits`: adds the account or changes its limits (the
/// ones not given are kept). Operator.
#[utoipa::path(put, path = "/api/v1/accounts/{name}/limits", tag = "accounts",
    params(("name" = String, Path)), request_body = LimitsRequest,
    responses((status = 200, body = spamgate_engine::outbound::Account), (status = 403, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn account_limits(
    who: Operator,
    State(state): State<AdminState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<LimitsRequest>,
) -> ApiResult {
    let limits = LimitOverrides {
        messages_per_hour: body.messages_per_hour,
        recipients_per_day: body.recipients_per_day,
    };
    let service = state.service();
    let account = AccountService::new(service.store())
        .put_limits(&name, limits, body.note, service.now())
        .await?;
    let value = answers::to_value(&account);
    who.audit(&state, "account.limits", account.username.clone(), value);
    ok(account)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// active, suspended or terminated.
    #[schema(value_type = spamgate_engine::outbound::AccountStatus)]
    pub status: String,
    #[serde(default)]
    pub note: String,
    /// Bring a terminated account back.
    #[serde(default)]
    pub force: bool,
    /// Create the account when it is not in the store.
    #[serde(default)]
    pub create: bool,
}

/// `POST /api/v1/accounts/{name}/status`: suspend, resume (`active`) or terminate.
/// Operator. 404 for an unknown account unless `create`; 409 to leave `terminated`
/// without `force`.
#[utoipa::path(post, path = "/api/v1/accounts/{name}/status", tag = "accounts",
    params(("name" = String, Path)), request_body = StatusRequest,
    responses((status = 200, body = spamgate_engine::outbound::Account), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn account_status(
    who: Operator,
    State(state): State<AdminState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<StatusRequest>,
) -> ApiResult {
    let to = AccountStatus::parse(&body.status).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown status {:?}: active, suspended or terminated",
            body.status
        ))
    })?;
    let service = state.service();
    let change = StatusChange {
        force: body.force,
        create: body.create,
    };
    let account = AccountService::new(service.store())
        .set_status(&name, to, body.note, change, service.now())
        .await?;
    let value = answers::to_value(&account);
    who.audit(
        &state,
        &format!("account.{}", to.id()),
        account.username.clone(),
        value,
    );
    ok(account)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    pub since: Option<u64>,
    pub limit: Option<usize>,
}

/// `GET /api/v1/accounts/{name}/events`: status changes and limit trips.
#[utoipa::path(get, path = "/api/v1/accounts/{name}/events", tag = "accounts",
    params(("name" = String, Path), EventsQuery),
    responses((status = 200, body = answers::AccountEvents), (status = 404, body = crate::ErrorBody)))]
pub async fn account_events(
    _: Viewer,
    State(state): State<AdminState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult {
    let service = AccountService::new(state.service().store());
    service.show(&name).await?;
    let events = service
        .events(Some(&name), q.since.unwrap_or(0), limit(q.limit))
        .await?;
    ok(answers::AccountEvents { events })
}

// --- the desk

/// The desk's clock reading (it counts in signed seconds).
fn desk_now(state: &AdminState) -> i64 {
    i64::try_from(state.service().now()).unwrap_or(i64::MAX)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AfterQuery {
    pub after: Option<String>,
    pub limit: Option<usize>,
}

/// `GET /api/v1/customers?after=&limit=`: customers by id.
#[utoipa::path(get, path = "/api/v1/customers", tag = "desk", params(AfterQuery),
    responses((status = 200, body = answers::Customers)))]
pub async fn customers_list(
    _: Viewer,
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<AfterQuery>,
) -> ApiResult {
    let customers = state.desk()?.customers(q.after, limit(q.limit)).await?;
    ok(answers::Customers { customers })
}

/// `GET /api/v1/customers/{id}`: the customer, linked accounts, ladder and its audit.
#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "desk", params(("id" = String, Path)),
    responses((status = 200, body = answers::CustomerAnswer), (status = 404, body = crate::ErrorBody)))]
pub async fn customer_show(
    _: Viewer,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let view = state.desk()?.customer(id).await?;
    ok(answers::CustomerAnswer {
        customer: view.customer,
        accounts: view.accounts,
        ladder: view.ladder,
        audit: view.audit,
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerRequest {
    pub name: String,
    pub contact: String,
    /// `ja` or `en`.
    #[serde(default = "default_language")]
    #[schema(value_type = spamgate_desk::case::Language)]
    pub language: String,
    #[serde(default)]
    pub plan: String,
}

fn default_language() -> String {
    "ja".into()
}

/// `PUT /api/v1/customers/{id}`: adds or updates a customer (the status stays the
/// ladder's). Operator.
#[utoipa::path(put, path = "/api/v1/customers/{id}", tag = "desk", params(("id" = String, Path)),
    request_body = CustomerRequest,
    responses((status = 200, body = spamgate_desk::case::Customer), (status = 403, body = crate::ErrorBody)))]
pub async fn customer_put(
    who: Operator,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CustomerRequest>,
) -> ApiResult {
    let customer: spamgate_desk::case::Customer = serde_json::from_value(json!({
        "id": id.trim(), "name": body.name, "contact": body.contact,
        "language": body.language, "plan": body.plan, "status": "active",
    }))
    .map_err(|e| ApiError::bad_request(format!("invalid customer: {e}")))?;
    if customer.id.is_empty() {
        return Err(ApiError::bad_request("a customer id cannot be empty"));
    }
    let desk = state.desk()?;
    desk.put_customer(customer.clone()).await?;
    let view = desk.customer(customer.id.clone()).await?;
    who.audit(
        &state,
        "customer.put",
        customer.id,
        answers::to_value(&view.customer),
    );
    ok(view.customer)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// A submission account (it must exist).
    pub account: String,
}

/// `POST /api/v1/customers/{id}/accounts`: links a submission account to the customer,
/// so ladder steps reach it. Operator.
#[utoipa::path(post, path = "/api/v1/customers/{id}/accounts", tag = "desk",
    params(("id" = String, Path)), request_body = LinkRequest,
    responses((status = 200, body = answers::Linked), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn customer_link_account(
    who: Operator,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LinkRequest>,
) -> ApiResult {
    let desk = state.desk()?;
    desk.customer(id.clone()).await?;
    desk.link_account(body.account.clone(), id.clone()).await?;
    // As `customer link --account`: an account linked to a suspended customer is
    // suspended with it.
    let changed = desk
        .reapply(id.clone(), who.user.clone(), desk_now(&state))
        .await?;
    let value = answers::Linked {
        customer: id.clone(),
        account: body.account,
        accounts: answers::account_changes(&changed),
    };
    who.audit(
        &state,
        "customer.link_account",
        id,
        answers::to_value(&value),
    );
    ok(value)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LadderRequest {
    /// warn, suspend, resume, terminate (operator); approve, reject (approver).
    #[schema(value_type = answers::LadderStep)]
    pub step: String,
    pub reason: String,
    #[serde(default)]
    pub evidence: Vec<String>,
    /// resume: bring a terminated customer back.
    #[serde(default)]
    pub force: bool,
}

/// `POST /api/v1/customers/{id}/ladder`: a ladder step, carried out on the customer's
/// linked accounts. Where the policy needs approval, `suspend` makes a proposal that
/// an approver approves (`approve`) or rejects; the approver must be another person.
#[utoipa::path(post, path = "/api/v1/customers/{id}/ladder", tag = "desk",
    params(("id" = String, Path)), request_body = LadderRequest,
    responses((status = 200, body = answers::EnforcedAnswer), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn ladder_step(
    who: Operator,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LadderRequest>,
) -> ApiResult {
    use spamgate_desk::ladder::Command;
    let LadderRequest {
        step,
        reason,
        evidence,
        force,
    } = body;
    if reason.trim().is_empty() {
        return Err(ApiError::bad_request("a ladder step needs a reason"));
    }
    let command = match step.as_str() {
        "warn" => Command::Warn { reason, evidence },
        "suspend" => Command::Suspend {
            reason,
            evidence,
            approver: None,
        },
        "resume" => Command::Resume { reason, force },
        "terminate" => Command::Terminate { reason, evidence },
        "approve" | "reject" if !who.has(Role::Approver) => {
            return Err(ApiError::forbidden(format!(
                "{step} needs the approver role; {} is {}",
                who.user, who.role
            )));
        }
        "approve" => Command::Approve { reason },
        "reject" => Command::Reject { reason },
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown step {other:?}: warn, suspend, resume, terminate, approve or reject"
            )));
        }
    };
    let desk = state.desk()?;
    let enforced = desk
        .decide(id.clone(), who.user.clone(), command, desk_now(&state))
        .await?;
    let mut value = answers::EnforcedAnswer::from(&enforced);
    (value.runs, value.runs_error) = crate::api_desk::run_queued(&desk, desk_now(&state)).await;
    who.audit(
        &state,
        &format!("ladder.{step}"),
        id,
        answers::to_value(&value),
    );
    ok(value)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WhoQuery {
    /// `192.0.2.1`, `192.0.2.1:40000` or `[2001:db8::1]:40000`.
    pub address: String,
    /// Unix time.
    pub at: i64,
}

/// `GET /api/v1/who?address=ADDR[:PORT]&at=UNIX`: which customer held it then.
#[utoipa::path(get, path = "/api/v1/who", tag = "desk", params(WhoQuery),
    responses((status = 200, body = spamgate_desk::attribution::Attribution)))]
pub async fn who(
    _: Viewer,
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<WhoQuery>,
) -> ApiResult {
    let (address, port) = match q.address.parse::<std::net::SocketAddr>() {
        Ok(sa) => (sa.ip(), Some(sa.port())),
        Err(_) => (
            q.address
                .parse::<IpAddr>()
                .map_err(|_| ApiError::bad_request(format!("not an address: {:?}", q.address)))?,
            None,
        ),
    };
    let query = spamgate_desk::attribution::Query {
        address,
        port,
        at: q.at,
    };
    let attribution = state.desk()?.who(query).await?;
    ok(attribution)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StateQuery {
    pub state: Option<String>,
    pub limit: Option<usize>,
}

/// `GET /api/v1/reports?state=`: reports, e.g. `state=triage` for the triage queue.
#[utoipa::path(get, path = "/api/v1/reports", tag = "desk", params(StateQuery),
    responses((status = 200, body = answers::Reports)))]
pub async fn reports_list(
    _: Viewer,
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<StateQuery>,
) -> ApiResult {
    let wanted = match q.state.as_deref() {
        None => None,
        Some(text) => Some(
            spamgate_desk::store::ReportState::parse(text)
                .ok_or_else(|| ApiError::bad_request(format!("unknown report state {text:?}")))?,
        ),
    };
    let reports = state.desk()?.reports(wanted, limit(q.limit)).await?;
    ok(answers::Reports {
        reports: reports
            .iter()
            .map(answers::StoredReportAnswer::from)
            .collect(),
    })
}

/// `POST /api/v1/reports`: ingests one abuse report (the raw message as the body,
/// ARF, X-ARF or plain). Operator. 201 with what became of it.
#[utoipa::path(post, path = "/api/v1/reports", tag = "desk",
    request_body(content = String, content_type = "message/rfc822"),
    responses((status = 201, body = answers::Ingested), (status = 403, body = crate::ErrorBody)))]
pub async fn report_ingest(
    who: Operator,
    State(state): State<AdminState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::bad_request("an empty report"));
    }
    let desk = state.desk()?;
    let outcome = desk.ingest(body.to_vec(), desk_now(&state)).await?;
    let value = answers::Ingested {
        raw_id: outcome.raw.id,
        duplicate: outcome.raw.duplicate,
        report_id: outcome.report_id,
        state: outcome.state.as_str().to_string(),
        customer: outcome.customer,
        case_id: outcome.case_id,
    };
    who.audit(
        &state,
        "report.ingest",
        value.report_id.to_string(),
        answers::to_value(&value),
    );
    created(value)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    pub customer: String,
    /// The category, when the report did not say (spam, phishing, malware, ...).
    #[schema(value_type = Option<spamgate_desk::report::Category>)]
    pub category: Option<String>,
}

/// `POST /api/v1/reports/{id}/assign`: files a triage report to a customer. Operator.
#[utoipa::path(post, path = "/api/v1/reports/{id}/assign", tag = "desk",
    params(("id" = i64, Path)), request_body = AssignRequest,
    responses((status = 200, body = answers::Assigned), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn report_assign(
    who: Operator,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<AssignRequest>,
) -> ApiResult {
    let category = match body.category {
        None => None,
        Some(text) => Some(
            serde_json::from_value::<spamgate_desk::report::Category>(json!(text))
                .map_err(|_| ApiError::bad_request(format!("unknown category {text:?}")))?,
        ),
    };
    let desk = state.desk()?;
    let case_id = desk
        .assign(
            id,
            body.customer.clone(),
            category,
            who.user.clone(),
            desk_now(&state),
        )
        .await?;
    let value = answers::Assigned {
        report_id: id,
        customer: body.customer,
        case_id,
    };
    who.audit(
        &state,
        "report.assign",
        id.to_string(),
        answers::to_value(&value),
    );
    ok(value)
}

/// `GET /api/v1/cases?state=`: cases.
#[utoipa::path(get, path = "/api/v1/cases", tag = "desk", params(StateQuery),
    responses((status = 200, body = answers::Cases)))]
pub async fn cases_list(
    _: Viewer,
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<StateQuery>,
) -> ApiResult {
    let wanted = match q.state.as_deref() {
        None => None,
        Some(text) => Some(
            spamgate_desk::case::CaseState::parse(text)
                .ok_or_else(|| ApiError::bad_request(format!("unknown case state {text:?}")))?,
        ),
    };
    let cases = state.desk()?.cases(wanted, limit(q.limit)).await?;
    ok(answers::Cases { cases })
}

/// `GET /api/v1/cases/{id}`: the case with its reports (evidence and attribution).
#[utoipa::path(get, path = "/api/v1/cases/{id}", tag = "desk", params(("id" = i64, Path)),
    responses((status = 200, body = answers::CaseAnswer), (status = 404, body = crate::ErrorBody)))]
pub async fn case_show(
    _: Viewer,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult {
    let view = state.desk()?.case(id).await?;
    ok(answers::CaseAnswer {
        case: view.case,
        reports: view
            .reports
            .iter()
            .map(answers::StoredReportAnswer::from)
            .collect(),
    })
}

/// `POST /api/v1/cases/{id}/confirm`: confirms the case as abuse: a strike, and the
/// ladder step the policy gives (a proposal where approval is needed). Operator.
#[utoipa::path(post, path = "/api/v1/cases/{id}/confirm", tag = "desk", params(("id" = i64, Path)),
    responses((status = 200, body = answers::EnforcedAnswer), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn case_confirm(
    who: Operator,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult {
    let desk = state.desk()?;
    let enforced = desk.confirm(id, who.user.clone(), desk_now(&state)).await?;
    let mut value = answers::EnforcedAnswer::from(&enforced);
    (value.runs, value.runs_error) = crate::api_desk::run_queued(&desk, desk_now(&state)).await;
    who.audit(
        &state,
        "case.confirm",
        id.to_string(),
        answers::to_value(&value),
    );
    ok(value)
}

/// `POST /api/v1/cases/{id}/export`: the case's evidence bundle (case, reports, raw
/// messages, manifest) as JSON: each file's name, SHA-256 and text. Viewer (it
/// changes nothing but is audited: evidence leaves the desk).
#[utoipa::path(post, path = "/api/v1/cases/{id}/export", tag = "desk", params(("id" = i64, Path)),
    responses((status = 200, body = answers::Export), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn case_export(
    who: Viewer,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult {
    let desk = state.desk()?;
    let scratch = tempfile_dir()?;
    let export = desk
        .export(id, scratch.path().to_path_buf(), desk_now(&state))
        .await?;
    let mut files = Vec::new();
    for (name, sha256) in &export.files {
        let bytes = std::fs::read(export.folder.join(name))
            .map_err(|e| ApiError::unavailable(format!("cannot read the export: {e}")))?;
        files.push(answers::ExportFile {
            name: name.clone(),
            sha256: sha256.clone(),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    let value = answers::Export { case_id: id, files };
    who.audit(
        &state,
        "case.export",
        id.to_string(),
        json!({ "files": export.files.len() }),
    );
    ok(value)
}

fn tempfile_dir() -> Result<tempfile::TempDir, ApiError> {
    tempfile::tempdir().map_err(|e| ApiError::unavailable(format!("no scratch directory: {e}")))
}

/// `POST /api/v1/claims`: records a claim (a counter-notice) against cases. Operator.
#[utoipa::path(post, path = "/api/v1/claims", tag = "desk", request_body = spamgate_desk::ladder::Claim,
    responses((status = 201, body = answers::ClaimAdded), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn claim_add(
    who: Operator,
    State(state): State<AdminState>,
    ApiJson(claim): ApiJson<spamgate_desk::ladder::Claim>,
) -> ApiResult {
    let desk = state.desk()?;
    let id = desk
        .claim(claim.clone(), who.user.clone(), desk_now(&state))
        .await?;
    let value = answers::ClaimAdded { id, claim };
    who.audit(
        &state,
        "claim.add",
        id.to_string(),
        answers::to_value(&value),
    );
    created(value)
}

// --- users and tokens (admin)

fn parse_role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown role {text:?}: viewer, operator, approver or admin"
        ))
    })
}

/// `GET /api/v1/users`. Admin.
#[utoipa::path(get, path = "/api/v1/users", tag = "admin",
    responses((status = 200, body = answers::Users), (status = 403, body = crate::ErrorBody)))]
pub async fn users_list(_: Admin, State(state): State<AdminState>) -> ApiResult {
    let users = state.users().users()?;
    ok(answers::Users {
        users: users.iter().map(answers::UserAnswer::from).collect(),
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    pub name: String,
    #[schema(value_type = spamgate_store::users::Role)]
    pub role: String,
    pub password: String,
}

/// `POST /api/v1/users`: adds a user. Admin. 409 when the name exists.
#[utoipa::path(post, path = "/api/v1/users", tag = "admin", request_body = UserRequest,
    responses((status = 201, body = answers::UserAnswer), (status = 403, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn user_add(
    who: Admin,
    State(state): State<AdminState>,
    ApiJson(body): ApiJson<UserRequest>,
) -> ApiResult {
    let role = parse_role(&body.role)?;
    let user = state
        .users()
        .add_user(&body.name, role, &body.password)
        .await?;
    let value = answers::UserAnswer::from(&user);
    who.audit(
        &state,
        "user.add",
        user.name.clone(),
        answers::to_value(&value),
    );
    created(value)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    #[schema(value_type = Option<spamgate_store::users::Role>)]
    pub role: Option<String>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
}

/// `PATCH /api/v1/users/{name}`: role, disabled, password. Admin.
#[utoipa::path(patch, path = "/api/v1/users/{name}", tag = "admin",
    params(("name" = String, Path)), request_body = UserChange,
    responses((status = 200, body = answers::UserAnswer), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn user_change(
    who: Admin,
    State(state): State<AdminState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<UserChange>,
) -> ApiResult {
    // Checked before anything is written: a bad field changes nothing.
    let role = body.role.as_deref().map(parse_role).transpose()?;
    let users = state.users();
    let mut user = users.user(&name)?;
    if let Some(password) = &body.password {
        user = users.set_password(&name, password).await?;
    }
    if let Some(role) = role {
        user = users.set_role(&name, role)?;
    }
    if let Some(disabled) = body.disabled {
        user = users.set_disabled(&name, disabled)?;
    }
    let value = answers::UserAnswer::from(&user);
    let mut detail = answers::to_value(&value);
    detail["password_changed"] = json!(body.password.is_some());
    who.audit(&state, "user.change", user.name.clone(), detail);
    ok(value)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokensQuery {
    pub user: Option<String>,
}

/// `GET /api/v1/tokens?user=`: tokens, never their secrets. Admin.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "admin", params(TokensQuery),
    responses((status = 200, body = answers::Tokens), (status = 403, body = crate::ErrorBody)))]
pub async fn tokens_list(
    _: Admin,
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<TokensQuery>,
) -> ApiResult {
    let tokens = state.users().tokens(q.user.as_deref())?;
    ok(answers::Tokens {
        tokens: tokens.iter().map(answers::TokenAnswer::from).collect(),
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub user: String,
    #[serde(default)]
    pub label: String,
    pub expires_at: Option<u64>,
}

/// `POST /api/v1/tokens`: creates a token; `secret` is in this answer only. Admin.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "admin", request_body = TokenRequest,
    responses((status = 201, body = answers::NewTokenAnswer), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn token_add(
    who: Admin,
    State(state): State<AdminState>,
    ApiJson(body): ApiJson<TokenRequest>,
) -> ApiResult {
    let token = state
        .users()
        .add_token(&body.user, &body.label, body.expires_at)?;
    let record = answers::TokenAnswer::from(&token.record);
    who.audit(
        &state,
        "token.add",
        token.record.id.to_string(),
        answers::to_value(&record),
    );
    created(answers::NewTokenAnswer {
        token: record,
        secret: token.secret,
    })
}

/// `DELETE /api/v1/tokens/{id}`: revokes a token. Admin.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "admin", params(("id" = i64, Path)),
    responses((status = 200, body = answers::TokenAnswer), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn token_revoke(
    who: Admin,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult {
    let token = state.users().revoke_token(id)?;
    let value = answers::TokenAnswer::from(&token);
    who.audit(
        &state,
        "token.revoke",
        id.to_string(),
        answers::to_value(&value),
    );
    ok(value)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub user: Option<String>,
    /// Entries whose action starts with this (`allow.`, `ladder.`).
    pub action: Option<String>,
    /// Entries older than this id (paging).
    pub before: Option<i64>,
    pub limit: Option<usize>,
}

/// `GET /api/v1/audit`: the audit trail, newest first. Viewer.
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = answers::AuditEntries)))]
pub async fn audit(
    _: Viewer,
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult {
    let entries = state.users().audit_log(&AuditFilter {
        user: q.user,
        action_prefix: q.action,
        before: q.before,
        limit: limit(q.limit),
    })?;
    ok(answers::AuditEntries { entries })
}
