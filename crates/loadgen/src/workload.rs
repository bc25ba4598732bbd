//! The seeded workload (documented in docs/performance.md).
//!
//! A fixed population of clients, each with a kind that decides what Postfix would send
//! as `client_name` / `reverse_client_name`; senders and recipients drawn from pools; a
//! share of requests that repeat an earlier triplet (a retry). Request `i` depends only on
//! the configuration and `i`: no generator state is shared between connections.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use spamgate_policy::{PolicyRequest, ProtocolState};

use crate::rng::{below, mix, unit};

/// IPv4 clients come from 198.18.0.0/15 (RFC 2544, for benchmarks): 512 /24 networks of
/// 254 hosts each (.1 to .254).
const V4_NETWORKS: u64 = 512;
const V4_HOSTS: u64 = 254;
pub const MAX_V4_CLIENTS: u64 = V4_NETWORKS * V4_HOSTS;
/// Odd and not a multiple of 127, hence coprime with [`MAX_V4_CLIENTS`] (2^10 * 127):
/// client k maps to a distinct address for every k below it, spread over all networks.
const V4_STRIDE: u64 = 40_503;

const FIRST_NAMES: [&str; 16] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "nia", "oscar", "peggy", "rupert", "sybil",
];
const ORG_WORDS: [&str; 12] = [
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell",
    "soylent", "vandelay", "oceanic",
];
const MX_PREFIXES: [&str; 5] = ["mx", "mail", "smtp", "out", "relay"];
const LOCAL_DOMAINS: [&str; 4] = [
    "isp.example.net",
    "mail.example.net",
    "example.org",
    "customers.example.com",
];
/// ISPs whose customer lines have generic names (`isp0.test` ...).
const ISPS: u64 = 40;
/// Organisations whose mail servers have proper names (`acme0.test` ...).
const ORGS: u64 = 600;
/// Share of `unknown` clients whose PTR exists but does not resolve back (Postfix sends
/// `reverse_client_name`); the others have no PTR at all.
const NOT_CONFIRMED_OF_UNKNOWN: f64 = 0.3;

// Independent random streams.
const S_V6: u64 = 1;
const S_KIND: u64 = 2;
const S_UNKNOWN: u64 = 3;
const S_LISTED: u64 = 4;
const S_NAME: u64 = 5;
const S_RETRY: u64 = 10;
const S_CLIENT: u64 = 11;
const S_SENDER: u64 = 12;
const S_RECIPIENT: u64 = 13;
const S_DETAILS: u64 = 14;

/// What the load generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The realistic mix: a client population, retries, a share of listed clients.
    Mix,
    /// Every request is a new triplet from a suspicious, unlisted client: each one
    /// creates a greylist entry (to measure memory and file size per entry).
    Fill,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkloadConfig {
    pub seed: u64,
    pub mode: Mode,
    /// Distinct client addresses.
    pub clients: u32,
    pub ipv6_share: f64,
    pub senders: u32,
    pub recipients: u32,
    /// Clients for which Postfix sends `client_name=unknown`.
    pub unknown_share: f64,
    /// Clients with a verified but generic-looking (dynamic, end-user) name.
    pub generic_share: f64,
    /// Clients listed on the benchmark DNSBL (`bl.test`).
    pub listed_share: f64,
    /// Requests that repeat an earlier request's triplet.
    pub retry_share: f64,
    /// How far back (in requests) a retry reaches.
    pub retry_window: u64,
    /// Requests `0..warmup` go to clients in order (`i % clients`), so a warm-up of at
    /// least `clients` requests has seen every client (and filled DNS caches).
    pub warmup: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            seed: 1,
            mode: Mode::Mix,
            clients: 5000,
            ipv6_share: 0.1,
            senders: 4000,
            recipients: 2000,
            unknown_share: 0.1,
            generic_share: 0.2,
            listed_share: 0.02,
            retry_share: 0.1,
            retry_window: 20_000,
            warmup: 5000,
        }
    }
}

/// What Postfix knows about a client's reverse DNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientKind {
    /// Forward-confirmed name that looks like a mail server.
    Proper,
    /// Forward-confirmed name that looks like an end-user line.
    Generic,
    /// No PTR: `client_name=unknown`, `reverse_client_name=unknown`.
    NoPtr,
    /// A PTR that does not resolve back: `client_name=unknown`, `reverse_client_name=NAME`.
    NotConfirmed,
}

