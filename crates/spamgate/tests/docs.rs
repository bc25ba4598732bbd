//! Doc drift checks: the docs must keep up with the binary. Each check reads the real
//! source of truth (the `spamgate config example` output, the clap definition, the
//! engine's action ids, the files on disk) and names everything the docs miss.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use spamgate::cli::Cli;
use spamgate_engine::{Action, Refusal};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every Markdown file the checks read: README.md and everything under docs/.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    let mut dirs = vec![root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The `(section, key)` pairs of a configuration as `config example` prints it: set keys
/// and keys shown commented out (`# key = ...`), the top level as section "".
fn example_keys(example: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in example.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if !name.starts_with('[') {
                section = name.to_string();
            }
            continue;
        }
        let body = line.strip_prefix("# ").unwrap_or(line);
        if let Some((key, _)) = body.split_once(" = ")
            && !key.is_empty()
            && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            let pair = (section.clone(), key.to_string());
            if !keys.contains(&pair) {
                keys.push(pair);
            }
        }
    }
    keys
}

/// The text of `## heading` in `doc`, up to the next `## ` heading.
fn doc_section<'a>(doc: &'a str, heading: &str) -> Option<&'a str> {
    let start = doc.find(&format!("\n## {heading}\n"))? + 1;
    let rest = &doc[start + 3..];
    let end = rest.find("\n## ").map_or(rest.len(), |i| i);
    Some(&rest[..end])
}

/// Where a section's keys are documented: (doc file, heading).
fn home_of(section: &str) -> (&'static str, String) {
    match section {
        "" => ("docs/configuration.md", "Top level".into()),
        // configuration.md sends the reader to op25b.md for every key.
        "op25b" => ("docs/op25b.md", "Configuration".into()),
        other => ("docs/configuration.md", format!("`[{other}]`")),
    }
}

fn mentions_key(text: &str, key: &str) -> bool {
    text.contains(&format!("`{key}`")) || text.contains(&format!("{key} ="))
}

#[test]
fn config_example_parser_finds_set_and_commented_keys() {
    let check = |input: &str, expected: &[(&str, &str)]| {
        let want: Vec<(String, String)> = expected
            .iter()
            .map(|(s, k)| (s.to_string(), k.to_string()))
            .collect();
        assert_eq!(example_keys(input), want, "{input}");
    };
    check("log_level = \"info\"\n", &[("", "log_level")]);
    check(
        "[server]\nlisten = []\n# max_connections = 4096\n# Close a connection = x\n",
        &[("server", "listen"), ("server", "max_connections")],
    );
    check(
        "[rdns]\n# [[rdns.rules]]\n# id = \"x\"\nrules = []\n",
        &[("rdns", "id"), ("rdns", "rules")],
    );
}

#[test]
fn every_key_of_config_example_is_documented_under_its_section() {
    let out = Command::new(env!("CARGO_BIN_EXE_spamgate"))
        .args(["config", "example"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let example = String::from_utf8(out.stdout).unwrap();
    let keys = example_keys(&example);
    assert!(keys.len() > 100, "parsed only {} keys", keys.len());
    let mut missing = Vec::new();
    for (section, key) in &keys {
        let (file, heading) = home_of(section);
        let doc = read(file);
        let Some(text) = doc_section(&doc, &heading) else {
            missing.push(format!("{file}: no section `## {heading}` for [{section}]"));
            continue;
        };
        if !mentions_key(text, key) {
            missing.push(format!("{file} ## {heading}: key `{key}`"));
        }
    }
    assert!(
        missing.is_empty(),
        "undocumented keys:\n{}",
        missing.join("\n")
    );
}

/// Every subcommand path (`greylist list`) of the CLI.
fn subcommand_paths(command: &clap::Command, prefix: &str, out: &mut Vec<Vec<String>>) {
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let mut path: Vec<String> = prefix.split_whitespace().map(String::from).collect();
        path.push(sub.get_name().to_string());
        out.push(path.clone());
        subcommand_paths(sub, &path.join(" "), out);
    }
}

/// Whether the docs name `spamgate a b`: written out, or with its siblings as
/// `spamgate a x|b|y`.
fn mentions_command(docs: &str, path: &[String]) -> bool {
    let (last, parents) = path.split_last().unwrap();
    let lead = format!(
        "spamgate {}",
        parents.iter().map(|p| format!("{p} ")).collect::<String>()
    );
    docs.match_indices(&lead).any(|(i, _)| {
        let rest = &docs[i + lead.len()..];
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '|' | '_'))
            .collect();
        word.split('|').any(|w| w == last)
    })
}

