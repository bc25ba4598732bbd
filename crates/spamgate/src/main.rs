//! The `spamgate` command line.
#![forbid(unsafe_code)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use spamgate::cli::{
    AccountCommand, AllowCommand, CheckArgs, Cli, Command, ConfigCommand, GenerateCli,
    GenerateCommand, GreylistCommand, GreylistWhich, LearnedCommand, Op25bSub, StatusArgs,
    StoreCommand,
};
use spamgate::config::{Config, EXAMPLE};
use spamgate::daemon::{self, exit};
use spamgate_app::{Clock, Mode, Service, SystemClock};
use spamgate_rdns::NameClass;
use spamgate_store::GreylistAdmin;

/// The store filter for the entries `greylist show` and `delete` name.
fn greylist_filter(
    which: &GreylistWhich,
    config: &Config,
) -> Result<spamgate_store::GreylistFilter, daemon::Fatal> {
    use spamgate_engine::greylist::{client_network, normalise_sender};
    if which.client.is_none()
        && which.network.is_none()
        && which.sender.is_none()
        && which.recipient.is_none()
    {
        return Err(usage_error(
            "name the entries: --client, --network, --sender and/or --recipient".into(),
        ));
    }
    let keys = config.engine_config().keys;
    let network = which.network.clone().or_else(|| {
        which
            .client
            .map(|client| client_network(client, &keys).to_string())
    });
    Ok(spamgate_store::GreylistFilter {
        network,
        sender: which.sender.as_deref().map(normalise_sender),
        recipient: which
            .recipient
            .as_deref()
            .map(|r| r.trim().to_ascii_lowercase()),
        client: which.client,
    })
}

/// `spamgate generate`: man pages and completions from the clap definition.
fn generate(command: GenerateCommand) -> Result<(), daemon::Fatal> {
    let failed = |dir: &std::path::Path, e: std::io::Error| daemon::Fatal {
        code: exit::OS,
        error: anyhow::anyhow!("cannot write into {}: {e}", dir.display()),
    };
    match command {
        GenerateCommand::Man { dir } => {
            spamgate::cli::write_man_pages(&dir).map_err(|e| failed(&dir, e))
        }
        GenerateCommand::Completions { shell, dir } => {
            let path =
                spamgate::cli::write_completions(shell, &dir).map_err(|e| failed(&dir, e))?;
            println!("{}", path.display());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let result = if GenerateCli::wanted(&args) {
        generate(GenerateCli::parse_from(&args[1..]).command)
    } else {
        let cli = Cli::parse_from(&args);
        // Writes the log lines still buffered before the error line below and the exit.
        let _logs = spamgate::logging::FlushOnExit;
        run(cli)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            eprintln!("spamgate: {}", error_text(&fatal.error));
            ExitCode::from(u8::try_from(fatal.code).unwrap_or(1))
        }
    }
}

/// The error and its causes, each said once: a cause whose text the message already
/// carries (errors that quote their source) is not repeated.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// The configuration every command reads: `-c FILE`, else `$SPAMGATE_CONFIG`, else
/// [`DEFAULT_CONFIG`] when it exists, else the built-in defaults. Says on stderr which
/// one and which store it names, so an admin command can never quietly work on another
/// store than the daemon's.
/// `config check --postfix-main-cf/--postfix-master-cf`: what Postfix's files say about
/// charging submissions (`postfix_check`). A file that cannot be read is a usage error.
fn postfix_warnings(
    config: &Config,
    main_cf: Option<&PathBuf>,
    master_cf: Option<&PathBuf>,
) -> Result<Vec<String>, daemon::Fatal> {
    if main_cf.is_none() && master_cf.is_none() {
        return Ok(Vec::new());
    }
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).map_err(|e| daemon::Fatal {
            code: exit::USAGE,
            error: anyhow::anyhow!("cannot read {}: {e}", path.display()),
        })
    };
    let main = match main_cf {
        Some(path) => spamgate::postfix_check::parse_main_cf(&read(path)?),
        None => Default::default(),
    };
    let master = match master_cf {
        Some(path) => Some(spamgate::postfix_check::parse_master_cf(&read(path)?)),
        None => None,
    };
    if !config.submission.enabled {
        return Ok(Vec::new());
    }
    Ok(spamgate::postfix_check::never_charged(
        &main,
        master.as_deref(),
        &config.submission.charge_at,
        &config.submission.ports,
    ))
}

fn load(path: Option<&PathBuf>) -> Result<Config, daemon::Fatal> {
    load_saying(path, true)
}

