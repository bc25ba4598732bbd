//! The runtime allow-list: insert or replace, remove, ordered listing, and the
//! generation that other processes poll.

mod common;

use common::*;
use spamgate_engine::verdict::AllowListKind::{self, *};
use spamgate_store::{AllowAdmin, AllowEntry, AllowStore};

enum Op {
    Add(AllowListKind, &'static str, &'static str, u64),
    Remove(AllowListKind, &'static str),
}

/// An operation, what it returns (new / existed), and whether the generation moves.
struct Step {
    op: Op,
    returns: bool,
    moves: bool,
}

fn entry(kind: AllowListKind, value: &str, note: &str, added_at: u64) -> AllowEntry {
    AllowEntry {
        kind,
        value: value.to_string(),
        note: note.to_string(),
        added_at,
    }
}

async fn check(store: &(impl AllowStore + AllowAdmin), steps: &[Step]) {
    for (index, step) in steps.iter().enumerate() {
        let before = store.allow_generation().await.unwrap();
        let returned = match step.op {
            Op::Add(kind, value, note, at) => store
                .allow_add(&entry(kind, value, note, at))
                .await
                .unwrap(),
            Op::Remove(kind, value) => store.allow_remove(kind, value).await.unwrap(),
        };
        let after = store.allow_generation().await.unwrap();
        assert_eq!(returned, step.returns, "step {index}");
        assert_eq!(
            after != before,
            step.moves,
            "step {index}: {before} -> {after}"
        );
    }
}

fn step(op: Op, returns: bool, moves: bool) -> Step {
    Step { op, returns, moves }
}

#[tokio::test]
async fn add_replace_remove_and_list() {
    let fixture = Fixture::new();
    let store = fixture.open();
    assert!(store.allow_list().await.unwrap().is_empty());
    check(
        &store,
        &[
            step(
                Op::Add(Sender, "ceo@example.com", "ticket 1", T0),
                true,
                true,
            ),
            // The same kind and value replaces the note and time: not new, still a change.
            step(
                Op::Add(Sender, "ceo@example.com", "ticket 2", T0 + 5),
                false,
                true,
            ),
            // The same value under another kind is another entry.
            step(
                Op::Add(Recipient, "ceo@example.com", "", T0 + 6),
                true,
                true,
            ),
            step(
                Op::Add(ClientAddress, "192.0.2.25", "partner", T0 + 7),
                true,
                true,
            ),
            step(
                Op::Add(ClientName, "mx.example.net", "", T0 + 8),
                true,
                true,
            ),
            step(
                Op::Add(ClientAddress, "198.51.100.0/24", "", T0 + 9),
                true,
                true,
            ),
            step(Op::Remove(Recipient, "ceo@example.com"), true, true),
            // Removing what is not there changes nothing.
            step(Op::Remove(Recipient, "ceo@example.com"), false, false),
            step(Op::Remove(Sender, "nobody@example.com"), false, false),
            step(Op::Remove(ClientName, "192.0.2.25"), false, false),
        ],
    )
    .await;
    let listed = store.allow_list().await.unwrap();
    assert_eq!(
        listed,
        [
            entry(ClientAddress, "192.0.2.25", "partner", T0 + 7),
            entry(ClientAddress, "198.51.100.0/24", "", T0 + 9),
            entry(ClientName, "mx.example.net", "", T0 + 8),
            entry(Sender, "ceo@example.com", "ticket 2", T0 + 5),
        ],
        "ordered by kind, then value"
    );
    store.close().await;
}

#[tokio::test]
async fn another_process_sees_the_list_and_its_generation_move() {
    let fixture = Fixture::new();
    let daemon = fixture.open();
    // `spamgate allow add` runs as its own process on the same file.
    let cli = fixture.open();
    let seen = daemon.allow_generation().await.unwrap();
    assert!(
        cli.allow_add(&entry(Sender, "a@example.com", "", T0))
            .await
            .unwrap()
    );
    let moved = daemon.allow_generation().await.unwrap();
    assert_ne!(moved, seen);
    assert_eq!(daemon.allow_list().await.unwrap().len(), 1);
    cli.close().await;

    // The list and the generation are in the file: a restart sees both.
    daemon.close().await;
    let reopened = fixture.open();
    assert_eq!(reopened.allow_generation().await.unwrap(), moved);
    assert_eq!(
        reopened.allow_list().await.unwrap(),
        [entry(Sender, "a@example.com", "", T0)]
    );
    reopened.close().await;
}