impl ClientKind {
    /// Whether spamgate greylists this kind with its default classes.
    pub fn is_suspicious(self) -> bool {
        self != ClientKind::Proper
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub address: IpAddr,
    pub kind: ClientKind,
    /// The PTR name (verified for `Proper`/`Generic`, unverified for `NotConfirmed`).
    pub ptr: Option<String>,
    pub helo: String,
    pub listed: bool,
}

impl Client {
    /// `client_name` as Postfix sends it.
    pub fn client_name(&self) -> &str {
        match self.kind {
            ClientKind::Proper | ClientKind::Generic => self.ptr.as_deref().unwrap_or("unknown"),
            ClientKind::NoPtr | ClientKind::NotConfirmed => "unknown",
        }
    }

    /// `reverse_client_name` as Postfix sends it.
    pub fn reverse_client_name(&self) -> &str {
        self.ptr.as_deref().unwrap_or("unknown")
    }
}

/// Indices into the pools: one greylist triplet (before the server's own grouping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Triplet {
    pub client: u32,
    pub sender: u64,
    pub recipient: u32,
}

#[derive(Debug)]
pub struct Workload {
    config: WorkloadConfig,
    clients: Vec<Client>,
    /// Clients a fill run may use: suspicious and not listed.
    fill_clients: Vec<u32>,
    /// Per client: its `helo_name`, `client_address`, `client_name` and
    /// `reverse_client_name` lines, encoded once.
    client_lines: Vec<Vec<u8>>,
    /// Sender pool (base form; the empty string is the null sender).
    senders: Vec<String>,
    recipients: Vec<String>,
}

impl Workload {
    pub fn new(config: WorkloadConfig) -> anyhow::Result<Workload> {
        let shares = [
            ("ipv6-share", config.ipv6_share),
            ("unknown-share", config.unknown_share),
            ("generic-share", config.generic_share),
            ("listed-share", config.listed_share),
            ("retry-share", config.retry_share),
        ];
        for (name, share) in shares {
            anyhow::ensure!(
                (0.0..=1.0).contains(&share),
                "--{name} must be between 0 and 1, not {share}"
            );
        }
        anyhow::ensure!(
            config.unknown_share + config.generic_share <= 1.0,
            "--unknown-share plus --generic-share must not exceed 1"
        );
        anyhow::ensure!(
            config.clients > 0 && config.senders > 0 && config.recipients > 0,
            "--clients, --senders and --recipients must be positive"
        );
        let clients: Vec<Client> = (0..config.clients)
            .scan((0u64, 0u64), |(v4, v6), c| {
                Some(make_client(&config, c, v4, v6))
            })
            .collect::<anyhow::Result<_>>()?;
        let fill_clients: Vec<u32> = (0..config.clients)
            .filter(|&c| {
                let client = &clients[c as usize];
                client.kind.is_suspicious() && !client.listed
            })
            .collect();
        anyhow::ensure!(
            config.mode != Mode::Fill || !fill_clients.is_empty(),
            "fill mode needs suspicious, unlisted clients: raise --unknown-share or --generic-share"
        );
        let client_lines = clients
            .iter()
            .map(|c| {
                format!(
                    "helo_name={}\nclient_address={}\nclient_name={}\nreverse_client_name={}\n",
                    c.helo,
                    c.address,
                    c.client_name(),
                    c.reverse_client_name()
                )
                .into_bytes()
            })
            .collect();
        let senders = (0..u64::from(config.senders))
            .map(|s| pool_sender(s, config.senders))
            .collect();
        let recipients = (0..config.recipients as usize)
            .map(|r| {
                format!(
                    "{}{}@{}",
                    FIRST_NAMES[r % FIRST_NAMES.len()],
                    r / FIRST_NAMES.len(),
                    LOCAL_DOMAINS[r % LOCAL_DOMAINS.len()]
                )
            })
            .collect();
        Ok(Workload {
            config,
            clients,
            fill_clients,
            client_lines,
            senders,
            recipients,
        })
    }

