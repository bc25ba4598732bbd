//! [`AdminState`]: what every handler of the API and the console gets, the
//! application layer's services and the listener's settings.

use std::sync::Arc;

use ipnet::IpNet;
use spamgate_app::desk::{DeskService, DeskSettings};
use spamgate_app::users::UserService;
use spamgate_app::{Service, SystemClock};
use spamgate_desk::store::DeskStore;
use spamgate_dns::Dns;
use spamgate_engine::greylist::KeyScheme;
use spamgate_store::Recovering;

use crate::error::ApiError;

/// The daemon's application service, as `spamgate serve` builds it.
pub type AppService = Service<Recovering, Dns, SystemClock>;

/// The listener's own settings (`[admin]` in the configuration).
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Mark the session cookie `Secure` (on with TLS, or behind a TLS reverse proxy).
    pub secure_cookie: bool,
    /// Peers whose `X-Forwarded-For` is believed (the reverse proxy's address).
    pub trusted_proxies: Vec<IpNet>,
    /// The largest request body accepted, in bytes; beyond it a 413.
    pub body_limit: usize,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            secure_cookie: false,
            trusted_proxies: Vec::new(),
            body_limit: 1024 * 1024,
        }
    }
}

/// The abuse desk, when one is configured.
#[derive(Clone)]
pub struct DeskParts {
    pub store: Arc<dyn DeskStore>,
    pub settings: DeskSettings,
}

/// The state shared by every handler: cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct AdminState(Arc<Inner>);

struct Inner {
    service: Arc<AppService>,
    users: Arc<UserService>,
    desk: Option<DeskParts>,
    keys: KeyScheme,
    settings: AdminSettings,
}

impl AdminState {
    pub fn new(
        service: Arc<AppService>,
        users: Arc<UserService>,
        desk: Option<DeskParts>,
        keys: KeyScheme,
        settings: AdminSettings,
    ) -> Self {
        AdminState(Arc::new(Inner {
            service,
            users,
            desk,
            keys,
            settings,
        }))
    }

    /// Decisions, the store (greylist, allow-list, accounts), metrics, the clock.
    pub fn service(&self) -> &Arc<AppService> {
        &self.0.service
    }

    /// Users, tokens, sessions, the audit trail.
    pub fn users(&self) -> &UserService {
        &self.0.users
    }

    /// The greylist key scheme (a client address → its network), as configured.
    pub fn keys(&self) -> &KeyScheme {
        &self.0.keys
    }

    pub fn settings(&self) -> &AdminSettings {
        &self.0.settings
    }

    /// The desk's service over the daemon's store; 503 when no desk is configured.
    pub fn desk(&self) -> Result<DeskService<'_, Recovering>, ApiError> {
        let parts = self
            .0
            .desk
            .as_ref()
            .ok_or_else(|| ApiError::unavailable("the abuse desk is not available"))?;
        Ok(DeskService::new(
            parts.store.clone(),
            self.0.service.store(),
            parts.settings.clone(),
        ))
    }

    /// The desk's store and settings, for front-ends that build their own
    /// [`DeskService`] (the console).
    pub fn desk_parts(&self) -> Option<&DeskParts> {
        self.0.desk.as_ref()
    }

    pub fn has_desk(&self) -> bool {
        self.0.desk.is_some()
    }
}