/// [`load`], saying on stderr which file and store it uses only when `say`.
fn load_saying(path: Option<&PathBuf>, say: bool) -> Result<Config, daemon::Fatal> {
    let (path, source) = config_file(path);
    let config = Config::load_or_default(path.as_deref()).map_err(|e| daemon::Fatal {
        code: exit::CONFIG,
        error: e.into(),
    })?;
    let file = match &path {
        Some(path) => format!("configuration {} (from {source})", path.display()),
        None => {
            format!("no configuration file ({DEFAULT_CONFIG} does not exist): built-in defaults")
        }
    };
    // `serve` with JSON lines on stderr: the startup log line says the same, as JSON.
    let json_on_stderr = config.server.log_format == spamgate::logging::LogFormat::Json
        && config.server.log_target == spamgate::logging::LogTarget::Stderr;
    if say || !json_on_stderr {
        eprintln!("spamgate: {file}; store {}", config.store.describe());
    }
    Ok(config)
}

/// The configuration file [`load`] reads, and where its name came from.
fn config_file(path: Option<&PathBuf>) -> (Option<PathBuf>, &'static str) {
    let from_env = std::env::var_os("SPAMGATE_CONFIG").map(PathBuf::from);
    let default = PathBuf::from(DEFAULT_CONFIG);
    match (path, from_env) {
        (Some(path), _) => (Some(path.clone()), "-c"),
        (None, Some(path)) => (Some(path), "SPAMGATE_CONFIG"),
        (None, None) if default.exists() => (Some(default), "the default path"),
        (None, None) => (None, ""),
    }
}

/// Where the shipped unit and the package keep the configuration.
const DEFAULT_CONFIG: &str = "/etc/spamgate/spamgate.toml";

fn runtime() -> Result<tokio::runtime::Runtime, daemon::Fatal> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| daemon::Fatal {
            code: exit::OS,
            error: e.into(),
        })
}

fn init_logs(level: &str) {
    spamgate::logging::init(level);
}

fn run(cli: Cli) -> Result<(), daemon::Fatal> {
    match cli.command {
        Command::Serve { config } => {
            let loaded = load_saying(config.as_ref(), false)?;
            spamgate::logging::init_with(&spamgate::logging::LogOptions {
                level: loaded.log_level.clone(),
                format: loaded.server.log_format,
                target: loaded.server.log_target,
                syslog_path: loaded.server.syslog_path.clone(),
            });
            // The file load read, also when named by $SPAMGATE_CONFIG or the default path:
            // SIGHUP re-reads it and the startup line names it.
            let (path, _) = config_file(config.as_ref());
            runtime()?.block_on(daemon::serve(path, loaded))
        }
        Command::Reload { config, pid_file } => reload(config, pid_file),
        Command::Check(args) => check(args),
        Command::Classify {
            names,
            config,
            rules,
            explain,
            json,
        } => classify(names, config, rules, explain, json),
        Command::Config { command } => match command {
            ConfigCommand::Check {
                config,
                postfix_main_cf,
                postfix_master_cf,
            } => {
                let loaded = load(config.as_ref())?;
                let warnings = postfix_warnings(
                    &loaded,
                    postfix_main_cf.as_ref(),
                    postfix_master_cf.as_ref(),
                )?;
                print!("{}", loaded.to_toml());
                for warning in &warnings {
                    eprintln!("spamgate: warning: {warning}");
                }
                eprintln!(
                    "spamgate: configuration {} is valid",
                    config
                        .as_ref()
                        .map_or("(built-in defaults)".into(), |p| p.display().to_string())
                );
                Ok(())
            }
            ConfigCommand::Example => {
                print!("{EXAMPLE}");
                Ok(())
            }
        },
        Command::Greylist { command } => greylist(command),
        Command::Allow { command, config } => allow(command, config),
        Command::Learned { command, config } => learned(command, config),
        Command::Stats {
            files,
            json,
            effectiveness,
            config,
        } => {
            if effectiveness {
                effectiveness_report(&files, json, config.as_ref())
            } else {
                stats(&files, json)
            }
        }
        Command::Store { command, config } => store_command(command, config),
        Command::Account {
            command,
            config,
            json,
        } => account(command, config, json),
        Command::Op25b {
            command,
            config,
            nft,
            now,
            json,
        } => op25b(command, config, &nft, now.as_deref(), json),
        Command::Abuse(args) => spamgate::desk_cli::abuse(args),
        Command::Admin(args) => spamgate::admin_cli::admin(args),
        Command::Customer(args) => spamgate::desk_cli::customer(args),
        Command::Sessions(args) => spamgate::desk_cli::sessions(args),
    }
}

