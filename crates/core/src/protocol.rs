//! The agent protocol's replies (`/agent/v1`: register, sync, content), classified once: what an
//! answer's status and `Retry-After` mean and what the caller does next. The agent's HTTP client
//! and the simulator both ask [`classify`], so they behave alike on every status; failover between
//! replicas ([`crate::failover`]) takes its [`Outcome`] from the same classification.
//!
//! The rules:
//! - **2xx** is success; a sync's **204** means the desired set is unchanged.
//! - **429** means the replica sheds load on purpose: wait on that replica for its `Retry-After`
//!   (capped at [`MAX_RETRY_AFTER_MILLIS`]; [`DEFAULT_BUSY_MILLIS`] when it names none).
//! - **5xx**, **408** and answers outside the protocol (1xx, 3xx) mean the replica cannot serve
//!   now: fail over to the next replica at once; once every replica failed, wait at least the
//!   longest `Retry-After` they asked for (a 503 with `Retry-After` on a single server is waited
//!   out on that server for that long).
//! - **401/403** to a sync or a content fetch: the cluster credential is refused; register again.
//! - **Any other 4xx** is a refusal of the request itself, the same on every replica. To a
//!   registration (401/403 included) it means registering cannot succeed as asked: the agent stops
//!   and says why. To a sync or a content fetch it is logged and retried after the backoff.

use crate::failover::Outcome;

/// The longest `Retry-After` honoured, in milliseconds: a proxy that asks for hours must not
/// park a fleet for hours; ten minutes is past any restart of a replica or of PostgreSQL.
pub const MAX_RETRY_AFTER_MILLIS: u64 = 600_000;

/// The wait after a 429 that names none: the middle of the 2–10 s the server itself spreads
/// shed agents over.
pub const DEFAULT_BUSY_MILLIS: u64 = 5_000;

/// Which agent call a reply answers: the same status means different things to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Register,
    Sync,
    Content,
}

/// What an answer to an agent call means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A 2xx carrying the call's body: the registration, a sync reply, the content.
    Success,
    /// A sync's 204: nothing changed since the etag the agent sent.
    Unchanged,
    /// 429: the replica sheds load. Come back to the same replica no sooner than this.
    Busy { retry_after_millis: u64 },
    /// The replica cannot serve now (5xx, 408, or an answer outside the protocol): try the next
    /// replica; once all failed, wait at least the longest `Retry-After` asked for.
    Unavailable { retry_after_millis: Option<u64> },
    /// 401/403 to a sync or a content fetch: the cluster credential is refused; register again.
    CredentialRejected,
    /// A 4xx (but 408 and 429) to a registration: the token, name or labels are refused, and
    /// registering again as asked cannot succeed. The agent stops and says why.
    RegistrationRefused { status: u16 },
    /// A 4xx (but 401, 403, 408 and 429) to a sync or a content fetch: the server refused this
    /// request as invalid. The agent logs the server's message and retries after its backoff.
    Rejected { status: u16 },
}

impl Reply {
    /// What the answer is to failover between replicas.
    pub fn outcome(self) -> Outcome {
        match self {
            Reply::Busy { retry_after_millis } => Outcome::Busy { retry_after_millis },
            Reply::Unavailable { retry_after_millis } => {
                Outcome::Unavailable { retry_after_millis }
            }
            Reply::Success
            | Reply::Unchanged
            | Reply::CredentialRejected
            | Reply::RegistrationRefused { .. }
            | Reply::Rejected { .. } => Outcome::Answered,
        }
    }

    /// Whether the answer carries what was asked for (a body, or "unchanged").
    pub fn is_success(self) -> bool {
        matches!(self, Reply::Success | Reply::Unchanged)
    }
}

/// Classifies the answer to `call`: its HTTP status and its `Retry-After` header, if any.
pub fn classify(call: Call, status: u16, retry_after: Option<&str>) -> Reply {
    match (status, call) {
        (204, Call::Sync) => Reply::Unchanged,
        (200..=299, _) => Reply::Success,
        (429, _) => Reply::Busy {
            retry_after_millis: retry_after
                .and_then(parse_retry_after)
                .unwrap_or(DEFAULT_BUSY_MILLIS),
        },
        // 408: the request did not reach this replica in time, which says nothing about the
        // request itself (nor about the other replicas).
        (408, _) | (500.., _) | (..200, _) | (300..=399, _) => Reply::Unavailable {
            retry_after_millis: retry_after.and_then(parse_retry_after),
        },
        (_, Call::Register) => Reply::RegistrationRefused { status },
        (401 | 403, Call::Sync | Call::Content) => Reply::CredentialRejected,
        (_, Call::Sync | Call::Content) => Reply::Rejected { status },
    }
}

/// A `Retry-After` in delta-seconds, as milliseconds capped at [`MAX_RETRY_AFTER_MILLIS`]. The
/// HTTP-date form is not used by flotilla and is ignored (the backoff applies).
pub fn parse_retry_after(value: &str) -> Option<u64> {
    let seconds: u64 = value.trim().parse().ok()?;
    Some(seconds.saturating_mul(1_000).min(MAX_RETRY_AFTER_MILLIS))
}

