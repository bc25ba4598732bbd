//! `spamgate admin user|token|audit ...`: bootstrap and manage the admin API's users and
//! tokens on the local file (`[admin] users_path`), through the application layer's
//! [`UserService`]. Every change is audited as `cli:<login>` from `local`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::json;
use spamgate_app::SystemClock;
use spamgate_app::users::{AuditFilter, AuditRecord, AuthError, Role, UserService};
use spamgate_store::users::SqliteUserStore;

use crate::config::Config;
use crate::daemon::{Fatal, exit};

#[derive(Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
    /// Configuration file; default: $SPAMGATE_CONFIG, else /etc/spamgate/spamgate.toml
    /// when it exists, else the built-in defaults.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// JSON (one object per line for listings).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Users of the admin API and console.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API tokens (`Authorization: Bearer ...`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The audit trail of changes made through the API, the console and these commands.
    Audit {
        /// Only this user's entries.
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from stdin (one line), or asked for on a terminal.
    Add {
        name: String,
        /// viewer, operator, approver or admin.
        #[arg(long)]
        role: String,
    },
    /// List the users.
    List,
    /// Set a user's password (read like `add`); ends their sessions.
    Passwd { name: String },
    /// Change a user's role.
    Role { name: String, role: String },
    /// Disable a user: sessions end, tokens stop working.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token for a user; it is printed once and never again.
    Add {
        user: String,
        /// What it is for (shown in `token list`).
        #[arg(long, default_value = "")]
        label: String,
        /// Lifetime, e.g. `90days`; default: until revoked.
        #[arg(long)]
        expires_in: Option<humantime::Duration>,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by id.
    Revoke { id: i64 },
}

fn fatal(code: i32, error: impl Into<anyhow::Error>) -> Fatal {
    Fatal {
        code,
        error: error.into(),
    }
}

fn failed(error: AuthError) -> Fatal {
    let code = if error.is_usage() {
        exit::USAGE
    } else {
        exit::STORE
    };
    fatal(code, error)
}

/// The users service over the configured file.
pub fn open_users(config: &Config) -> Result<UserService, Fatal> {
    let path = config.admin.users_path(&config.store);
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            fatal(
                exit::STORE,
                anyhow::anyhow!("cannot create {}: {e}", dir.display()),
            )
        })?;
    }
    let store = SqliteUserStore::open(&path).map_err(|e| fatal(exit::STORE, e))?;
    Ok(UserService::new(
        Arc::new(store),
        Arc::new(SystemClock),
        config.admin.policy(),
    ))
}

fn read_password() -> Result<String, Fatal> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password (echoed; at least 12 characters): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| fatal(exit::OS, e))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn parse_role(text: &str) -> Result<Role, Fatal> {
    Role::parse(text).ok_or_else(|| {
        fatal(
            exit::USAGE,
            anyhow::anyhow!("unknown role {text:?}: viewer, operator, approver or admin"),
        )
    })
}

fn audit(users: &UserService, action: &str, target: &str, detail: serde_json::Value) {
    let login = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let entry = AuditRecord {
        id: 0,
        at: 0,
        user: format!("cli:{login}"),
        via: "cli".into(),
        address: "local".into(),
        action: action.into(),
        target: target.into(),
        detail: detail.to_string(),
    };
    if let Err(e) = users.audit(entry) {
        eprintln!("spamgate: warning: cannot write the audit entry: {e}");
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Fatal> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fatal(exit::OS, e))
}

pub fn admin(args: AdminArgs) -> Result<(), Fatal> {
    let config =
        Config::load_or_default(args.config.as_deref()).map_err(|e| fatal(exit::CONFIG, e))?;
    crate::logging::init("warn");
    let users = open_users(&config)?;
    let as_json = args.json;
    match args.command {
        AdminCommand::User { command } => user(&users, command, as_json),
        AdminCommand::Token { command } => token(&users, command, as_json),
        AdminCommand::Audit { user, limit } => {
            let entries = users
                .audit_log(&AuditFilter {
                    user,
                    limit,
                    ..AuditFilter::default()
                })
                .map_err(failed)?;
            for e in entries {
                if as_json {
                    println!("{}", serde_json::to_string(&e).unwrap_or_default());
                } else {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        e.id, e.at, e.user, e.via, e.address, e.action, e.target
                    );
                }
            }
            Ok(())
        }
    }
}

