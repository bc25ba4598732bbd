//! Operator configuration: the `[op25b]` TOML table.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::prefix::Prefix;
use crate::time::Expiry;

/// Which customers may not reach TCP/25 outside the ISP, and who is let through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Op25bConfig {
    /// The nftables `inet` table spamgate owns (replaced whole by `apply`).
    pub table: String,
    /// Customer address pools subject to OP25B (dynamic plans), IPv4 and IPv6.
    pub pools: Vec<Prefix>,
    /// The ISP's own MTAs: customers may reach these on the blocked ports.
    pub relays: Vec<Prefix>,
    /// Sources inside the pools that are let through (static/business plans, opt-outs).
    pub exempt: Vec<Exemption>,
    /// Rate of kernel log lines for blocked attempts, e.g. `10/minute` (every attempt is
    /// still counted and reset).
    pub log_rate: LogRate,
    /// Destination TCP ports blocked; 587 and 465 (submission) are refused here.
    pub ports_blocked: Vec<u16>,
    /// Only judge traffic entering on these interfaces (customer-facing; `ppp*` wildcards
    /// allowed). Empty: all forwarded traffic.
    pub interfaces: Vec<String>,
    /// How long a blocked source stays in the per-source hit table after its last attempt.
    #[serde(with = "humantime_serde")]
    pub hits_timeout: Duration,
    /// Most sources the per-source hit table holds (blocking never depends on it).
    pub hits_size: u32,
    /// How long one nft call (check, load, list) may take before it is killed and the
    /// command fails.
    #[serde(with = "humantime_serde")]
    pub nft_timeout: Duration,
}

pub const DEFAULT_TABLE: &str = "spamgate_op25b";

impl Op25bConfig {
    /// Whether any exemption names a customer (then the abuse desk decides which are in
    /// force).
    pub fn has_customer_exemptions(&self) -> bool {
        self.exempt.iter().any(|e| e.customer.is_some())
    }

    /// The exemptions of one customer.
    pub fn customer_exemptions<'a>(
        &'a self,
        customer: &'a str,
    ) -> impl Iterator<Item = &'a Exemption> {
        self.exempt
            .iter()
            .filter(move |e| e.customer.as_deref() == Some(customer))
    }

    /// This configuration without the exemptions of the customers `revoked` says yes to
    /// (suspended or terminated ones), and the exemptions left out. Pure: the caller
    /// asks the desk.
    pub fn without_customers(
        &self,
        revoked: impl Fn(&str) -> bool,
    ) -> (Op25bConfig, Vec<Exemption>) {
        let mut kept = self.clone();
        let (out, keep): (Vec<Exemption>, Vec<Exemption>) = self
            .exempt
            .iter()
            .cloned()
            .partition(|e| e.customer.as_deref().is_some_and(&revoked));
        kept.exempt = keep;
        (kept, out)
    }
}

impl Default for Op25bConfig {
    fn default() -> Self {
        Op25bConfig {
            table: DEFAULT_TABLE.to_owned(),
            pools: Vec::new(),
            relays: Vec::new(),
            exempt: Vec::new(),
            log_rate: LogRate {
                count: 10,
                unit: RateUnit::Minute,
            },
            ports_blocked: vec![25],
            interfaces: Vec::new(),
            hits_timeout: Duration::from_secs(86_400),
            hits_size: 65_536,
            nft_timeout: crate::nft::DEFAULT_NFT_TIMEOUT,
        }
    }
}

/// A source let through: a prefix, why, and optionally until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exemption {
    pub prefix: Prefix,
    /// Why (plan, ticket number): shown in `nft list` as the element's comment.
    pub reason: String,
    /// End of the exemption; absent: permanent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Expiry>,
    /// The abuse desk's customer the exemption belongs to (e.g. a static block carved out
    /// of a pool): while the desk has that customer suspended or terminated, the
    /// exemption is left out of the sets (see [`Op25bConfig::without_customers`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

/// `N/second`, `N/minute`, `N/hour` or `N/day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRate {
    pub count: u32,
    pub unit: RateUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl RateUnit {
    fn as_str(self) -> &'static str {
        match self {
            RateUnit::Second => "second",
            RateUnit::Minute => "minute",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        }
    }
}

impl fmt::Display for LogRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.unit.as_str())
    }
}

impl FromStr for LogRate {
    type Err = String;

    fn from_str(text: &str) -> Result<LogRate, String> {
        let bad = || format!("log_rate {text:?}: expected N/second, N/minute, N/hour or N/day");
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let unit = match unit.trim() {
            "second" => RateUnit::Second,
            "minute" => RateUnit::Minute,
            "hour" => RateUnit::Hour,
            "day" => RateUnit::Day,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(format!("log_rate {text:?}: the count must be at least 1"));
        }
        Ok(LogRate { count, unit })
    }
}

impl Serialize for LogRate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LogRate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LogRate, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
