//! OP25B exemptions linked to the abuse desk's customers. An `[op25b] exempt` entry may
//! name a `customer` (a static block carved out of a pool); while the desk has that
//! customer suspended or terminated the entry is left out of the exemption sets. This is
//! the one place that decides the effective exemption set: `op25b render|apply|sync`
//! and the desk's enforcement (a suspension, termination or resume queues an `op25b`
//! delivery that re-runs the sync) both go through it, so a later `op25b sync` by hand
//! cannot bring back a suspended customer's exemption.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spamgate_desk::case::CustomerStatus;
use spamgate_desk::store::{DeskError, DeskStore};
use spamgate_desk::time::UnixTime;
pub use spamgate_op25b::{Exemption, Hit, NftRunner, Op25bConfig, Op25bError, Plan};

/// What the desk needs to re-run `op25b sync` and read `op25b hits`.
#[derive(Debug, Clone)]
pub struct Op25bSettings {
    pub config: Op25bConfig,
    pub nft: NftRunner,
}

#[derive(Debug, thiserror::Error)]
pub enum Op25bServiceError {
    #[error("{0}")]
    Desk(#[from] DeskError),
    #[error("{0}")]
    Op25b(#[from] Op25bError),
}

/// The configuration as it is to be loaded now.
#[derive(Debug, Clone)]
pub struct Effective {
    /// The configuration with the revoked exemptions left out.
    pub config: Op25bConfig,
    /// Exemptions left out: their customer is suspended or terminated.
    pub revoked: Vec<Exemption>,
    /// Customers named by an exemption that the desk does not know (kept in force; a
    /// typo in the file must not silently revoke or hide anything: it is named).
    pub unknown_customers: Vec<String>,
}

/// The effective configuration: `config` without the exemptions of customers the desk
/// has suspended or terminated. Without customer exemptions the desk is not read.
pub fn effective(
    config: &Op25bConfig,
    desk: Option<&dyn DeskStore>,
) -> Result<Effective, DeskError> {
    if !config.has_customer_exemptions() {
        return Ok(Effective {
            config: config.clone(),
            revoked: Vec::new(),
            unknown_customers: Vec::new(),
        });
    }
    let desk = desk.ok_or_else(|| {
        DeskError::Invalid(
            "[op25b] exempt names customers, but the abuse desk's store is not open".into(),
        )
    })?;
    let mut revoked_customers = std::collections::BTreeSet::new();
    let mut unknown = std::collections::BTreeSet::new();
    for customer in config.exempt.iter().filter_map(|e| e.customer.as_deref()) {
        match desk.customer(customer)? {
            Some(c) if c.status != CustomerStatus::Active => {
                revoked_customers.insert(customer.to_string());
            }
            Some(_) => {}
            None => {
                unknown.insert(customer.to_string());
            }
        }
    }
    let (kept, revoked) = config.without_customers(|c| revoked_customers.contains(c));
    Ok(Effective {
        config: kept,
        revoked,
        unknown_customers: unknown.into_iter().collect(),
    })
}

pub fn system_time(now: UnixTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(now.max(0) as u64)
}

/// The plan of the effective configuration at `now` (for `render` and `apply`).
pub fn plan(
    config: &Op25bConfig,
    desk: Option<&dyn DeskStore>,
    now: SystemTime,
) -> Result<(Plan, Effective), Op25bServiceError> {
    let effective = effective(config, desk)?;
    let plan = spamgate_op25b::plan(&effective.config, now)?;
    Ok((plan, effective))
}

/// `op25b sync` of the effective configuration: the loaded table's sets rewritten in
/// one nft transaction, the chains and hit tables untouched.
pub fn sync(
    settings: &Op25bSettings,
    desk: Option<&dyn DeskStore>,
    now: SystemTime,
) -> Result<(Plan, Effective), Op25bServiceError> {
    let (plan, effective) = plan(&settings.config, desk, now)?;
    spamgate_op25b::sync_plan(&plan, &settings.nft)?;
    Ok((plan, effective))
}

/// `op25b apply` of the effective configuration (the whole table, checked first).
pub fn apply(
    settings: &Op25bSettings,
    desk: Option<&dyn DeskStore>,
    now: SystemTime,
) -> Result<(Plan, Effective), Op25bServiceError> {
    let (plan, effective) = plan(&settings.config, desk, now)?;
    spamgate_op25b::apply(&plan.ruleset(), &settings.nft)?;
    Ok((plan, effective))
}
