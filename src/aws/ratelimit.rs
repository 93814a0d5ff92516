//! Client-side token buckets, one per AWS rate-limit domain (a lane), so that the operator
//! stays under the quotas it shares with every other caller in the account. AWS meters each
//! service per account and region; buckets are shared the same way (see `SharedBuckets`), by
//! every connector and session that reaches the same place.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

/// The AWS APIs that share a quota: each is a lane with a bucket of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Sts,
    Iam,
    Organizations,
    /// sso-admin: instances, permission sets, account assignments.
    SsoAdmin,
    /// identitystore: users, groups, memberships; limited apart from sso-admin.
    IdentityStore,
    /// CloudTrail LookupEvents (Identity Center users' sign-ins).
    CloudTrail,
}

impl Service {
    pub const ALL: [Service; 6] = [
        Self::Sts,
        Self::Iam,
        Self::Organizations,
        Self::SsoAdmin,
        Self::IdentityStore,
        Self::CloudTrail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sts => "sts",
            Self::Iam => "iam",
            Self::Organizations => "organizations",
            Self::SsoAdmin => "ssoadmin",
            Self::IdentityStore => "identitystore",
            Self::CloudTrail => "cloudtrail",
        }
    }

    /// Requests per second by default. Identity Center's account access API (sso-admin) has a
    /// documented collective limit of 20 TPS; Identity Store is limited apart, and given the
    /// same. IAM and Organizations allow far less for some calls, so they stay low.
    pub fn default_rate(self) -> f64 {
        match self {
            Self::Sts => 10.0,
            Self::Iam => 10.0,
            Self::Organizations => 4.0,
            Self::SsoAdmin => 20.0,
            Self::IdentityStore => 20.0,
            // LookupEvents is limited to 2 per second per account and region.
            Self::CloudTrail => 2.0,
        }
    }
}

/// The services a name in `--rate-limits` sets: a service's own name, or `identitycenter`
/// for both Identity Center lanes.
fn services_named(name: &str) -> Result<Vec<Service>, String> {
    if name == "identitycenter" {
        return Ok(vec![Service::SsoAdmin, Service::IdentityStore]);
    }
    Service::from_str(name).map(|s| vec![s])
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|service| service.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown service {s:?} (one of sts, iam, organizations, ssoadmin, identitystore, cloudtrail, or identitycenter for ssoadmin and identitystore)"
                )
            })
    }
}

/// Requests per second per service.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimits(pub BTreeMap<Service, f64>);

impl Default for RateLimits {
    fn default() -> Self {
        Self(
            Service::ALL
                .into_iter()
                .map(|s| (s, s.default_rate()))
                .collect(),
        )
    }
}

impl RateLimits {
    /// Parses `iam=5,ssoadmin=12` over the defaults.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut limits = Self::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (service, rate) = part
                .split_once('=')
                .ok_or_else(|| format!("expected service=rate, got {part:?}"))?;
            let rate: f64 = rate.trim().parse().map_err(|_| {
                format!("{part:?}: the rate must be a number of requests per second")
            })?;
            if !(rate > 0.0 && rate.is_finite()) {
                return Err(format!("{part:?}: the rate must be positive"));
            }
            for service in services_named(service.trim())? {
                limits.0.insert(service, rate);
            }
        }
        Ok(limits)
    }

    pub fn rate(&self, service: Service) -> f64 {
        self.0
            .get(&service)
            .copied()
            .unwrap_or(service.default_rate())
    }
}

/// Where AWS meters a service: (account, region, service).
pub type BucketKey = (String, String, Service);

/// The buckets of every place any session of this process reaches, held weakly: a bucket lives
/// as long as a session uses it, and two connectors reaching the same account share it, as
/// their calls share AWS's quota there.
pub struct SharedBuckets {
    buckets: Mutex<HashMap<BucketKey, Weak<TokenBucket>>>,
}

/// The process's buckets.
pub static SHARED: LazyLock<SharedBuckets> = LazyLock::new(|| SharedBuckets {
    buckets: Mutex::default(),
});

impl SharedBuckets {
    /// The bucket of `key`, made at `rate` if nobody holds one.
    pub fn bucket(&self, key: BucketKey, rate: f64) -> Arc<TokenBucket> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get(&key).and_then(Weak::upgrade) {
            return bucket;
        }
        buckets.retain(|_, b| b.strong_count() > 0);
        let bucket = Arc::new(TokenBucket::new(rate));
        buckets.insert(key, Arc::downgrade(&bucket));
        bucket
    }

    /// How many buckets are in use.
    #[cfg(test)]
    fn in_use(&self) -> usize {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.values().filter(|b| b.strong_count() > 0).count()
    }
}

/// A token bucket: `rate` tokens a second, holding at most `burst`.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate: f64) -> Self {
        let burst = rate.max(1.0);
        Self {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// How long to wait before a token is available, taking it if there is one now.
    fn try_take(&self, now: Instant) -> Option<Duration> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            None
        } else {
            *state = (tokens, now);
            Some(Duration::from_secs_f64((1.0 - tokens) / self.rate))
        }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        while let Some(wait) = self.try_take(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_overrides_over_defaults() {
        let limits = RateLimits::parse("iam=5, identitycenter=12.5").expect("parse");
        assert_eq!(limits.rate(Service::Iam), 5.0);
        assert_eq!(
            limits.rate(Service::SsoAdmin),
            12.5,
            "both Identity Center lanes"
        );
        assert_eq!(limits.rate(Service::IdentityStore), 12.5);
        let apart = RateLimits::parse("ssoadmin=3,identitystore=7").expect("parse");
        assert_eq!(
            (
                apart.rate(Service::SsoAdmin),
                apart.rate(Service::IdentityStore)
            ),
            (3.0, 7.0)
        );
        assert_eq!(limits.rate(Service::Sts), Service::Sts.default_rate());
        assert!(RateLimits::parse("iam").is_err());
        assert!(RateLimits::parse("iam=0").is_err());
        assert!(
            RateLimits::parse("ec2=1")
                .unwrap_err()
                .contains("unknown service")
        );
    }

    #[test]
    fn one_bucket_per_place_while_someone_uses_it() {
        let shared = SharedBuckets {
            buckets: Mutex::default(),
        };
        let key = |account: &str| {
            (
                account.to_string(),
                "us-east-1".to_string(),
                Service::SsoAdmin,
            )
        };
        let a = shared.bucket(key("111122223333"), 20.0);
        let b = shared.bucket(key("111122223333"), 5.0);
        assert!(Arc::ptr_eq(&a, &b), "the same account: the same bucket");
        let other = shared.bucket(key("444455556666"), 20.0);
        assert!(!Arc::ptr_eq(&a, &other));
        assert_eq!(shared.in_use(), 2);
        drop((a, b));
        assert_eq!(shared.in_use(), 1, "freed with its last user");
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_spaces_requests_after_the_burst() {
        let bucket = TokenBucket::new(4.0);
        let start = Instant::now();
        for _ in 0..12 {
            bucket.acquire().await;
        }
        // 4 from the burst, then 8 more at 4 a second.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((1.99..2.2).contains(&elapsed), "{elapsed}");
    }
}
