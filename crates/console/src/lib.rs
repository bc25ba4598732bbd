//! spamgate's operator web console: server-rendered HTML pages (minijinja templates
//! embedded in the binary, English and Japanese, SVG charts drawn on the server, no
//! script) for the dashboard, the filters and the abuse desk. A front-end like the CLI:
//! every page reads and every form changes through the application layer
//! (`spamgate-app`: [`Service`], `AllowService`, `AccountService`, `DeskService`) and
//! only translates; the check form runs the very `spamgate_postfix::answer` that
//! `spamgate check` runs, in dry-run mode.
//!
//! Layout: [`pages`] (each page's data and the forms' effects, independent of HTTP),
//! [`dashboard`] (the figures, pure), [`chart`] (SVG), [`i18n`] (the two languages),
//! [`views`] (the templates), [`tar`] (the case export as one download).
#![forbid(unsafe_code)]

pub mod chart;
pub mod dashboard;
pub mod i18n;
pub mod pages;
pub mod routes;
pub mod tar;
pub mod views;

use std::sync::Arc;

use spamgate_app::Service;
use spamgate_app::display::DisplayZone;
use spamgate_app::op25b_hits::Op25bMonitor;
use spamgate_store::FullStore;

pub use i18n::Lang;

/// What the console works on: the daemon's own service (its store, metrics and
/// settings) and, when configured, the desk.
pub struct Console<S, R, C> {
    pub service: Arc<Service<S, R, C>>,
    pub desk: Option<DeskParts>,
    /// The policy decoder's limits, so a check decodes exactly as the daemon would.
    pub codec_limits: spamgate_policy::Limits,
    /// `[server] display_timezone`: every time on every page is shown in it.
    pub zone: DisplayZone,
    /// The daemon's reader of the kernel's OP25B counters (says "not configured"
    /// without `[op25b]`).
    pub op25b: Arc<Op25bMonitor>,
}

/// What the console needs beside the admin state, given by the daemon when it mounts
/// [`routes::routes`].
#[derive(Debug, Clone)]
pub struct Options {
    pub codec_limits: spamgate_policy::Limits,
    pub zone: DisplayZone,
    pub op25b: Arc<Op25bMonitor>,
}

impl Options {
    /// Default limits, UTC, no OP25B: for tests.
    pub fn new(codec_limits: spamgate_policy::Limits) -> Options {
        Options {
            codec_limits,
            zone: DisplayZone::utc(),
            op25b: Arc::new(Op25bMonitor::new(None)),
        }
    }
}

pub use spamgate_admin::DeskParts;
pub use spamgate_store::users::Role;

/// Who is looking: the signed-in user, their role, and the session's CSRF token that
/// every form of the page carries.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    pub lang: Lang,
}

impl Viewer {
    /// Operators and above change filters, accounts and cases.
    pub fn can_change(&self) -> bool {
        self.role >= Role::Operator
    }

    /// Approvers and above approve ladder steps that need a second person.
    pub fn can_approve(&self) -> bool {
        self.role >= Role::Approver
    }
}

/// Bounds every console-side trait the pages need.
pub trait ConsoleStore: FullStore + Clone {}
impl<T: FullStore + Clone> ConsoleStore for T {}