fn op25b(
    command: Op25bSub,
    config: Option<PathBuf>,
    nft: &str,
    now: Option<&str>,
    json: bool,
) -> Result<(), daemon::Fatal> {
    use spamgate::op25b::Op25bCommand;
    let usage = |message: String| daemon::Fatal {
        code: exit::CONFIG,
        error: anyhow::anyhow!(message),
    };
    let config = load(config.as_ref())?;
    let nft = spamgate_op25b::NftRunner::from_command_line(nft)
        .ok_or_else(|| usage("--nft is empty".into()))?
        .with_timeout(config.op25b.nft_timeout);
    let now = match now {
        None => std::time::SystemTime::now(),
        Some(text) => {
            let ms = spamgate_op25b::Expiry::parse(text)
                .map_err(usage)?
                .unix_ms();
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
        }
    };
    let command = match command {
        Op25bSub::Render => Op25bCommand::Render,
        Op25bSub::Apply => Op25bCommand::Apply,
        Op25bSub::Sync => Op25bCommand::Sync,
        Op25bSub::Hits => Op25bCommand::Hits,
    };
    // Exemptions that name customers follow the abuse desk's ladder: read it (only then).
    let desk = if config.op25b.has_customer_exemptions() && command != Op25bCommand::Hits {
        let path = config.desk.store_path(&config.store);
        Some(
            spamgate_app::desk::open_sqlite_desk(&path).map_err(|e| daemon::Fatal {
                code: exit::STORE,
                error: e.into(),
            })?,
        )
    } else {
        None
    };
    spamgate::op25b::run(command, &config.op25b, &nft, desk.as_deref(), now, json).map_err(|e| {
        use spamgate_app::op25b::Op25bServiceError;
        daemon::Fatal {
            code: match &e {
                Op25bServiceError::Op25b(spamgate_op25b::Op25bError::Invalid(_)) => exit::CONFIG,
                Op25bServiceError::Desk(_) => exit::STORE,
                Op25bServiceError::Op25b(_) => 1,
            },
            error: e.into(),
        }
    })
}

