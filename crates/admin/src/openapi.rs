//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and served at `GET /api/v1/openapi.json` without authentication (it
//! describes the interface, holds no data). Request bodies have schemas; answers are
//! described as JSON objects (their fields are in docs/api.md).

use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

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

#[derive(OpenApi)]
#[openapi(
    info(title = "spamgate admin API", description = "JSON over HTTP for spamgate's filters and abuse desk; see docs/api.md"),
    modifiers(&Security),
    security(("token" = []), ("session" = [])),
    paths(
        auth::login, auth::logout, auth::session,
        api::stats, api::check, api::greylist_find, api::greylist_delete,
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
    doc
}

pub async fn serve() -> axum::response::Response {
    axum::Json(document()).into_response()
}
