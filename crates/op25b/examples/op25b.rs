//! Stand-in for `spamgate op25b render|apply|sync|hits` until the CLI carries them.
//!
//! ```text
//! op25b render --config FILE [--now RFC3339]
//! op25b apply  --config FILE [--nft "CMD ..."] [--now RFC3339]
//! op25b sync   --config FILE [--nft "CMD ..."] [--now RFC3339]
//! op25b hits   --config FILE [--nft "CMD ..."] [--json]
//! ```
//! FILE is spamgate's TOML; only its `[op25b]` table is read. `--nft` replaces the nft
//! command (default `nft`), e.g. `"ip netns exec sg-router nft"`.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use spamgate_op25b::{Expiry, NftRunner, Op25bConfig, Op25bError, Plan};

/// Bad usage or configuration, as the daemon's exit code for configuration errors.
const EXIT_CONFIG: u8 = 64;

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    op25b: Op25bConfig,
}

struct Args {
    command: String,
    config: String,
    nft: NftRunner,
    now: SystemTime,
    json: bool,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1).collect()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("op25b: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("op25b: {error}");
            let config_error = matches!(error, Op25bError::Invalid(_));
            ExitCode::from(if config_error { EXIT_CONFIG } else { 1 })
        }
    }
}

fn parse_args(words: Vec<String>) -> Result<Args, String> {
    let usage =
        "usage: op25b render|apply|sync|hits --config FILE [--nft CMD] [--now RFC3339] [--json]";
    let mut words = words.into_iter();
    let command = words.next().ok_or(usage)?;
    if !matches!(command.as_str(), "render" | "apply" | "sync" | "hits") {
        return Err(usage.to_owned());
    }
    let (mut config, mut nft, mut now, mut json) =
        (None, NftRunner::default(), SystemTime::now(), false);
    while let Some(word) = words.next() {
        let mut value = || words.next().ok_or_else(|| format!("{word} needs a value"));
        match word.as_str() {
            "--config" | "-c" => config = Some(value()?),
            "--nft" => nft = NftRunner::from_command_line(&value()?).ok_or("--nft is empty")?,
            "--now" => {
                let ms = Expiry::parse(&value()?)?.unix_ms();
                now = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            }
            "--json" => json = true,
            _ => return Err(format!("unknown argument {word:?}; {usage}")),
        }
    }
    let config = config.ok_or(usage)?;
    Ok(Args {
        command,
        config,
        nft,
        now,
        json,
    })
}

fn run(args: &Args) -> Result<(), Op25bError> {
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| Op25bError::Invalid(vec![format!("{}: {e}", args.config)]))?;
    let file: File = toml::from_str(&text)
        .map_err(|e| Op25bError::Invalid(vec![format!("{}: {e}", args.config)]))?;
    let config = file.op25b;
    match args.command.as_str() {
        "render" => {
            let plan = spamgate_op25b::plan(&config, args.now)?;
            note_expired(&plan);
            print!("{}", plan.ruleset());
        }
        "apply" => {
            let plan = spamgate_op25b::plan(&config, args.now)?;
            note_expired(&plan);
            spamgate_op25b::apply(&plan.ruleset(), &args.nft)?;
            eprintln!(
                "op25b: table inet {} loaded; {}",
                plan.table(),
                summary(&config, &plan)
            );
        }
        "sync" => {
            let plan = spamgate_op25b::sync(&config, args.now, &args.nft)?;
            note_expired(&plan);
            eprintln!(
                "op25b: sets of table inet {} updated; {}",
                plan.table(),
                summary(&config, &plan)
            );
        }
        _ => {
            let hits = spamgate_op25b::hits(&config.table, &args.nft)?;
            if args.json {
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

fn summary(config: &Op25bConfig, plan: &Plan) -> String {
    format!(
        "{} pools, {} relays, {} exemptions in force ({} expired)",
        config.pools.len(),
        config.relays.len(),
        plan.exemptions().count(),
        plan.expired().len()
    )
}

fn note_expired(plan: &Plan) {
    for gone in plan.expired() {
        eprintln!(
            "op25b: note: exemption {} ({:?}) expired at {}; skipped (remove it from the file)",
            gone.prefix, gone.reason, gone.expired
        );
    }
}
