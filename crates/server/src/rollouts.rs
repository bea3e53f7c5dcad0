//! The rollout driver: singleton work that steps every bundle's run a few times a second, on
//! the lease holder only (other replicas follow the run records it commits).

use std::time::Duration;

use crate::{state::SharedState, writes};

/// How often runs are stepped. A decision (advance, fail, roll back) follows the report that
/// decides it by at most this much plus a commit, well within the 1 s the issue asks for, and an
/// idle step costs a look at the running set.
pub const STEP_EVERY: Duration = Duration::from_millis(100);

pub async fn driver(state: SharedState) {
    let mut tick = tokio::time::interval(STEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if !state.lease.is_held() {
            continue;
        }
        take_over(&state).await;
        if let Err(error) = writes::rollouts::step_all(&state).await {
            // The moves stay with their runs and go with the next commit that succeeds.
            tracing::warn!(%error, "rollout step not committed; retrying");
        }
    }
}

/// Rebuilds the runs this replica followed while another held the lease (see
/// `Fleet::take_over_runs`); nothing to do, and one look at the running set, on a replica that
/// has held it all along.
async fn take_over(state: &SharedState) {
    let followed = {
        let fleet = state.fleet.read();
        fleet
            .running()
            .any(|bundle| fleet.rollout(bundle).is_some_and(|r| r.followed))
    };
    if !followed {
        return;
    }
    let _serialized = state.admin_lock.lock().await;
    let rebuilt = state.fleet.write().take_over_runs(|name, written| {
        flotilla_core::rollout::strategy::compile(name, written).ok()
    });
    tracing::info!(
        runs = rebuilt,
        "took over the rollouts another replica stepped"
    );
}
