//! `spamgate generate`: man pages and completions rendered from the clap definition by
//! the real binary, as `make install` runs it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use clap::CommandFactory;
use spamgate::cli::Cli;

mod process;
use process::spamgate;

/// `spamgate generate ARGS...`, which must succeed.
fn generate(args: &[&str], dir: &Path) {
    let out = spamgate()
        .arg("generate")
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The man page names of `command` and every visible command under it.
fn man_page_names(command: &clap::Command, prefix: &str, names: &mut BTreeSet<String>) {
    let name = if prefix.is_empty() {
        command.get_name().to_string()
    } else {
        format!("{prefix}-{}", command.get_name())
    };
    names.insert(format!("{name}.1"));
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_page_names(sub, &name, names);
    }
}

#[test]
fn a_man_page_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man1");
    generate(&["man"], &man);
    let written: BTreeSet<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut expected = BTreeSet::new();
    man_page_names(&Cli::command(), "", &mut expected);
    assert!(
        expected.contains("spamgate-greylist-list.1"),
        "{expected:?}"
    );
    assert!(
        !expected.iter().any(|n| n.contains("generate")),
        "{expected:?}"
    );
    assert_eq!(written, expected);
    // A page carries its command's help text, e.g. an option added for issue 15.
    let page = std::fs::read_to_string(man.join("spamgate-check.1")).unwrap();
    assert!(page.contains("\n.TH spamgate-check 1"), "{page}");
    assert!(page.contains("envelope recipient"), "{page}");
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, file) in [
        ("bash", "spamgate.bash"),
        ("zsh", "_spamgate"),
        ("fish", "spamgate.fish"),
    ] {
        generate(&["completions", shell], dir.path());
        let script = std::fs::read_to_string(dir.path().join(file)).unwrap();
        assert!(script.contains("greylist"), "{shell}: {script}");
        // The packaging command is not offered to operators.
        assert!(!script.contains("generate"), "{shell}: {script}");
    }
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(dir.path().join("spamgate.bash"))
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
}

#[test]
fn an_unwritable_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "").unwrap();
    let out = spamgate()
        .args(["generate", "man"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot write into"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
