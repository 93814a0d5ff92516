//! Every AWS call goes through a `Caller`: it waits for the service's token bucket, counts the
//! call by operation, and retries throttling and transient failures with backoff and jitter.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::{AwsError, ErrorKind};
use super::ratelimit::{RateLimits, SHARED, Service, TokenBucket};

/// Calls made, by operation, and how many were throttled.
#[derive(Default)]
pub struct CallStats {
    by_operation: Mutex<BTreeMap<&'static str, u64>>,
    throttled: AtomicU64,
}

impl CallStats {
    fn count(&self, operation: &'static str) {
        let mut calls = self.by_operation.lock().unwrap_or_else(|p| p.into_inner());
        *calls.entry(operation).or_default() += 1;
    }

    /// Takes back a call that never reached AWS.
    fn uncount(&self, operation: &'static str) {
        let mut calls = self.by_operation.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = calls.get_mut(operation) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                calls.remove(operation);
            }
        }
    }

    pub fn by_operation(&self) -> BTreeMap<String, u64> {
        let calls = self.by_operation.lock().unwrap_or_else(|p| p.into_inner());
        calls.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    pub fn total(&self) -> u64 {
        let calls = self.by_operation.lock().unwrap_or_else(|p| p.into_inner());
        calls.values().sum()
    }

    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }
}

/// How long one attempt of one call may take by default (`--aws-attempt-timeout`): twice what
/// a slow but working endpoint takes to answer (10 s), so that it still succeeds.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one call may take by default, its attempts and the waits between them together
/// (`--aws-call-timeout`): an endpoint that never answers fails the call, and the sync or
/// grant waiting on it, within this (four attempts, and a fifth cut short).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// How failed calls are retried, and how long they may take.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// One attempt's bound. The SDK enforces the same one (loading credentials included);
    /// this one also cuts the last attempt short at what is left of the call's budget.
    pub attempt_timeout: Duration,
    /// The whole call's bound: the attempts and the backoff between them. Waiting for the
    /// rate-limit lane is not counted: that wait is the operator's own queue, not AWS failing
    /// to answer, and with thousands of grants queued it is long by design.
    pub call_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            attempt_timeout: ATTEMPT_TIMEOUT,
            call_timeout: CALL_TIMEOUT,
        }
    }
}

/// A duration as the flags write it: `90s`, or `1.5s` when it has a fraction of a second.
pub fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

impl RetryPolicy {
    /// Full jitter: a uniform delay up to the exponential bound, so that callers throttled
    /// together do not come back together.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let bound = self
            .base_delay
            .saturating_mul(1 << attempt.min(16))
            .min(self.max_delay);
        bound
            .mul_f64(random.clamp(0.0, 1.0))
            .max(Duration::from_millis(10))
    }
}

/// A small, fast, good-enough random source for jitter (no cryptographic use).
pub(crate) fn jitter_random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (hasher.finish() % 10_000) as f64 / 10_000.0
}

