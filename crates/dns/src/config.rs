//! Resolver settings and their mapping onto hickory's options.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};

/// How the daemon's resolver behaves. The daemon maps its TOML onto this plain struct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// Recursive resolvers to ask (UDP, then TCP for truncated answers). Empty: the system's
    /// `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// Time allowed for one attempt of one query.
    pub timeout: Duration,
    /// Attempts per query in total (at least one is always made).
    pub attempts: usize,
    /// Answers kept in the resolver's cache.
    pub cache_size: usize,
    /// Positive answers are cached at least this long (postscreen: 60 s)...
    pub min_ttl: Duration,
    /// ...and at most this long (postscreen: 1 h).
    pub max_ttl: Duration,
    /// NXDOMAIN / no-data answers are cached at most this long.
    pub negative_max_ttl: Duration,
    /// Finished list results (listed / not listed, per zone and client) kept in front of the
    /// resolver's cache, each until its answer expires (the TTL clamped as above). A hit skips
    /// the resolver altogether; failures are never kept. About 100 bytes each. 0 turns this
    /// cache off (every lookup goes through the resolver and its cache).
    pub list_cache_size: usize,
    /// Most DNS queries in flight at once, so a cold burst of lookups cannot flood the
    /// resolvers. A query waiting for its turn counts against its deadline and fails like a
    /// timeout when that passes. Lookups answered from the list cache need no turn. At least 1.
    pub max_in_flight: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(2),
            attempts: 2,
            cache_size: 65_536,
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            negative_max_ttl: Duration::from_secs(300),
            list_cache_size: 100_000,
            max_in_flight: 512,
        }
    }
}

impl DnsConfig {
    /// Longest a caller waits for one query: every attempt timing out, plus a little slack for
    /// scheduling. hickory enforces its own per-attempt timeout; this bound is a backstop.
    pub fn query_deadline(&self) -> Duration {
        let attempts = u32::try_from(self.attempts.max(1)).unwrap_or(u32::MAX);
        self.timeout.saturating_mul(attempts) + Duration::from_millis(250)
    }

    /// How long NXDOMAIN / no-data answers are cached: the floor never exceeds the ceiling.
    pub(crate) fn negative_ttl_bounds(&self) -> (Duration, Duration) {
        (
            self.min_ttl.min(self.negative_max_ttl),
            self.negative_max_ttl,
        )
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.timeout.is_zero() {
            return Err("timeout must be greater than zero".into());
        }
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        if self.min_ttl > self.max_ttl {
            return Err(format!(
                "min_ttl {:?} is greater than max_ttl {:?}",
                self.min_ttl, self.max_ttl
            ));
        }
        Ok(())
    }
}

/// hickory's options for `config`: our timeouts and TTL clamps, no hosts file.
pub(crate) fn resolver_opts(config: &DnsConfig) -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.timeout = config.timeout;
    // hickory makes `attempts` retries after the first try; ours counts all tries.
    opts.attempts = config.attempts.max(1) - 1;
    opts.cache_size = u64::try_from(config.cache_size).unwrap_or(u64::MAX);
    opts.positive_min_ttl = Some(config.min_ttl);
    opts.positive_max_ttl = Some(config.max_ttl);
    let (negative_min, negative_max) = config.negative_ttl_bounds();
    opts.negative_min_ttl = Some(negative_min);
    opts.negative_max_ttl = Some(negative_max);
    // /etc/hosts must not answer list or PTR queries.
    opts.use_hosts_file = ResolveHosts::Never;
    opts
}

/// The name servers to use: the configured ones (UDP and TCP on the given port), or none to let
/// the caller fall back to the system configuration.
pub(crate) fn explicit_servers(config: &DnsConfig) -> ResolverConfig {
    let servers = config
        .nameservers
        .iter()
        .map(|addr| {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = addr.port();
                    c
                })
                .collect();
            NameServerConfig::new(addr.ip(), true, connections)
        })
        .collect();
    // No domain and no search list: every query name is already fully qualified.
    ResolverConfig::from_parts(None, Vec::new(), servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_config() {
        let config = DnsConfig {
            attempts: 3,
            timeout: Duration::from_millis(700),
            negative_max_ttl: Duration::from_secs(30),
            ..DnsConfig::default()
        };
        let opts = resolver_opts(&config);
        assert_eq!(opts.timeout, Duration::from_millis(700));
        assert_eq!(opts.attempts, 2);
        assert_eq!(opts.cache_size, 65_536);
        assert_eq!(opts.positive_min_ttl, Some(Duration::from_secs(60)));
        assert_eq!(opts.positive_max_ttl, Some(Duration::from_secs(3600)));
        // The negative floor never exceeds the negative ceiling.
        assert_eq!(opts.negative_min_ttl, Some(Duration::from_secs(30)));
        assert_eq!(opts.negative_max_ttl, Some(Duration::from_secs(30)));
        assert_eq!(opts.use_hosts_file, ResolveHosts::Never);

        let zero = resolver_opts(&DnsConfig {
            attempts: 0,
            ..DnsConfig::default()
        });
        assert_eq!(zero.attempts, 0);
    }

    #[test]
    fn deadline_covers_all_attempts() {
        let config = DnsConfig {
            attempts: 2,
            timeout: Duration::from_secs(2),
            ..DnsConfig::default()
        };
        assert_eq!(config.query_deadline(), Duration::from_millis(4250));
    }

    #[test]
    fn explicit_servers_use_udp_and_tcp_on_the_port() {
        let config = DnsConfig {
            nameservers: vec![
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
            ],
            ..DnsConfig::default()
        };
        let servers = explicit_servers(&config);
        assert!(servers.search().is_empty() && servers.domain().is_none());
        let ns = servers.name_servers();
        assert_eq!(ns.len(), 2);
        assert_eq!(ns[0].ip, "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(ns[0].connections.len(), 2);
        assert!(ns[0].connections.iter().all(|c| c.port == 5353));
        assert!(ns[1].connections.iter().all(|c| c.port == 53));
    }

    #[test]
    fn validation() {
        assert!(DnsConfig::default().validate().is_ok());
        let bad = DnsConfig {
            timeout: Duration::ZERO,
            ..DnsConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("timeout"));
        let bad = DnsConfig {
            min_ttl: Duration::from_secs(7200),
            ..DnsConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("min_ttl"));
        let bad = DnsConfig {
            max_in_flight: 0,
            ..DnsConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("max_in_flight"));
    }
}
