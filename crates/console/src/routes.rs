//! The console's HTTP routes, mounted on the admin listener with
//! `spamgate_admin::router(state, console::routes(limits))`: the admin crate's
//! middleware has already authenticated the caller and checked the CSRF token of every
//! POST; these handlers translate a request into a [`pages`](crate::pages) call and its
//! result into HTML. A caller without a session is sent to `/login`.
//!
//! Paths: `GET /login` (the form; `POST /login` and `POST /logout` are the admin
//! crate's) and everything under `/console/`. `/` stays the admin crate's (401 to
//! strangers: nothing but `/health` and the login answers them).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use spamgate_admin::{AdminState, ApiForm, Principal};
use spamgate_desk::case::CaseId;

use crate::i18n::Lang;
use crate::pages::{
    self, AllowForm, CheckForm, ClaimForm, Flash, GreylistSearch, Outcome, Refusal, StepForm,
};
use crate::{Console, Viewer};

/// The cookie that keeps the language a user switched to.
pub const LANG_COOKIE: &str = "spamgate_lang";

/// What the console needs beside the admin state (the policy decoder's limits, the
/// display zone, the OP25B reader), as a request extension.
#[derive(Clone)]
struct Limits(Arc<crate::Options>);

/// The console's routes, to be merged into the admin router.
pub fn routes(options: crate::Options) -> Router<AdminState> {
    Router::new()
        .route("/login", get(login_page))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(dashboard))
        .route("/console/filters", get(filters))
        .route("/console/filters/check", post(check))
        .route("/console/filters/classify", get(classify))
        .route("/console/filters/allow/add", post(allow_add))
        .route("/console/filters/allow/remove", post(allow_remove))
        .route("/console/filters/greylist/delete", post(greylist_delete))
        .route("/console/desk", get(desk))
        .route("/console/desk/cases/{id}", get(case))
        .route("/console/desk/cases/{id}/step", post(case_step))
        .route("/console/desk/cases/{id}/claim", post(claim))
        .route("/console/desk/cases/{id}/export", post(export))
        .route("/console/desk/reports/{id}/assign", post(assign))
        .layer(Extension(Limits(Arc::new(options))))
}

type AppConsole = Console<spamgate_store::Recovering, spamgate_dns::Dns, spamgate_app::SystemClock>;

