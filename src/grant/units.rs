//! Organizational-unit grants: what becomes of an account's assignment as accounts join and
//! leave the unit.

use super::access::Access;
use super::execute::Settle;
use crate::sync::cache::{Placement, SyncCache};

/// What becomes of an assignment an organizational-unit grant holds on an account it no longer
/// asks for: revoked at once when the last sync saw the account elsewhere (or not ACTIVE); kept
/// when the sync did not see it at all (it may have been moving between two units while the
/// sync listed them); replaced as usual when the spec changed the principal or permission set.
/// `template` is any assignment of the grant: its account is not looked at.
pub fn settle_in_unit(template: &Access, unit: &str, cache: &SyncCache, held: &Access) -> Settle {
    let (
        Access::Assignment {
            instance_arn,
            permission_set_arn,
            principal_type,
            principal_id,
            ..
        },
        Access::Assignment {
            instance_arn: held_instance,
            account_id,
            permission_set_arn: held_set,
            principal_type: held_type,
            principal_id: held_principal,
        },
    ) = (template, held)
    else {
        return Settle::WhenReplaced;
    };
    let same = (
        instance_arn,
        permission_set_arn,
        principal_type,
        principal_id,
    ) == (held_instance, held_set, held_type, held_principal);
    if !same {
        return Settle::WhenReplaced;
    }
    match cache.placement(account_id, unit) {
        Placement::Outside => Settle::Now,
        Placement::Unknown => Settle::Keep,
        Placement::Under => Settle::WhenReplaced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(account: &str, principal: &str) -> Access {
        Access::Assignment {
            instance_arn: "arn:aws:sso:::instance/ssoins-1".into(),
            account_id: account.into(),
            permission_set_arn: "ps-1".into(),
            principal_type: "USER".into(),
            principal_id: principal.into(),
        }
    }

    #[test]
    fn a_unit_grant_revokes_at_once_only_accounts_seen_elsewhere() {
        let mut cache = SyncCache::default();
        cache.unit_parents.insert("ou-a".into(), "r-1".into());
        cache.unit_parents.insert("ou-b".into(), "ou-a".into());
        cache.account_parents.insert("111".into(), "ou-b".into());
        cache.account_parents.insert("222".into(), "r-1".into());
        cache.account_parents.insert("333".into(), "ou-a".into());
        cache.inactive_accounts.push("333".into());
        let template = assignment("", "u1");
        let settle = |held: &Access| settle_in_unit(&template, "ou-a", &cache, held);
        assert_eq!(settle(&assignment("222", "u1")), Settle::Now, "moved out");
        assert_eq!(settle(&assignment("333", "u1")), Settle::Now, "not ACTIVE");
        assert_eq!(
            settle(&assignment("444", "u1")),
            Settle::Keep,
            "not in the last sync: kept"
        );
        assert_eq!(
            settle(&assignment("111", "u2")),
            Settle::WhenReplaced,
            "another principal: a spec change"
        );
        assert_eq!(cache.accounts_under("ou-a"), ["111"]);
    }
}
