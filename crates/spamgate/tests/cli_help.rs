//! Every subcommand, option and argument of the `spamgate` command line says what it is
//! (`--help`, the man pages and the completions are generated from these texts).

use clap::CommandFactory;
use spamgate::cli::{Cli, GenerateCli};

/// The paths (`spamgate greylist list --json`) of everything in `command` without help.
fn missing_help(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for arg in command.get_arguments() {
        // clap's own --help and --version carry their text already.
        if matches!(arg.get_id().as_str(), "help" | "version") {
            continue;
        }
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            let name = arg
                .get_long()
                .map(|long| format!("--{long}"))
                .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
            missing.push(format!("{path} {name}"));
        }
    }
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let sub_path = format!("{path} {}", sub.get_name());
        if sub.get_about().is_none() && sub.get_long_about().is_none() {
            missing.push(sub_path.clone());
        }
        missing_help(sub, &sub_path, missing);
    }
}

#[test]
fn every_argument_and_subcommand_has_help_text() {
    let mut missing = Vec::new();
    for command in [Cli::command(), GenerateCli::command()] {
        command.clone().debug_assert();
        let name = command.get_name().to_string();
        missing_help(&command, &name, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "without help text:\n{}",
        missing.join("\n")
    );
}

/// The walk sees nested and global arguments at all, so an empty list above means
/// something.
#[test]
fn the_walk_reaches_nested_arguments() {
    let command = Cli::command();
    let greylist = command.find_subcommand("greylist").expect("greylist");
    let list = greylist.find_subcommand("list").expect("greylist list");
    let ids: Vec<&str> = list.get_arguments().map(|a| a.get_id().as_str()).collect();
    assert!(ids.contains(&"json"), "{ids:?}");
    let bare = clap::Command::new("bare").arg(clap::Arg::new("x").long("x"));
    let mut missing = Vec::new();
    missing_help(&bare, "bare", &mut missing);
    assert_eq!(missing, ["bare --x"]);
}
