//! The decision as a value. Front-ends render it (policy protocol, milter, SMTP); logs
//! and metrics read its reasons.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::client::ClientClass;
use crate::greylist::{GreylistKeys, GreylistOutcome};
use crate::outbound::{AccountStatus, LimitKind};
use crate::tarpit::TarpitOutcome;

/// What to do with the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = VerdictAction))]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// No objection: later restrictions still run (Postfix `DUNNO`).
    Pass,
    /// Temporary error asking the client to resend (Postfix `DEFER_IF_PERMIT`).
    Greylist { retry_in: u64 },
    /// Permanent refusal (5xx), and why: inbound only for a DNSBL score at the
    /// threshold, submission only for the account's standing, a missing login or a
    /// message that can never fit.
    Reject { refusal: Refusal },
    /// Temporary error because spamgate itself is in trouble (store down, fail mode "defer").
    TempFail,
    /// Temporary refusal of a submission over its account's limit.
    Defer { retry_in: u64 },
    /// taRgrey's tarpit: hold the reply `hold_ms`, then pass. When the hold cannot be
    /// completed, the front-end answers `Greylist { retry_in }` instead
    /// ([`Verdict::tarpit_cut`]): the first attempt is already recorded.
    Tarpit { hold_ms: u64, retry_in: u64 },
}

impl Action {
    pub fn id(&self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Greylist { .. } => "greylist",
            Action::Reject { .. } => "reject",
            Action::TempFail => "tempfail",
            Action::Defer { .. } => "defer",
            Action::Tarpit { .. } => "tarpit",
        }
    }
}

/// Why a transaction is refused for good. The reply template follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// Inbound: the client's DNSBL score reached the threshold.
    Dnsbl,
    /// Submission: the account is suspended or terminated.
    AccountStatus,
    /// Submission: no SMTP AUTH on a submission port.
    Unauthenticated,
    /// Submission: more recipients than the account may ever send at once.
    TooLarge,
}

impl Refusal {
    pub fn id(&self) -> &'static str {
        match self {
            Refusal::Dnsbl => "dnsbl",
            Refusal::AccountStatus => "account-status",
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::TooLarge => "too-large",
        }
    }
}

/// What an allow-list entry lets a transaction skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AllowScope {
    /// Greylisting only: the DNS lists still apply (a sender or recipient can be forged,
    /// so such an entry must never let a listed host in).
    #[default]
    Greylist,
    /// Every check, the DNS lists included (trusted client addresses and names).
    All,
}

impl AllowScope {
    pub fn id(&self) -> &'static str {
        match self {
            AllowScope::Greylist => "greylist",
            AllowScope::All => "all",
        }
    }

    pub fn parse(text: &str) -> Option<AllowScope> {
        match text {
            "greylist" => Some(AllowScope::Greylist),
            "all" => Some(AllowScope::All),
            _ => None,
        }
    }

    /// The scope an entry of `kind` has unless it says otherwise: every check for the
    /// client's own identity (address, verified name, and the RFC 2142 role addresses,
    /// which listed hosts must reach to get delisted), greylisting only for what a
    /// client can forge (sender, recipient).
    pub fn default_for(kind: AllowListKind) -> AllowScope {
        match kind {
            AllowListKind::ClientAddress | AllowListKind::ClientName | AllowListKind::Rfc2142 => {
                AllowScope::All
            }
            AllowListKind::Sender | AllowListKind::Recipient => AllowScope::Greylist,
        }
    }

    /// Whether an entry of `kind` may have this scope (only the client's identity may
    /// skip the DNS lists).
    pub fn allowed_for(self, kind: AllowListKind) -> bool {
        self == AllowScope::Greylist || AllowScope::default_for(kind) == AllowScope::All
    }
}

/// Which allow-list let the transaction through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AllowListKind {
    ClientAddress,
    ClientName,
    Sender,
    Recipient,
    /// `postmaster@` / `abuse@` (RFC 2142).
    Rfc2142,
}

impl AllowListKind {
    /// The kinds an operator can add at run time (`spamgate allow add KIND VALUE`).
    pub const RUNTIME: [AllowListKind; 4] = [
        AllowListKind::ClientAddress,
        AllowListKind::ClientName,
        AllowListKind::Sender,
        AllowListKind::Recipient,
    ];