fn user_json(user: &spamgate_app::users::User) -> serde_json::Value {
    json!({
        "name": user.name,
        "role": user.role,
        "created_at": user.created_at,
        "disabled": user.disabled,
    })
}

fn print_user(user: &spamgate_app::users::User, as_json: bool) {
    if as_json {
        println!("{}", user_json(user));
    } else {
        let state = if user.disabled { "\tdisabled" } else { "" };
        println!("{}\t{}{state}", user.name, user.role);
    }
}

fn user(users: &UserService, command: UserCommand, as_json: bool) -> Result<(), Fatal> {
    match command {
        UserCommand::Add { name, role } => {
            let role = parse_role(&role)?;
            let password = read_password()?;
            let user = runtime()?
                .block_on(users.add_user(&name, role, &password))
                .map_err(failed)?;
            audit(users, "user.add", &user.name, json!({ "role": role }));
            print_user(&user, as_json);
        }
        UserCommand::List => {
            for user in users.users().map_err(failed)? {
                print_user(&user, as_json);
            }
        }
        UserCommand::Passwd { name } => {
            let password = read_password()?;
            let user = runtime()?
                .block_on(users.set_password(&name, &password))
                .map_err(failed)?;
            audit(users, "user.password", &user.name, json!({}));
            print_user(&user, as_json);
        }
        UserCommand::Role { name, role } => {
            let role = parse_role(&role)?;
            let user = users.set_role(&name, role).map_err(failed)?;
            audit(users, "user.role", &user.name, json!({ "role": role }));
            print_user(&user, as_json);
        }
        UserCommand::Disable { name } => {
            let user = users.set_disabled(&name, true).map_err(failed)?;
            audit(users, "user.disable", &user.name, json!({}));
            print_user(&user, as_json);
        }
        UserCommand::Enable { name } => {
            let user = users.set_disabled(&name, false).map_err(failed)?;
            audit(users, "user.enable", &user.name, json!({}));
            print_user(&user, as_json);
        }
    }
    Ok(())
}

fn token_json(t: &spamgate_app::users::TokenRecord) -> serde_json::Value {
    json!({
        "id": t.id,
        "user": t.user,
        "label": t.label,
        "created_at": t.created_at,
        "expires_at": t.expires_at,
        "revoked_at": t.revoked_at,
        "last_used_at": t.last_used_at,
    })
}

fn token(users: &UserService, command: TokenCommand, as_json: bool) -> Result<(), Fatal> {
    match command {
        TokenCommand::Add {
            user,
            label,
            expires_in,
        } => {
            let expires_at = expires_in.map(|d| users.now().saturating_add(d.as_secs()));
            let token = users.add_token(&user, &label, expires_at).map_err(failed)?;
            audit(
                users,
                "token.add",
                &token.record.id.to_string(),
                json!({ "user": token.record.user, "label": token.record.label }),
            );
            if as_json {
                let mut value = token_json(&token.record);
                value["secret"] = json!(token.secret);
                println!("{value}");
            } else {
                eprintln!(
                    "spamgate: token {} for {}; shown once, keep it now:",
                    token.record.id, token.record.user
                );
                println!("{}", token.secret);
            }
        }
        TokenCommand::List { user } => {
            for t in users.tokens(user.as_deref()).map_err(failed)? {
                if as_json {
                    println!("{}", token_json(&t));
                } else {
                    let state = match (t.revoked_at, t.expires_at) {
                        (Some(_), _) => "revoked",
                        (None, Some(at)) if at <= users.now() => "expired",
                        _ => "active",
                    };
                    println!("{}\t{}\t{state}\t{}", t.id, t.user, t.label);
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let t = users.revoke_token(id).map_err(failed)?;
            audit(
                users,
                "token.revoke",
                &id.to_string(),
                json!({ "user": t.user }),
            );
            if as_json {
                println!("{}", token_json(&t));
            } else {
                println!("{}\t{}\trevoked", t.id, t.user);
            }
        }
    }
    Ok(())
}