fn check(args: CheckArgs) -> Result<(), daemon::Fatal> {
    let config = load(args.config.as_ref())?;
    init_logs("warn");
    let request = check_request(&args, &config)?;
    let rt = runtime()?;
    rt.block_on(async {
        let settings = config.settings().map_err(|e| daemon::Fatal {
            code: exit::CONFIG,
            error: e.into(),
        })?;
        let dns = daemon::build_dns(&config)?;
        let store = daemon::open_store(&config).await?;
        let service = Service::new(settings, store, dns, SystemClock);
        if let Err(e) = service.refresh_runtime_allow().await {
            eprintln!("spamgate: cannot read the runtime allow-list: {e}");
        }
        let mode = if args.record {
            Mode::Record
        } else {
            Mode::DryRun
        };
        let mut action = String::new();
        let answer = spamgate_postfix::answer(&service, request, mode, &mut action).await;
        if args.json {
            let out = serde_json::json!({
                "verdict": answer.as_ref().map(|a| &a.verdict),
                "postfix_action": action,
                "recorded": args.record,
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        } else {
            let action_id = answer.as_ref().map_or("pass", |a| a.verdict.action.id());
            println!("action:  {action_id}");
            println!("postfix: action={action}");
            println!("reasons:");
            for reason in answer.iter().flat_map(|a| &a.verdict.reasons) {
                println!("  - {}", reason.short());
            }
            if !args.record {
                println!("(state not changed; use --record to record this attempt)");
            }
        }
        service.into_store().close().await;
        Ok(())
    })
}

/// The request Postfix would send for these arguments, read back through the daemon's
/// own decoder under the configured limits.
fn check_request(
    args: &CheckArgs,
    config: &Config,
) -> Result<spamgate_policy::PolicyRequest, daemon::Fatal> {
    let request = spamgate_policy::PolicyRequest {
        protocol_state: Some(spamgate_policy::ProtocolState::parse(&args.protocol_state)),
        client_address: Some(args.client_address),
        client_name: args.client_name.clone(),
        reverse_client_name: args.reverse_client_name.clone(),
        helo_name: args.helo.clone(),
        sender: Some(args.sender.clone()),
        recipient: Some(args.recipient.clone()),
        sasl_username: args.sasl_username.clone(),
        server_port: args.server_port,
        recipient_count: args.recipient_count,
        ..spamgate_policy::PolicyRequest::default()
    };
    let bytes = request.to_bytes();
    let limits = daemon::connection_limits(&config.server).codec;
    let mut decoder = spamgate_policy::PolicyDecoder::new(limits);
    match decoder.decode(&mut bytes.as_slice()) {
        Ok(Some(request)) => Ok(request),
        Ok(None) => Err(usage_error("the request is incomplete".into())),
        Err(e) => Err(usage_error(format!(
            "the daemon would refuse this request: {e}"
        ))),
    }
}

fn classify(
    names: Vec<String>,
    config: Option<PathBuf>,
    rules: bool,
    explain: bool,
    json: bool,
) -> Result<(), daemon::Fatal> {
    let config = load(config.as_ref())?;
    let classifier = spamgate_rdns::Classifier::new(&config.rdns).map_err(|e| daemon::Fatal {
        code: exit::CONFIG,
        error: e.into(),
    })?;
    let mut out = std::io::stdout().lock();
    if rules {
        for (id, pattern) in classifier.rules() {
            let _ = writeln!(out, "{id}\t{pattern}");
        }
        return Ok(());
    }
    let mut emit = |line: &str| {
        let name = host_name_of(line);
        if name.is_empty() {
            let answer = if json { r#"{"name":""}"# } else { "" };
            let _ = writeln!(out, "{answer}");
            return;
        }
        let explanation = classifier.explain(name);
        if json {
            let value = if explain {
                serde_json::json!({ "name": name, "class": explanation.class,
                    "decision": explanation.decision, "matched_rules": explanation.matched_rules })
            } else {
                serde_json::json!({ "name": name, "class": explanation.class })
            };
            let _ = writeln!(out, "{value}");
            return;
        }
        let text = match &explanation.class {
            NameClass::Generic { rule } => format!("generic\t{rule}"),
            NameClass::Excepted { rule, exception } => {
                format!("proper\texcepted {exception} (matched {rule})")
            }
            NameClass::Proper => "proper\t-".to_string(),
        };
        if explain {
            let matched = if explanation.matched_rules.is_empty() {
                "-".to_string()
            } else {
                explanation.matched_rules.join(",")
            };
            let _ = writeln!(out, "{name}\t{text}\tmatched={matched}");
        } else {
            let _ = writeln!(out, "{name}\t{text}");
        }
    };
    if names.is_empty() {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            emit(&line);
        }
    } else {
        for name in &names {
            emit(name);
        }
    }
    Ok(())
}

/// The host name in a line as logs write it: `name`, Postfix's `name[address]` (or
/// `name[address]:port`), with surrounding space; `unknown[address]` is the name
/// `unknown`, which no rule matches.
fn host_name_of(line: &str) -> &str {
    let line = line.trim();
    line.split_once('[').map_or(line, |(name, _)| name).trim()
}

fn greylist(command: GreylistCommand) -> Result<(), daemon::Fatal> {
    let (config, list, stats_json) = match &command {
        GreylistCommand::Show { which, limit, json } => {
            return greylist_show(which, *limit, *json);
        }
        GreylistCommand::Delete { which } => return greylist_delete(which),
        GreylistCommand::List {
            config,
            limit,
            json,
        } => (config, Some((*limit, *json)), false),
        GreylistCommand::Stats { config, json } => (config, None, *json),
    };
    let config = load(config.as_ref())?;
    init_logs("warn");
    runtime()?.block_on(async {
        let store = daemon::open_store(&config).await?;
        let fail = |e: spamgate_store::StoreError| daemon::Fatal { code: exit::STORE, error: e.into() };
        let now = SystemClock.now();
        let zone = display_zone(&config);
        match list {
            Some((limit, json)) => {
                let rows = store.list_triplets(limit).await.map_err(fail)?;
                for row in rows {
                    if json {
                        let value = serde_json::json!({
                            "network": row.network, "sender": row.sender, "recipient": row.recipient,
                            "first_seen": row.first_seen, "last_seen": row.last_seen,
                            "attempts": row.attempts, "passed_at": row.passed_at, "expires_at": row.expires_at,
                        });
                        println!("{value}");
                    } else {
                        let state = row.passed_at.map_or_else(|| "pending".to_string(), |t| format!("passed@{}", zone.time_u64(t)));
                        println!(
                            "{}\t<{}>\t<{}>\t{state}\tattempts={}\tfirst_seen={}\texpires_at={}",
                            row.network, row.sender, row.recipient, row.attempts,
                            zone.time_u64(row.first_seen), zone.time_u64(row.expires_at)
                        );
                    }
                }
            }
            None => {
                let counts = store.counts(now).await.map_err(fail)?;
                if stats_json {
                    let value = serde_json::json!({
                        "pending": counts.pending, "passed": counts.passed, "awl": counts.awl,
                    });
                    println!("{value}");
                } else {
                    println!("pending\t{}\npassed\t{}\nawl\t{}", counts.pending, counts.passed, counts.awl);
                }
            }
        }
        store.close().await;
        Ok(())
    })
}

fn reload(config: Option<PathBuf>, pid_file: Option<PathBuf>) -> Result<(), daemon::Fatal> {
    let loaded = load(config.as_ref())?;
    // The same checks the daemon makes before it swaps configurations.
    loaded.settings().map_err(|e| daemon::Fatal {
        code: exit::CONFIG,
        error: e.into(),
    })?;
    let path = pid_file.or(loaded.server.pid_file).ok_or_else(|| {
        usage_error("no pid file: set [server] pid_file or pass --pid-file".into())
    })?;
    let os_error = |error: String| daemon::Fatal {
        code: exit::OS,
        error: anyhow::anyhow!(error),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        os_error(format!(
            "cannot read {}: {e} (is spamgate running?)",
            path.display()
        ))
    })?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| {
            os_error(format!(
                "{} does not hold a process id: {text:?}",
                path.display()
            ))
        })?;
    // A stale pid file may name a process that has nothing to do with spamgate now.
    let program = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim().to_string())
        .map_err(|_| {
            os_error(format!(
                "no process {pid} (from {}): is spamgate running?",
                path.display()
            ))
        })?;
    if program != "spamgate" {
        return Err(os_error(format!(
            "process {pid} (from {}) is {program:?}, not spamgate: the pid file is stale; \
             not signalled",
            path.display()
        )));
    }
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(|e| {
        os_error(format!(
            "cannot signal process {pid} from {}: {e}",
            path.display()
        ))
    })?;
    println!(
        "configuration valid; sent SIGHUP to spamgate (pid {pid}): it logs \"configuration reloaded\""
    );
    Ok(())
}