#[test]
fn every_subcommand_is_mentioned_in_the_docs() {
    let docs: String = markdown_files()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let check = |docs: &str, path: &[&str], expected: bool| {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        assert_eq!(mentions_command(docs, &path), expected, "{path:?}");
    };
    // The matcher itself, on small texts.
    check("run `spamgate greylist list`", &["greylist", "list"], true);
    check("`spamgate op25b render|apply`", &["op25b", "apply"], true);
    check("`spamgate greylist listing`", &["greylist", "list"], false);
    check("`spamgate stats`", &["stats"], true);

    let mut paths = Vec::new();
    subcommand_paths(&Cli::command(), "", &mut paths);
    assert!(paths.len() > 20, "found only {} subcommands", paths.len());
    let missing: Vec<String> = paths
        .iter()
        .filter(|path| !mentions_command(&docs, path))
        .map(|path| format!("spamgate {}", path.join(" ")))
        .collect();
    assert!(
        missing.is_empty(),
        "subcommands no doc mentions:\n{}",
        missing.join("\n")
    );
}

/// Every action the engine can log. The match is exhaustive, so a new action does not
/// compile until it is listed here (and the test then asks for its documentation).
fn action_ids() -> Vec<&'static str> {
    let all = [
        Action::Pass,
        Action::Greylist { retry_in: 0 },
        Action::Reject {
            refusal: Refusal::Dnsbl,
        },
        Action::TempFail,
        Action::Defer { retry_in: 0 },
        Action::Tarpit {
            hold_ms: 0,
            retry_in: 0,
        },
    ];
    for action in &all {
        match action {
            Action::Pass
            | Action::Greylist { .. }
            | Action::Reject { .. }
            | Action::TempFail
            | Action::Defer { .. }
            | Action::Tarpit { .. } => {}
        }
    }
    all.iter().map(Action::id).collect()
}

/// The values operations.md lists in its "`action` is one of ..." paragraph.
fn documented_actions(doc: &str) -> BTreeSet<String> {
    let start = doc
        .find("`action` is one of")
        .expect("operations.md lists the action values");
    let paragraph = &doc[start..];
    let paragraph = &paragraph[..paragraph.find("Reason tokens").unwrap_or(paragraph.len())];
    // Only the top-level `values`, not those inside parentheses.
    let mut depth = 0usize;
    let mut values = BTreeSet::new();
    let mut in_code = false;
    let mut current = String::new();
    for c in paragraph["`action`".len()..].chars() {
        match c {
            '(' if !in_code => depth += 1,
            ')' if !in_code => depth = depth.saturating_sub(1),
            '`' => {
                if in_code && depth == 0 {
                    values.insert(std::mem::take(&mut current));
                }
                current.clear();
                in_code = !in_code;
            }
            c if in_code => current.push(c),
            _ => {}
        }
    }
    values
}

#[test]
fn documented_action_values_are_exactly_the_engines() {
    let doc = read("docs/operations.md");
    let documented = documented_actions(&doc);
    let actual: BTreeSet<String> = action_ids().into_iter().map(String::from).collect();
    assert_eq!(documented, actual, "docs/operations.md `action` values");
    // Every action appears in an example decision line or the paragraph (as `action=x`
    // or `` `x` ``), which the set comparison above already checked.
    let check = |text: &str, expected: &[&str]| {
        let want: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(documented_actions(text), want, "{text}");
    };
    check(
        "`action` is one of `pass`, `reject` (a 5xx: `x`), `defer`. Reason tokens: `y`",
        &["pass", "reject", "defer"],
    );
}

