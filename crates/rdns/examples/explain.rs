//! Prints the classifier's explanation of each name given as an argument, one JSON line each:
//! `cargo run -p spamgate-rdns --example explain -- mx1-2.example.com`.
//! `--no-builtin-exceptions` first turns the shipped exception list off; `--s25r-only` keeps
//! only the published S25R rules 1-6 (no other rule, no exception), as the corpus harness does.

use spamgate_rdns::{Classifier, ClassifierConfig};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = ClassifierConfig::default();
    if args.first().map(String::as_str) == Some("--no-builtin-exceptions") {
        args.remove(0);
        config.builtin_exceptions = false;
    }
    if args.first().map(String::as_str) == Some("--s25r-only") {
        args.remove(0);
        let all = Classifier::new(&config).expect("default configuration compiles");
        config.disable_rules = all
            .rules()
            .map(|(id, _)| id.to_owned())
            .filter(|id| !id.starts_with("s25r-"))
            .collect();
        config.builtin_exceptions = false;
    }
    let classifier = Classifier::new(&config).expect("default configuration compiles");
    for name in args {
        let explanation = classifier.explain(&name);
        println!(
            "{name}\t{}",
            serde_json::to_string(&explanation).expect("serialises")
        );
    }
}
