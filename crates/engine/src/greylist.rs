//! Selective greylisting: keys, stored state and the pure state machine.
//!
//! Stores call [`decide`] inside their own transaction (or on their single writer
//! thread), so each transition is atomic while the policy lives here, in one place.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::UnixTime;

/// A fixed-size key: the first 16 bytes of a BLAKE3 hash of the readable key.
pub type Key = [u8; 16];

/// Feeds formatted text to the hasher as it is written: a key's hash input is its
/// readable form (`t\0network\0sender\0recipient`, `n\0ip-network`, `a\0client`), byte
/// for byte, without building it as a string first.
struct HashWriter(blake3::Hasher);

impl HashWriter {
    fn new() -> HashWriter {
        HashWriter(blake3::Hasher::new())
    }

    fn key(&self) -> Key {
        let mut key = [0u8; 16];
        key.copy_from_slice(&self.0.finalize().as_bytes()[..16]);
        key
    }
}

impl std::fmt::Write for HashWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
fn hash_key(text: &str) -> Key {
    let mut hasher = HashWriter::new();
    hasher.0.update(text.as_bytes());
    hasher.key()
}

/// The auto-whitelist key of one client address (what `spamgate greylist show --client`
/// looks up).
pub fn awl_key(client: IpAddr) -> Key {
    use std::fmt::Write as _;
    let mut hasher = HashWriter::new();
    // Writing into the hasher cannot fail.
    let _ = write!(hasher, "a\0{client}");
    hasher.key()
}

/// Tunables, from the `[greylist]` config table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreylistParams {
    /// A retry earlier than this after the first attempt is deferred again.
    pub min_delay: Duration,
    /// A retry later than this after the first attempt starts over.
    pub retry_window: Duration,
    /// How long a client that retried correctly stays auto-whitelisted (refreshed on use).
    pub awl_lifetime: Duration,
    /// Pending (never retried) triplets one network may have; more are deferred unrecorded.
    pub max_pending_per_network: u32,
    /// Refresh `last_seen` of whitelisted entries at most this often (saves writes).
    pub refresh_interval: Duration,
}

impl Default for GreylistParams {
    fn default() -> Self {
        // postgrey's defaults: 300 s delay, 2-day window, 35-day lifetime.
        GreylistParams {
            min_delay: Duration::from_secs(300),
            retry_window: Duration::from_secs(2 * 86_400),
            awl_lifetime: Duration::from_secs(35 * 86_400),
            max_pending_per_network: 200,
            refresh_interval: Duration::from_secs(3600),
        }
    }
}

/// How clients are grouped into a "network" for the triplet key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyScheme {
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Use the organisational domain of a forward-confirmed PTR instead of the network.
    pub key_by_ptr_domain: bool,
}

impl Default for KeyScheme {
    fn default() -> Self {
        KeyScheme {
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            key_by_ptr_domain: true,
        }
    }
}

/// The keys of one greylist check, with their readable forms (for listings and logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GreylistKeys {
    /// Readable network part: `192.0.2.0/24`, `2001:db8::/64` or `domain:example.net`.
    pub network: String,
    pub sender: String,
    pub recipient: String,
    /// The client's own address: the auto-whitelist is per address, never per network, so
    /// one bot in a dynamic pool that retries cannot open the pool.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub client: IpAddr,
    #[serde(skip)]
    pub triplet_key: Key,
    #[serde(skip)]
    pub network_key: Key,
    #[serde(skip)]
    pub awl_key: Key,
}