#[test]
fn every_reply_template_key_is_a_documented_reply() {
    // Reply kinds are configured by `[replies]` keys; the example's keys are checked
    // above. Here: the reply texts the docs quote as defaults are the binary's defaults.
    let out = Command::new(env!("CARGO_BIN_EXE_spamgate"))
        .args(["config", "example"])
        .output()
        .unwrap();
    let example: toml::Table = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let replies = example["replies"].as_table().unwrap();
    let doc = read("docs/configuration.md");
    let section = doc_section(&doc, "`[replies]`").unwrap();
    let mut wrong = Vec::new();
    for (key, value) in replies {
        let Some(text) = value.as_str() else { continue };
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}` |")));
        match row {
            Some(row) if row.contains(&format!("`{text}`")) => {}
            Some(row) => wrong.push(format!("{key}: documented {row:?}, binary {text:?}")),
            None => wrong.push(format!("{key}: no row")),
        }
    }
    assert!(
        wrong.is_empty(),
        "[replies] defaults:\n{}",
        wrong.join("\n")
    );
}

/// The relative link targets of a Markdown text, without their `#anchor`.
fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].trim();
        let target = target.split_whitespace().next().unwrap_or("");
        let path = target.split('#').next().unwrap_or("");
        if !path.is_empty() && !path.contains("://") && !path.starts_with("mailto:") {
            links.push(path.to_string());
        }
        rest = &rest[end..];
    }
    links
}

#[test]
fn every_relative_link_resolves_to_a_file() {
    let check = |input: &str, expected: &[&str]| {
        assert_eq!(relative_links(input), expected, "{input}");
    };
    check(
        "see [a](postfix.md#tarpit) and [b](https://x.example/)",
        &["postfix.md"],
    );
    check(
        "[c](#local) [d](customer/op25b.ja.md)",
        &["customer/op25b.ja.md"],
    );

    let mut broken = Vec::new();
    let files = markdown_files();
    assert!(
        files.len() > 10,
        "found only {} Markdown files",
        files.len()
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for link in relative_links(&text) {
            let target = file.parent().unwrap().join(&link);
            if !target.exists() {
                broken.push(format!("{}: {link}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The fenced ```toml blocks of a Markdown text.
fn toml_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("```toml\n") {
        rest = &rest[i + "```toml\n".len()..];
        let Some(end) = rest.find("```") else { break };
        blocks.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    blocks
}

#[test]
fn every_toml_example_in_configuration_md_is_a_valid_configuration() {
    assert_eq!(
        toml_blocks("a\n```toml\n[x]\nk = 1\n```\n```sh\nno\n```\n"),
        ["[x]\nk = 1\n"]
    );
    let blocks = toml_blocks(&read("docs/configuration.md"));
    assert!(blocks.len() >= 2, "found only {} toml blocks", blocks.len());
    let dir = tempfile::tempdir().unwrap();
    for (i, block) in blocks.iter().enumerate() {
        let path = dir.path().join(format!("block{i}.toml"));
        std::fs::write(&path, block).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_spamgate"))
            .args(["config", "check", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docs/configuration.md toml block {i} is refused: {}\n{block}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_customer_help_page_exists_in_both_languages_and_is_linked() {
    let configuration = read("docs/configuration.md");
    let example = read("dist/spamgate.example.toml");
    // (page, linked from the reply examples of the example configuration)
    for (page, in_example) in [
        ("greylist", true),
        ("dnsbl", true),
        ("limits", true),
        ("op25b", false),
    ] {
        for lang in ["ja", "en"] {
            let rel = format!("customer/{page}.{lang}.md");
            let text = read(&format!("docs/{rel}"));
            let other = if lang == "ja" { "en" } else { "ja" };
            assert!(
                text.contains(&format!("{page}.{other}.md")),
                "{rel} names its other language"
            );
            assert!(
                configuration.contains(&format!("]({rel})")),
                "docs/configuration.md links {rel}"
            );
        }
        if in_example {
            assert!(
                example.contains(&format!("/antispam/{page}.html")),
                "dist/spamgate.example.toml shows a reply pointing to the {page} page"
            );
        }
    }
}