fn console(state: &AdminState, limits: &Limits) -> AppConsole {
    Console {
        service: state.service().clone(),
        desk: state.desk_parts().cloned(),
        codec_limits: limits.0.codec_limits,
        zone: limits.0.zone.clone(),
        op25b: limits.0.op25b.clone(),
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LangQuery {
    lang: Option<String>,
}

/// The page's language and, when `?lang=` switched it, the cookie that keeps it.
fn language(headers: &HeaderMap, query: Option<&str>) -> (Lang, Option<HeaderValue>) {
    let asked = query
        .and_then(serde_urlencoded_lang)
        .and_then(|l| Lang::parse(&l));
    if let Some(lang) = asked {
        let cookie = format!(
            "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Strict",
            lang.code()
        );
        return (lang, HeaderValue::from_str(&cookie).ok());
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    (Lang::choose(cookie(headers, LANG_COOKIE), accept), None)
}

fn serde_urlencoded_lang(query: &str) -> Option<String> {
    Query::<LangQuery>::try_from_uri(&format!("/?{query}").parse().ok()?)
        .ok()
        .and_then(|q| q.0.lang)
}

fn viewer(p: &Principal, lang: Lang) -> Viewer {
    Viewer {
        user: p.user.clone(),
        role: p.role,
        csrf: p.csrf().unwrap_or_default().to_string(),
        lang,
    }
}

/// An HTML page with the language cookie when it was switched.
fn page(status: StatusCode, html: String, set_lang: Option<HeaderValue>) -> Response {
    let mut response = (status, Html(html)).into_response();
    if let Some(cookie) = set_lang {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// No session: to the login form, coming back here afterwards (GET pages only; a POST
/// without a session was already refused by the middleware's CSRF check or lands here).
fn to_login(path: &str) -> Response {
    let next: String = path
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "/-_.".contains(*c))
        .collect();
    Redirect::to(&format!("/login?next={next}")).into_response()
}

/// A form posted without a session: 401, nothing done (the page links to the login).
fn unauthorized() -> Response {
    let lang = Lang::En;
    page(
        StatusCode::UNAUTHORIZED,
        pages::message_page(
            None,
            lang,
            lang.t("login"),
            "No session: log in first (/login).",
        ),
        None,
    )
}

fn refusal_status(r: &Refusal) -> StatusCode {
    match r {
        Refusal::Role => StatusCode::FORBIDDEN,
        Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
        Refusal::NotFound => StatusCode::NOT_FOUND,
        Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn refusal_text(r: &Refusal, lang: Lang) -> String {
    match r {
        Refusal::Role => lang.t("refused").to_string(),
        Refusal::Invalid(text) | Refusal::Unavailable(text) => text.clone(),
        Refusal::NotFound => "not found".to_string(),
    }
}

fn flash_of(outcome: &Outcome, lang: Lang) -> Flash {
    match outcome {
        Ok(text) => Flash {
            ok: true,
            text: format!("{} {text}", lang.t("saved")),
        },
        Err(r) => Flash {
            ok: false,
            text: refusal_text(r, lang),
        },
    }
}

fn status_of(outcome: &Outcome) -> StatusCode {
    match outcome {
        Ok(_) => StatusCode::OK,
        Err(r) => refusal_status(r),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginQuery {
    next: String,
    failed: Option<String>,
}

async fn login_page(
    principal: Option<Principal>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Query<LoginQuery>,
) -> Response {
    if principal.is_some() {
        return Redirect::to("/console/").into_response();
    }
    let (lang, set) = language(&headers, raw.as_deref());
    let next = if q.next.starts_with("/console") {
        q.next
    } else {
        "/console/".into()
    };
    page(
        StatusCode::OK,
        pages::login_page(lang, "", &next, q.failed.is_some()),
        set,
    )
}

async fn dashboard(
    State(state): State<AdminState>,
    Extension(limits): Extension<Limits>,
    principal: Option<Principal>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(p) = principal else {
        return to_login("/console/");
    };
    let (lang, set) = language(&headers, raw.as_deref());
    let html = console(&state, &limits).dashboard(&viewer(&p, lang)).await;
    page(StatusCode::OK, html, set)
}

async fn filters(
    State(state): State<AdminState>,
    Extension(limits): Extension<Limits>,
    principal: Option<Principal>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(search): Query<GreylistSearch>,
) -> Response {
    let Some(p) = principal else {
        return to_login("/console/filters");
    };
    let (lang, set) = language(&headers, raw.as_deref());
    let html = console(&state, &limits)
        .filters(&viewer(&p, lang), &search, &CheckForm::default(), None)
        .await;
    page(StatusCode::OK, html, set)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ClassifyQuery {
    names: String,
}

/// The classify form: a GET (it changes nothing), `names` one per line.
async fn classify(
    State(state): State<AdminState>,
    Extension(limits): Extension<Limits>,
    principal: Option<Principal>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(query): Query<ClassifyQuery>,
) -> Response {
    let Some(p) = principal else {
        return to_login("/console/filters");
    };
    let (lang, set) = language(&headers, raw.as_deref());
    let html = console(&state, &limits).classify(&viewer(&p, lang), &query.names);
    page(StatusCode::OK, html, set)
}

async fn check(
    State(state): State<AdminState>,
    Extension(limits): Extension<Limits>,
    principal: Option<Principal>,
    headers: HeaderMap,
    ApiForm(mut form): ApiForm<CheckForm>,
) -> Response {
    let Some(p) = principal else {
        return unauthorized();
    };
    let (lang, _) = language(&headers, None);
    let console = console(&state, &limits);
    let (status, flash) = match console.check(&form).await {
        Ok(result) => {
            form.result = Some(result);
            (StatusCode::OK, None)
        }
        Err(r) => (
            refusal_status(&r),
            Some(Flash {
                ok: false,
                text: refusal_text(&r, lang),
            }),
        ),
    };
    let html = console
        .filters(
            &viewer(&p, lang),
            &GreylistSearch::default(),
            &form,
            flash.as_ref(),
        )
        .await;
    page(status, html, None)
}

/// A filters change: carried out (role-checked in `pages`), audited, then the filters
/// page with the outcome.
async fn filters_change(
    state: AdminState,
    limits: Limits,
    p: Principal,
    headers: &HeaderMap,
    action: &str,
    target: String,
    outcome: impl std::future::Future<Output = Outcome>,
) -> Response {
    let (lang, _) = language(headers, None);
    let outcome = outcome.await;
    if let Ok(text) = &outcome {
        p.audit(
            &state,
            action,
            target,
            serde_json::json!({ "via": "console", "result": text }),
        );
    }
    let flash = flash_of(&outcome, lang);
    let html = console(&state, &limits)
        .filters(
            &viewer(&p, lang),
            &GreylistSearch::default(),
            &CheckForm::default(),
            Some(&flash),
        )
        .await;
    page(status_of(&outcome), html, None)
}

async fn allow_add(
    State(state): State<AdminState>,
    Extension(limits): Extension<Limits>,
    principal: Option<Principal>,
    headers: HeaderMap,
    ApiForm(form): ApiForm<AllowForm>,
) -> Response {
    let Some(p) = principal else {
        return unauthorized();
    };
    let c = console(&state, &limits);
    let v = viewer(&p, Lang::En);
    let target = format!("{} {}", form.kind, form.value);
    filters_change(
        state.clone(),
        limits,
        p.clone(),
        &headers,
        "allow.add",
        target,
        async { c.allow_add(&v, &form).await },
    )
    .await
}

async fn allow_remove(
    State(state): State<AdminState>,
    Extension(limits): Extension<Limits>,
    principal: Option<Principal>,
    headers: HeaderMap,
    ApiForm(form): ApiForm<AllowForm>,
) -> Response {
    let Some(p) = principal else {
        return unauthorized();
    };
    let c = console(&state, &limits);
    let v = viewer(&p, Lang::En);
    let target = format!("{} {}", form.kind, form.value);
    filters_change(
        state.clone(),
        limits,
        p.clone(),
        &headers,
        "allow.remove",
        target,
        async { c.allow_remove(&v, &form).await },
    )
    .await
}

async fn greylist_delete(
    State(state): State<AdminState>,
    Extension(limits): Extension<Limits>,
    principal: Option<Principal>,
    headers: HeaderMap,
    ApiForm(form): ApiForm<GreylistSearch>,
) -> Response {
    let Some(p) = principal else {
        return unauthorized();
    };
    let c = console(&state, &limits);
    let v = viewer(&p, Lang::En);
    let target = format!("{form:?}");
    filters_change(
        state.clone(),
        limits,
        p.clone(),
        &headers,
        "greylist.delete",
        target,
        async { c.greylist_delete(&v, &form).await },
    )
    .await
}

async fn desk(
    State(state): State<AdminState>,
    Extension(limits): Extension<Limits>,
    principal: Option<Principal>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(p) = principal else {
        return to_login("/console/desk");
    };
    let (lang, set) = language(&headers, raw.as_deref());
    let html = console(&state, &limits).desk(&viewer(&p, lang), None).await;
    page(StatusCode::OK, html, set)
}

async fn case_response(
    state: &AdminState,
    limits: Limits,
    v: &Viewer,
    id: CaseId,
    flash: Option<&Flash>,
    status: StatusCode,
    set: Option<HeaderValue>,
) -> Response {
    match console(state, &limits).case_page(v, id, flash).await {
        Ok(html) => page(status, html, set),
        Err(r) => page(
            refusal_status(&r),
            pages::message_page(Some(v), v.lang, v.lang.t("case"), &refusal_text(&r, v.lang)),
            set,
        ),
    }
}

async fn case(
    State(state): State<AdminState>,
    Extension(limits): Extension<Limits>,
    principal: Option<Principal>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Path(id): Path<CaseId>,
) -> Response {
    let Some(p) = principal else {
        return to_login(&format!("/console/desk/cases/{id}"));
    };
    let (lang, set) = language(&headers, raw.as_deref());
    case_response(
        &state,
        limits,
        &viewer(&p, lang),
        id,
        None,
        StatusCode::OK,
        set,
    )
    .await
}

async fn case_step(
    State(state): State<AdminState>,
    Extension(limits): Extension<Limits>,
    principal: Option<Principal>,
    headers: HeaderMap,
    Path(id): Path<CaseId>,
    ApiForm(form): ApiForm<StepForm>,
) -> Response {
    let Some(p) = principal else {
        return unauthorized();
    };
    let (lang, _) = language(&headers, None);
    let v = viewer(&p, lang);
    let outcome = console(&state, &limits).case_step(&v, id, &form).await;
    if let Ok(text) = &outcome {
        p.audit(
            &state,
            &format!("desk.{}", form.step),
            format!("case {id}"),
            serde_json::json!({ "via": "console", "reason": form.reason, "result": text }),
        );
    }
    let flash = flash_of(&outcome, lang);
    case_response(
        &state,
        limits,
        &v,
        id,
        Some(&flash),
        status_of(&outcome),
        None,
    )
    .await
}

async fn claim(
    State(state): State<AdminState>,
    Extension(limits): Extension<Limits>,
    principal: Option<Principal>,
    headers: HeaderMap,
    Path(id): Path<CaseId>,
    ApiForm(form): ApiForm<ClaimForm>,
) -> Response {
    let Some(p) = principal else {
        return unauthorized();
    };
    let (lang, _) = language(&headers, None);
    let v = viewer(&p, lang);
    let outcome = console(&state, &limits).claim(&v, id, &form).await;
    if let Ok(text) = &outcome {
        p.audit(
            &state,
            "desk.claim",
            format!("case {id}"),
            serde_json::json!({ "via": "console", "result": text }),
        );
    }
    let flash = flash_of(&outcome, lang);
    case_response(
        &state,
        limits,
        &v,
        id,
        Some(&flash),
        status_of(&outcome),
        None,
    )
    .await
}

async fn export(
    State(state): State<AdminState>,
    Extension(limits): Extension<Limits>,
    principal: Option<Principal>,
    headers: HeaderMap,
    Path(id): Path<CaseId>,
) -> Response {
    let Some(p) = principal else {
        return unauthorized();
    };
    let (lang, _) = language(&headers, None);
    let v = viewer(&p, lang);
    match console(&state, &limits).export(&v, id).await {
        Ok((name, bytes)) => {
            p.audit(
                &state,
                "desk.export",
                format!("case {id}"),
                serde_json::json!({ "via": "console", "file": name }),
            );
            let disposition = format!("attachment; filename=\"{name}\"");
            (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/x-tar"),
                    ),
                    (
                        header::CONTENT_DISPOSITION,
                        HeaderValue::from_str(&disposition)
                            .unwrap_or(HeaderValue::from_static("attachment")),
                    ),
                ],
                bytes,
            )
                .into_response()
        }
        Err(r) => {
            let flash = Flash {
                ok: false,
                text: refusal_text(&r, lang),
            };
            case_response(
                &state,
                limits,
                &v,
                id,
                Some(&flash),
                refusal_status(&r),
                None,
            )
            .await
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AssignForm {
    customer: String,
}

async fn assign(
    State(state): State<AdminState>,
    Extension(limits): Extension<Limits>,
    principal: Option<Principal>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    ApiForm(form): ApiForm<AssignForm>,
) -> Response {
    let Some(p) = principal else {
        return unauthorized();
    };
    let (lang, _) = language(&headers, None);
    let v = viewer(&p, lang);
    let c = console(&state, &limits);
    let outcome = c.assign(&v, id, form.customer.trim()).await;
    if let Ok(text) = &outcome {
        p.audit(
            &state,
            "desk.assign",
            format!("report {id}"),
            serde_json::json!({ "via": "console", "result": text }),
        );
    }
    let flash = flash_of(&outcome, lang);
    page(status_of(&outcome), c.desk(&v, Some(&flash)).await, None)
}
