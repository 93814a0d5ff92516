//! The page state of an unfinished sync: which phase, the NextToken of the phase's single list
//! or of each item listed in part, and how many journal segments hold what was learned so far
//! (see `facts`). The cursors are saved
//! at checkpoints; a restarted sync replays the segments and continues from the cursors.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::inventory::Inventory;
use crate::aws::credential_report::Report;

/// Bumped whenever the state's meaning changes; older states are discarded, not misread.
/// (2: one state per stream; 3: the gathered items in journal segments, not in the state;
/// 4: accounts listed per parent in the organization's tree.)
pub const STATE_VERSION: u32 = 4;

/// The phases of a sync, in order.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    Roots,
    OrganizationalUnits,
    Accounts,
    IamDetails,
    AccessKeys,
    MemberIam,
    Instance,
    SsoUsers,
    SignIns,
    SsoGroups,
    Memberships,
    PermissionSets,
    PermissionSetDetails,
    Provisioning,
    Assignments,
    Done,
}

impl Phase {
    pub fn next(self) -> Self {
        use Phase::*;
        match self {
            Roots => OrganizationalUnits,
            OrganizationalUnits => Accounts,
            Accounts => IamDetails,
            IamDetails => AccessKeys,
            AccessKeys => MemberIam,
            MemberIam => Instance,
            Instance => SsoUsers,
            SsoUsers => SignIns,
            SignIns => SsoGroups,
            SsoGroups => Memberships,
            Memberships => PermissionSets,
            PermissionSets => PermissionSetDetails,
            PermissionSetDetails => Provisioning,
            Provisioning => Assignments,
            Assignments | Done => Done,
        }
    }
}

/// How the (permission set, account) pairs are found, before listing per pair: per permission
/// set (ListAccountsForProvisionedPermissionSet) or per account
/// (ListPermissionSetsProvisionedToAccount), whichever takes fewer calls.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum PairDiscovery {
    PerPermissionSet,
    PerAccount,
}

impl PairDiscovery {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerPermissionSet => "perPermissionSet",
            Self::PerAccount => "perAccount",
        }
    }
}

/// Per account when the accounts are known and fewer than the permission sets.
pub fn choose_discovery(permission_sets: usize, accounts: Option<usize>) -> PairDiscovery {
    match accounts {
        Some(accounts) if accounts < permission_sets => PairDiscovery::PerAccount,
        _ => PairDiscovery::PerPermissionSet,
    }
}

/// The independent parts of a sync, each through rate-limit lanes of its own, run at once:
/// while Identity Center pages, IAM and Organizations page too. Each keeps its own page state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Organizations,
    Iam,
    /// Identity Store's users.
    IdentityStoreUsers,
    /// Identity Store's groups and their members; through the same lane as the users, whose
    /// single list is paged one page after another, so that the lane's spare rate lists the
    /// members meanwhile.
    IdentityStoreGroups,
    /// sso-admin: the instance, permission sets, pairs, assignments.
    IdentityCenter,
    /// IAM in each member account, through the role assumed there.
    MemberAccounts,
}

impl Stream {
    pub const ALL: [Stream; 6] = [
        Self::Organizations,
        Self::Iam,
        Self::IdentityStoreUsers,
        Self::IdentityStoreGroups,
        Self::IdentityCenter,
        Self::MemberAccounts,
    ];

    /// Its phases, in order.
    pub fn phases(self) -> &'static [Phase] {
        use Phase::*;
        match self {
            Self::Organizations => &[Roots, OrganizationalUnits, Accounts],
            Self::Iam => &[IamDetails, AccessKeys],
            Self::MemberAccounts => &[MemberIam],
            Self::IdentityStoreUsers => &[SsoUsers, SignIns],
            Self::IdentityStoreGroups => &[SsoGroups, Memberships],
            Self::IdentityCenter => &[
                Instance,
                PermissionSets,
                PermissionSetDetails,
                Provisioning,
                Assignments,
            ],
        }
    }

    /// The name of its page state in the store.
    pub fn key(self) -> &'static str {
        match self {
            Self::Organizations => "organizations",
            Self::Iam => "iam",
            Self::IdentityStoreUsers => "identity-store-users",
            Self::IdentityStoreGroups => "identity-store-groups",
            Self::IdentityCenter => "identity-center",
            Self::MemberAccounts => "member-accounts",
        }
    }

    pub fn first(self) -> Phase {
        self.phases()[0]
    }

    /// The phase of this stream after `phase` (which may be another stream's, when a stale
    /// state sent it back there), `Done` after its last.
    pub fn next(self, phase: Phase) -> Phase {
        self.phases()
            .iter()
            .copied()
            .find(|p| *p > phase)
            .unwrap_or(Phase::Done)
    }
}

