#![forbid(unsafe_code)]
//! OP25B (Outbound Port 25 Blocking): nftables rules, rendered from pool data, that stop
//! customers' new TCP connections to port 25 outside the ISP, so an infected PC cannot
//! send spam directly; customers send through the ISP's submission service (587/465)
//! instead, which this crate never blocks.
//!
//! Layout:
//! - `config`: the `[op25b]` table (pools, relays, exemptions, log rate, ports).
//! - `prefix`, `time`: strict prefix parsing and overlap checks; expiry instants.
//! - `plan`: validation, and resolving expiries at a given `now` → [`Plan`].
//! - `render`: [`Plan`] → nftables text (whole table, or set contents only). Pure.
//! - `nft`: the only part that runs anything: [`apply`], [`sync`], [`hits`].
//!
//! **Invariant**: rendering is a pure function of the configuration and `now`; ports 587
//! and 465 can never appear in the output.

mod config;
mod error;
mod nft;
mod plan;
mod prefix;
mod render;
mod time;

use std::time::SystemTime;

pub use config::{DEFAULT_TABLE, Exemption, LogRate, Op25bConfig, RateUnit};
pub use error::Op25bError;
pub use nft::{
    DEFAULT_NFT_TIMEOUT, Hit, NftRunner, apply, format_hits, hits, parse_hits, sync_plan,
};
pub use plan::{Element, ExpiredExemption, NEVER_BLOCKED, Plan, plan};
pub use prefix::Prefix;
pub use render::LOG_PREFIX;
pub use time::Expiry;

/// The complete ruleset for `nft -f` (see [`apply`]).
pub fn render(config: &Op25bConfig, now: SystemTime) -> Result<String, Op25bError> {
    Ok(render::ruleset(&plan(config, now)?))
}

/// The set-only update that [`sync`] loads: pools, exemptions and relays flushed and
/// refilled in one transaction.
pub fn render_sync(config: &Op25bConfig, now: SystemTime) -> Result<String, Op25bError> {
    Ok(render::set_update(&plan(config, now)?))
}

impl Plan {
    /// The complete ruleset (as [`render`]).
    pub fn ruleset(&self) -> String {
        render::ruleset(self)
    }

    /// The set-only update (as [`render_sync`]).
    pub fn set_update(&self) -> String {
        render::set_update(self)
    }
}

/// Validates `config` at `now` and rewrites the loaded table's pool, exemption and relay
/// sets without reloading the chains. Returns the plan (e.g. to report expired entries).
pub fn sync(config: &Op25bConfig, now: SystemTime, nft: &NftRunner) -> Result<Plan, Op25bError> {
    let plan = plan(config, now)?;
    sync_plan(&plan, nft)?;
    Ok(plan)
}
