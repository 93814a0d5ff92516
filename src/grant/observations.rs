//! What AWS shows of a connector's access, shared by all its grants for a while: one listing of
//! an (account, permission set) pair, or of an IAM user's groups, answers the drift check of
//! every grant on it. A thousand grants on fifty pairs cost fifty listings per check interval,
//! not a thousand.
//!
//! Only re-checks of access a grant already holds are answered from here. Before the first
//! decision about access (grant it, or adopt what already exists) AWS is always asked afresh:
//! a stale "absent" there would record access that existed before as created, and a later
//! revoke would take away what nobody here gave. Every write forgets the listing it changed.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::aws::{AwsError, RateLimits, Service, Session, access as aws_access};

use super::access::Access;

/// What one listing covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Listing {
    /// The assignments of an (account, permission set) pair.
    Pair {
        instance_arn: String,
        account_id: String,
        permission_set_arn: String,
    },
    /// An IAM user's groups.
    IamUser(String),
}

impl Listing {
    /// The rate-limit lane its calls go through.
    fn lane(&self) -> Service {
        match self {
            Self::Pair { .. } => Service::SsoAdmin,
            Self::IamUser(_) => Service::Iam,
        }
    }

    /// The listing that says whether `access` exists, and the member it looks for; `None` for
    /// access asked about one by one (an Identity Center membership is one call either way).
    fn of(access: &Access) -> Option<(Self, (String, String))> {
        match access {
            Access::Assignment {
                instance_arn,
                account_id,
                permission_set_arn,
                principal_type,
                principal_id,
            } => Some((
                Self::Pair {
                    instance_arn: instance_arn.clone(),
                    account_id: account_id.clone(),
                    permission_set_arn: permission_set_arn.clone(),
                },
                (principal_type.clone(), principal_id.clone()),
            )),
            Access::IamMembership { group, user } => {
                Some((Self::IamUser(user.clone()), (String::new(), group.clone())))
            }
            Access::SsoMembership { .. } => None,
        }
    }

    async fn list(&self, session: &Session) -> Result<BTreeSet<(String, String)>, AwsError> {
        match self {
            Self::Pair {
                instance_arn,
                account_id,
                permission_set_arn,
            } => {
                aws_access::pair_assignments(session, instance_arn, account_id, permission_set_arn)
                    .await
            }
            Self::IamUser(user) => Ok(aws_access::iam_groups_of_user(session, user)
                .await?
                .into_iter()
                .map(|group| (String::new(), group))
                .collect()),
        }
    }
}

struct Seen {
    at: Instant,
    members: BTreeSet<(String, String)>,
}

/// One slot per listing; its lock makes grants checking the same listing at once wait for one
/// call instead of each making it.
type Slot = Arc<tokio::sync::Mutex<Option<Seen>>>;

/// How fresh a listing must be to answer a re-check, and the listings seen.
pub struct Observations {
    max_age: Duration,
    slots: Mutex<HashMap<Listing, Slot>>,
    /// When each re-check target (a listing, or an Identity Center membership asked on its own)
    /// was last looked at, and through which lane: what the re-checks cost per interval.
    checked: Mutex<HashMap<String, (Service, Instant)>>,
}

