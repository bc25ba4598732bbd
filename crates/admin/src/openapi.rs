//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and served at `GET /api/v1/openapi.json` to any caller (like every
//! endpoint but `/health`, it needs one). Every request body, parameter and answer
//! has a schema derived from the type the handler reads or serializes
//! ([`crate::answers`], and the application layer's values with their `openapi`
//! feature). The error answers every endpoint can give for reasons of its kind
//! (authentication, CSRF, malformed input, oversized bodies, the store) are added by
//! [`CommonErrors`]; the endpoint's own (404, 409, a role) are in its annotation.
//! `crates/spamgate/tests/api_openapi.rs` checks the document against the router and
//! every answer of a real daemon against it.

use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, Response, ResponseBuilder};

use crate::{api, auth};

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("an API token from `spamgate admin token add`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                auth::SESSION_COOKIE,
                "the browser session from POST /login; changes also need X-CSRF-Token",
            ))),
        );
    }
}

/// The error answers an endpoint gives for reasons common to its kind, added to every
/// operation that does not already list them:
/// - 401 without a caller (all but `/health`, the document and `POST /login`) and
///   for a wrong credential (all);
/// - 403 on a change made with a session cookie and no CSRF token;
/// - 400 for a malformed parameter or body; 413 for a body over `body_limit`; 415
///   for a JSON body sent as another content type;
/// - 503 when the store (or the desk) is unavailable.
pub struct CommonErrors;

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
            .build(),
    )
}

fn add_error(op: &mut Operation, status: u16, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| error_response(description));
}

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let open = path.as_str() == "/health";
            let methods = [
                ("get", item.get.as_mut()),
                ("put", item.put.as_mut()),
                ("post", item.post.as_mut()),
                ("delete", item.delete.as_mut()),
                ("patch", item.patch.as_mut()),
            ];
            for (method, op) in methods {
                let Some(op) = op else { continue };
                // A credential that is there but wrong is refused even where none is
                // needed (it is never silently ignored).
                add_error(
                    op,
                    401,
                    "no caller, or a wrong, expired or revoked credential",
                );
                if open {
                    continue;
                }
                if path != "/login" && method != "get" {
                    add_error(
                        op,
                        403,
                        "a session without its CSRF token, or a role too low",
                    );
                }
                let has_params = op.parameters.as_ref().is_some_and(|p| {
                    p.iter()
                        .any(|p| matches!(p.parameter_in, ParameterIn::Query | ParameterIn::Path))
                });
                if let Some(body) = &op.request_body {
                    let json = body.content.contains_key("application/json");
                    add_error(op, 400, "a malformed body or parameter");
                    add_error(op, 413, "the body is over the listener's body_limit");
                    if json {
                        add_error(op, 415, "the body is not application/json");
                    }
                } else if has_params {
                    add_error(op, 400, "a malformed parameter");
                }
                add_error(op, 503, "the store or the desk is unavailable");
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "spamgate admin API", description = "JSON over HTTP for spamgate's filters and abuse desk; see docs/api.md"),
    modifiers(&Security, &CommonErrors),
    security(("token" = []), ("session" = [])),
    paths(
        crate::health, serve, auth::login, auth::logout, auth::session,
        api::stats, api::check, api::classify, api::greylist_find, api::greylist_delete,
        api::allow_list, api::allow_add, api::allow_remove,
        api::accounts_list, api::account_show, api::account_limits, api::account_status,
        api::account_events,
        api::customers_list, api::customer_show, api::customer_put, api::customer_link_account,
        api::ladder_step, api::who, api::reports_list, api::report_ingest, api::report_assign,
        api::cases_list, api::case_show, api::case_confirm, api::case_export, api::claim_add,
        api::users_list, api::user_add, api::user_change, api::tokens_list, api::token_add,
        api::token_revoke, api::audit,
    ),
    components(schemas(crate::error::ErrorBody))
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::api_desk::DeskOpsDoc::openapi());
    // The modifier ran on `ApiDoc` alone: once more over the merged paths, so the
    // desk operations list the common errors too (it only adds what is missing).
    utoipa::Modify::modify(&CommonErrors, &mut doc);
    doc
}

/// `GET /api/v1/openapi.json`: this document, to any caller (any role).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
pub async fn serve(_caller: crate::Principal) -> axum::response::Response {
    axum::Json(document()).into_response()
}