/// How assignments are listed: per (account, permission set) pair, or per user and group.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum AssignmentListing {
    PerAccount,
    PerPrincipal,
}

impl AssignmentListing {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerAccount => "perAccount",
            Self::PerPrincipal => "perPrincipal",
        }
    }
}

/// Where access keys' last use comes from in this sync.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum KeySource {
    /// The IAM credential report: which users have keys, and each key's last use.
    Report(Report),
    /// The report could not be had (why): every user's keys are listed and each key's last use
    /// asked.
    PerUser(String),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PageState {
    pub version: u32,
    /// A fingerprint of what is synced (connector scope, regions, identity); a state taken
    /// with other settings is not resumed.
    pub scope: String,
    pub phase: Phase,
    /// The token of the next page of the phase's single list (a per-item phase keeps its
    /// items' tokens in `ahead`).
    pub next_token: Option<String>,
    pub listing: Option<AssignmentListing>,
    /// How the pairs are found, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<PairDiscovery>,
    /// Pages fetched in this and interrupted runs.
    pub pages: u64,
    /// Journal segments saved so far: what the stream learned up to these cursors.
    #[serde(default)]
    pub segments: u32,
    /// Items of a per-item phase listed in part: the token of each one's next page.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ahead: BTreeMap<String, String>,
    /// Items of per-item phases listed whole, by phase (rebuilt from the journal).
    #[serde(skip)]
    pub done: BTreeSet<(Phase, String)>,
    /// What was learned, rebuilt from the journal: never saved with the cursors.
    #[serde(skip)]
    pub inventory: Inventory,
    /// Permission set ARNs, before their details are known.
    #[serde(skip)]
    pub permission_set_arns: Vec<String>,
    /// Accounts each permission set is provisioned to (per-account listing only).
    #[serde(skip)]
    pub provisioned: BTreeMap<String, Vec<String>>,
    /// Where access keys come from, once the AccessKeys phase has begun.
    #[serde(skip)]
    pub key_source: Option<KeySource>,
}

impl PageState {
    /// A state that starts at `stream`'s first phase.
    pub fn fresh_for(scope: String, stream: Stream) -> Self {
        Self {
            version: STATE_VERSION,
            scope,
            phase: stream.first(),
            next_token: None,
            inventory: Inventory::default(),
            permission_set_arns: Vec::new(),
            provisioned: BTreeMap::new(),
            listing: None,
            discovery: None,
            key_source: None,
            pages: 0,
            segments: 0,
            ahead: BTreeMap::new(),
            done: BTreeSet::new(),
        }
    }

    /// Decodes a saved state to resume, or says why it cannot be resumed.
    pub fn resume(bytes: &[u8], scope: &str) -> Result<Self, String> {
        let state: Self = serde_json::from_slice(bytes)
            .map_err(|e| format!("it cannot be read (damaged or from another version: {e})"))?;
        if state.version != STATE_VERSION {
            return Err(format!(
                "it was saved by another version (state version {}, this one reads {STATE_VERSION})",
                state.version
            ));
        }
        if state.scope != scope {
            return Err("it was taken with other settings (scope, regions or identity)".into());
        }
        Ok(state)
    }

    /// Whether a run of `stream` got anywhere (a stream that finished in an interrupted sync
    /// counts: it is not run again).
    pub fn is_started(&self, stream: Stream) -> bool {
        self.phase != stream.first()
            || self.next_token.is_some()
            || !self.ahead.is_empty()
            || self.pages > 0
    }