    pub fn config(&self) -> &WorkloadConfig {
        &self.config
    }

    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    /// The triplet of request `i`.
    pub fn triplet(&self, i: u64) -> Triplet {
        let seed = self.config.seed;
        if self.config.mode == Mode::Fill {
            let pool = self.fill_clients.len() as u64;
            return Triplet {
                client: self.fill_clients[below(mix(seed, S_CLIENT, i), pool) as usize],
                // Past the sender pool: a sender of its own, hence a new triplet.
                sender: u64::from(self.config.senders) + i,
                recipient: below(mix(seed, S_RECIPIENT, i), u64::from(self.config.recipients))
                    as u32,
            };
        }
        let is_retry =
            i > self.config.warmup && unit(mix(seed, S_RETRY, i)) < self.config.retry_share;
        if is_retry {
            let reach = i.min(self.config.retry_window.max(1));
            let earlier = i - 1 - below(mix(seed, S_RETRY + 100, i), reach);
            self.fresh_triplet(earlier)
        } else {
            self.fresh_triplet(i)
        }
    }

    fn fresh_triplet(&self, i: u64) -> Triplet {
        let seed = self.config.seed;
        let clients = u64::from(self.config.clients);
        let client = if i < self.config.warmup {
            i % clients
        } else {
            below(mix(seed, S_CLIENT, i), clients)
        };
        Triplet {
            client: client as u32,
            sender: below(mix(seed, S_SENDER, i), u64::from(self.config.senders)),
            recipient: below(mix(seed, S_RECIPIENT, i), u64::from(self.config.recipients)) as u32,
        }
    }

    /// The sender address for pool index `s`; `variant` changes per-message parts (BATV
    /// tags, `+extensions`) that greylisters normalise away.
    pub fn sender(&self, s: u64, variant: u64) -> String {
        let mut out = Vec::new();
        self.write_sender(s, variant, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    fn write_sender(&self, s: u64, variant: u64, out: &mut Vec<u8>) {
        let Some(base) = self.senders.get(s as usize) else {
            // Past the pool (fill mode): a sender of its own.
            let _ = write!(out, "f{s}@bulk.example.com");
            return;
        };
        match s % 20 {
            _ if base.is_empty() => {}
            1 => {
                let _ = write!(out, "prvs=0{:03}{:06x}=", variant % 1000, variant >> 40);
                out.extend_from_slice(base.as_bytes());
            }
            2 => {
                let at = base.rfind('@').unwrap_or(base.len());
                out.extend_from_slice(&base.as_bytes()[..at]);
                let _ = write!(out, "+{:x}", variant >> 48);
                out.extend_from_slice(&base.as_bytes()[at..]);
            }
            _ => out.extend_from_slice(base.as_bytes()),
        }
    }

    pub fn recipient(&self, r: u32) -> &str {
        &self.recipients[r as usize]
    }

    /// Request `i` with the attributes Postfix 3.7 sends at RCPT time.
    pub fn request(&self, i: u64) -> PolicyRequest {
        let triplet = self.triplet(i);
        let client = &self.clients[triplet.client as usize];
        let d = Details::new(self.config.seed, i);
        let mut request = PolicyRequest {
            protocol_state: Some(ProtocolState::Rcpt),
            protocol_name: Some(d.protocol_name.into()),
            helo_name: Some(client.helo.clone()),
            queue_id: Some(format!("{:010X}", d.queue_id)),
            sender: Some(self.sender(triplet.sender, d.bits)),
            recipient: Some(self.recipient(triplet.recipient).into()),
            recipient_count: Some(0),
            client_address: Some(client.address),
            client_name: Some(client.client_name().into()),
            reverse_client_name: Some(client.reverse_client_name().into()),
            instance: Some(d.instance(i)),
            sasl_method: Some(String::new()),
            sasl_username: Some(String::new()),
            sasl_sender: Some(String::new()),
            size: Some(d.size),
            stress: false,
            client_port: Some(d.client_port),
            server_address: Some(SERVER_ADDRESS),
            server_port: Some(25),
            policy_context: Some(String::new()),
            encryption_protocol: Some(d.tls.0.into()),
            encryption_cipher: Some(d.tls.1.into()),
            encryption_keysize: Some(d.tls.2),
            ..PolicyRequest::default()
        };
        for name in EMPTY_OTHER_ATTRIBUTES {
            request.other.push(name, "");
        }
        request
            .other
            .push("compatibility_level", COMPATIBILITY_LEVEL);
        request.other.push("mail_version", MAIL_VERSION);
        request
    }

    /// Appends request `i`'s wire form to `out`: the same attributes as
    /// [`request`](Self::request) (a test checks it through the codec), written directly
    /// because the generator shares the machine with the server it measures.
    pub fn encode(&self, i: u64, out: &mut Vec<u8>) {
        let triplet = self.triplet(i);
        let d = Details::new(self.config.seed, i);
        out.extend_from_slice(b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=");
        out.extend_from_slice(d.protocol_name.as_bytes());
        let _ = write!(out, "\nqueue_id={:010X}\nsender=", d.queue_id);
        self.write_sender(triplet.sender, d.bits, out);
        out.extend_from_slice(b"\nrecipient=");
        out.extend_from_slice(self.recipient(triplet.recipient).as_bytes());
        out.extend_from_slice(b"\nrecipient_count=0\n");
        out.extend_from_slice(&self.client_lines[triplet.client as usize]);
        let _ = write!(
            out,
            "instance={}\nsasl_method=\nsasl_username=\nsasl_sender=\nsize={}\n\
             client_port={}\nserver_address={SERVER_ADDRESS}\nserver_port=25\npolicy_context=\n\
             encryption_protocol={}\nencryption_cipher={}\nencryption_keysize={}\n",
            d.instance(i),
            d.size,
            d.client_port,
            d.tls.0,
            d.tls.1,
            d.tls.2
        );
        for name in EMPTY_OTHER_ATTRIBUTES {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"=\n");
        }
        let _ = write!(
            out,
            "compatibility_level={COMPATIBILITY_LEVEL}\nmail_version={MAIL_VERSION}\n\n"
        );
    }
}

const SERVER_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 25));
const COMPATIBILITY_LEVEL: &str = "3.6";
const MAIL_VERSION: &str = "3.7.11";
/// Attributes Postfix sends empty when there is no client certificate, ETRN or stress.
const EMPTY_OTHER_ATTRIBUTES: [&str; 6] = [
    "ccert_subject",
    "ccert_issuer",
    "ccert_fingerprint",
    "ccert_pubkey_fingerprint",
    "etrn_domain",
    "stress",
];