impl Observations {
    /// Listings younger than `max_age` (the drift-check interval) answer re-checks.
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            slots: Mutex::default(),
            checked: Mutex::default(),
        }
    }

    fn slot(&self, listing: &Listing) -> Slot {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(listing.clone())
            .or_default()
            .clone()
    }

    /// Whether `access` exists: from a listing younger than `max_age` when `recheck` (access
    /// already held), else from a fresh one (which then answers others).
    pub async fn exists(
        &self,
        session: &Session,
        access: &Access,
        recheck: bool,
    ) -> Result<bool, AwsError> {
        let Some((listing, member)) = Listing::of(access) else {
            self.touch(format!("{access}"), Service::IdentityStore);
            return aws_access::exists(session, access).await;
        };
        self.touch(format!("{listing:?}"), listing.lane());
        let slot = self.slot(&listing);
        let mut seen = slot.lock().await;
        if recheck && let Some(fresh) = seen.as_ref().filter(|s| s.at.elapsed() < self.max_age) {
            return Ok(fresh.members.contains(&member));
        }
        let members = listing.list(session).await?;
        let found = members.contains(&member);
        *seen = Some(Seen {
            at: Instant::now(),
            members,
        });
        Ok(found)
    }

    fn touch(&self, target: String, lane: Service) {
        self.checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target, (lane, Instant::now()));
    }

    /// How often re-checks may come so that they use at most `share` of each lane's rate:
    /// never more often than `base`, and less often when the listings and memberships looked
    /// at recently would need more calls per second than that.
    pub fn recheck_interval(&self, base: Duration, limits: &RateLimits, share: f64) -> Duration {
        let recent = self.max_age.max(base).saturating_mul(3);
        let mut per_lane: HashMap<Service, usize> = HashMap::new();
        let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        checked.retain(|_, (_, at)| at.elapsed() < recent);
        for (lane, _) in checked.values() {
            *per_lane.entry(*lane).or_default() += 1;
        }
        per_lane
            .into_iter()
            .map(|(lane, calls)| {
                let budget = (limits.rate(lane) * share.clamp(0.01, 1.0)).max(0.01);
                Duration::from_secs_f64(calls as f64 / budget)
            })
            .fold(base, Duration::max)
    }

    /// Forgets the listing `access` is part of: it was just written.
    pub fn forget(&self, access: &Access) {
        if let Some((listing, _)) = Listing::of(access) {
            self.slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&listing);
        }
    }

    /// How many listings are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(account: &str, principal: &str) -> Access {
        Access::Assignment {
            instance_arn: "arn:aws:sso:::instance/ssoins-1".into(),
            account_id: account.into(),
            permission_set_arn: "arn:aws:sso:::permissionSet/ssoins-1/ps-1".into(),
            principal_type: "USER".into(),
            principal_id: principal.into(),
        }
    }

    #[test]
    fn rechecks_slow_down_to_stay_within_a_share_of_each_lane() {
        let observations = Observations::new(Duration::from_secs(60));
        let limits = RateLimits::default();
        let base = Duration::from_secs(300);
        assert_eq!(observations.recheck_interval(base, &limits, 0.25), base);
        // 1,000 memberships re-checked one by one on Identity Store's 20/s: a quarter of it
        // is 5 calls a second, so every 200 s at best; the 300 s base stands.
        for i in 0..1000 {
            observations.touch(format!("m{i}"), Service::IdentityStore);
        }
        assert_eq!(observations.recheck_interval(base, &limits, 0.25), base);
        // 3,000 of them need 600 s.
        for i in 1000..3000 {
            observations.touch(format!("m{i}"), Service::IdentityStore);
        }
        assert_eq!(
            observations.recheck_interval(base, &limits, 0.25),
            Duration::from_secs(600)
        );
        // 50 pairs cost nothing worth slowing down for.
        let few = Observations::new(Duration::from_secs(60));
        for i in 0..50 {
            few.touch(format!("p{i}"), Service::SsoAdmin);
        }
        assert_eq!(few.recheck_interval(base, &limits, 0.25), base);
    }

    #[test]
    fn grants_on_one_pair_share_its_listing_and_a_write_forgets_it() {
        let (a, b) = (
            assignment("111122223333", "u1"),
            assignment("111122223333", "u2"),
        );
        let other = assignment("444455556666", "u1");
        assert_eq!(Listing::of(&a).map(|l| l.0), Listing::of(&b).map(|l| l.0));
        assert_ne!(
            Listing::of(&a).map(|l| l.0),
            Listing::of(&other).map(|l| l.0)
        );
        let membership = Access::SsoMembership {
            identity_store_id: "d-1".into(),
            group_id: "g".into(),
            user_id: "u".into(),
        };
        assert!(Listing::of(&membership).is_none(), "asked one by one");

        let observations = Observations::new(Duration::from_secs(60));
        let _ = observations.slot(&Listing::of(&a).expect("listed").0);
        assert_eq!(observations.len(), 1);
        observations.forget(&b);
        assert_eq!(
            observations.len(),
            0,
            "a write to the pair forgets its listing"
        );
    }
}