    /// Forgets what phase `to` and every later phase gathered and restarts at `to`: the way a
    /// stream whose saved items went stale is listed again. Earlier phases are kept.
    pub fn rewind(&mut self, to: Phase) {
        self.forget_from(to);
        if to <= Phase::Provisioning {
            self.listing = None;
            self.discovery = None;
        }
        self.phase = to;
        self.next_token = None;
        self.ahead.clear();
    }

    /// Forgets what phase `to` and every later phase gathered (the items, not the cursors).
    pub fn forget_from(&mut self, to: Phase) {
        self.done.retain(|(phase, _)| *phase < to);
        let inventory = &mut self.inventory;
        let from = |phase: Phase| phase >= to;
        if from(Phase::Roots) {
            inventory.roots.clear();
        }
        if from(Phase::OrganizationalUnits) {
            inventory.organizational_units.clear();
        }
        if from(Phase::Accounts) {
            inventory.accounts.clear();
        }
        if from(Phase::IamDetails) {
            inventory.iam_users.clear();
            inventory.iam_groups.clear();
            inventory.iam_roles.clear();
        }
        if from(Phase::AccessKeys) {
            for user in &mut inventory.iam_users {
                user.access_keys = None;
            }
            self.key_source = None;
        }
        if from(Phase::MemberIam) {
            inventory.member_accounts.clear();
        }
        if from(Phase::Instance) {
            inventory.identity_center = None;
        }
        if from(Phase::SsoUsers) {
            inventory.sso_users.clear();
        }
        if from(Phase::SignIns) {
            for user in &mut inventory.sso_users {
                user.last_sign_in_at = None;
            }
        }
        if from(Phase::SsoGroups) {
            inventory.sso_groups.clear();
        }
        if from(Phase::Memberships) {
            for group in &mut inventory.sso_groups {
                group.members.clear();
            }
        }
        if from(Phase::PermissionSets) {
            self.permission_set_arns.clear();
        }
        if from(Phase::PermissionSetDetails) {
            inventory.permission_sets.clear();
        }
        if from(Phase::Provisioning) {
            self.provisioned.clear();
        }
        if from(Phase::Assignments) {
            inventory.assignments.clear();
        }
    }

    /// The (permission set, account) pairs per-account listing walks, in a stable order.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.provisioned
            .iter()
            .flat_map(|(ps, accounts)| accounts.iter().map(move |a| (ps.clone(), a.clone())))
            .collect()
    }
}

/// The phase whose listing produced the items `phase` asks about, one by one or by id: when
/// AWS says one of them no longer exists, that is the stream to list again. `None` for the
/// phases that stand on nothing listed before them.
pub fn source_of(
    phase: Phase,
    listing: Option<AssignmentListing>,
    discovery: Option<PairDiscovery>,
) -> Option<Phase> {
    use Phase::*;
    match phase {
        AccessKeys => Some(IamDetails),
        // Parents are the root and the organizational units found under it: one gone means
        // the tree changed during the sync, so it is walked again from the root.
        OrganizationalUnits | Accounts => Some(Roots),
        SsoUsers | SsoGroups | PermissionSets => Some(Instance),
        Memberships => Some(SsoGroups),
        // The accounts come from another stream: one gone is skipped, not listed again.
        Provisioning if discovery == Some(PairDiscovery::PerAccount) => None,
        PermissionSetDetails | Provisioning => Some(PermissionSets),
        Assignments => match listing {
            Some(AssignmentListing::PerAccount) => Some(PermissionSets),
            // The principals come from another stream: one gone is skipped, not listed again.
            Some(AssignmentListing::PerPrincipal) | None => None,
        },
        // The accounts come from another stream: one gone is skipped, not listed again.
        // The events name users; one not listed is left out.
        Roots | IamDetails | MemberIam | Instance | SignIns | Done => None,
    }
}

