//! Failover between server replicas (`--server URL1,URL2,…`): the one rule the agent and the
//! simulator follow, so they cannot disagree about when to move to another replica and how long
//! to wait. What an answer *is* (busy, unavailable, answered) comes from
//! [`crate::protocol::classify`]; this module decides where the request goes next.
//!
//! The rule, for one request:
//! - A replica that **answers** (2xx, or a refusal such as 401 or 422) is used from then on: a
//!   refusal of the request (bad credential, invalid body) would be the same on every replica.
//! - A replica that is **unavailable** (no connection, timeout, any 5xx, 503 with or without
//!   `Retry-After` included) is passed over at once for the next one: replicas share the store,
//!   and one whose process, network or store connection is down says nothing about the others.
//! - A replica that **sheds load** (429) is not passed over: the agent waits at least its
//!   `Retry-After` (and its own backoff) and comes back to the same replica. Moving shed agents
//!   to the other replicas at once would hand them the overload in the same second.
//! - When **every** replica was unavailable, the caller backs off with jitter
//!   ([`retry_delay_millis`]), never less than the longest `Retry-After` any of them asked for,
//!   and starts from the same replica next time.

use crate::sync::Backoff;

/// What one attempt at one replica came to, as failover sees it (see
/// [`crate::protocol::Reply::outcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The replica answered: a success, or a refusal of this request.
    Answered,
    /// The replica sheds load on purpose (429): wait this long before coming back to it.
    Busy { retry_after_millis: u64 },
    /// The replica cannot serve now: no connection, a timeout or a 5xx.
    Unavailable { retry_after_millis: Option<u64> },
}

impl Outcome {
    /// The outcome of a request that got no HTTP answer (refused, reset, timed out).
    pub fn no_answer() -> Outcome {
        Outcome::Unavailable {
            retry_after_millis: None,
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Take this answer. `current` is the replica to use from now on (the one that answered).
    Done { current: usize },
    /// Send the same request to replica `next` now.
    TryNext { next: usize },
    /// Give up for now and retry no sooner than `at_least_millis` (and as the caller's backoff
    /// says, see [`retry_delay_millis`]), starting with replica `current`.
    Wait {
        current: usize,
        at_least_millis: u64,
    },
}

/// One request's walk over the replicas, from the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    replicas: usize,
    first: usize,
    tried: usize,
    /// The longest `Retry-After` seen on this walk.
    retry_after_millis: u64,
}

impl Failover {
    /// A walk over `replicas` replicas (at least one) starting at `current`.
    pub fn new(replicas: usize, current: usize) -> Failover {
        let replicas = replicas.max(1);
        Failover {
            replicas,
            first: current % replicas,
            tried: 0,
            retry_after_millis: 0,
        }
    }

    /// The replica to send the request to now.
    pub fn replica(&self) -> usize {
        (self.first + self.tried) % self.replicas
    }