/// With `--client` alone, the filter for the triplets keyed by the client's PTR domain
/// too: a forward-confirmed name that is not generic keys its triplets by domain
/// (`greylist.key_by_ptr_domain`), as the daemon would for this client now.
async fn domain_filter(
    which: &GreylistWhich,
    config: &Config,
    filter: &spamgate_store::GreylistFilter,
) -> Result<Option<spamgate_store::GreylistFilter>, daemon::Fatal> {
    let keys = config.engine_config().keys;
    let (Some(client), None, true) = (which.client, &which.network, keys.key_by_ptr_domain) else {
        return Ok(None);
    };
    let dns = daemon::build_dns(config)?;
    let spamgate_dns::Rdns::Confirmed { name } = dns.reverse_confirm(client).await else {
        return Ok(None);
    };
    let classifier = spamgate_rdns::Classifier::new(&config.rdns).map_err(|e| daemon::Fatal {
        code: exit::CONFIG,
        error: e.into(),
    })?;
    if matches!(classifier.classify(&name), NameClass::Generic { .. }) {
        return Ok(None);
    }
    let network =
        spamgate_engine::greylist::GreylistKeys::new(&keys, client, Some(&name), "", "").network;
    Ok(network
        .starts_with("domain:")
        .then(|| spamgate_store::GreylistFilter {
            network: Some(network),
            client: None,
            ..filter.clone()
        }))
}

fn greylist_show(which: &GreylistWhich, limit: usize, json: bool) -> Result<(), daemon::Fatal> {
    let config = load(which.config.as_ref())?;
    init_logs("warn");
    let filter = greylist_filter(which, &config)?;
    runtime()?.block_on(async {
        let by_domain = domain_filter(which, &config, &filter).await?;
        let store = daemon::open_store(&config).await?;
        let mut found = store.find_greylist(&filter, limit).await;
        if let (Ok(found), Some(by_domain)) = (&mut found, &by_domain) {
            match store.find_greylist(by_domain, limit).await {
                Ok(more) => found.triplets.extend(more.triplets),
                Err(e) => {
                    store.close().await;
                    return Err(store_error(e));
                }
            }
        }
        store.close().await;
        let found = found.map_err(store_error)?;
        let now = SystemClock.now();
        let zone = display_zone(&config);
        let t = |at: u64| zone.time_u64(at);
        let state = |expires_at: u64| if expires_at > now { "live" } else { "expired" };
        if json {
            let triplets: Vec<_> = found
                .triplets
                .iter()
                .map(|row| {
                    serde_json::json!({
                        "network": row.network, "sender": row.sender, "recipient": row.recipient,
                        "first_seen": row.first_seen, "last_seen": row.last_seen,
                        "attempts": row.attempts, "passed_at": row.passed_at,
                        "expires_at": row.expires_at, "state": state(row.expires_at),
                    })
                })
                .collect();
            let awl = found.awl.as_ref().map(|awl| {
                serde_json::json!({
                    "client": awl.client, "first_seen": awl.first_seen,
                    "last_seen": awl.last_seen, "expires_at": awl.expires_at,
                    "state": state(awl.expires_at),
                })
            });
            println!("{}", serde_json::json!({ "triplets": triplets, "awl": awl }));
            return Ok(());
        }
        if let Some(client) = which.client {
            match &found.awl {
                Some(awl) => println!(
                    "awl\t{}\tfirst_seen={}\tlast_seen={}\texpires_at={}\t{}",
                    awl.client, t(awl.first_seen), t(awl.last_seen), t(awl.expires_at),
                    state(awl.expires_at)
                ),
                None => println!("awl\t{client}\tnone"),
            }
        }
        for row in &found.triplets {
            let passed = row
                .passed_at
                .map_or_else(|| "pending".to_string(), |at| format!("passed@{}", t(at)));
            println!(
                "triplet\t{}\t<{}>\t<{}>\t{passed}\tattempts={}\tfirst_seen={}\tlast_seen={}\texpires_at={}\t{}",
                row.network, row.sender, row.recipient, row.attempts, t(row.first_seen),
                t(row.last_seen), t(row.expires_at), state(row.expires_at)
            );
        }
        if found.triplets.len() >= limit && limit > 0 {
            eprintln!("(showing the first {limit}; --limit N for more)");
        }
        Ok(())
    })
}

