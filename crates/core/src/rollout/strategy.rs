//! A bundle's `spec.rollout`, compiled: waves with their members and limits resolved to numbers,
//! durations in milliseconds, defaults applied. Built once per write (validation) and snapshotted
//! into a run, so the planner never parses text.

use flotilla_api::{LateJoiners, OfflinePolicy, OnFailure};

use crate::selector::Selector;

/// A compiled rollout strategy. `waves` is never empty: clusters the written waves leave over
/// form a last implicit wave.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    pub waves: Vec<Wave>,
    pub on_failure: OnFailure,
    pub late_joiners: LateJoiners,
    pub offline: OfflinePolicy,
    /// Seed of the stable shuffle (see [`rank`]).
    pub seed: u64,
}

/// One compiled wave.
#[derive(Debug, Clone, PartialEq)]
pub struct Wave {
    pub name: String,
    pub members: Members,
    /// Canary: tolerates no failure (`max_failures` is `Count(0)`).
    pub mandatory: bool,
    /// Started-but-not-done clusters at once; resolved against the wave's size, rounded up, at
    /// least 1.
    pub max_concurrency: Amount,
    pub min_soak_ms: u64,
    pub progress_deadline_ms: u64,
    /// Failed clusters tolerated; resolved against the wave's size, rounded down.
    pub max_failures: Amount,
    pub pause_after: bool,
}

/// Which of the clusters not taken by earlier waves a wave takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Members {
    /// A share of them, in the order of `sort_by`'s label value, then of [`rank`].
    Share {
        amount: Amount,
        sort_by: Option<String>,
    },
    /// Those whose labels match.
    Selector(Selector),
}

/// A count, or a share in basis points (1% = 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(u64),
    BasisPoints(u32),
}

impl Amount {
    /// The amount of `total`, a share rounded up (a 10% canary of 5 clusters is 1 cluster).
    pub fn of_rounded_up(self, total: u64) -> u64 {
        match self {
            Amount::Count(count) => count.min(total),
            Amount::BasisPoints(bp) => (total * bp as u64).div_ceil(10_000),
        }
    }

    /// The amount of `total`, a share rounded down (1% failures of 50 clusters tolerates none).
    pub fn of_rounded_down(self, total: u64) -> u64 {
        match self {
            Amount::Count(count) => count.min(total),
            Amount::BasisPoints(bp) => total * bp as u64 / 10_000,
        }
    }
}

/// A cluster's place in a run's stable shuffle: the first 8 bytes of SHA-256 over the seed and
/// the cluster's name. Stable across processes and versions (a restarted server must order the
/// fleet exactly as before), so never change it.
pub fn rank(seed: u64, cluster: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(cluster.as_bytes());
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
}

/// The seed a strategy without `seed` uses: derived from the bundle's name, so the same clusters
/// are its canaries run after run.
pub fn default_seed(bundle: &str) -> u64 {
    rank(0, bundle)
}
