//! Bounded retries for calls to services outside the process (a KMS, S3).
//!
//! Guarantees: a call is tried at most [`ATTEMPTS`] times, with a wait of [`BACKOFF`] times
//! 4ⁿ⁻¹, less up to half of it at random, after the n-th failure; and only a failure that is
//! safe to try again is retried: the connection failed or timed out, or the service answered
//! 429 or 5xx. Every call made through it is idempotent (KMS encrypt and decrypt; S3 GET, PUT,
//! HEAD and DELETE of one object), so a retry after a lost answer changes nothing twice.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const ATTEMPTS: u32 = 3;
pub const BACKOFF: Duration = Duration::from_millis(100);

/// What one attempt came to.
pub enum Outcome<T, E> {
    Done(T),
    /// Safe to try again.
    Retry(E),
    Fail(E),
}

/// A status worth trying again.
pub fn retryable_status(status: u16) -> bool {
    status == 429 || status >= 500
}

fn wait(failures: u32) -> Duration {
    let full = BACKOFF.saturating_mul(4u32.saturating_pow(failures.saturating_sub(1)));
    let jitter = crate::random::<1>()
        .map(|[b]| f64::from(b) / 255.0)
        .unwrap_or(0.5);
    full.mul_f64(1.0 - jitter / 2.0)
}

/// Upper bounds, in seconds, of the buckets of [`CallStats::buckets`].
pub const CALL_BUCKETS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Calls to one outside service, counted since the process started.
#[derive(Debug, Clone, Default)]
pub struct CallStats {
    pub ok: u64,
    pub failed: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Calls that took at most each bound of [`CALL_BUCKETS`], retries included.
    pub buckets: [u64; CALL_BUCKETS.len()],
    pub seconds: f64,
}

static CALLS: Mutex<BTreeMap<&'static str, CallStats>> = Mutex::new(BTreeMap::new());

fn record(service: &'static str, ok: bool, retries: u32, seconds: f64) {
    if let Ok(mut calls) = CALLS.lock() {
        let s = calls.entry(service).or_default();
        if ok {
            s.ok += 1;
        } else {
            s.failed += 1;
        }
        s.retries += u64::from(retries);
        s.seconds += seconds;
        for (bucket, bound) in s.buckets.iter_mut().zip(CALL_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }
}

/// Calls made through [`retry`] so far, by service (`kms`, `s3`).
pub fn call_stats() -> Vec<(&'static str, CallStats)> {
    CALLS
        .lock()
        .map(|c| c.iter().map(|(k, v)| (*k, v.clone())).collect())
        .unwrap_or_default()
}

/// Runs `attempt` until it is done, fails for good, or has failed [`ATTEMPTS`] times (the
/// last error is returned). The call is counted under `service` in [`call_stats`].
pub async fn retry<T, E, F, Fut>(service: &'static str, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome<T, E>>,
{
    let started = Instant::now();
    let done =
        |ok: bool, failures: u32| record(service, ok, failures, started.elapsed().as_secs_f64());
    let mut failures = 0;
    loop {
        match attempt().await {
            Outcome::Done(v) => {
                done(true, failures);
                return Ok(v);
            }
            Outcome::Fail(e) => {
                done(false, failures);
                return Err(e);
            }
            Outcome::Retry(e) => {
                failures += 1;
                if failures >= ATTEMPTS {
                    done(false, failures - 1);
                    return Err(e);
                }
                tokio::time::sleep(wait(failures)).await;
            }
        }
    }
}

/// Sends a request and sorts the answer: the body on success; a failure to connect, a
/// timeout, 429 or 5xx to be retried; anything else final.
#[cfg(any(feature = "aws", feature = "http-kms"))]
pub(crate) async fn http_outcome(
    what: &str,
    req: reqwest::RequestBuilder,
) -> Outcome<String, crate::CryptoError> {
    let err = |e: &dyn std::fmt::Display| crate::CryptoError::Kms(format!("{what}: {e}"));
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() || e.is_timeout() => return Outcome::Retry(err(&e)),
        Err(e) => return Outcome::Fail(err(&e)),
    };
    let status = resp.status();
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => return Outcome::Retry(err(&e)),
    };
    if status.is_success() {
        return Outcome::Done(text);
    }
    let e = crate::CryptoError::Kms(format!(
        "{what} answered {status}: {}",
        text.chars().take(300).collect::<String>()
    ));
    if retryable_status(status.as_u16()) {
        Outcome::Retry(e)
    } else {
        Outcome::Fail(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    async fn run(fail_first: u32, retryable: bool) -> (Result<u32, String>, u32) {
        let tries = AtomicU32::new(0);
        let out = retry("test", || async {
            let n = tries.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= fail_first {
                let e = format!("failure {n}");
                if retryable {
                    Outcome::Retry(e)
                } else {
                    Outcome::Fail(e)
                }
            } else {
                Outcome::Done(n)
            }
        })
        .await;
        (out, tries.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn retries_what_may_be_retried_a_bounded_number_of_times() {
        assert_eq!(run(0, true).await, (Ok(1), 1));
        assert_eq!(run(2, true).await, (Ok(3), 3));
        assert_eq!(run(5, true).await, (Err("failure 3".into()), 3));
        assert_eq!(run(1, false).await, (Err("failure 1".into()), 1));
        // Counted: five calls, two failed, 2 + 2 retries.
        let (_, stats) = call_stats()
            .into_iter()
            .find(|(s, _)| *s == "test")
            .unwrap_or_default();
        assert_eq!((stats.ok, stats.failed, stats.retries), (2, 2, 4));
        assert!(stats.buckets.last().is_some_and(|n| *n == 4));
    }

    #[test]
    fn waits_grow_and_are_bounded() {
        for n in 1..=3 {
            let full = BACKOFF * 4u32.pow(n - 1);
            let w = wait(n);
            assert!(w <= full && w >= full / 2, "{n}: {w:?}");
        }
        assert!(retryable_status(503) && retryable_status(429) && !retryable_status(404));
    }
}