/// Decides how to list assignments from what is known: per-principal costs at least one call
/// per user and group; per-account one per provisioned (account, permission set) pair, after
/// `discovery` calls to learn the pairs (one per permission set, or one per account).
pub fn choose_listing(
    principals: usize,
    discovery: usize,
    pairs: Option<usize>,
) -> Option<AssignmentListing> {
    if principals <= discovery {
        return Some(AssignmentListing::PerPrincipal);
    }
    pairs.map(|pairs| {
        if pairs <= principals {
            AssignmentListing::PerAccount
        } else {
            AssignmentListing::PerPrincipal
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_rejects_other_scopes() {
        let mut state = PageState::fresh_for("scope-a".into(), Stream::Organizations);
        assert!(!state.is_started(Stream::Organizations));
        state.phase = Phase::SsoUsers;
        state.next_token = Some("t".into());
        let bytes = serde_json::to_vec(&state).expect("json");
        assert_eq!(PageState::resume(&bytes, "scope-a"), Ok(state.clone()));
        // What was learned is in the journal, never in the saved cursors.
        let mut learned = state.clone();
        learned
            .inventory
            .sso_users
            .push(crate::sync::inventory::SsoUser {
                id: "user-in-the-journal".into(),
                ..Default::default()
            });
        learned
            .permission_set_arns
            .push("arn:ps-in-the-journal".into());
        assert_eq!(serde_json::to_vec(&learned).expect("json"), bytes);
        let why = |result: Result<PageState, String>| result.expect_err("not resumed");
        assert!(why(PageState::resume(&bytes, "scope-b")).contains("other settings"));
        assert!(why(PageState::resume(b"garbage", "scope-a")).contains("cannot be read"));
        state.version = STATE_VERSION + 1;
        let newer = serde_json::to_vec(&state).expect("json");
        assert!(why(PageState::resume(&newer, "scope-a")).contains("another version"));
    }

    #[test]
    fn every_phase_belongs_to_one_stream_in_order() {
        let mut all: Vec<Phase> = Stream::ALL
            .iter()
            .flat_map(|s| s.phases().iter().copied())
            .collect();
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count, "no phase in two streams");
        assert_eq!(count, 15, "every phase but Done");
        for stream in Stream::ALL {
            let mut phase = stream.first();
            let mut seen = vec![phase];
            while phase != Phase::Done {
                phase = stream.next(phase);
                seen.push(phase);
            }
            assert_eq!(seen.len(), stream.phases().len() + 1);
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "{stream:?}");
        }
        let iam = PageState::fresh_for(String::new(), Stream::Iam);
        assert_eq!(iam.phase, Phase::IamDetails);
        assert!(!iam.is_started(Stream::Iam));
    }

    #[test]
    fn phases_run_in_order_to_done() {
        let mut phase = Phase::Roots;
        let mut seen = vec![phase];
        while phase != Phase::Done {
            phase = phase.next();
            seen.push(phase);
        }
        assert_eq!(seen.len(), 16);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn listing_choice_follows_the_cheaper_shape() {
        // Few principals: per-principal without asking for pairs.
        assert_eq!(
            choose_listing(5, 10, None),
            Some(AssignmentListing::PerPrincipal)
        );
        // Many principals: the pairs decide.
        assert_eq!(choose_listing(1000, 10, None), None);
        assert_eq!(
            choose_listing(1000, 10, Some(200)),
            Some(AssignmentListing::PerAccount)
        );
        assert_eq!(
            choose_listing(100, 10, Some(500)),
            Some(AssignmentListing::PerPrincipal)
        );
    }

    #[test]
    fn rewinding_forgets_the_stream_and_what_came_after_it_only() {
        use crate::sync::inventory::{Account, Assignment, SsoGroup, SsoUser};
        let mut state = PageState::fresh_for(String::new(), Stream::IdentityCenter);
        state.inventory.accounts.push(Account {
            id: "111122223333".into(),
            ..Default::default()
        });
        state.inventory.sso_users.push(SsoUser {
            id: "u1".into(),
            ..Default::default()
        });
        state.inventory.sso_groups.push(SsoGroup {
            id: "g1".into(),
            members: vec!["u1".into()],
            ..Default::default()
        });
        state.permission_set_arns.push("ps-1".into());
        state.provisioned.insert("ps-1".into(), vec!["1".into()]);
        state.listing = Some(AssignmentListing::PerAccount);
        state.inventory.assignments.push(Assignment::default());
        state.key_source = Some(KeySource::PerUser("denied".into()));
        state.phase = Phase::Assignments;
        state.next_token = Some("t".into());
        state.ahead.insert("g2".into(), "t2".into());
        state.pages = 9;

        let mut memberships = state.clone();
        memberships.rewind(Phase::Memberships);
        assert_eq!(memberships.phase, Phase::Memberships);
        assert_eq!(
            (memberships.next_token.as_deref(), memberships.ahead.len()),
            (None, 0)
        );
        assert_eq!(memberships.inventory.sso_groups.len(), 1, "the groups stay");
        assert!(memberships.inventory.sso_groups[0].members.is_empty());
        assert!(memberships.permission_set_arns.is_empty());
        assert!(memberships.provisioned.is_empty() && memberships.listing.is_none());
        assert!(memberships.inventory.assignments.is_empty());
        assert_eq!(
            memberships.pages, 9,
            "pages already paid for are still counted"
        );

        let mut sets = state.clone();
        sets.rewind(Phase::PermissionSets);
        assert_eq!(
            sets.inventory.sso_groups[0].members,
            [std::sync::Arc::from("u1")],
            "memberships stay"
        );
        assert!(sets.permission_set_arns.is_empty() && sets.inventory.assignments.is_empty());

        assert!(sets.key_source.is_some(), "access keys stay");
        let mut keys = state.clone();
        keys.rewind(Phase::AccessKeys);
        assert_eq!(keys.key_source, None, "the credential report is read again");

        let mut groups = state.clone();
        groups.rewind(Phase::SsoGroups);
        assert!(groups.inventory.sso_groups.is_empty());
        assert_eq!(groups.inventory.sso_users.len(), 1);
        assert_eq!(groups.inventory.accounts.len(), 1);
    }

    #[test]
    fn each_stream_is_listed_again_from_where_its_items_came() {
        use AssignmentListing::*;
        assert_eq!(
            source_of(Phase::Memberships, None, None),
            Some(Phase::SsoGroups)
        );
        assert_eq!(
            source_of(Phase::PermissionSetDetails, None, None),
            Some(Phase::PermissionSets)
        );
        assert_eq!(
            source_of(Phase::Assignments, Some(PerAccount), None),
            Some(Phase::PermissionSets)
        );
        assert_eq!(
            source_of(Phase::Assignments, Some(PerPrincipal), None),
            None,
            "the principals are another stream's"
        );
        assert_eq!(
            source_of(Phase::SsoUsers, None, None),
            Some(Phase::Instance)
        );
        assert_eq!(source_of(Phase::Roots, None, None), None);
        assert_eq!(
            source_of(Phase::Accounts, None, None),
            Some(Phase::Roots),
            "an account's parent gone: the tree is walked again"
        );
        assert_eq!(
            source_of(Phase::Provisioning, None, Some(PairDiscovery::PerAccount)),
            None,
            "the accounts are another stream's"
        );
        // A stream is always listed again from an earlier phase, never a later one.
        let mut phase = Phase::Roots;
        while phase != Phase::Done {
            for listing in [None, Some(PerAccount), Some(PerPrincipal)] {
                if let Some(source) = source_of(phase, listing, None) {
                    assert!(source < phase, "{phase:?} from {source:?}");
                }
            }
            phase = phase.next();
        }
    }

    #[test]
    fn pairs_are_found_the_cheaper_way() {
        assert_eq!(choose_discovery(100, Some(50)), PairDiscovery::PerAccount);
        assert_eq!(
            choose_discovery(4, Some(13)),
            PairDiscovery::PerPermissionSet
        );
        assert_eq!(
            choose_discovery(100, None),
            PairDiscovery::PerPermissionSet,
            "accounts not synced: not known"
        );
        // Discovering costs min(sets, accounts); fewer principals than that: per principal,
        // without discovering at all.
        assert_eq!(
            choose_listing(40, 50, None),
            Some(AssignmentListing::PerPrincipal)
        );
        assert_eq!(choose_listing(60, 50, None), None);
    }

    #[test]
    fn pairs_are_stable() {
        let mut state = PageState::fresh_for(String::new(), Stream::IdentityCenter);
        state.provisioned.insert("ps-b".into(), vec!["2".into()]);
        state
            .provisioned
            .insert("ps-a".into(), vec!["1".into(), "3".into()]);
        assert_eq!(
            state.pairs(),
            [
                ("ps-a".into(), "1".into()),
                ("ps-a".into(), "3".into()),
                ("ps-b".into(), "2".into())
            ]
        );
    }
}