impl GreylistKeys {
    pub fn new(
        scheme: &KeyScheme,
        client: IpAddr,
        confirmed_name: Option<&str>,
        sender: &str,
        recipient: &str,
    ) -> GreylistKeys {
        use std::fmt::Write as _;

        let ip_network = client_network(client, scheme);
        let network = confirmed_name
            .filter(|_| scheme.key_by_ptr_domain)
            .and_then(organisational_domain)
            .map(|domain| format!("domain:{domain}"))
            .unwrap_or_else(|| ip_network.to_string());
        let sender = normalise_sender(sender);
        let recipient = recipient.trim().to_ascii_lowercase();
        let mut triplet = HashWriter::new();
        triplet
            .0
            .update(b"t\0")
            .update(network.as_bytes())
            .update(b"\0")
            .update(sender.as_bytes())
            .update(b"\0")
            .update(recipient.as_bytes());
        let triplet_key = triplet.key();
        // The pending cap always counts per IP network, never per PTR domain: a generic
        // name's domain is the access ISP, and one cap for all its customers would let its
        // bots lock out every new sender there.
        let mut network_hash = HashWriter::new();
        // Writing into the hasher cannot fail.
        let _ = write!(network_hash, "n\0{ip_network}");
        let network_key = network_hash.key();
        let awl_key = awl_key(client);
        GreylistKeys {
            network,
            sender,
            recipient,
            client,
            triplet_key,
            network_key,
            awl_key,
        }
    }
}

/// The client's network under the configured prefix lengths.
pub fn client_network(client: IpAddr, scheme: &KeyScheme) -> IpNet {
    let prefix = match client {
        IpAddr::V4(_) => scheme.ipv4_prefix.min(32),
        IpAddr::V6(_) => scheme.ipv6_prefix.min(128),
    };
    IpNet::new(client, prefix)
        .map(|net| net.trunc())
        .unwrap_or_else(|_| IpNet::from(client))
}

/// `mail-1.out.example.co.jp` → `example.co.jp`, by the Public Suffix List.
pub fn organisational_domain(name: &str) -> Option<String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    psl::domain_str(&name).map(str::to_string)
}

/// postgrey-style sender normalisation, so per-message senders map to one key:
/// lowercase, strip BATV (`prvs=tag=user@`), strip `+extension`, and replace standalone
/// digit runs in the local part with `#` (VERP, ticket numbers).
pub fn normalise_sender(sender: &str) -> String {
    let sender = sender.trim().trim_matches(|c| c == '<' || c == '>');
    if sender.is_empty() {
        return "<>".to_string();
    }
    let lower = sender.to_ascii_lowercase();
    let (local, domain) = lower.rsplit_once('@').unwrap_or((lower.as_str(), ""));
    let local = strip_batv(local);
    let local = local.split_once('+').map_or(local, |(base, _)| base);
    let local = hash_digit_runs(local);
    if domain.is_empty() {
        local
    } else {
        format!("{local}@{domain}")
    }
}

fn strip_batv(local: &str) -> &str {
    // prvs=TAG=user (RFC-draft BATV) and the reversed form some MTAs use: prvs=user=TAG.
    for prefix in ["prvs=", "msprvs1=", "btv1=="] {
        if let Some((_, user)) = local
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('='))
        {
            let user = user.trim_start_matches('=');
            if !user.is_empty() {
                return user;
            }
        }
    }
    local
}

fn hash_digit_runs(local: &str) -> String {
    // A "standalone" run is delimited by non-alphanumerics (or the ends), as postgrey's \b\d+\b.
    let mut out = String::with_capacity(local.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            out.push('#');
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in local.chars() {
        if c.is_alphanumeric() {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// Stored state of one (network, sender, recipient) triplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TripletState {
    pub first_seen: UnixTime,
    pub last_seen: UnixTime,
    /// Attempts seen, the first one included.
    pub attempts: u32,
    /// When a retry first arrived after the delay; `None` while pending.
    pub passed_at: Option<UnixTime>,
}

/// Stored state of one auto-whitelisted client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwlState {
    pub first_seen: UnixTime,
    pub last_seen: UnixTime,
}

/// What the store knows before the decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GreylistInputs {
    pub awl: Option<AwlState>,
    pub triplet: Option<TripletState>,
    /// Pending triplets of this network; only read when [`needs_pending_count`] says so.
    pub pending_in_network: u32,
}

/// What the store must write after the decision. Each state comes with its expiry time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GreylistWrites {
    pub triplet: Option<(TripletState, UnixTime)>,
    pub awl: Option<(AwlState, UnixTime)>,
}