fn greylist_delete(which: &GreylistWhich) -> Result<(), daemon::Fatal> {
    let config = load(which.config.as_ref())?;
    init_logs("warn");
    let filter = greylist_filter(which, &config)?;
    runtime()?.block_on(async {
        let by_domain = domain_filter(which, &config, &filter).await?;
        let store = daemon::open_store(&config).await?;
        let mut deleted = store.delete_greylist(&filter).await;
        if let (Ok(deleted), Some(by_domain)) = (&mut deleted, &by_domain) {
            match store.delete_greylist(by_domain).await {
                Ok(more) => deleted.triplets += more.triplets,
                Err(e) => {
                    store.close().await;
                    return Err(store_error(e));
                }
            }
        }
        store.close().await;
        let deleted = deleted.map_err(store_error)?;
        println!(
            "deleted\ttriplets={}\tawl={}",
            deleted.triplets, deleted.awl
        );
        Ok(())
    })
}

/// The zone listings show times in (`[server] display_timezone`, checked when the
/// configuration was loaded).
fn display_zone(config: &Config) -> spamgate::display::DisplayZone {
    config.server.display_zone().unwrap_or_default()
}

fn store_error(e: spamgate_store::StoreError) -> daemon::Fatal {
    daemon::Fatal {
        code: exit::STORE,
        error: e.into(),
    }
}

/// An operator command's failure: the operator's mistake (usage), or the store's.
fn operator_error(
    error: impl std::error::Error + Send + Sync + 'static,
    usage: bool,
) -> daemon::Fatal {
    if usage {
        usage_error(error.to_string())
    } else {
        daemon::Fatal {
            code: exit::STORE,
            error: error.into(),
        }
    }
}

fn usage_error(message: String) -> daemon::Fatal {
    daemon::Fatal {
        code: exit::USAGE,
        error: anyhow::anyhow!(message),
    }
}

fn allow(command: AllowCommand, config: Option<PathBuf>) -> Result<(), daemon::Fatal> {
    use spamgate_app::allow::{AllowCommandError, AllowService};
    let config = load(config.as_ref())?;
    init_logs("warn");
    let zone = display_zone(&config);
    let failed = |e: AllowCommandError| {
        let usage = e.is_usage();
        operator_error(e, usage)
    };
    runtime()?.block_on(async {
        let store = daemon::open_store(&config).await?;
        let allow = AllowService::new(&store);
        let result = async {
            match command {
                AllowCommand::Add {
                    kind,
                    value,
                    note,
                    scope,
                    expires,
                } => {
                    let scope = scope
                        .map(|text| {
                            spamgate_engine::verdict::AllowScope::parse(&text).ok_or_else(|| {
                                usage_error(format!("--scope {text:?}: expected greylist or all"))
                            })
                        })
                        .transpose()?;
                    let now = SystemClock.now();
                    let expires_at = expires.map(|d| now.saturating_add(d.as_secs()));
                    let (entry, new) = allow
                        .add(&kind, &value, note, scope, expires_at, now)
                        .await
                        .map_err(failed)?;
                    println!(
                        "{} {} {}\tscope={}{}",
                        if new { "added" } else { "updated" },
                        entry.kind.id(),
                        entry.value,
                        entry.scope.id(),
                        entry.expires_at.map_or_else(String::new, |at| format!(
                            "\texpires_at={}",
                            zone.time_u64(at)
                        ))
                    );
                }
                AllowCommand::Remove { kind, value } => {
                    let (kind, value) = allow.remove(&kind, &value).await.map_err(failed)?;
                    println!("removed {} {value}", kind.id());
                }
                AllowCommand::List { json } => {
                    for e in allow.list().await.map_err(failed)? {
                        if json {
                            let value = serde_json::json!({
                                "kind": e.kind.id(), "value": e.value, "scope": e.scope.id(),
                                "added_at": e.added_at, "expires_at": e.expires_at, "note": e.note,
                            });
                            println!("{value}");
                            continue;
                        }
                        let expires = e
                            .expires_at
                            .map_or_else(|| "never".to_string(), |at| zone.time_u64(at));
                        println!(
                            "{}\t{}\tscope={}\tadded_at={}\texpires_at={expires}\t{}",
                            e.kind.id(),
                            e.value,
                            e.scope.id(),
                            zone.time_u64(e.added_at),
                            e.note
                        );
                    }
                }
            }
            Ok(())
        }
        .await;
        store.close().await;
        result
    })
}

