//! Client-side token buckets, one per AWS service family, so that the operator stays under the
//! quotas it shares with every other caller in the account.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The families of AWS APIs that share a quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Sts,
    Iam,
    Organizations,
    /// sso-admin and identitystore share Identity Center's quota.
    IdentityCenter,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Self::Sts,
        Self::Iam,
        Self::Organizations,
        Self::IdentityCenter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sts => "sts",
            Self::Iam => "iam",
            Self::Organizations => "organizations",
            Self::IdentityCenter => "identitycenter",
        }
    }

    /// Defaults at half of the documented quotas or below: Identity Center allows 20 TPS
    /// shared by every caller; IAM and Organizations allow far less for some calls.
    pub fn default_rate(self) -> f64 {
        match self {
            Self::Sts => 10.0,
            Self::Iam => 10.0,
            Self::Organizations => 4.0,
            Self::IdentityCenter => 10.0,
        }
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|service| service.as_str() == s)
            .ok_or_else(|| {
                format!("unknown service {s:?} (one of sts, iam, organizations, identitycenter)")
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
    /// Parses `iam=5,identitycenter=12` over the defaults.
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
            limits.0.insert(service.trim().parse()?, rate);
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
        assert_eq!(limits.rate(Service::IdentityCenter), 12.5);
        assert_eq!(limits.rate(Service::Sts), Service::Sts.default_rate());
        assert!(RateLimits::parse("iam").is_err());
        assert!(RateLimits::parse("iam=0").is_err());
        assert!(
            RateLimits::parse("ec2=1")
                .unwrap_err()
                .contains("unknown service")
        );
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