/// The result of a greylist check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum GreylistOutcome {
    /// The client address retried correctly before and is still remembered.
    AutoWhitelisted { since: UnixTime },
    /// This triplet passed before and is still remembered.
    KnownTriplet { passed_at: UnixTime },
    /// A retry after the delay, inside the window: passes, and the client is remembered.
    Passed { waited: u64 },
    /// First attempt (or first after the window ran out): defer.
    New { retry_in: u64 },
    /// A retry before the delay: defer again.
    TooEarly { waited: u64, retry_in: u64 },
    /// The network already has too many pending triplets: defer without recording.
    NetworkFull { pending: u32 },
}

impl GreylistOutcome {
    pub fn passes(&self) -> bool {
        matches!(
            self,
            GreylistOutcome::AutoWhitelisted { .. }
                | GreylistOutcome::KnownTriplet { .. }
                | GreylistOutcome::Passed { .. }
        )
    }

    /// Stable identifier for logs and metrics.
    pub fn id(&self) -> &'static str {
        match self {
            GreylistOutcome::AutoWhitelisted { .. } => "awl",
            GreylistOutcome::KnownTriplet { .. } => "known",
            GreylistOutcome::Passed { .. } => "passed",
            GreylistOutcome::New { .. } => "new",
            GreylistOutcome::TooEarly { .. } => "too-early",
            GreylistOutcome::NetworkFull { .. } => "network-full",
        }
    }

    /// Seconds until a retry can pass, for deferrals.
    pub fn retry_in(&self, params: &GreylistParams) -> Option<u64> {
        match self {
            GreylistOutcome::New { retry_in } | GreylistOutcome::TooEarly { retry_in, .. } => {
                Some(*retry_in)
            }
            GreylistOutcome::NetworkFull { .. } => Some(params.min_delay.as_secs()),
            _ => None,
        }
    }
}

fn alive(last_seen: UnixTime, lifetime: Duration, now: UnixTime) -> bool {
    now < last_seen.saturating_add(lifetime.as_secs())
}

/// A pending triplet is still valid at exactly `first_seen + retry_window` (see
/// [`decide`]), so it expires one second later; stores delete at `expires_at <= now`.
fn pending_expiry(first_seen: UnixTime, params: &GreylistParams) -> UnixTime {
    first_seen + params.retry_window.as_secs() + 1
}

/// Whether the store must count the network's pending triplets for this decision. It is
/// only needed when a new triplet would be created, so the common paths skip the count.
pub fn needs_pending_count(
    params: &GreylistParams,
    awl: Option<&AwlState>,
    triplet: Option<&TripletState>,
    now: UnixTime,
) -> bool {
    if awl.is_some_and(|a| alive(a.last_seen, params.awl_lifetime, now)) {
        return false;
    }
    match triplet {
        None => true,
        Some(t) => match t.passed_at {
            Some(_) => !alive(t.last_seen, params.awl_lifetime, now),
            None => now.saturating_sub(t.first_seen) > params.retry_window.as_secs(),
        },
    }
}