fn learned(command: LearnedCommand, config: Option<PathBuf>) -> Result<(), daemon::Fatal> {
    use spamgate_app::learned::LearnedService;
    let config = load(config.as_ref())?;
    init_logs("warn");
    runtime()?.block_on(async {
        let store = daemon::open_store(&config).await?;
        let learned = LearnedService::new(&store);
        let now = SystemClock.now();
        let result = async {
            match command {
                LearnedCommand::List { json } => {
                    for r in learned.list(now).await.map_err(store_error)? {
                        let learned = r.is_learned(now);
                        let refused = r.is_refused(now);
                        if json {
                            let mut value = serde_json::to_value(&r).unwrap_or_default();
                            value["learned"] = learned.into();
                            value["refused_now"] = refused.into();
                            println!("{value}");
                            continue;
                        }
                        let state = if learned {
                            format!("learned\tuntil={}", r.learned_until.unwrap_or(0))
                        } else if refused {
                            format!(
                                "refused\tuntil={}\t{}",
                                r.refused_until.unwrap_or(0),
                                r.refused.as_deref().unwrap_or("")
                            )
                        } else {
                            "candidate".to_string()
                        };
                        let networks: Vec<&str> =
                            r.networks.iter().map(|n| n.network.as_str()).collect();
                        println!(
                            "{}\t{state}\tnetworks={}\t{}",
                            r.org,
                            networks.len(),
                            networks.join(",")
                        );
                    }
                }
                LearnedCommand::Remove { domain } => {
                    let (org, removed) = learned.remove(&domain).await.map_err(store_error)?;
                    if !removed {
                        return Err(usage_error(format!("{org}: not learned or followed")));
                    }
                    println!("removed {org}");
                }
                LearnedCommand::Clear => {
                    let count = learned.clear().await.map_err(store_error)?;
                    println!("removed {count} organisations");
                }
            }
            Ok(())
        }
        .await;
        store.close().await;
        result
    })
}