    /// Digests the outcome of the attempt at [`Failover::replica`].
    pub fn on_outcome(&mut self, outcome: Outcome) -> Step {
        let replica = self.replica();
        match outcome {
            Outcome::Answered => Step::Done { current: replica },
            Outcome::Busy { retry_after_millis } => Step::Wait {
                current: replica,
                at_least_millis: self.retry_after_millis.max(retry_after_millis),
            },
            Outcome::Unavailable { retry_after_millis } => {
                self.retry_after_millis =
                    self.retry_after_millis.max(retry_after_millis.unwrap_or(0));
                self.tried += 1;
                if self.tried < self.replicas {
                    Step::TryNext {
                        next: self.replica(),
                    }
                } else {
                    Step::Wait {
                        current: self.first,
                        at_least_millis: self.retry_after_millis,
                    }
                }
            }
        }
    }
}

/// How long to wait after [`Step::Wait`]: the next exponential backoff with jitter, but never
/// less than what the servers asked for.
pub fn retry_delay_millis(backoff: &mut Backoff, at_least_millis: u64, entropy: u64) -> u64 {
    backoff.next_delay_millis(entropy).max(at_least_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Call, DEFAULT_BUSY_MILLIS, classify};

    /// The outcome of an answer to a sync.
    fn answer(status: u16, retry_after: Option<&str>) -> Outcome {
        classify(Call::Sync, status, retry_after).outcome()
    }

    fn unavailable(retry_after_millis: Option<u64>) -> Outcome {
        Outcome::Unavailable { retry_after_millis }
    }

    #[test]
    fn an_unavailable_replica_is_passed_over_at_once_for_the_next() {
        let mut walk = Failover::new(3, 1);
        assert_eq!(walk.replica(), 1);
        assert_eq!(
            walk.on_outcome(Outcome::no_answer()),
            Step::TryNext { next: 2 }
        );
        assert_eq!(walk.replica(), 2);
        assert_eq!(
            walk.on_outcome(answer(502, None)),
            Step::TryNext { next: 0 }
        );
        assert_eq!(
            walk.on_outcome(answer(204, None)),
            Step::Done { current: 0 },
            "the replica that answered becomes the current one"
        );
    }

    #[test]
    fn a_503_with_retry_after_fails_over_too_and_its_wait_applies_once_all_failed() {
        let mut walk = Failover::new(2, 0);
        assert_eq!(
            walk.on_outcome(answer(503, Some("30"))),
            Step::TryNext { next: 1 },
            "one replica's store being away says nothing about the other's"
        );
        assert_eq!(
            walk.on_outcome(Outcome::no_answer()),
            Step::Wait {
                current: 0,
                at_least_millis: 30_000
            },
            "all failed: start again from the same replica, no sooner than asked"
        );
    }

    #[test]
    fn a_replica_shedding_load_is_waited_for_not_passed_over() {
        let mut walk = Failover::new(2, 1);
        assert_eq!(
            walk.on_outcome(answer(429, Some("7"))),
            Step::Wait {
                current: 1,
                at_least_millis: 7_000
            }
        );
        let mut walk = Failover::new(2, 0);
        assert_eq!(
            walk.on_outcome(answer(429, None)),
            Step::Wait {
                current: 0,
                at_least_millis: DEFAULT_BUSY_MILLIS
            },
            "a 429 without Retry-After waits the default"
        );
    }

    #[test]
    fn a_busy_replica_reached_after_a_dead_one_becomes_current() {
        let mut walk = Failover::new(2, 0);
        assert_eq!(
            walk.on_outcome(unavailable(Some(9_000))),
            Step::TryNext { next: 1 }
        );
        assert_eq!(
            walk.on_outcome(Outcome::Busy {
                retry_after_millis: 2_000
            }),
            Step::Wait {
                current: 1,
                at_least_millis: 9_000
            },
            "the live replica is current; the longest wait asked for applies"
        );
    }

    #[test]
    fn a_refusal_is_an_answer_and_is_not_retried_elsewhere() {
        for status in [400, 401, 403, 404, 409, 413, 422] {
            let mut walk = Failover::new(2, 0);
            assert_eq!(
                walk.on_outcome(answer(status, None)),
                Step::Done { current: 0 },
                "status {status}"
            );
        }
    }

    #[test]
    fn a_single_server_waits_after_one_failure() {
        let mut walk = Failover::new(1, 5);
        assert_eq!(walk.replica(), 0);
        assert_eq!(
            walk.on_outcome(Outcome::no_answer()),
            Step::Wait {
                current: 0,
                at_least_millis: 0
            }
        );
    }

    #[test]
    fn the_retry_delay_is_the_backoff_but_never_less_than_asked() {
        let mut backoff = Backoff::new(1_000, 60_000);
        assert_eq!(retry_delay_millis(&mut backoff, 30_000, 0), 30_000);
        let mut backoff = Backoff::new(1_000, 60_000);
        let delay = retry_delay_millis(&mut backoff, 0, 0);
        assert!((500..=1_000).contains(&delay), "{delay}");
        assert_eq!(backoff.failures(), 1, "each wait counts as a failure");
    }
}
