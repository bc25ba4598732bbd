//! The corpus harness: published S25R rules alone beside spamgate's full classifier, on real
//! PTR names from public material (`corpus/rdns-corpus.tsv`, one `name label source` row each).
//!
//! Run: `cargo test -p spamgate-rdns --test corpus -- --nocapture` to see the figures;
//! with `CORPUS_ERRORS=dev` it also lists the development part's errors (`=1`: both parts).
//! The names are split by a hash of the name into a development part (two thirds) and a
//! held-out part (one third); both are reported, and on both spamgate must be no worse than
//! S25R (recall at least S25R's, false-positive rate at most S25R's).

use std::collections::BTreeMap;

use spamgate_rdns::{Classifier, ClassifierConfig, Decision, NameClass};

const CORPUS: &str = include_str!("../corpus/rdns-corpus.tsv");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Dynamic,
    Mta,
}

struct Entry<'a> {
    name: &'a str,
    label: Label,
}

fn corpus() -> Vec<Entry<'static>> {
    CORPUS
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let mut fields = line.split('\t');
            let name = fields.next().expect("name");
            let label = match fields.next().expect("label") {
                "dynamic" => Label::Dynamic,
                "mta" => Label::Mta,
                other => panic!("unknown label {other:?} in {line:?}"),
            };
            let source = fields.next().unwrap_or("");
            assert!(!source.is_empty(), "no source for {name}");
            Entry { name, label }
        })
        .collect()
}

/// FNV-1a of the name: a split that does not move when rows are added or reordered.
fn held_out(name: &str) -> bool {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % 3 == 0
}

fn s25r_only() -> Classifier {
    let all = Classifier::new(&ClassifierConfig::default()).unwrap();
    let disable_rules = all
        .rules()
        .map(|(id, _)| id.to_owned())
        .filter(|id| !id.starts_with("s25r-"))
        .collect();
    Classifier::new(&ClassifierConfig {
        disable_rules,
        builtin_exceptions: false,
        ..ClassifierConfig::default()
    })
    .unwrap()
}

#[derive(Default)]
struct Figures {
    dynamic: usize,
    caught: usize,
    mta: usize,
    false_positives: usize,
    /// Deciding rule of each false positive.
    fp_by_rule: BTreeMap<String, usize>,
    /// Decision of each missed dynamic name (`proper`, or the exception / mail-server rule).
    misses_by_decision: BTreeMap<String, usize>,
    fp_names: Vec<String>,
    missed_names: Vec<String>,
}

impl Figures {
    fn recall(&self) -> f64 {
        self.caught as f64 / self.dynamic.max(1) as f64
    }
    fn fp_rate(&self) -> f64 {
        self.false_positives as f64 / self.mta.max(1) as f64
    }
}

fn measure(classifier: &Classifier, entries: &[&Entry]) -> Figures {
    let mut figures = Figures::default();
    for entry in entries {
        let explanation = classifier.explain(entry.name);
        let generic = matches!(explanation.class, NameClass::Generic { .. });
        match entry.label {
            Label::Dynamic => {
                figures.dynamic += 1;
                if generic {
                    figures.caught += 1;
                } else {
                    let why = match &explanation.decision {
                        Decision::NoRule => "no rule".to_owned(),
                        Decision::Exception { entry, .. } => format!("exception {entry}"),
                        Decision::MailServerRule { id, .. } => format!("outweighed by {id}"),
                        other => format!("{other:?}"),
                    };
                    *figures.misses_by_decision.entry(why.clone()).or_default() += 1;
                    figures.missed_names.push(format!("{} ({why})", entry.name));
                }
            }
            Label::Mta => {
                figures.mta += 1;
                if let NameClass::Generic { rule } = &explanation.class {
                    figures.false_positives += 1;
                    *figures.fp_by_rule.entry(rule.clone()).or_default() += 1;
                    figures.fp_names.push(format!("{} ({rule})", entry.name));
                }
            }
        }
    }
    figures
}

fn report(title: &str, figures: &Figures, list_errors: bool) {
    println!(
        "{title:<28} recall {:>4}/{:<4} = {:5.1} %   FP {:>3}/{:<4} = {:5.1} %",
        figures.caught,
        figures.dynamic,
        100.0 * figures.recall(),
        figures.false_positives,
        figures.mta,
        100.0 * figures.fp_rate()
    );
    println!("    false positives by rule: {:?}", figures.fp_by_rule);
    println!(
        "    missed end-user names:   {:?}",
        figures.misses_by_decision
    );
    if list_errors {
        for name in &figures.fp_names {
            println!("      FP   {name}");
        }
        for name in &figures.missed_names {
            println!("      MISS {name}");
        }
    }
}

#[test]
fn corpus_is_well_formed() {
    let entries = corpus();
    let mut seen = std::collections::HashSet::new();
    for entry in &entries {
        assert!(seen.insert(entry.name), "duplicate row {}", entry.name);
        assert_eq!(
            entry.name,
            entry.name.to_ascii_lowercase(),
            "corpus names are lowercase"
        );
    }
    let dynamic = entries.iter().filter(|e| e.label == Label::Dynamic).count();
    let mta = entries.len() - dynamic;
    assert!(dynamic >= 100 && mta >= 100, "{dynamic} dynamic, {mta} mta");
}

#[test]
fn spamgate_beats_s25r_on_dev_and_held_out() {
    let entries = corpus();
    let s25r = s25r_only();
    let full = Classifier::new(&ClassifierConfig::default()).unwrap();
    // `CORPUS_ERRORS=1` lists the errors of both parts; `CORPUS_ERRORS=dev` only those of
    // the development part, which is the one to look at while shaping rules (the held-out
    // part is only for the figures).
    let list = std::env::var("CORPUS_ERRORS").ok();
    for (part, wanted) in [("dev", false), ("held-out", true)] {
        let verbose = list
            .as_deref()
            .is_some_and(|which| which != "dev" || part == "dev");
        let part_entries: Vec<&Entry> = entries
            .iter()
            .filter(|e| held_out(e.name) == wanted)
            .collect();
        let base = measure(&s25r, &part_entries);
        let ours = measure(&full, &part_entries);
        println!("== {part}: {} names", part_entries.len());
        report("S25R rules 1-6 alone", &base, false);
        report("spamgate (rules+exceptions)", &ours, verbose);
        // What must hold on either part: recall at least S25R's, and false positives at
        // most a quarter of S25R's (the goal), so a rule change that loses either
        // fails here.
        assert!(
            ours.recall() >= base.recall(),
            "{part}: recall {:.3} below S25R's {:.3}",
            ours.recall(),
            base.recall()
        );
        assert!(
            ours.fp_rate() <= base.fp_rate(),
            "{part}: FP rate {:.3} above S25R's {:.3}",
            ours.fp_rate(),
            base.fp_rate()
        );
        let goal_met = ours.fp_rate() * 4.0 <= base.fp_rate();
        println!(
            "    goal FP <= 1/4 of S25R's: {}",
            if goal_met { "met" } else { "NOT met" }
        );
        assert!(
            goal_met,
            "{part}: FP rate {:.3} above a quarter of S25R's {:.3}",
            ours.fp_rate(),
            base.fp_rate()
        );
    }
}