fn account(
    command: AccountCommand,
    config: Option<PathBuf>,
    json: bool,
) -> Result<(), daemon::Fatal> {
    use spamgate_app::accounts::{AccountError, AccountService, StatusChange};
    use spamgate_engine::outbound::{Account, AccountStatus, LimitOverrides};
    use spamgate_store::EventKind;
    let config = load(config.as_ref())?;
    init_logs("warn");
    let zone = display_zone(&config);
    let show = |a: &Account| {
        if json {
            println!("{}", serde_json::to_string(a).unwrap_or_default());
        } else {
            let limit = |v: Option<u32>| v.map_or_else(|| "default".to_string(), |n| n.to_string());
            println!(
                "{}\t{}\tmessages_per_hour={}\trecipients_per_day={}\tupdated_at={}\t{}",
                a.username,
                a.status.id(),
                limit(a.limits.messages_per_hour),
                limit(a.limits.recipients_per_day),
                zone.time_u64(a.updated_at),
                a.note
            );
        }
    };
    let failed = |e: AccountError| {
        let usage = e.is_usage();
        operator_error(e, usage)
    };
    runtime()?.block_on(async {
        let store = daemon::open_store(&config).await?;
        let accounts = AccountService::new(&store);
        let now = SystemClock.now();
        let result = async {
            let status = async |to, args: StatusArgs| {
                let change = StatusChange {
                    create: args.create,
                    force: args.force,
                };
                let account = accounts
                    .set_status(&args.username, to, args.note, change, now)
                    .await
                    .map_err(failed)?;
                show(&account);
                Ok::<(), daemon::Fatal>(())
            };
            match command {
                AccountCommand::Add {
                    username,
                    messages_per_hour,
                    recipients_per_day,
                    note,
                } => {
                    let limits = LimitOverrides {
                        messages_per_hour,
                        recipients_per_day,
                    };
                    let account = accounts
                        .put_limits(&username, limits, note, now)
                        .await
                        .map_err(failed)?;
                    show(&account);
                }
                AccountCommand::Suspend(args) => status(AccountStatus::Suspended, args).await?,
                AccountCommand::Resume(args) => status(AccountStatus::Active, args).await?,
                AccountCommand::Terminate(args) => status(AccountStatus::Terminated, args).await?,
                AccountCommand::Show { username } => {
                    show(&accounts.show(&username).await.map_err(failed)?)
                }
                AccountCommand::List { limit } => {
                    for a in accounts.list(limit).await.map_err(failed)? {
                        show(&a);
                    }
                }
                AccountCommand::Events {
                    username,
                    since,
                    until,
                    limit,
                } => {
                    let when = |text: &str| {
                        let signed = i64::try_from(now).unwrap_or(i64::MAX);
                        zone.parse_time(text, signed)
                            .map(|at| u64::try_from(at).unwrap_or(0))
                            .map_err(usage_error)
                    };
                    let since = when(&since)?;
                    let until = until.as_deref().map(when).transpose()?;
                    // Both bounds before the limit: the newest `limit` events of the range.
                    let events = accounts
                        .events_between(username.as_deref(), since, until, limit)
                        .await
                        .map_err(failed)?;
                    for e in events {
                        if json {
                            println!("{}", serde_json::to_string(&e).unwrap_or_default());
                        } else {
                            let what = match e.kind {
                                EventKind::LimitExceeded {
                                    limit,
                                    used,
                                    limit_value,
                                } => {
                                    format!(
                                        "limit-exceeded {} used={used} limit={limit_value}",
                                        limit.id()
                                    )
                                }
                                EventKind::StatusChanged { from, to } => {
                                    format!("status-changed {} -> {}", from.id(), to.id())
                                }
                                EventKind::Rejected { status } => {
                                    format!("rejected ({})", status.id())
                                }
                            };
                            println!(
                                "{}\t{}\t{what}\t{}",
                                zone.time_u64(e.at),
                                e.username,
                                e.detail
                            );
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        store.close().await;
        result
    })
}

/// `sqlite:PATH` or `redis://...` for `store migrate`.
enum Endpoint {
    Sqlite(PathBuf),
    Redis(String),
}

fn endpoint(text: &str) -> Result<Endpoint, daemon::Fatal> {
    if let Some(path) = text.strip_prefix("sqlite:") {
        return Ok(Endpoint::Sqlite(PathBuf::from(path)));
    }
    if ["redis://", "rediss://", "unix://"]
        .iter()
        .any(|p| text.starts_with(p))
    {
        return Ok(Endpoint::Redis(text.to_string()));
    }
    Err(usage_error(format!(
        "{text:?}: expected sqlite:PATH or redis://HOST:PORT/DB"
    )))
}

fn store_command(command: StoreCommand, config: Option<PathBuf>) -> Result<(), daemon::Fatal> {
    let StoreCommand::Migrate { from, to } = command;
    let config = load(config.as_ref())?;
    init_logs("warn");
    let (from, to) = (endpoint(&from)?, endpoint(&to)?);
    runtime()?.block_on(async {
        let redis = async |url: &str| {
            let mut options = daemon::redis_options(&config);
            options.url = url.to_string();
            spamgate_store::RedisStore::connect(&options).await.map_err(store_error)
        };
        let dump = match &from {
            Endpoint::Sqlite(path) => spamgate_store::export_sqlite(path).await.map_err(store_error)?,
            Endpoint::Redis(url) => redis(url).await?.export().await.map_err(store_error)?,
        };
        match &to {
            Endpoint::Sqlite(path) => {
                daemon::open_sqlite(path, std::time::Duration::ZERO)?.close().await;
                spamgate_store::import_sqlite(path, &dump).await.map_err(store_error)?
            }
            Endpoint::Redis(url) => redis(url)
                .await?
                .import(&dump, SystemClock.now())
                .await
                .map_err(store_error)?,
        }
        println!(
            "migrated {} triplets, {} auto-whitelisted clients, {} allow entries, {} accounts, {} rate counters, {} events",
            dump.triplets.len(),
            dump.awl.len(),
            dump.allow.len(),
            dump.accounts.len(),
            dump.rates.len(),
            dump.events.len()
        );
        Ok(())
    })
}

/// Each named file (or stdin) as a reader, to `read`.
fn read_logs(
    files: &[PathBuf],
    mut read: impl FnMut(&mut dyn BufRead),
) -> Result<(), daemon::Fatal> {
    if files.is_empty() {
        read(&mut std::io::stdin().lock());
    }
    for path in files {
        let file = std::fs::File::open(path).map_err(|e| daemon::Fatal {
            code: exit::OS,
            error: anyhow::anyhow!("cannot read {}: {e}", path.display()),
        })?;
        read(&mut std::io::BufReader::new(file));
    }
    Ok(())
}

fn effectiveness_report(
    files: &[PathBuf],
    json: bool,
    config: Option<&PathBuf>,
) -> Result<(), daemon::Fatal> {
    let config = load(config)?;
    let zone = display_zone(&config);
    let mut effect = spamgate::stats::Effectiveness::default();
    read_logs(files, |input| effect.read(input, &zone))?;
    let report = effect.report(&zone, config.greylist.retry_window);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{report}");
    }
    Ok(())
}

fn stats(files: &[PathBuf], json: bool) -> Result<(), daemon::Fatal> {
    let mut counts = spamgate::stats::DecisionCounts::default();
    if files.is_empty() {
        counts.read(std::io::stdin().lock());
    } else {
        for path in files {
            let file = std::fs::File::open(path).map_err(|e| daemon::Fatal {
                code: exit::OS,
                error: anyhow::anyhow!("cannot read {}: {e}", path.display()),
            })?;
            counts.read(std::io::BufReader::new(file));
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&counts).unwrap_or_default()
        );
    } else {
        print!("{counts}");
    }
    Ok(())
}