/// The per-request attributes that do not depend on the triplet.
struct Details {
    bits: u64,
    protocol_name: &'static str,
    queue_id: u64,
    size: u64,
    client_port: u16,
    tls: (&'static str, &'static str, u32),
}

impl Details {
    fn new(seed: u64, i: u64) -> Details {
        let bits = mix(seed, S_DETAILS, i);
        Details {
            bits,
            protocol_name: if bits.is_multiple_of(10) {
                "SMTP"
            } else {
                "ESMTP"
            },
            queue_id: bits >> 24,
            size: 1000 + (bits >> 8) % 200_000,
            client_port: 1024 + ((bits >> 16) % 64_000) as u16,
            tls: if unit(bits) < 0.7 {
                ("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256)
            } else {
                ("", "", 0)
            },
        }
    }

    fn instance(&self, i: u64) -> String {
        format!(
            "{:x}.{:08x}.{:05x}.0",
            self.bits & 0xfff,
            self.bits >> 32,
            i & 0xfffff
        )
    }
}

/// Sender `s` of a pool of `pool`: about 2 % null senders, from `pool / 4` domains.
fn pool_sender(s: u64, pool: u32) -> String {
    if s.is_multiple_of(50) {
        return String::new();
    }
    let domains = u64::from(pool) / 4 + 1;
    format!(
        "{}{}@{}{}.example.com",
        FIRST_NAMES[(s % FIRST_NAMES.len() as u64) as usize],
        s / FIRST_NAMES.len() as u64,
        ORG_WORDS[(s % ORG_WORDS.len() as u64) as usize],
        s % domains
    )
}

fn make_client(
    config: &WorkloadConfig,
    c: u32,
    v4_count: &mut u64,
    v6_count: &mut u64,
) -> anyhow::Result<Client> {
    let seed = config.seed;
    let c64 = u64::from(c);
    let name_bits = mix(seed, S_NAME, c64);
    let address = if unit(mix(seed, S_V6, c64)) < config.ipv6_share {
        let k = *v6_count;
        *v6_count += 1;
        // Two clients per /64 (IPv6 retries often come from elsewhere in the same /64).
        let net = k / 2;
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0x0db8,
            (net >> 16) as u16,
            net as u16,
            0,
            0,
            (name_bits >> 16) as u16,
            (((k % 2) << 8) | (name_bits & 0xff) | 1) as u16,
        ))
    } else {
        let k = *v4_count;
        *v4_count += 1;
        anyhow::ensure!(
            k < MAX_V4_CLIENTS,
            "at most {MAX_V4_CLIENTS} IPv4 clients (198.18.0.0/15)"
        );
        let slot = (k * V4_STRIDE + 7919) % MAX_V4_CLIENTS;
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
        let net = (slot / V4_HOSTS) as u32;
        let host = (slot % V4_HOSTS) as u32 + 1;
        IpAddr::V4(Ipv4Addr::from(base + (net << 8) + host))
    };
    let kind_draw = unit(mix(seed, S_KIND, c64));
    let kind = if kind_draw < config.unknown_share {
        if unit(mix(seed, S_UNKNOWN, c64)) < NOT_CONFIRMED_OF_UNKNOWN {
            ClientKind::NotConfirmed
        } else {
            ClientKind::NoPtr
        }
    } else if kind_draw < config.unknown_share + config.generic_share {
        ClientKind::Generic
    } else {
        ClientKind::Proper
    };
    let isp = format!("isp{}.test", below(name_bits >> 8, ISPS));
    let ptr = match kind {
        ClientKind::Proper => Some(format!(
            "{}{}.{}{}.test",
            MX_PREFIXES[below(name_bits, MX_PREFIXES.len() as u64) as usize],
            1 + below(name_bits >> 4, 3),
            ORG_WORDS[below(name_bits >> 12, ORG_WORDS.len() as u64) as usize],
            below(name_bits >> 20, ORGS),
        )),
        ClientKind::Generic => Some(generic_name(address, name_bits, &isp)),
        ClientKind::NotConfirmed => Some(format!("host-{:x}.{isp}", name_bits >> 40)),
        ClientKind::NoPtr => None,
    };
    let helo = match (kind, &ptr) {
        (ClientKind::Proper, Some(name)) => name.clone(),
        (ClientKind::Generic, Some(name)) if name_bits.is_multiple_of(2) => name.clone(),
        _ if name_bits.is_multiple_of(3) => match address {
            IpAddr::V4(a) => format!("[{a}]"),
            IpAddr::V6(a) => format!("[IPv6:{a}]"),
        },
        _ => format!("WIN-{:08X}", name_bits >> 32),
    };
    Ok(Client {
        address,
        kind,
        ptr,
        helo,
        listed: unit(mix(seed, S_LISTED, c64)) < config.listed_share,
    })
}

