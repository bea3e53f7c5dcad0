//! Waiting on a condition with a deadline: the one poll loop the scenarios share.

use std::time::{Duration, Instant};

use anyhow::bail;

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(250);

/// Polls `check` until it yields a value or `deadline` passes.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    deadline: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > until {
            bail!("gave up after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}
