//! The `spamgate` command line definition (clap), apart from what the commands do
//! (`main.rs`), so tests can walk it and `spamgate generate` can render man pages and
//! shell completions from it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

#[derive(Parser)]
#[command(
    name = "spamgate",
    version,
    about = "Anti-spam policy daemon for ISPs: DNSBL, S25R screening, selective greylisting"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the Postfix policy daemon.
    Serve {
        /// Configuration file; default: $SPAMGATE_CONFIG, else /etc/spamgate/spamgate.toml
        /// when it exists, else the built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Make the running daemon re-read its configuration and allow-lists (SIGHUP to the
    /// process in the pid file), after checking the file here: an invalid one is
    /// reported and the daemon is not signalled.
    Reload {
        /// The configuration the daemon runs with.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Process id file; default: `[server] pid_file` of the configuration.
        #[arg(long)]
        pid_file: Option<PathBuf>,
    },
    /// Explain the decision for one transaction (does not change state unless --record).
    Check(CheckArgs),
    /// Classify host names (arguments, or stdin one per line) by the reverse-DNS rules.
    /// Lines as logs have them work too: Postfix's `name[address]` and `unknown`. One
    /// answer per input line, in order (an empty line gets an empty answer).
    Classify {
        /// Host names; none: read stdin.
        names: Vec<String>,
        /// Configuration file (its `[rdns]` rules and exceptions); without it, the defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// List the active rules instead.
        #[arg(long)]
        rules: bool,
        /// Also say which rule or exception decided, and every rule that matched.
        #[arg(long)]
        explain: bool,
        /// One JSON object per name.
        #[arg(long)]
        json: bool,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Inspect greylist state.
    Greylist {
        #[command(subcommand)]
        command: GreylistCommand,
    },
    /// Count decisions per action and reason from decision log lines (stdin or files), e.g.
    /// `journalctl -u spamgate --since -1h | spamgate stats`.
    Stats {
        /// Log files to read (text or JSON decision lines, in any mix); none: stdin.
        files: Vec<PathBuf>,
        /// The counts as one JSON document.
        #[arg(long)]
        json: bool,
        /// Greylisting effectiveness instead: per day of the first attempt, client class
        /// and rule, first attempts greylisted, retries that passed and their delays,
        /// and those not passed (never came back once the day is settled). Needs lines
        /// with a timestamp first (`journalctl -u spamgate -o short-iso`), or JSON lines
        /// (`log_format = "json"`), which carry their own.
        #[arg(long)]
        effectiveness: bool,
        /// Configuration file (`[server] display_timezone` for the days, `[greylist]
        /// retry_window`), with --effectiveness; default: $SPAMGATE_CONFIG, else
        /// /etc/spamgate/spamgate.toml when it exists, else the built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Store maintenance: copy all state between backends (SQLite ↔ Redis).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
        /// Configuration file; default: $SPAMGATE_CONFIG, else /etc/spamgate/spamgate.toml
        /// when it exists, else the built-in defaults.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Runtime allow-list entries, kept in the store: effective within seconds on every
    /// spamgate sharing it, without a reload.
    Allow {
        #[command(subcommand)]
        command: AllowCommand,
        /// Configuration file; default: $SPAMGATE_CONFIG, else /etc/spamgate/spamgate.toml
        /// when it exists, else the built-in defaults.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Learned exemptions: organisations whose confirmed servers kept passing greylisting
    /// and now skip it (docs/learning.md).
    Learned {
        #[command(subcommand)]
        command: LearnedCommand,
        /// Configuration file; default: $SPAMGATE_CONFIG, else /etc/spamgate/spamgate.toml
        /// when it exists, else the built-in defaults.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Submission accounts: status, limits, events (the abuse desk's controls).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
        /// Configuration file; default: $SPAMGATE_CONFIG, else /etc/spamgate/spamgate.toml
        /// when it exists, else the built-in defaults.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// JSON (one object per line for listings).
        #[arg(long, global = true)]
        json: bool,
    },
    /// Outbound Port 25 Blocking: nftables rules for customer pools.
    Op25b {
        #[command(subcommand)]
        command: Op25bSub,
        /// Configuration file; default: $SPAMGATE_CONFIG, else /etc/spamgate/spamgate.toml
        /// when it exists, else the built-in defaults.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// The nft command, e.g. "ip netns exec router nft".
        #[arg(long, global = true, default_value = "nft")]
        nft: String,
        /// Pretend it is this time (RFC 3339 or a date) when resolving expiries.
        #[arg(long, global = true)]
        now: Option<String>,
        /// JSON (one object per line for listings).
        #[arg(long, global = true)]
        json: bool,
    },
    /// The abuse desk: reports, cases, the warning → suspension → termination → claim
    /// ladder, attribution (docs/abuse-desk.md).
    Abuse(crate::desk_cli::AbuseArgs),
    /// Users, API tokens and the audit trail of the HTTP admin API (docs/api.md).
    Admin(crate::admin_cli::AdminArgs),
    /// The abuse desk's customers and their accounts and identities.
    Customer(crate::desk_cli::CustomerArgs),
    /// Address history for attribution (RADIUS detail, Kea leases, static, CGNAT).
    Sessions(crate::desk_cli::SessionsArgs),
}

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Copy greylist, auto-whitelist, allow-list, accounts, rate counters and events from
    /// one store to another: `sqlite:PATH` or a `redis://` URL (key prefix and Sentinel
    /// settings from the config's [store]). Entries in the target with the same keys are
    /// replaced; stop the daemons writing to the source first.
    Migrate {
        /// The source store: `sqlite:PATH` or a `redis://` URL.
        #[arg(long)]
        from: String,
        /// The target store: `sqlite:PATH` or a `redis://` URL.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
pub enum AllowCommand {
    /// Add (or update) an entry. KIND: client-address, client-name, sender, recipient.
    Add {
        /// client-address, client-name, sender or recipient.
        kind: String,
        /// The address, network, name or e-mail address (as the KIND takes it).
        value: String,
        /// A free-text note kept with the entry (shown by `list`).
        #[arg(long, default_value = "")]
        note: String,
        /// What a match skips: "greylist" (greylisting only; the DNS lists still apply)
        /// or "all" (every check; client-address and client-name only). Default: "all"
        /// for client entries, "greylist" for senders and recipients.
        #[arg(long)]
        scope: Option<String>,
        /// The entry stops applying after this long (e.g. "30days", "12h").
        #[arg(long)]
        expires: Option<humantime::Duration>,
    },
    /// Remove an entry.
    Remove {
        /// client-address, client-name, sender or recipient.
        kind: String,
        /// The address, network, name or e-mail address (as the KIND takes it).
        value: String,
    },
    /// List the entries.
    List {
        /// One JSON object per entry (shape: docs/operations.md).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum LearnedCommand {
    /// Organisations followed: learned (exempted) ones first, then candidates and refused.
    List {
        /// One JSON object per organisation (the stored record, with `learned` and `refused`).
        #[arg(long)]
        json: bool,
    },
    /// Forget an organisation (its exemption, what it earned, a refusal): it starts over.
    Remove {
        /// The organisational domain, or any name under it.
        domain: String,
    },
    /// Forget every organisation.
    Clear,
}

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Create or update an account (limit overrides; omitted ones keep the defaults).
    Add {
        /// The SASL login name of the account.
        username: String,
        /// Messages per hour this account may submit (default: [submission] limits).
        #[arg(long)]
        messages_per_hour: Option<u32>,
        /// Recipients per day this account may submit to (default: [submission] limits).
        #[arg(long)]
        recipients_per_day: Option<u32>,
        /// A free-text note kept with the entry (shown by `list`).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Refuse the account's submissions from the next request on.
    Suspend(StatusArgs),
    /// Let a suspended account send again.
    Resume(StatusArgs),
    /// Refuse the account's submissions for good (the contract ended).
    Terminate(StatusArgs),
    /// Show one account.
    Show {
        /// The SASL login name of the account.
        username: String,
    },
    /// List accounts.
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Events (limit trips, refused sends, status changes), newest first.
    Events {
        /// The SASL login name of the account.
        username: Option<String>,
        /// Only events at or after this time, as journalctl reads it: "yesterday",
        /// "-1h", "2h ago", "2026-12-01", "2026-12-01 10:00:00", RFC 3339; a bare
        /// duration ("7days") means that long ago. Dates are in `[server]
        /// display_timezone`.
        #[arg(long, default_value = "30days", allow_hyphen_values = true)]
        since: String,
        /// Only events at or before this time (the forms --since takes); default: now.
        /// --limit counts the newest events after --since before this filter.
        #[arg(long, allow_hyphen_values = true)]
        until: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

/// The account whose status changes, and what the change may do.
#[derive(Args)]
pub struct StatusArgs {
    /// The SASL login name of the account.
    pub username: String,
    /// Why (kept with the account and in its event; shown to the abuse desk only).
    #[arg(long, default_value = "")]
    pub note: String,
    /// Add the account if it is not in the store (otherwise an unknown name is an error).
    #[arg(long)]
    pub create: bool,
    /// Change a terminated account too (termination is otherwise final).
    #[arg(long)]
    pub force: bool,
}

#[derive(Subcommand, Clone, Copy)]
pub enum Op25bSub {
    /// Print the nftables ruleset.
    Render,
    /// Check the ruleset with `nft -c`, then load it atomically.
    Apply,
    /// Update only the set elements (pools, exemptions, relays), without reloading chains.
    Sync,
    /// Blocked attempts per source, most first.
    Hits,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective settings.
    Check {
        /// Configuration file; default: $SPAMGATE_CONFIG, else /etc/spamgate/spamgate.toml
        /// when it exists, else the built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Postfix's main.cf: warn when Postfix never asks spamgate at `[submission]
        /// charge_at` (then no submission limit ever applies). E.g. /etc/postfix/main.cf
        #[arg(long, value_name = "PATH")]
        postfix_main_cf: Option<PathBuf>,
        /// Postfix's master.cf, for the submission services' `-o` overrides (with
        /// --postfix-main-cf for the values they refer to). E.g. /etc/postfix/master.cf
        #[arg(long, value_name = "PATH")]
        postfix_master_cf: Option<PathBuf>,
    },
    /// Print an annotated configuration with every key and its default.
    Example,
}

#[derive(Subcommand)]
pub enum GreylistCommand {
    /// List greylist triplets.
    List {
        /// Configuration file; default: $SPAMGATE_CONFIG, else /etc/spamgate/spamgate.toml
        /// when it exists, else the built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// JSON (one object per line for listings).
        #[arg(long)]
        json: bool,
    },
    /// Counts of pending and passed triplets and auto-whitelisted clients.
    Stats {
        /// Configuration file; default: $SPAMGATE_CONFIG, else /etc/spamgate/spamgate.toml
        /// when it exists, else the built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// One JSON object with the counts (shape: docs/operations.md).
        #[arg(long)]
        json: bool,
    },
    /// Show the entries of a client, network, sender or recipient (options combine).
    Show {
        #[command(flatten)]
        which: GreylistWhich,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// JSON (one object per line for listings).
        #[arg(long)]
        json: bool,
    },
    /// Delete entries, so their next attempt is greylisted as new (e.g. an address
    /// auto-whitelisted by mistake, or a test sender). Prints what went.
    Delete {
        #[command(flatten)]
        which: GreylistWhich,
    },
}

/// Which greylist entries `show` and `delete` mean (at least one of the four).
#[derive(Args)]
pub struct GreylistWhich {
    /// The address's auto-whitelist entry, and (unless --network is given) the triplets
    /// of its network under the configured prefix lengths.
    #[arg(long)]
    pub client: Option<IpAddr>,
    /// Triplets of one network as `greylist list` prints it: `192.0.2.0/24`,
    /// `2001:db8::/64`, or `domain:example.net` when keyed by PTR domain.
    #[arg(long)]
    pub network: Option<String>,
    /// Triplets of this sender (normalised as spamgate stores it: lowercase, BATV tag
    /// and +extension removed, digit runs as #).
    #[arg(long)]
    pub sender: Option<String>,
    /// The envelope recipient (Postfix `recipient`).
    #[arg(long)]
    pub recipient: Option<String>,
    /// Configuration file; default: $SPAMGATE_CONFIG, else /etc/spamgate/spamgate.toml
    /// when it exists, else the built-in defaults.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// The attributes Postfix would send; the request then takes the daemon's own path
/// (decoder, transaction, service, reply), without writing anything unless --record.
#[derive(Args)]
pub struct CheckArgs {
    /// The client's IP address (Postfix `client_address`).
    #[arg(long)]
    pub client_address: IpAddr,
    /// Postfix's verified client name (`unknown` if none).
    #[arg(long)]
    pub client_name: Option<String>,
    /// Postfix's unverified PTR name.
    #[arg(long)]
    pub reverse_client_name: Option<String>,
    /// The HELO/EHLO name (Postfix `helo_name`).
    #[arg(long)]
    pub helo: Option<String>,
    /// The envelope sender; empty for the null sender.
    #[arg(long, default_value = "")]
    pub sender: String,
    /// The envelope recipient (Postfix `recipient`).
    #[arg(long)]
    pub recipient: String,
    /// Protocol state to decide at.
    #[arg(long, default_value = "RCPT")]
    pub protocol_state: String,
    /// The SMTP AUTH login (Postfix `sasl_username`): explains a submission decision.
    #[arg(long)]
    pub sasl_username: Option<String>,
    /// The local port the client connected to (Postfix `server_port`, e.g. 587).
    #[arg(long)]
    pub server_port: Option<u16>,
    /// Recipients of the message so far (Postfix `recipient_count`, at DATA).
    #[arg(long)]
    pub recipient_count: Option<u64>,
    /// Record the attempt (greylist entry, charges, events), as a real request would.
    #[arg(long)]
    pub record: bool,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
    /// Configuration file; default: $SPAMGATE_CONFIG, else /etc/spamgate/spamgate.toml
    /// when it exists, else the built-in defaults.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// `spamgate generate ...`, parsed apart from [`Cli`] so that the man pages, completions
/// and `--help` it renders from [`Cli`] do not offer it to operators (clap's completions
/// would list even a hidden subcommand).
#[derive(Parser)]
#[command(
    name = "spamgate generate",
    bin_name = "spamgate generate",
    version,
    about = "Write man pages or shell completions generated from the spamgate command line, \
             so they cannot drift from it (`make install` and packages call it)"
)]
pub struct GenerateCli {
    #[command(subcommand)]
    pub command: GenerateCommand,
}

impl GenerateCli {
    /// Whether `args` (as the process got them) are `spamgate generate ...`.
    pub fn wanted(args: &[std::ffi::OsString]) -> bool {
        args.get(1).is_some_and(|word| word == "generate")
    }
}

#[derive(Subcommand)]
pub enum GenerateCommand {
    /// One man page per command (spamgate.1, spamgate-greylist-list.1, ...) into DIR.
    Man {
        /// The directory to write into (created when missing).
        dir: PathBuf,
    },
    /// The completion script for SHELL into DIR (spamgate.bash, _spamgate, spamgate.fish).
    Completions {
        /// The shell the script is for.
        #[arg(value_enum)]
        shell: Shell,
        /// The directory to write into (created when missing).
        dir: PathBuf,
    },
}

/// Writes the man pages of every visible command under `dir`, section 1, named as man
/// looks them up (`man spamgate-greylist-list`).
pub fn write_man_pages(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
}

/// Writes the completion script for `shell` under `dir`; returns its path.
pub fn write_completions(shell: Shell, dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    clap_complete::generate_to(shell, &mut Cli::command(), "spamgate", dir)
}