    pub fn parse(text: &str) -> Option<AllowListKind> {
        match text {
            "client-address" => Some(AllowListKind::ClientAddress),
            "client-name" => Some(AllowListKind::ClientName),
            "sender" => Some(AllowListKind::Sender),
            "recipient" => Some(AllowListKind::Recipient),
            "rfc2142" => Some(AllowListKind::Rfc2142),
            _ => None,
        }
    }

    pub fn id(&self) -> &'static str {
        match self {
            AllowListKind::ClientAddress => "client-address",
            AllowListKind::ClientName => "client-name",
            AllowListKind::Sender => "sender",
            AllowListKind::Recipient => "recipient",
            AllowListKind::Rfc2142 => "rfc2142",
        }
    }
}

/// One step of the decision, machine-readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Reason {
    /// spamgate only decides at RCPT unless configured otherwise.
    Stage {
        protocol_state: String,
    },
    Allowed {
        list: AllowListKind,
        entry: String,
        scope: AllowScope,
    },
    Dnswl {
        zone: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
        answers: Vec<Ipv4Addr>,
    },
    Dnsbl {
        zone: String,
        weight: i32,
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
        answers: Vec<Ipv4Addr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        txt: Option<String>,
    },
    DnsblScore {
        score: i32,
        threshold: i32,
    },
    /// A list could not be asked; never a reason to reject.
    ListError {
        zone: String,
        error: String,
    },
    Client {
        client: ClientClass,
    },
    /// The client is suspicious but its class is not greylisted by configuration.
    ClassNotGreylisted {
        class: String,
    },
    GreylistDisabled,
    Greylist {
        #[serde(flatten)]
        outcome: GreylistOutcome,
        keys: GreylistKeys,
    },
    StoreError {
        error: String,
    },
    /// The client's organisational domain learned to skip greylisting (its confirmed
    /// servers kept passing it), until `until`.
    Learned {
        org: String,
        until: crate::UnixTime,
    },
    /// The envelope sender's domain authorises the client through a narrow SPF
    /// mechanism (`term`, in the record of `record`): one of that domain's own servers.
    SpfPass {
        domain: String,
        record: String,
        term: String,
    },
    /// What the tarpit did with a client greylisting would defer.
    Tarpit {
        #[serde(flatten)]
        outcome: TarpitOutcome,
    },
    /// An authenticated submission, judged by the outbound policy.
    Submission {
        username: String,
    },
    /// The account is suspended or terminated.
    AccountStatus {
        status: AccountStatus,
    },
    /// No SMTP AUTH on a submission port.
    Unauthenticated {
        server_port: u16,
    },
    /// A per-account limit tripped: `used` of `allowed` in the period, this message
    /// would cost `cost`.
    RateLimit {
        limit: LimitKind,
        used: u64,
        cost: u32,
        allowed: u32,
        retry_in: u64,
    },
}

