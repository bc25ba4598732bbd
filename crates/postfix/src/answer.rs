//! One request answered: the transaction, the decision, the action text, the log line.
//! The daemon's connections and `spamgate check` both come through here.

use spamgate_app::decision_log::DecisionLine;
use spamgate_app::{Backend, Clock, Mode, Resolver, Service, TarpitHold};
use spamgate_engine::{Transaction, Verdict};
use spamgate_policy::PolicyRequest;
use tracing::warn;

use crate::action::{NO_OPINION, write_action};
use crate::request::transaction_of;

/// What a request was judged as, when it could be judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub transaction: Transaction,
    pub verdict: Verdict,
}

/// Decides `request` and appends the Postfix action to `action` (the caller clears it);
/// logs the decision line. A request without a usable client address gets `DUNNO` and
/// a warning, and `None`.
pub async fn answer<S: Backend, R: Resolver, C: Clock>(
    service: &Service<S, R, C>,
    request: PolicyRequest,
    mode: Mode,
    action: &mut String,
) -> Option<Answer> {
    answer_holding(service, request, mode, action).await.0
}

/// [`answer`], and the tarpit hold to carry out before the action is sent (the action
/// is then the pass that follows the hold).
pub async fn answer_holding<S: Backend, R: Resolver, C: Clock>(
    service: &Service<S, R, C>,
    mut request: PolicyRequest,
    mode: Mode,
    action: &mut String,
) -> (Option<Answer>, Option<TarpitHold>) {
    let Some(transaction) = transaction_of(&mut request) else {
        warn!(
            queue_id = request.queue_id.as_deref().unwrap_or(""),
            raw = request.client_address_raw().unwrap_or(""),
            "request without a usable client_address; answering DUNNO"
        );
        action.push_str(NO_OPINION);
        return (None, None);
    };
    let (verdict, hold) = service.decide_holding(&transaction, mode).await;
    write_action(
        &service.settings().replies,
        &verdict,
        &transaction.envelope,
        action,
    );
    DecisionLine {
        transaction: &transaction,
        verdict: &verdict,
        queue_id: request.queue_id.as_deref(),
        reply: action,
    }
    .log();
    (
        Some(Answer {
            transaction,
            verdict,
        }),
        hold,
    )
}