/// Told of every attempt: (service, operation, outcome), outcome being `success`, `throttled`
/// or `error`. The operator turns these into metrics.
pub type CallObserver = Arc<dyn Fn(&'static str, &'static str, &'static str) + Send + Sync>;

/// Rate limiting, retries and counting for one connector's AWS calls.
#[derive(Clone)]
pub struct Caller {
    /// The bucket of each lane: this caller's own until `share` swaps in the buckets of the
    /// place the session reaches (for every clone at once).
    buckets: Arc<Mutex<HashMap<Service, Arc<TokenBucket>>>>,
    limits: RateLimits,
    stats: Arc<CallStats>,
    retry: RetryPolicy,
    observer: Option<CallObserver>,
}

impl Caller {
    pub fn new(limits: &RateLimits, retry: RetryPolicy) -> Self {
        let buckets = Service::ALL
            .into_iter()
            .map(|s| (s, Arc::new(TokenBucket::new(limits.rate(s)))))
            .collect();
        Self {
            buckets: Arc::new(Mutex::new(buckets)),
            limits: limits.clone(),
            stats: Arc::default(),
            retry,
            observer: None,
        }
    }

    /// The same caller, reporting every attempt to `observer`.
    pub fn with_observer(self, observer: CallObserver) -> Self {
        Self {
            observer: Some(observer),
            ..self
        }
    }

    fn observe(&self, service: Service, operation: &'static str, outcome: &'static str) {
        if let Some(observer) = &self.observer {
            observer(service.as_str(), operation, outcome);
        }
    }

    /// The same rate limits (shared: the quota is the same) with counters of its own, to
    /// measure one piece of work.
    pub fn with_fresh_stats(&self) -> Self {
        Self {
            buckets: self.buckets.clone(),
            limits: self.limits.clone(),
            stats: Arc::default(),
            retry: self.retry.clone(),
            observer: self.observer.clone(),
        }
    }

    /// Uses the buckets every session reaching `account` shares: AWS meters each service per
    /// account and region (`region_of` says which region a lane's calls go to), so two
    /// connectors, or a connector's fresh session, never get a quota of their own.
    pub fn share(&self, account: &str, region_of: impl Fn(Service) -> String) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        for service in Service::ALL {
            let key = (account.to_string(), region_of(service), service);
            buckets.insert(service, SHARED.bucket(key, self.limits.rate(service)));
        }
    }

    /// The same counters, retries and observer, with IAM's lane that of member account
    /// `account`: AWS meters IAM per account, so each member account's IAM is read at its own
    /// quota (shared with every other session reaching that account), not the connector's.
    pub fn in_member_account(&self, account: &str) -> Self {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let key = (account.to_string(), String::new(), Service::Iam);
        buckets.insert(
            Service::Iam,
            SHARED.bucket(key, self.limits.rate(Service::Iam)),
        );
        Self {
            buckets: Arc::new(Mutex::new(buckets)),
            limits: self.limits.clone(),
            stats: self.stats.clone(),
            retry: self.retry.clone(),
            observer: self.observer.clone(),
        }
    }

    /// The bucket `service`'s calls wait on now.
    pub fn bucket(&self, service: Service) -> Option<Arc<TokenBucket>> {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.get(&service).cloned()
    }

    /// How this caller retries; credential providers retry by the same policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// Counts a call made outside `call` (the SDK's own, such as AssumeRole by a credentials
    /// provider).
    pub fn record(&self, operation: &'static str) {
        self.stats.count(operation);
    }

    /// Waits for `service`'s rate-limit lane, for a request made outside `call` (an
    /// AssumeRole made by a credentials provider).
    pub async fn pace(&self, service: Service) {
        if let Some(bucket) = self.bucket(service) {
            bucket.acquire().await;
        }
    }

    /// Makes one call (and its retries). `call` performs the request and converts its error.
    pub async fn call<T, F, Fut>(
        &self,
        service: Service,
        operation: &'static str,
        mut call: F,
    ) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AwsError>>,
    {
        let mut attempt = 0;
        // Time in attempts and in the waits between them: what the call's budget bounds.
        let mut spent = Duration::ZERO;
        loop {
            if let Some(bucket) = self.bucket(service) {
                bucket.acquire().await;
            }
            self.stats.count(operation);
            let bound = self
                .retry
                .attempt_timeout
                .min(self.retry.call_timeout.saturating_sub(spent));
            let started = tokio::time::Instant::now();
            let result = match tokio::time::timeout(bound, call()).await {
                Ok(result) => result,
                Err(_) => Err(AwsError::new(
                    operation,
                    ErrorKind::TimedOut,
                    format!("no answer within {}", seconds(bound)),
                )),
            };
            spent += started.elapsed();
            // Credentials that could not be had (a refused AssumeRole): the request was never
            // sent, so it is not a call to count (the AssumeRole was counted as one).
            if result
                .as_ref()
                .is_err_and(|e| e.kind == crate::aws::error::ErrorKind::Credentials)
            {
                self.stats.uncount(operation);
            }
            let outcome = match &result {
                Ok(_) => "success",
                Err(e) if e.is_throttling() => "throttled",
                Err(_) => "error",
            };
            self.observe(service, operation, outcome);
            match result {
                Ok(value) => return Ok(value),
                Err(error) if error.is_retryable() && attempt + 1 < self.retry.max_attempts => {
                    if error.is_throttling() {
                        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    let delay = self.retry.delay(attempt, jitter_random());
                    if spent + delay >= self.retry.call_timeout {
                        return Err(self.out_of_time(service, attempt + 1, error));
                    }
                    spent += delay;
                    tracing::debug!(operation, %error, attempt, ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => {
                    if error.is_throttling() {
                        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    return Err(error);
                }
            }
        }
    }
}

impl Caller {
    /// The error of a call whose budget is spent: the service, the operation (`AwsError`
    /// prints it first), both timeouts and the flags that set them, and the last failure.
    fn out_of_time(&self, service: Service, attempts: u32, last: AwsError) -> AwsError {
        let budget = seconds(self.retry.call_timeout);
        let message = if last.kind == ErrorKind::TimedOut {
            format!(
                "{} did not answer within {budget} (--aws-call-timeout): {attempts} attempts of \
                 at most {} each (--aws-attempt-timeout); the last: {}",
                service.as_str(),
                seconds(self.retry.attempt_timeout),
                last.message
            )
        } else {
            let code = last
                .code
                .as_deref()
                .map(|c| format!("{c}: "))
                .unwrap_or_default();
            format!(
                "{} still failing after {budget} (--aws-call-timeout) and {attempts} attempts; \
                 the last: {code}{}",
                service.as_str(),
                last.message
            )
        };
        AwsError {
            operation: last.operation,
            kind: last.kind,
            code: None,
            message,
            request_id: last.request_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Caller {
        let limits = RateLimits(Service::ALL.into_iter().map(|s| (s, 1000.0)).collect());
        Caller::new(
            &limits,
            RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(2),
                ..RetryPolicy::default()
            },
        )
    }

    #[tokio::test]
    async fn a_member_account_has_its_own_iam_lane_and_the_same_counters() {
        let caller = fast();
        caller.share("111111111111", |_| String::new());
        let member = caller.in_member_account("222222222222");
        let lane = |c: &Caller, s: Service| c.bucket(s).expect("bucket");
        assert!(!Arc::ptr_eq(
            &lane(&member, Service::Iam),
            &lane(&caller, Service::Iam)
        ));
        assert!(Arc::ptr_eq(
            &lane(&member, Service::Sts),
            &lane(&caller, Service::Sts)
        ));
        let again = caller.in_member_account("222222222222");
        assert!(
            Arc::ptr_eq(&lane(&member, Service::Iam), &lane(&again, Service::Iam)),
            "one lane per member account, whoever reaches it"
        );
        member
            .call(Service::Iam, "GetAccountAuthorizationDetails", || async {
                Ok::<_, AwsError>(())
            })
            .await
            .expect("call");
        assert_eq!(
            caller.stats().by_operation()["GetAccountAuthorizationDetails"],
            1,
            "counted with the sync's calls"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_made_outside_call_waits_for_its_lane_too() {
        let limits = RateLimits(Service::ALL.into_iter().map(|s| (s, 2.0)).collect());
        let caller = Caller::new(&limits, RetryPolicy::default());
        let started = tokio::time::Instant::now();
        for _ in 0..6 {
            caller.pace(Service::Sts).await;
        }
        // A burst of 2, then 2 a second: the sixth waits for the fourth token after the burst.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1990) && waited < Duration::from_millis(2100),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn retries_throttling_and_counts_every_attempt() {
        let caller = fast();
        let attempts = AtomicU64::new(0);
        let result = caller
            .call(Service::Iam, "ListUsers", || async {
                if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(AwsError::new(
                        "ListUsers",
                        ErrorKind::Throttled,
                        "slow down",
                    ))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result, Ok(7));
        assert_eq!(caller.stats().by_operation()["ListUsers"], 3);
        assert_eq!(caller.stats().throttled(), 2);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_never_retries_access_denied() {
        let caller = fast();
        let throttled: Result<(), _> = caller
            .call(Service::Iam, "GetUser", || async {
                Err(AwsError::new("GetUser", ErrorKind::Throttled, "x"))
            })
            .await;
        assert_eq!(throttled.map_err(|e| e.kind), Err(ErrorKind::Throttled));
        assert_eq!(caller.stats().by_operation()["GetUser"], 4);
        let denied: Result<(), _> = caller
            .call(Service::Sts, "AssumeRole", || async {
                Err(AwsError::new("AssumeRole", ErrorKind::AccessDenied, "no"))
            })
            .await;
        assert!(denied.is_err());
        assert_eq!(caller.stats().by_operation()["AssumeRole"], 1);
        assert_eq!(caller.stats().total(), 5);
    }

    #[test]
    fn sessions_reaching_one_account_share_its_buckets() {
        let region = |_: Service| "us-east-1".to_string();
        let (a, b, c) = (fast(), fast(), fast());
        let (before_a, before_b) = (
            a.bucket(Service::SsoAdmin).expect("bucket"),
            b.bucket(Service::SsoAdmin).expect("bucket"),
        );
        assert!(!Arc::ptr_eq(&before_a, &before_b), "each its own at first");
        let early = a.with_fresh_stats();
        a.share("210987654321", region);
        b.share("210987654321", region);
        c.share("109876543210", region);
        let shared = |caller: &Caller| caller.bucket(Service::SsoAdmin).expect("bucket");
        assert!(
            Arc::ptr_eq(&shared(&a), &shared(&b)),
            "one account, one bucket"
        );
        assert!(!Arc::ptr_eq(&shared(&a), &shared(&c)));
        // Clones made before sharing (a sync's fresh counters) use the shared bucket too.
        assert!(Arc::ptr_eq(&shared(&early), &shared(&b)));
        assert!(
            !Arc::ptr_eq(
                &shared(&a),
                &a.bucket(Service::IdentityStore).expect("bucket")
            ),
            "each lane its own"
        );
    }

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(0, 1.0), Duration::from_millis(200));
        assert_eq!(policy.delay(3, 1.0), Duration::from_millis(1600));
        assert_eq!(policy.delay(30, 1.0), Duration::from_secs(20));
        assert_eq!(policy.delay(3, 0.5), Duration::from_millis(800));
        assert_eq!(
            policy.delay(3, 0.0),
            Duration::from_millis(10),
            "never zero"
        );
    }

    /// The limits the tests are not about: no waiting for a lane.
    fn at_defaults() -> Caller {
        let limits = RateLimits(Service::ALL.into_iter().map(|s| (s, 1000.0)).collect());
        Caller::new(&limits, RetryPolicy::default())
    }

    /// An endpoint that accepts and never answers fails the call within the call timeout at
    /// the default settings (under the two minutes a sync may wait on it), naming the
    /// service, the operation and both timeouts. The clock is tokio's paused one: the
    /// arithmetic of the retries is what is tested, not the machine's speed.
    #[tokio::test(start_paused = true)]
    async fn an_endpoint_that_never_answers_fails_the_call_within_its_budget() {
        let caller = at_defaults();
        let started = tokio::time::Instant::now();
        let failed = caller
            .call(Service::Sts, "GetCallerIdentity", || async {
                std::future::pending::<Result<(), AwsError>>().await
            })
            .await
            .expect_err("never answered");
        // The waits for the lane (a millisecond each here) are not the budget's.
        let took = started.elapsed();
        assert!(took <= CALL_TIMEOUT + Duration::from_millis(50), "{took:?}");
        assert!(took >= CALL_TIMEOUT - ATTEMPT_TIMEOUT, "{took:?}");
        assert!(CALL_TIMEOUT < Duration::from_secs(120));
        assert_eq!(failed.kind, ErrorKind::TimedOut);
        let text = failed.to_string();
        for part in [
            "GetCallerIdentity:",
            "sts did not answer within 90s (--aws-call-timeout)",
            "of at most 20s each (--aws-attempt-timeout)",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
        // Four whole attempts, and a fifth cut short by what was left of the budget.
        assert_eq!(caller.stats().total(), 5, "{text}");
    }

    /// A slow endpoint that answers within an attempt (10 s) is not retried.
    #[tokio::test(start_paused = true)]
    async fn a_slow_endpoint_that_answers_succeeds_at_the_first_attempt() {
        let caller = at_defaults();
        let answered = caller
            .call(Service::Iam, "ListUsers", || async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, AwsError>("users")
            })
            .await;
        assert_eq!(answered, Ok("users"));
        assert_eq!(caller.stats().total(), 1);
    }

    /// Throttled past the budget: the error says for how long and what AWS last said.
    #[tokio::test(start_paused = true)]
    async fn a_call_throttled_past_its_budget_names_the_last_answer() {
        let policy = RetryPolicy {
            max_attempts: 100,
            call_timeout: Duration::from_secs(3),
            ..RetryPolicy::default()
        };
        let limits = RateLimits(Service::ALL.into_iter().map(|s| (s, 1000.0)).collect());
        let caller = Caller::new(&limits, policy);
        let failed = caller
            .call(Service::SsoAdmin, "ListAccountAssignments", || async {
                Err::<(), _>(AwsError {
                    code: Some("ThrottlingException".into()),
                    ..AwsError::new(
                        "ListAccountAssignments",
                        ErrorKind::Throttled,
                        "Rate exceeded",
                    )
                })
            })
            .await
            .expect_err("throttled");
        let text = failed.to_string();
        assert!(
            text.contains("ssoadmin still failing after 3s (--aws-call-timeout)")
                && text.contains("the last: ThrottlingException: Rate exceeded"),
            "{text}"
        );
        // Backoff alone spent the budget, long before the hundred attempts allowed.
        assert!(caller.stats().total() < 20, "{text}");
    }
}
