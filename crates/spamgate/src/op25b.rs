//! `spamgate op25b render|apply|sync|hits`: Outbound Port 25 Blocking rules from the
//! `[op25b]` table (the `spamgate-op25b` crate renders and applies them).

use std::time::SystemTime;

use spamgate_app::op25b::{Effective, Op25bServiceError, Op25bSettings};
use spamgate_desk::store::DeskStore;
use spamgate_op25b::{NftRunner, Op25bConfig, Op25bError, Plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op25bCommand {
    Render,
    Apply,
    Sync,
    Hits,
}

/// Run one command; human-readable notes go to stderr, the result to stdout. `desk` is
/// the abuse desk's store when an exemption names a customer: the exemptions of
/// customers it has suspended or terminated are left out (the same effective set the
/// desk's enforcement syncs).
pub fn run(
    command: Op25bCommand,
    config: &Op25bConfig,
    nft: &NftRunner,
    desk: Option<&dyn DeskStore>,
    now: SystemTime,
    json: bool,
) -> Result<(), Op25bServiceError> {
    let settings = Op25bSettings {
        config: config.clone(),
        nft: nft.clone(),
    };
    match command {
        Op25bCommand::Render => {
            let (plan, effective) = spamgate_app::op25b::plan(config, desk, now)?;
            note_expired(&plan);
            note_revoked(&effective);
            if json {
                let text = serde_json::to_string_pretty(&render_json(&effective.config, &plan))
                    .map_err(|e| Op25bError::Json(e.to_string()))?;
                println!("{text}");
            } else {
                print!("{}", plan.ruleset());
            }
        }
        Op25bCommand::Apply => {
            let (plan, effective) = spamgate_app::op25b::apply(&settings, desk, now)?;
            note_expired(&plan);
            note_revoked(&effective);
            eprintln!(
                "spamgate: table inet {} loaded; {}",
                plan.table(),
                summary(config, &plan)
            );
        }
        Op25bCommand::Sync => {
            let (plan, effective) = spamgate_app::op25b::sync(&settings, desk, now)?;
            note_expired(&plan);
            note_revoked(&effective);
            eprintln!(
                "spamgate: sets of table inet {} updated; {}",
                plan.table(),
                summary(config, &plan)
            );
        }
        Op25bCommand::Hits => {
            let hits = spamgate_op25b::hits(&config.table, nft)?;
            if json {
                let text = serde_json::to_string_pretty(&hits)
                    .map_err(|e| Op25bError::Json(e.to_string()))?;
                println!("{text}");
            } else {
                print!("{}", spamgate_op25b::format_hits(&hits));
            }
        }
    }
    Ok(())
}

/// `op25b render --json`: what the ruleset blocks and exempts, and the ruleset itself
/// (shape: docs/operations.md).
fn render_json(config: &Op25bConfig, plan: &Plan) -> serde_json::Value {
    let prefixes = |list: &[spamgate_op25b::Prefix]| -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    };
    let exemptions: Vec<_> = plan
        .exemptions()
        .map(|e| {
            serde_json::json!({
                "prefix": e.prefix.to_string(), "reason": e.comment,
                "expires": e.until, "expires_in_seconds": e.timeout_secs,
            })
        })
        .collect();
    let expired: Vec<_> = plan
        .expired()
        .iter()
        .map(|e| {
            serde_json::json!({
                "prefix": e.prefix.to_string(), "reason": e.reason, "expired": e.expired,
            })
        })
        .collect();
    serde_json::json!({
        "table": plan.table(),
        "ports_blocked": config.ports_blocked,
        "interfaces": config.interfaces,
        "pools": prefixes(&config.pools),
        "relays": prefixes(&config.relays),
        "exemptions": exemptions,
        "expired": expired,
        "ruleset": plan.ruleset(),
    })
}

fn summary(config: &Op25bConfig, plan: &Plan) -> String {
    format!(
        "{} pools, {} relays, {} exemptions in force ({} expired)",
        config.pools.len(),
        config.relays.len(),
        plan.exemptions().count(),
        plan.expired().len()
    )
}

fn note_revoked(effective: &Effective) {
    for gone in &effective.revoked {
        eprintln!(
            "spamgate: note: exemption {} ({:?}) revoked: the abuse desk has customer {} suspended or terminated",
            gone.prefix,
            gone.reason,
            gone.customer.as_deref().unwrap_or("?")
        );
    }
    for customer in &effective.unknown_customers {
        eprintln!(
            "spamgate: warning: [op25b] exempt names customer {customer}, unknown to the abuse desk; its exemptions stay in force"
        );
    }
}

fn note_expired(plan: &Plan) {
    for gone in plan.expired() {
        eprintln!(
            "spamgate: note: exemption {} ({:?}) expired at {}; skipped (remove it from the file)",
            gone.prefix, gone.reason, gone.expired
        );
    }
}