/// Names in the shapes S25R was written for (one shape per client).
fn generic_name(address: IpAddr, bits: u64, isp: &str) -> String {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            match below(bits >> 28, 5) {
                0 => format!("{a}-{b}-{c}-{d}.dsl.{isp}"),
                1 => format!("p{c}{d:03}-ipbf{:02}.{isp}", b % 100),
                2 => format!("h{a:03}{b:03}{c:03}{d:03}.{isp}"),
                3 => format!("dhcp-{c}-{d}.pool.{isp}"),
                _ => format!("{d}.{c}.{b}.{a}.broadband.{isp}"),
            }
        }
        IpAddr::V6(v6) => {
            let mut label = String::new();
            for (n, segment) in v6.segments().iter().enumerate() {
                if n > 0 {
                    label.push('-');
                }
                let _ = write!(label, "{segment:x}");
            }
            format!("{label}.dyn.{isp}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(config: WorkloadConfig) -> Workload {
        Workload::new(config).unwrap()
    }

    #[test]
    fn population_matches_the_shares() {
        let w = workload(WorkloadConfig::default());
        let count = |f: &dyn Fn(&Client) -> bool| w.clients().iter().filter(|c| f(c)).count();
        let v6 = count(&|c| c.address.is_ipv6());
        let unknown = count(&|c| c.client_name() == "unknown");
        let generic = count(&|c| c.kind == ClientKind::Generic);
        let listed = count(&|c| c.listed);
        assert!((400..600).contains(&v6), "{v6}");
        assert!((400..600).contains(&unknown), "{unknown}");
        assert!((900..1100).contains(&generic), "{generic}");
        assert!((60..140).contains(&listed), "{listed}");
        let distinct: std::collections::HashSet<_> =
            w.clients().iter().map(|c| c.address).collect();
        assert_eq!(distinct.len(), 5000);
    }

    #[test]
    fn addresses_are_in_benchmark_and_documentation_ranges() {
        let w = workload(WorkloadConfig::default());
        for client in w.clients() {
            match client.address {
                IpAddr::V4(a) => {
                    let [x, y, _, d] = a.octets();
                    assert!(
                        x == 198 && (y == 18 || y == 19) && d != 0 && d != 255,
                        "{a}"
                    );
                }
                IpAddr::V6(a) => assert_eq!(&a.segments()[..2], &[0x2001, 0xdb8], "{a}"),
            }
        }
    }

    #[test]
    fn requests_are_deterministic_and_look_like_postfix() {
        let w = workload(WorkloadConfig::default());
        let again = workload(WorkloadConfig::default());
        let bytes = |w: &Workload, i| {
            let mut out = Vec::new();
            w.encode(i, &mut out);
            out
        };
        assert_eq!(bytes(&w, 12_345), bytes(&again, 12_345));
        let text = String::from_utf8(bytes(&w, 12_345)).unwrap();
        assert!(text.starts_with("request=smtpd_access_policy\nprotocol_state=RCPT\n"));
        assert!(text.ends_with("mail_version=3.7.11\n\n"));
        assert_eq!(text.lines().filter(|l| l.contains('=')).count(), 31);
        let other_seed = workload(WorkloadConfig {
            seed: 2,
            ..WorkloadConfig::default()
        });
        assert_ne!(bytes(&w, 12_345), bytes(&other_seed, 12_345));
    }

    #[test]
    fn fast_encoding_matches_the_codec() {
        use spamgate_policy::{Limits, PolicyDecoder};
        let decode = |bytes: &[u8]| {
            let mut input = bytes;
            let request = PolicyDecoder::new(Limits::default())
                .decode(&mut input)
                .unwrap()
                .unwrap();
            assert!(input.is_empty());
            request
        };
        for config in [
            WorkloadConfig::default(),
            WorkloadConfig {
                mode: Mode::Fill,
                ..WorkloadConfig::default()
            },
        ] {
            let w = workload(config);
            for i in (0..200_000).step_by(997) {
                let mut fast = Vec::new();
                w.encode(i, &mut fast);
                assert_eq!(
                    decode(&fast),
                    decode(&w.request(i).to_bytes()),
                    "request {i}"
                );
            }
        }
    }

    #[test]
    fn warmup_visits_every_client_in_order() {
        let w = workload(WorkloadConfig::default());
        for i in [0u64, 1, 4999] {
            assert_eq!(u64::from(w.triplet(i).client), i);
        }
    }

    #[test]
    fn retries_repeat_an_earlier_triplet() {
        let w = workload(WorkloadConfig::default());
        let range = 10_000u64..30_000;
        let earlier: std::collections::HashSet<(u32, u64, u32)> = (0..30_000u64)
            .map(|i| w.fresh_triplet(i))
            .map(|t| (t.client, t.sender, t.recipient))
            .collect();
        let retries = range
            .clone()
            .filter(|&i| w.triplet(i) != w.fresh_triplet(i))
            .count();
        assert!((1_600..2_400).contains(&retries), "{retries}");
        for i in range {
            let t = w.triplet(i);
            assert!(earlier.contains(&(t.client, t.sender, t.recipient)));
        }
    }

    #[test]
    fn fill_mode_makes_every_triplet_new_and_suspicious() {
        let w = workload(WorkloadConfig {
            mode: Mode::Fill,
            ..WorkloadConfig::default()
        });
        let senders: std::collections::HashSet<String> = (0..1000)
            .map(|i| w.sender(w.triplet(i).sender, 0))
            .collect();
        assert_eq!(senders.len(), 1000);
        for i in 0..1000 {
            let client = &w.clients()[w.triplet(i).client as usize];
            assert!(client.kind.is_suspicious() && !client.listed);
        }
    }

    #[test]
    fn bad_shares_are_refused() {
        let check = |config: WorkloadConfig, message: &str| {
            let error = Workload::new(config).unwrap_err().to_string();
            assert!(error.contains(message), "{error}");
        };
        check(
            WorkloadConfig {
                retry_share: 1.5,
                ..WorkloadConfig::default()
            },
            "--retry-share",
        );
        check(
            WorkloadConfig {
                unknown_share: 0.6,
                generic_share: 0.6,
                ..WorkloadConfig::default()
            },
            "must not exceed 1",
        );
        check(
            WorkloadConfig {
                clients: 200_000,
                ipv6_share: 0.0,
                ..WorkloadConfig::default()
            },
            "IPv4 clients",
        );
    }
}
