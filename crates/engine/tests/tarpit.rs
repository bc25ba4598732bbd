//! The tarpit's decisions, table-driven: greylist outcome and what the application knows
//! about holds in, action and tarpit reason out; and timelines with the time passed in.

use std::time::Duration;

use spamgate_engine::facts::RdnsFact;
use spamgate_engine::greylist::{
    GreylistInputs, GreylistOutcome, GreylistParams, GreylistWrites, decide,
};
use spamgate_engine::tarpit::{TarpitFacts, TarpitOutcome, TarpitParams};
use spamgate_engine::{Action, Engine, EngineConfig, Envelope, Evaluation, GreylistPlan, Stage};

fn engine(tarpit: TarpitParams) -> Engine {
    let config = EngineConfig {
        tarpit,
        ..EngineConfig::seed_defaults()
    };
    Engine::new(&config).unwrap()
}

fn on() -> TarpitParams {
    TarpitParams {
        enabled: true,
        delay: Duration::from_secs(50),
        max_concurrent: 2,
        ..TarpitParams::default()
    }
}

fn plan(engine: &Engine) -> GreylistPlan {
    let envelope = Envelope {
        sender: "sender@example.org".into(),
        recipient: "user@example.net".into(),
        ..Envelope::new("203.0.113.7".parse().unwrap())
    };
    match engine.evaluate(&envelope, &Stage::Rcpt, &[], &[], &RdnsFact::NoPtr) {
        Evaluation::Greylist(plan) => plan,
        other => panic!("a no-PTR client is greylisted: {other:?}"),
    }
}

const FREE: TarpitFacts = TarpitFacts {
    waited_in_transaction: false,
    slot_free: true,
};
const BUSY: TarpitFacts = TarpitFacts {
    waited_in_transaction: false,
    slot_free: false,
};
const WAITED: TarpitFacts = TarpitFacts {
    waited_in_transaction: true,
    slot_free: false,
};

fn check(
    engine: &Engine,
    outcome: Result<GreylistOutcome, String>,
    facts: TarpitFacts,
    want_action: Action,
    want_tarpit: Option<TarpitOutcome>,
) {
    let verdict = engine.finish_tarpit(plan(engine), outcome.clone(), facts);
    assert_eq!(verdict.action, want_action, "{outcome:?} {facts:?}");
    assert_eq!(
        verdict.tarpit_outcome().copied(),
        want_tarpit,
        "{outcome:?} {facts:?}"
    );
}

#[test]
fn tarpit_decision_table() {
    let new = || Ok(GreylistOutcome::New { retry_in: 300 });
    let too_early = || {
        Ok(GreylistOutcome::TooEarly {
            waited: 60,
            retry_in: 240,
        })
    };
    let held = Action::Tarpit {
        hold_ms: 50_000,
        retry_in: 300,
    };
    let greylist = |retry_in| Action::Greylist { retry_in };
    let e = engine(on());
    let off = engine(TarpitParams::default());
    // First attempt, a slot free: held, then let in.
    check(
        &e,
        new(),
        FREE,
        held,
        Some(TarpitOutcome::Held { hold_ms: 50_000 }),
    );
    // Every slot busy: plain greylisting, saying why.
    check(
        &e,
        new(),
        BUSY,
        greylist(300),
        Some(TarpitOutcome::Full { max_concurrent: 2 }),
    );
    // The same transaction's next RCPT after a hold: it waited, passes at once.
    check(&e, new(), WAITED, Action::Pass, Some(TarpitOutcome::Waited));
    check(
        &e,
        too_early(),
        WAITED,
        Action::Pass,
        Some(TarpitOutcome::Waited),
    );
    // A retry of a pending triplet (it hung up before): greylisted, never held twice.
    check(&e, too_early(), FREE, greylist(240), None);
    check(
        &e,
        Ok(GreylistOutcome::NetworkFull { pending: 200 }),
        FREE,
        greylist(300),
        None,
    );
    // Passing outcomes and store trouble are not the tarpit's business.
    check(
        &e,
        Ok(GreylistOutcome::Passed { waited: 400 }),
        FREE,
        Action::Pass,
        None,
    );
    check(
        &e,
        Ok(GreylistOutcome::AutoWhitelisted { since: 1 }),
        WAITED,
        Action::Pass,
        None,
    );
    check(&e, Err("disk full".into()), FREE, Action::Pass, None);
    // Off (the default): exactly plain greylisting.
    check(&off, new(), FREE, greylist(300), None);
    check(&off, new(), WAITED, greylist(300), None);
}

