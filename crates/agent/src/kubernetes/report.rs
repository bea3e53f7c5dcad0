//! A bundle's report from the outcomes of its objects: how one live object is doing, and the
//! worst state of them all with a bounded list of problems.

use flotilla_api::{
    BundleState,
    agent::{BundleReport, ObjectProblem},
};
use serde_json::Value;

use super::{
    health::{Health, crd_established, is_crd, judge},
    inventory::ObjectRef,
};
use crate::simulated::MAX_PROBLEMS;

/// The outcome of one object in an apply or refresh.
pub enum Outcome {
    Healthy,
    Problem { state: BundleState, message: String },
}

/// How one live object is doing, by its health rules (a CRD also needs `Established`).
pub fn outcome_of(target: &ObjectRef, live: &Value) -> Outcome {
    let crd_waiting = is_crd(live) && !crd_established(live);
    match judge(live) {
        Health::Ready if !crd_waiting => Outcome::Healthy,
        Health::Ready => Outcome::Problem {
            state: BundleState::NotReady,
            message: format!("{}: not established yet", target.describe()),
        },
        Health::NotReady(why) => Outcome::Problem {
            state: BundleState::NotReady,
            message: why,
        },
        Health::Failed(why) => Outcome::Problem {
            state: BundleState::Error,
            message: why,
        },
    }
}

/// The bundle's report from its objects' outcomes: the worst state wins (Error, Modified,
/// NotReady, Ready), with a bounded list of problem objects.
pub fn summarize(
    bundle: &str,
    deployment: &str,
    outcomes: &[(ObjectRef, Outcome)],
) -> BundleReport {
    let rank = |state: BundleState| match state {
        BundleState::Error => 3,
        BundleState::Modified => 2,
        BundleState::NotReady => 1,
        _ => 0,
    };
    let mut state = BundleState::Ready;
    let mut problems = Vec::new();
    let mut more_problems = 0u32;
    let mut message = None;
    for (target, outcome) in outcomes {
        if let Outcome::Problem {
            state: problem,
            message: why,
        } = outcome
        {
            if rank(*problem) > rank(state) {
                state = *problem;
                message = Some(why.clone());
            }
            if problems.len() < MAX_PROBLEMS {
                problems.push(ObjectProblem {
                    kind: target.kind.clone(),
                    namespace: target.namespace.clone(),
                    name: target.name.clone(),
                    message: why.clone(),
                });
            } else {
                more_problems += 1;
            }
        }
    }
    BundleReport {
        bundle: bundle.to_string(),
        deployment: deployment.to_string(),
        state,
        message,
        problems,
        more_problems,
    }
}
