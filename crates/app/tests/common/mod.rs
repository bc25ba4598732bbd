//! A real submission-account store and desk store in a temporary directory, with
//! customer C-HANAKO (Japanese, active), shared by the desk tests.
#![allow(dead_code)]

use std::sync::Arc;

use spamgate_app::desk::open_sqlite_desk;
use spamgate_desk::case::{Customer, CustomerStatus, Language};
use spamgate_desk::store::DeskStore;
use spamgate_engine::outbound::Account;
use spamgate_store::{AccountAdmin, SqliteOptions, SqliteStore};

pub struct Stores {
    pub _dir: tempfile::TempDir,
    pub accounts: SqliteStore,
    pub desk: Arc<dyn DeskStore>,
}

/// The stores with C-HANAKO; `accounts` exist (active, updated at `at`), and those in
/// `linked` are linked to the customer.
pub async fn stores_with(accounts: &[&str], linked: &[&str], at: u64) -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let account_store =
        SqliteStore::open(&dir.path().join("spamgate.db"), SqliteOptions::default()).unwrap();
    let desk = open_sqlite_desk(&dir.path().join("desk.db")).unwrap();
    desk.upsert_customer(&Customer {
        id: "C-HANAKO".into(),
        name: "Hanako".into(),
        contact: "hanako@example.jp".into(),
        language: Language::Ja,
        plan: "home".into(),
        status: CustomerStatus::Active,
    })
    .unwrap();
    for name in accounts {
        account_store
            .put_account(&Account::new(name, at))
            .await
            .unwrap();
    }
    for name in linked {
        desk.link_account(name, "C-HANAKO").unwrap();
    }
    Stores {
        _dir: dir,
        accounts: account_store,
        desk,
    }
}