#[test]
fn a_cut_hold_is_plain_greylisting() {
    let e = engine(on());
    let verdict = e.finish_tarpit(plan(&e), Ok(GreylistOutcome::New { retry_in: 300 }), FREE);
    assert_eq!(verdict.hold(), Some(Duration::from_secs(50)));
    let cut = verdict.tarpit_cut();
    assert_eq!(cut.action, Action::Greylist { retry_in: 300 });
    assert_eq!(
        cut.tarpit_outcome(),
        Some(&TarpitOutcome::Held { hold_ms: 50_000 })
    );
    assert!(
        cut.reasons_short()
            .ends_with("tarpit:held(50000ms) tarpit:cut")
    );
    assert_eq!(cut.hold(), None);
}

#[test]
fn config_errors() {
    let check = |params: TarpitParams, want: Option<&str>| {
        let got = Engine::new(&EngineConfig {
            tarpit: params.clone(),
            ..EngineConfig::seed_defaults()
        })
        .err()
        .map(|e| e.to_string());
        match want {
            None => assert_eq!(got, None, "{params:?}"),
            Some(text) => assert!(
                got.as_deref().is_some_and(|g| g.contains(text)),
                "{params:?}: {got:?}"
            ),
        }
    };
    check(on(), None);
    let secs = |s| TarpitParams {
        delay: Duration::from_secs(s),
        ..on()
    };
    check(secs(95), None);
    check(
        secs(96),
        Some("tarpit: delay must be positive and at most 95s"),
    );
    check(secs(0), Some("tarpit: delay"));
    check(
        TarpitParams {
            max_concurrent: 0,
            ..on()
        },
        Some("tarpit: max_concurrent must be positive"),
    );
    // Off, nothing is checked.
    check(
        TarpitParams {
            enabled: false,
            ..secs(1000)
        },
        None,
    );
}

/// One client's timeline through the store's state machine and the tarpit, with the
/// time passed in: (seconds after the first attempt, event) → the outcome.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// An RCPT: greylist, then the tarpit's decision with a free slot.
    Rcpt,
    /// The next step after the hold arrived: record it as a passed retry.
    Confirm,
}

fn timeline(steps: &[(u64, Step, &str)]) {
    const T0: u64 = 1_800_000_000;
    let e = engine(on());
    let params = GreylistParams::default();
    let mut inputs = GreylistInputs::default();
    let apply = |inputs: &mut GreylistInputs, writes: GreylistWrites| {
        if let Some((t, _)) = writes.triplet {
            inputs.triplet = Some(t);
        }
        if let Some((a, _)) = writes.awl {
            inputs.awl = Some(a);
        }
    };
    for &(at, step, want) in steps {
        let now = T0 + at;
        let got = match step {
            Step::Rcpt => {
                let (outcome, writes) = decide(&params, &inputs, now);
                apply(&mut inputs, writes);
                let verdict = e.finish_tarpit(plan(&e), Ok(outcome), FREE);
                format!("{} {}", verdict.action.id(), verdict.reasons_short())
            }
            Step::Confirm => {
                let confirm = e.tarpit_params().confirm_params(&params);
                let (outcome, writes) = decide(&confirm, &inputs, now);
                apply(&mut inputs, writes);
                outcome.id().to_string()
            }
        };
        assert!(
            got.contains(want),
            "at +{at}s {step:?}: {got:?} lacks {want:?}"
        );
    }
}

#[test]
fn a_client_that_waited_is_remembered_like_a_passed_retry() {
    use Step::*;
    timeline(&[
        (
            0,
            Rcpt,
            "tarpit client:no-ptr greylist:new(retry_in=300s) tarpit:held(50000ms)",
        ),
        // DATA came 51 s later: the hold was the delay.
        (51, Confirm, "passed"),
        // Its next message, the next day: auto-whitelisted, no hold.
        (86_400, Rcpt, "pass client:no-ptr greylist:awl"),
    ]);
}

#[test]
fn a_client_that_hung_up_is_greylisted_when_it_retries() {
    use Step::*;
    timeline(&[
        (
            0,
            Rcpt,
            "tarpit client:no-ptr greylist:new(retry_in=300s) tarpit:held",
        ),
        // No next step. A retry too early is deferred, not held again.
        (
            60,
            Rcpt,
            "greylist client:no-ptr greylist:too-early(waited=60s,retry_in=240s)",
        ),
        // A retry after the greylist delay passes, as without the tarpit.
        (400, Rcpt, "pass client:no-ptr greylist:passed(waited=400s)"),
    ]);
}

#[test]
fn hung_up_after_the_confirm_window() {
    let p = on();
    let window = p.confirm_window.as_secs();
    for (now, want) in [(100, false), (100 + window, false), (101 + window, true)] {
        assert_eq!(p.hung_up(100, now), want, "held until 100, now {now}");
    }
}