/// The greylist state machine. Pure: the store reads `inputs`, calls this, writes `writes`.
pub fn decide(
    params: &GreylistParams,
    inputs: &GreylistInputs,
    now: UnixTime,
) -> (GreylistOutcome, GreylistWrites) {
    let lifetime = params.awl_lifetime.as_secs();
    let min_delay = params.min_delay.as_secs();
    let refresh = params.refresh_interval.as_secs();
    let mut writes = GreylistWrites::default();

    if let Some(awl) = inputs
        .awl
        .filter(|a| alive(a.last_seen, params.awl_lifetime, now))
    {
        if now.saturating_sub(awl.last_seen) >= refresh {
            let fresh = AwlState {
                last_seen: now,
                ..awl
            };
            writes.awl = Some((fresh, now + lifetime));
        }
        return (
            GreylistOutcome::AutoWhitelisted {
                since: awl.first_seen,
            },
            writes,
        );
    }

    let awl_for = |now| {
        Some((
            AwlState {
                first_seen: now,
                last_seen: now,
            },
            now + lifetime,
        ))
    };

    match inputs.triplet {
        Some(t) if t.passed_at.is_some() && alive(t.last_seen, params.awl_lifetime, now) => {
            // The triplet passed before but the client's AWL entry is gone (it expired, or
            // the client retried from another address of a PTR-domain-keyed sender).
            let passed_at = t.passed_at.unwrap_or(t.first_seen);
            let fresh = TripletState {
                last_seen: now,
                attempts: t.attempts.saturating_add(1),
                ..t
            };
            writes.triplet = Some((fresh, now + lifetime));
            writes.awl = awl_for(now);
            (GreylistOutcome::KnownTriplet { passed_at }, writes)
        }
        Some(t)
            if t.passed_at.is_none()
                && now.saturating_sub(t.first_seen) <= params.retry_window.as_secs() =>
        {
            let waited = now.saturating_sub(t.first_seen);
            if waited < min_delay {
                let fresh = TripletState {
                    last_seen: now,
                    attempts: t.attempts.saturating_add(1),
                    ..t
                };
                writes.triplet = Some((fresh, pending_expiry(t.first_seen, params)));
                let retry_in = min_delay - waited;
                (GreylistOutcome::TooEarly { waited, retry_in }, writes)
            } else {
                let fresh = TripletState {
                    last_seen: now,
                    attempts: t.attempts.saturating_add(1),
                    passed_at: Some(now),
                    ..t
                };
                writes.triplet = Some((fresh, now + lifetime));
                writes.awl = awl_for(now);
                (GreylistOutcome::Passed { waited }, writes)
            }
        }
        // Unknown, expired, or outside the window: a first attempt.
        _ => {
            if inputs.pending_in_network >= params.max_pending_per_network {
                return (
                    GreylistOutcome::NetworkFull {
                        pending: inputs.pending_in_network,
                    },
                    writes,
                );
            }
            let fresh = TripletState {
                first_seen: now,
                last_seen: now,
                attempts: 1,
                passed_at: None,
            };
            writes.triplet = Some((fresh, pending_expiry(now, params)));
            (
                GreylistOutcome::New {
                    retry_in: min_delay,
                },
                writes,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stores keep these keys on disk: hashing the parts one by one must give exactly the
    /// keys of the readable forms, as before.
    #[test]
    fn keys_are_hashes_of_the_readable_forms() {
        let policy = KeyScheme::default();
        let cases: [(&str, Option<&str>, &str, &str); 4] = [
            (
                "192.0.2.10",
                None,
                "Bounce+1234@Example.COM",
                " R@Example.net ",
            ),
            ("2001:db8:1:2::1", None, "", "r@example.net"),
            (
                "198.51.100.1",
                Some("a8-30.smtp-out.example.co.jp"),
                "prvs=1234abcd=s@x.example",
                "r@example.net",
            ),
            ("203.0.113.9", Some("unlisted.invalid"), "s@x.example", "r"),
        ];
        for (client, name, sender, recipient) in cases {
            let client: IpAddr = client.parse().unwrap();
            let keys = GreylistKeys::new(&policy, client, name, sender, recipient);
            let ip_network = client_network(client, &policy);
            let triplet = format!("t\0{}\0{}\0{}", keys.network, keys.sender, keys.recipient);
            assert_eq!(keys.triplet_key, hash_key(&triplet), "{client}");
            assert_eq!(
                keys.network_key,
                hash_key(&format!("n\0{ip_network}")),
                "{client}"
            );
            // Keys already stored stay valid: each one hashes its readable form.
            assert_eq!(keys.awl_key, awl_key(client), "{client}");
            assert_eq!(keys.awl_key, hash_key(&format!("a\0{client}")), "{client}");
            assert_eq!(keys.sender, normalise_sender(sender));
        }
    }
}
