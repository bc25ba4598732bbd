//! A verdict's reply as a Postfix access(5) action (the text after `action=`).

use spamgate_app::{Replies, ReplyKind};
use spamgate_engine::{Envelope, Verdict};

/// Appends the action to `out`: `DUNNO` (or `PREPEND header` when configured) for a
/// pass, `DEFER_IF_PERMIT text` for greylisting and spamgate's own trouble (so a later
/// permanent refusal by Postfix still wins), and `CODE text` for refusals and deferred
/// submissions.
pub fn write_action(replies: &Replies, verdict: &Verdict, envelope: &Envelope, out: &mut String) {
    use std::fmt::Write as _;
    let head = replies.head(verdict);
    match head.kind {
        ReplyKind::Pass => {
            let start = out.len();
            out.push_str("PREPEND ");
            let text = out.len();
            replies.write_text(verdict, envelope, out);
            if out.len() == text {
                out.truncate(start);
                out.push_str("DUNNO");
            }
        }
        ReplyKind::Greylist | ReplyKind::TempFail => {
            out.push_str("DEFER_IF_PERMIT ");
            replies.write_text(verdict, envelope, out);
        }
        ReplyKind::Reject | ReplyKind::Defer => {
            // Writing into a String cannot fail.
            let _ = write!(out, "{} ", head.code);
            replies.write_text(verdict, envelope, out);
        }
    }
}

/// The action for a request spamgate cannot judge (no usable client address).
pub const NO_OPINION: &str = "DUNNO";

#[cfg(test)]
mod tests {
    use super::*;
    use spamgate_engine::{Action, Reason, Refusal};

    fn check(replies: &Replies, verdict: Verdict, want: &str) {
        let envelope = Envelope::new("192.0.2.7".parse().unwrap());
        let mut out = String::from("kept|");
        write_action(replies, &verdict, &envelope, &mut out);
        assert_eq!(out, format!("kept|{want}"), "{verdict:?}");
    }

    #[test]
    fn each_kind_of_reply_gets_its_postfix_verb() {
        let replies = Replies::default();
        let prepend = Replies {
            prepend_header: true,
            ..Replies::default()
        };
        check(&replies, Verdict::pass(vec![]), "DUNNO");
        check(
            &prepend,
            Verdict::pass(vec![Reason::GreylistDisabled]),
            "PREPEND X-Spamgate: pass; greylist:disabled",
        );
        check(
            &replies,
            Verdict {
                action: Action::Greylist { retry_in: 300 },
                reasons: vec![],
            },
            "DEFER_IF_PERMIT 4.7.1 Greylisted (suspicious client): please resend in 300 seconds",
        );
        check(
            &replies,
            Verdict {
                action: Action::TempFail,
                reasons: vec![],
            },
            "DEFER_IF_PERMIT 4.3.0 Temporary server problem, please resend later",
        );
        check(
            &replies,
            Verdict {
                action: Action::Reject {
                    refusal: Refusal::Unauthenticated,
                },
                reasons: vec![Reason::Unauthenticated { server_port: 587 }],
            },
            "530 5.7.0 Authentication required: log in with SMTP AUTH to send on this port",
        );
        check(
            &replies,
            Verdict {
                action: Action::Defer { retry_in: 36 },
                reasons: vec![],
            },
            "451 4.7.1 Sending limit reached (), please try again in 36 seconds",
        );
    }
}