/// The server's message in an error answer's body (the JSON [`flotilla_api::ErrorBody`] every
/// flotilla error carries); `None` when the body is not one (a proxy's page, an empty body).
pub fn error_message(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<flotilla_api::ErrorBody>(body)
        .ok()
        .map(|body| body.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLS: [Call; 3] = [Call::Register, Call::Sync, Call::Content];

    #[test]
    fn every_status_means_one_thing_per_call() {
        use Call::{Content, Register, Sync};
        let busy = |millis| Reply::Busy {
            retry_after_millis: millis,
        };
        let unavailable = |millis| Reply::Unavailable {
            retry_after_millis: millis,
        };
        let table: &[(Call, u16, Option<&str>, Reply)] = &[
            (Register, 200, None, Reply::Success),
            (Register, 201, None, Reply::Success),
            (Sync, 200, None, Reply::Success),
            (Sync, 204, None, Reply::Unchanged),
            (Content, 200, None, Reply::Success),
            (Content, 204, None, Reply::Success),
            (Sync, 429, Some("7"), busy(7_000)),
            (Register, 429, Some("3"), busy(3_000)),
            (Content, 429, None, busy(DEFAULT_BUSY_MILLIS)),
            (
                Sync,
                429,
                Some("Wed, 21 Oct 2015 07:28:00 GMT"),
                busy(DEFAULT_BUSY_MILLIS),
            ),
            (Sync, 429, Some("86400"), busy(MAX_RETRY_AFTER_MILLIS)),
            (Sync, 503, Some("30"), unavailable(Some(30_000))),
            (Register, 503, Some("30"), unavailable(Some(30_000))),
            (Content, 503, None, unavailable(None)),
            (Sync, 500, None, unavailable(None)),
            (Sync, 502, Some("2"), unavailable(Some(2_000))),
            (Register, 408, Some("1"), unavailable(Some(1_000))),
            (Sync, 408, None, unavailable(None)),
            (Sync, 302, None, unavailable(None)),
            (Content, 101, None, unavailable(None)),
            (Sync, 401, None, Reply::CredentialRejected),
            (Sync, 403, None, Reply::CredentialRejected),
            (Content, 401, None, Reply::CredentialRejected),
            (Content, 403, None, Reply::CredentialRejected),
            (
                Register,
                401,
                None,
                Reply::RegistrationRefused { status: 401 },
            ),
            (
                Register,
                403,
                None,
                Reply::RegistrationRefused { status: 403 },
            ),
            (
                Register,
                409,
                None,
                Reply::RegistrationRefused { status: 409 },
            ),
            (
                Register,
                422,
                None,
                Reply::RegistrationRefused { status: 422 },
            ),
            (
                Register,
                400,
                Some("5"),
                Reply::RegistrationRefused { status: 400 },
            ),
            (Sync, 400, None, Reply::Rejected { status: 400 }),
            (Sync, 413, None, Reply::Rejected { status: 413 }),
            (Sync, 422, None, Reply::Rejected { status: 422 }),
            (Content, 404, None, Reply::Rejected { status: 404 }),
        ];
        for &(call, status, retry_after, expected) in table {
            assert_eq!(
                classify(call, status, retry_after),
                expected,
                "{call:?} answered {status} (Retry-After {retry_after:?})"
            );
        }
    }

    #[test]
    fn a_503_with_retry_after_fails_over_and_a_429_waits_on_the_same_replica() {
        for call in CALLS {
            assert_eq!(
                classify(call, 503, Some("30")).outcome(),
                Outcome::Unavailable {
                    retry_after_millis: Some(30_000)
                },
                "{call:?}"
            );
            assert_eq!(
                classify(call, 429, Some("30")).outcome(),
                Outcome::Busy {
                    retry_after_millis: 30_000
                },
                "{call:?}"
            );
        }
    }

    #[test]
    fn only_unavailable_and_busy_replicas_are_left_by_failover() {
        for call in CALLS {
            for status in 100..600 {
                let reply = classify(call, status, None);
                let answered = reply.outcome() == Outcome::Answered;
                assert_eq!(
                    answered,
                    !matches!(reply, Reply::Busy { .. } | Reply::Unavailable { .. }),
                    "{call:?} {status}"
                );
                assert_eq!(
                    reply.is_success(),
                    (200..300).contains(&status),
                    "{call:?} {status}"
                );
            }
        }
    }

    #[test]
    fn retry_after_is_delta_seconds_and_capped() {
        assert_eq!(parse_retry_after(" 12 "), Some(12_000));
        assert_eq!(
            parse_retry_after("99999999999"),
            Some(MAX_RETRY_AFTER_MILLIS)
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn the_error_message_is_the_servers_json_message() {
        let body = br#"{"code":422,"reason":"UnprocessableEntity","message":"labels: bad key"}"#;
        assert_eq!(error_message(body).as_deref(), Some("labels: bad key"));
        assert_eq!(error_message(b"<html>bad gateway</html>"), None);
        assert_eq!(error_message(b""), None);
    }
}
