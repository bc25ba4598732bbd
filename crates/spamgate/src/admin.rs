//! The `[admin]` listener of `spamgate serve`: bound with the other listeners, served
//! by `spamgate-admin` over the daemon's own [`Service`](spamgate_app::Service).

use std::sync::Arc;

use axum::Router;
use spamgate_admin::{AdminSettings, AdminState, AppService, DeskParts};
use tokio::net::TcpListener;
use tracing::warn;

use crate::config::Config;
use crate::daemon::{Fatal, exit};

/// The bound admin listener, its TLS configuration and its state's parts.
pub struct AdminListener {
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: spamgate_admin::ListenerLimits,
}

/// Binds `[admin] listen` (when set) and loads its certificate, so that a bad address
/// or certificate stops `serve` before it starts answering (exit 71 / 78).
pub async fn bind(config: &Config) -> Result<Option<AdminListener>, Fatal> {
    let admin = &config.admin;
    let Some(addr) = admin.listen_addr().map_err(|e| Fatal {
        code: exit::CONFIG,
        error: e.into(),
    })?
    else {
        return Ok(None);
    };
    let tls = match (&admin.tls_cert, &admin.tls_key) {
        (Some(cert), Some(key)) => Some(spamgate_admin::tls::server_config(cert, key).map_err(
            |e| Fatal {
                code: exit::CONFIG,
                error: e.into(),
            },
        )?),
        _ => None,
    };
    let listener = TcpListener::bind(addr).await.map_err(|e| Fatal {
        code: exit::OS,
        error: anyhow::anyhow!("cannot listen on {addr} (admin): {e}"),
    })?;
    Ok(Some(AdminListener {
        listener,
        tls,
        limits: admin.listener_limits(),
    }))
}

/// The admin state over the daemon's service: the users file, and the desk when its
/// file opens (without it the desk's endpoints answer 503).
pub fn state(config: &Config, service: Arc<AppService>) -> Result<AdminState, Fatal> {
    let users = crate::admin_cli::open_users(config)?;
    let desk = match config.desk.settings() {
        Ok(settings) => {
            let path = config.desk.store_path(&config.store);
            match spamgate_app::desk::open_sqlite_desk(&path) {
                Ok(store) => Some(DeskParts { store, settings }),
                Err(e) => {
                    warn!(path = %path.display(), "admin API without the desk: {e}");
                    None
                }
            }
        }
        Err(e) => {
            return Err(Fatal {
                code: exit::CONFIG,
                error: e.into(),
            });
        }
    };
    let admin = &config.admin;
    let settings = AdminSettings {
        secure_cookie: admin.secure_cookie || admin.tls_cert.is_some(),
        trusted_proxies: admin.trusted_proxy_nets().map_err(|e| Fatal {
            code: exit::CONFIG,
            error: e.into(),
        })?,
        body_limit: admin.max_body_size,
    };
    Ok(AdminState::new(
        service,
        Arc::new(users),
        desk,
        config.engine_config().keys,
        settings,
    ))
}

/// Routes mounted beside the API on the admin listener: the web console's pages, whose
/// check form decodes requests under the policy listener's own limits, whose times are
/// in `[server] display_timezone`, and whose dashboard reads the kernel's OP25B counters
/// (when `[op25b]` names pools) through a monitor sampled here once a minute until
/// `shutdown`.
pub fn extra_routes(
    config: &Config,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Router<AdminState> {
    use spamgate_app::op25b_hits::{HitsSource, Op25bMonitor};
    let source = (!config.op25b.pools.is_empty()).then(|| HitsSource {
        table: config.op25b.table.clone(),
        nft: config.desk.op25b_nft.clone(),
    });
    let monitor = Arc::new(Op25bMonitor::new(source));
    if monitor.is_configured() {
        let sampler = monitor.clone();
        tokio::spawn(async move {
            let now = || {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            };
            sampler
                .run(std::time::Duration::from_secs(60), now, shutdown)
                .await;
        });
    }
    spamgate_console::routes::routes(spamgate_console::Options {
        codec_limits: crate::daemon::connection_limits(&config.server).codec,
        zone: config.server.display_zone().unwrap_or_default(),
        op25b: monitor,
    })
}

/// Serves the admin listener until `shutdown`.
pub async fn serve(
    bound: AdminListener,
    state: AdminState,
    extra: Router<AdminState>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let app = spamgate_admin::router(state, extra);
    spamgate_admin::serve(bound.listener, bound.tls, app, bound.limits, shutdown).await;
}