impl Reason {
    /// A compact `step:detail` form for the one-line decision log.
    pub fn short(&self) -> String {
        match self {
            Reason::Stage { protocol_state } => format!("stage:{protocol_state}"),
            Reason::Allowed { list, entry, scope } => {
                format!("allow:{}={entry}(scope={})", list.id(), scope.id())
            }
            Reason::Dnswl { zone, answers } => format!("dnswl:{zone}={}", join(answers)),
            Reason::Dnsbl {
                zone,
                weight,
                answers,
                ..
            } => format!("dnsbl:{zone}={}*{weight}", join(answers)),
            Reason::DnsblScore { score, threshold } => format!("dnsbl-score:{score}/{threshold}"),
            Reason::ListError { zone, error } => format!("list-error:{zone}({error})"),
            Reason::Client { client } => format!("client:{}", client.short()),
            Reason::ClassNotGreylisted { class } => format!("not-greylisted:{class}"),
            Reason::GreylistDisabled => "greylist:disabled".to_string(),
            Reason::Greylist { outcome, .. } => {
                let mut s = format!("greylist:{}", outcome.id());
                match outcome {
                    GreylistOutcome::Passed { waited } => {
                        let _ = write!(s, "(waited={waited}s)");
                    }
                    GreylistOutcome::TooEarly { waited, retry_in } => {
                        let _ = write!(s, "(waited={waited}s,retry_in={retry_in}s)");
                    }
                    GreylistOutcome::New { retry_in } => {
                        let _ = write!(s, "(retry_in={retry_in}s)");
                    }
                    GreylistOutcome::NetworkFull { pending } => {
                        let _ = write!(s, "(pending={pending})");
                    }
                    _ => {}
                }
                s
            }
            Reason::StoreError { error } => format!("store-error:{error}"),
            Reason::Learned { org, .. } => format!("learned({org})"),
            Reason::SpfPass { domain, .. } => format!("spf-pass({domain})"),
            Reason::Tarpit { outcome } => match outcome {
                TarpitOutcome::Held { hold_ms } => format!("tarpit:held({hold_ms}ms)"),
                TarpitOutcome::Full { max_concurrent } => {
                    format!("tarpit:full(max={max_concurrent})")
                }
                other => format!("tarpit:{}", other.id()),
            },
            Reason::Submission { username } => format!("submission:{username}"),
            Reason::AccountStatus { status } => format!("account:{}", status.id()),
            Reason::Unauthenticated { server_port } => {
                format!("unauthenticated:port={server_port}")
            }
            Reason::RateLimit {
                limit,
                used,
                cost,
                allowed,
                retry_in,
            } => format!(
                "limit:{}(used={used},cost={cost},allowed={allowed},retry_in={retry_in}s)",
                limit.id()
            ),
        }
    }
}

fn join(answers: &[Ipv4Addr]) -> String {
    let parts: Vec<String> = answers.iter().map(Ipv4Addr::to_string).collect();
    parts.join(",")
}

/// The decision and every reason behind it, in the order the steps ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verdict {
    #[serde(flatten)]
    pub action: Action,
    pub reasons: Vec<Reason>,
}

impl Verdict {
    pub fn pass(reasons: Vec<Reason>) -> Verdict {
        Verdict {
            action: Action::Pass,
            reasons,
        }
    }

    /// The listed zones that made a reject, positive weights only (for the reply text).
    pub fn rejecting_lists(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.reasons.iter().filter_map(|r| match r {
            Reason::Dnsbl {
                zone, weight, txt, ..
            } if *weight > 0 => Some((zone.as_str(), txt.as_deref())),
            _ => None,
        })
    }

    pub fn client_class(&self) -> Option<&ClientClass> {
        self.reasons.iter().find_map(|r| match r {
            Reason::Client { client } => Some(client),
            _ => None,
        })
    }

    /// The answer for a tarpit verdict whose hold could not be completed (the policy
    /// connection closed, shutdown): plain greylisting, since the first attempt is
    /// already recorded. Other verdicts are returned as they are.
    pub fn tarpit_cut(mut self) -> Verdict {
        if let Action::Tarpit { retry_in, .. } = self.action {
            self.action = Action::Greylist { retry_in };
            self.reasons.push(Reason::Tarpit {
                outcome: TarpitOutcome::Cut,
            });
        }
        self
    }

    /// How long the front-end holds the reply, for a tarpit verdict.
    pub fn hold(&self) -> Option<std::time::Duration> {
        match self.action {
            Action::Tarpit { hold_ms, .. } => Some(std::time::Duration::from_millis(hold_ms)),
            _ => None,
        }
    }

    pub fn tarpit_outcome(&self) -> Option<&TarpitOutcome> {
        self.reasons.iter().find_map(|r| match r {
            Reason::Tarpit { outcome } => Some(outcome),
            _ => None,
        })
    }

    pub fn greylist_outcome(&self) -> Option<&GreylistOutcome> {
        self.reasons.iter().find_map(|r| match r {
            Reason::Greylist { outcome, .. } => Some(outcome),
            _ => None,
        })
    }

    /// `reason reason reason` for the log line.
    pub fn reasons_short(&self) -> String {
        let parts: Vec<String> = self.reasons.iter().map(Reason::short).collect();
        parts.join(" ")
    }
}
