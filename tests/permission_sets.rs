//! PermissionSets through the real controllers, against moto and the API server: created and
//! converged attribute by attribute with exact write counts, drift put back, changes
//! provisioned to each account that uses the set, adopted or refused, refused for a tenant,
//! a failed provisioning named by account, and deletion held while the set is assigned.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_access_operator::api::PermissionSet;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::grants::{Org, org, sso_user};
use crate::support::cluster::TestCluster;
use crate::support::moto::{Moto, SMALL_ORG};
use crate::support::operator::{
    TIMEOUT, create_org_connector, grant, spawn_operator, wait_condition, wait_grant,
};
use crate::support::wait;

const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const S3_READ: &str = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";
const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";

fn set(name: &str, spec: Value) -> PermissionSet {
    let mut body = json!({"connectorRef": {"name": "org"}});
    for (k, v) in spec.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    serde_json::from_value(
        json!({"apiVersion": "awsaccess.io/v1alpha1", "kind": "PermissionSet",
        "metadata": {"name": name}, "spec": body}),
    )
    .expect("permission set")
}

fn inline(actions: &[&str]) -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Lake", "Effect": "Allow", "Action": actions, "Resource": "*"}]})
}

struct Sets {
    api: Api<PermissionSet>,
    sso: aws_sdk_ssoadmin::Client,
    instance: String,
}

impl Sets {
    async fn of(org: &Org) -> Self {
        Self::on(&org.cluster, &org.moto, &org.seed).await
    }

    async fn on(cluster: &TestCluster, moto: &Moto, seed: &Value) -> Self {
        Self {
            api: Api::namespaced(cluster.client.clone(), &cluster.namespace),
            sso: aws_sdk_ssoadmin::Client::new(&moto.sdk_config().await),
            instance: seed["identityCenter"]["instanceArn"]
                .as_str()
                .expect("instance")
                .to_string(),
        }
    }

    /// Creates the PermissionSet `name` and waits until it is Converged; returns its ARN.
    async fn declare(&self, name: &str, spec: Value) -> String {
        self.api
            .create(&PostParams::default(), &set(name, spec))
            .await
            .expect("create");
        self.ready(name, "Converged")
            .await
            .status
            .and_then(|s| s.arn)
            .expect("arn")
    }

    /// Waits until the object's Ready condition, for its current generation, has `reason`.
    async fn ready(&self, name: &str, reason: &str) -> PermissionSet {
        wait::until(
            &format!("permission set {name} Ready reason {reason}"),
            TIMEOUT,
            || async {
                let object = self.api.get_opt(name).await.ok()??;
                let status = object.status.as_ref()?;
                if status.observed_generation != object.metadata.generation {
                    return None;
                }
                let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
                (ready.reason == reason).then_some(object)
            },
        )
        .await
    }

    async fn managed(&self, arn: &str) -> Vec<String> {
        let page = self
            .sso
            .list_managed_policies_in_permission_set()
            .instance_arn(&self.instance)
            .permission_set_arn(arn)
            .send()
            .await
            .expect("managed policies");
        let mut out: Vec<String> = page
            .attached_managed_policies()
            .iter()
            .filter_map(|p| p.arn().map(str::to_string))
            .collect();
        out.sort();
        out
    }

    async fn inline(&self, arn: &str) -> Option<Value> {
        let got = self
            .sso
            .get_inline_policy_for_permission_set()
            .instance_arn(&self.instance)
            .permission_set_arn(arn)
            .send()
            .await
            .expect("inline policy");
        got.inline_policy()
            .filter(|p| !p.is_empty())
            .map(|p| serde_json::from_str(p).expect("inline policy JSON"))
    }

    async fn session(&self, arn: &str) -> String {
        let described = self
            .sso
            .describe_permission_set()
            .instance_arn(&self.instance)
            .permission_set_arn(arn)
            .send()
            .await
            .expect("describe");
        described
            .permission_set()
            .and_then(|p| p.session_duration())
            .unwrap_or_default()
            .to_string()
    }

    async fn tags(&self, arn: &str) -> BTreeMap<String, String> {
        let listed = self
            .sso
            .list_tags_for_resource()
            .instance_arn(&self.instance)
            .resource_arn(arn)
            .send()
            .await
            .expect("tags");
        listed
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()
    }

    async fn exists(&self, arn: &str) -> bool {
        self.sso
            .describe_permission_set()
            .instance_arn(&self.instance)
            .permission_set_arn(arn)
            .send()
            .await
            .is_ok()
    }
}

/// A grant `name` of the set `arn` to user-04 on `account`, waited for until Granted.
async fn grant_on(org: &Org, name: &str, arn: &str, account: &str) {
    org.create(grant(
        name,
        "org",
        sso_user(4),
        json!({"kind": "PermissionSet", "permissionSet": arn, "accountId": account}),
        json!({}),
    ))
    .await;
    wait_grant(&org.grants, name, "Granted").await;
}

/// The AWS writes moto recorded, by operation (everything but List, Get and Describe).
fn writes(calls: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    calls
        .iter()
        .filter(|(op, _)| {
            !["List", "Get", "Describe"]
                .iter()
                .any(|r| op.starts_with(r))
        })
        .filter(|(op, _)| op.as_str() != "AssumeRole")
        .map(|(op, n)| (op.clone(), *n))
        .collect()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Created with every attribute in as few writes as AWS allows; a check with nothing to change
/// costs seven reads and no write; a change made in AWS is put back; a change of the object is
/// written as the difference only and provisioned to the account the set is assigned on;
/// deleting the object waits for the grant that uses it, then deletes the set.
#[tokio::test]
async fn created_converged_drift_put_back_provisioned_and_deleted_after_its_grant() {
    let org = org("psets", SMALL_ORG, json!({}), |aws| {
        aws.grant_check = Duration::from_secs(3);
    })
    .await;
    let sets = Sets::of(&org).await;
    let declared = set(
        "data-reader",
        json!({"name": "DataReader", "description": "Reads the lake", "sessionDuration": "4h",
            "managedPolicies": [READ_ONLY], "inlinePolicy": inline(&["s3:GetObject"]),
            "tags": [{"key": "team", "value": "data"}]}),
    );
    sets.api
        .create(&PostParams::default(), &declared)
        .await
        .expect("create");
    let object = sets.ready("data-reader", "Converged").await;
    let status = object.status.expect("status");
    let arn = status.arn.expect("arn");
    assert_eq!(status.adopted, Some(false));
    assert_eq!(status.accounts_provisioned, Some(0));
    assert_eq!(sets.session(&arn).await, "PT4H");
    assert_eq!(sets.managed(&arn).await, [READ_ONLY]);
    assert_eq!(sets.inline(&arn).await, Some(inline(&["s3:GetObject"])));
    let tags = sets.tags(&arn).await;
    assert_eq!(
        tags.get("team").map(String::as_str),
        Some("data"),
        "{tags:?}"
    );
    // Settings and tags come with the create; each attachment is one write; nothing to provision.
    assert_eq!(
        writes(&org.moto.calls()),
        counts(&[
            ("CreatePermissionSet", 1),
            ("AttachManagedPolicyToPermissionSet", 1),
            ("PutInlinePolicyToPermissionSet", 1),
        ])
    );

    // The next sync lists the set like any other, linked to the object that declares it.
    let connectors: Api<aws_access_operator::api::AwsConnector> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    connectors
        .patch(
            "org",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"awsaccess.io/sync-now": "set"}}})),
        )
        .await
        .expect("sync now");
    let connector = connectors.get("org").await.expect("connector");
    let store = aws_access_operator::controller::configmaps::ConnectorConfigMaps::new(
        org.cluster.client.clone(),
        &org.cluster.namespace,
        &connector,
    )
    .expect("store");
    wait::until("the inventory to link the set", TIMEOUT, || async {
        let bytes = store.read("inventory").await.ok()??;
        let inventory: Value = serde_json::from_slice(&bytes).ok()?;
        let listed = inventory["permissionSets"]
            .as_array()?
            .iter()
            .find(|p| p["arn"] == arn.as_str())?
            .clone();
        (listed["declaredBy"] == format!("{}/data-reader", org.cluster.namespace)).then_some(())
    })
    .await;

    // A check that finds nothing to change: seven reads, no write.
    // Between the end of one check (its last read lists the accounts) and the end of the next
    // lies exactly one whole check.
    let moto = &org.moto;
    let ended = |n: u64| async move {
        wait::until(&format!("check {n} of the set"), TIMEOUT, || async {
            let calls = moto.calls();
            (calls
                .get("ListAccountsForProvisionedPermissionSet")
                .copied()
                == Some(n))
            .then_some(calls)
        })
        .await
    };
    org.moto.reset_calls();
    let first = ended(1).await;
    let second = ended(2).await;
    let calls: BTreeMap<String, u64> = second
        .iter()
        .map(|(op, n)| (op.clone(), n - first.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        calls,
        counts(&[
            ("DescribePermissionSet", 1),
            ("ListManagedPoliciesInPermissionSet", 1),
            ("ListCustomerManagedPolicyReferencesInPermissionSet", 1),
            ("GetInlinePolicyForPermissionSet", 1),
            ("GetPermissionsBoundaryForPermissionSet", 1),
            ("ListTagsForResource", 1),
            ("ListAccountsForProvisionedPermissionSet", 1),
        ]),
        "a check with nothing to change"
    );

    // Changed in the console: a policy attached, the inline policy edited. Put back.
    sets.sso
        .attach_managed_policy_to_permission_set()
        .instance_arn(&sets.instance)
        .permission_set_arn(&arn)
        .managed_policy_arn(ADMIN)
        .send()
        .await
        .expect("attach in the console");
    sets.sso
        .put_inline_policy_to_permission_set()
        .instance_arn(&sets.instance)
        .permission_set_arn(&arn)
        .inline_policy(inline(&["s3:*"]).to_string())
        .send()
        .await
        .expect("edit in the console");
    org.moto.reset_calls();
    wait::until("the drift to be put back", TIMEOUT, || async {
        (sets.managed(&arn).await == [READ_ONLY]
            && sets.inline(&arn).await == Some(inline(&["s3:GetObject"])))
        .then_some(())
    })
    .await;
    org.event_noted(
        "Drift",
        &format!("permission set DataReader was changed outside the operator; put back: detach {ADMIN}; put the inline policy"),
    )
    .await;
    assert_eq!(
        writes(&org.moto.calls()),
        counts(&[
            ("DetachManagedPolicyFromPermissionSet", 1),
            ("PutInlinePolicyToPermissionSet", 1),
        ])
    );

    // A grant assigns it on an account: the set is provisioned there.
    let account = org.seed["accounts"][0]
        .as_str()
        .expect("account")
        .to_string();
    grant_on(&org, "reader", &arn, &account).await;

    // The object changes: only the difference is written, then provisioned to that account.
    org.moto.reset_calls();
    sets.api
        .patch(
            "data-reader",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"sessionDuration": "8h",
                "managedPolicies": [READ_ONLY, S3_READ]}})),
        )
        .await
        .expect("patch");
    let object = sets.ready("data-reader", "Converged").await;
    let status = object.status.expect("status");
    assert_eq!(status.accounts_provisioned, Some(1));
    assert_eq!(status.accounts.len(), 1, "{:?}", status.accounts);
    assert_eq!(
        (
            status.accounts[0].account_id.as_str(),
            status.accounts[0].state.as_str()
        ),
        (account.as_str(), "Provisioned")
    );
    assert_eq!(sets.session(&arn).await, "PT8H");
    assert_eq!(
        writes(&org.moto.calls()),
        counts(&[
            ("UpdatePermissionSet", 1),
            ("AttachManagedPolicyToPermissionSet", 1),
            ("ProvisionPermissionSet", 1),
        ])
    );

    // Someone assigns it in the console too.
    let outside = |create: bool| {
        let (sso, instance, arn, account, user) = (
            sets.sso.clone(),
            sets.instance.clone(),
            arn.clone(),
            account.clone(),
            org.user_id(5),
        );
        async move {
            if create {
                sso.create_account_assignment()
                    .instance_arn(instance)
                    .target_id(account)
                    .target_type(aws_sdk_ssoadmin::types::TargetType::AwsAccount)
                    .permission_set_arn(arn)
                    .principal_type(aws_sdk_ssoadmin::types::PrincipalType::User)
                    .principal_id(user)
                    .send()
                    .await
                    .map(|_| ())
                    .expect("assign in the console");
            } else {
                sso.delete_account_assignment()
                    .instance_arn(instance)
                    .target_id(account)
                    .target_type(aws_sdk_ssoadmin::types::TargetType::AwsAccount)
                    .permission_set_arn(arn)
                    .principal_type(aws_sdk_ssoadmin::types::PrincipalType::User)
                    .principal_id(user)
                    .send()
                    .await
                    .map(|_| ())
                    .expect("unassign in the console");
            }
        }
    };
    outside(true).await;
    // Deleting the object while the grant and the console's assignment use it: kept, naming the
    // grant and counting the other.
    sets.api
        .delete("data-reader", &DeleteParams::default())
        .await
        .expect("delete");
    let message = wait::until("the set to be held in use", TIMEOUT, || async {
        let object = sets.api.get_opt("data-reader").await.ok()??;
        let ready = object
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.reason == "InUse").then_some(ready.message)
    })
    .await;
    assert!(
        message.contains(&format!("AccessGrant {}/reader", org.cluster.namespace)),
        "{message}"
    );
    assert!(
        message.contains("1 assignment(s) nobody declared"),
        "{message}"
    );
    assert!(sets.exists(&arn).await, "kept while assigned");
    // The grant goes, and the console's assignment: so does the set.
    org.delete_and_wait("reader").await;
    outside(false).await;
    wait::until("the set to be deleted", TIMEOUT, || async {
        sets.api
            .get_opt("data-reader")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(!sets.exists(&arn).await, "deleted from AWS");
    assert_eq!(org.moto.calls().get("DeletePermissionSet"), Some(&1));
    org.finish().await;
}

/// A set of that name that exists in AWS is someone else's unless the object adopts it; an
/// adopted set is converged but never deleted; a tenant namespace is refused, and so is a set
/// the connector's permissionSetPolicy does not allow; none of them writes anything.
#[tokio::test]
async fn adopted_only_when_asked_and_refused_for_tenants_and_policy() {
    let org = org(
        "psets-adopt",
        SMALL_ORG,
        json!({"permissionSetPolicy": {"deniedActions": ["iam:*"], "maxSessionDuration": "8h"}}),
        |_| {},
    )
    .await;
    let sets = Sets::of(&org).await;
    let existing = org.permission_set("PermissionSet00");
    // Without adopt: refused, nothing written.
    sets.api
        .create(
            &PostParams::default(),
            &set("theirs", json!({"name": "PermissionSet00"})),
        )
        .await
        .expect("create");
    let object = sets.ready("theirs", "OwnedElsewhere").await;
    let message = object.status.expect("status").conditions[0].message.clone();
    assert!(message.contains("set spec.adopt: true"), "{message}");
    // One create, which AWS refuses (the name is taken): nothing changed in AWS; the checks
    // after it look the name up instead of trying again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        writes(&org.moto.calls()),
        counts(&[("CreatePermissionSet", 1)]),
        "a refused set changes nothing"
    );
    // Adopted: converged to the object.
    sets.api
        .patch(
            "theirs",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"adopt": true, "managedPolicies": [READ_ONLY]}})),
        )
        .await
        .expect("adopt");
    let object = sets.ready("theirs", "Converged").await;
    let status = object.status.expect("status");
    assert_eq!(status.arn.as_deref(), Some(existing.as_str()));
    assert_eq!(status.adopted, Some(true));
    assert_eq!(sets.managed(&existing).await, [READ_ONLY]);
    // Deleted: released, not deleted.
    sets.api
        .delete("theirs", &DeleteParams::default())
        .await
        .expect("delete");
    wait::until("the adopted set's object to go", TIMEOUT, || async {
        sets.api
            .get_opt("theirs")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        sets.exists(&existing).await,
        "an adopted set is never deleted"
    );

    // Beyond the connector's permissionSetPolicy: refused, naming the rule; nothing written.
    org.moto.reset_calls();
    sets.api
        .create(
            &PostParams::default(),
            &set(
                "too-wide",
                json!({"name": "TooWide", "sessionDuration": "12h",
                "inlinePolicy": inline(&["iam:PassRole"])}),
            ),
        )
        .await
        .expect("create");
    let object = sets.ready("too-wide", "NotAllowed").await;
    let message = object.status.expect("status").conditions[0].message.clone();
    assert!(
        message.contains("allows iam:PassRole, which reaches iam:*"),
        "{message}"
    );
    assert!(message.contains("maxSessionDuration 8h"), "{message}");
    // From a tenant namespace: refused by allowedNamespaces (Same by default).
    let tenant: Api<PermissionSet> = Api::namespaced(org.cluster.client.clone(), &org.other);
    let mut from_tenant = set("tenant", json!({"name": "TenantSet"}));
    from_tenant.spec.connector_ref.namespace = Some(org.cluster.namespace.clone());
    tenant
        .create(&PostParams::default(), &from_tenant)
        .await
        .expect("create");
    let object = wait::until("the tenant's set to be refused", TIMEOUT, || async {
        let object = tenant.get_opt("tenant").await.ok()??;
        let ready = object
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.reason == "NotAllowed").then_some(ready.message)
    })
    .await;
    assert!(
        object.contains("permissionSetPolicy.allowedNamespaces is Same"),
        "{object}"
    );
    assert_eq!(
        writes(&org.moto.calls()),
        BTreeMap::new(),
        "refused sets write nothing"
    );
    org.finish().await;
}

/// Creates the customer managed policy `/data/lake` in `account`, as someone in that account.
async fn lake_policy_in(org: &Org, account: &str) {
    org.moto
        .iam_in(account)
        .await
        .create_policy()
        .policy_name("lake")
        .path("/data/")
        .policy_document(inline(&["s3:GetObject"]).to_string())
        .send()
        .await
        .expect("create policy");
}

/// A customer managed policy missing in one of the two accounts the set is assigned on: that
/// account's provisioning fails, named with the policy, while the other is provisioned; once
/// the policy exists there, only that account is provisioned again. An AWS managed policy that
/// does not exist is a clear condition, not a retry loop.
#[tokio::test]
async fn a_failed_provisioning_names_the_account_and_is_retried_there_only() {
    let org = org("psets-prov", SMALL_ORG, json!({}), |aws| {
        aws.grant_check = Duration::from_secs(2);
    })
    .await;
    let sets = Sets::of(&org).await;
    let accounts: Vec<String> = org.seed["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(Value::as_str)
        .filter(|a| *a != "123456789012")
        .map(str::to_string)
        .collect();
    let (here, there) = (accounts[0].clone(), accounts[1].clone());
    lake_policy_in(&org, &here).await;
    let arn = sets
        .declare(
            "lake",
            json!({"name": "Lake", "managedPolicies": [READ_ONLY]}),
        )
        .await;
    for (name, account) in [("on-here", &here), ("on-there", &there)] {
        grant_on(&org, name, &arn, account).await;
    }
    org.moto.reset_calls();
    sets.api
        .patch(
            "lake",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"customerManagedPolicies": [{"name": "lake", "path": "/data/"}]}}),
            ),
        )
        .await
        .expect("patch");
    let object = sets.ready("lake", "ProvisioningFailed").await;
    let status = object.status.expect("status");
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready")
        .message;
    assert!(
        message.contains(&there)
            && message.contains(&format!("arn:aws:iam::{there}:policy/data/lake")),
        "{message}"
    );
    let states: BTreeMap<&str, &str> = status
        .accounts
        .iter()
        .map(|a| (a.account_id.as_str(), a.state.as_str()))
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([(here.as_str(), "Provisioned"), (there.as_str(), "Failed")])
    );
    assert_eq!(
        org.events("ProvisioningFailed").await.len(),
        1,
        "one event for the failed account"
    );
    // The policy appears where it was missing: only that account is provisioned again.
    let before = org
        .moto
        .calls()
        .get("ProvisionPermissionSet")
        .copied()
        .unwrap_or(0);
    lake_policy_in(&org, &there).await;
    let object = sets.ready("lake", "Converged").await;
    let status = object.status.expect("status");
    assert_eq!(status.accounts.len(), 2);
    assert!(
        status.accounts.iter().all(|a| a.state == "Provisioned"),
        "{:?}",
        status.accounts
    );
    let after = org
        .moto
        .calls()
        .get("ProvisionPermissionSet")
        .copied()
        .unwrap_or(0);
    assert_eq!(before, 2, "one provisioning per account after the change");
    assert!(after > before, "the failed account is provisioned again");
    assert_eq!(
        org.moto
            .calls()
            .get("AttachCustomerManagedPolicyReferenceToPermissionSet"),
        Some(&1)
    );

    // An AWS managed policy AWS does not have: a condition naming it, then nothing more.
    let missing = "arn:aws:iam::aws:policy/NoSuchPolicy";
    sets.api
        .patch(
            "lake",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"managedPolicies": [READ_ONLY, missing]}})),
        )
        .await
        .expect("patch");
    let object = sets.ready("lake", "AwsError").await;
    let message = object.status.expect("status").conditions[0].message.clone();
    assert!(
        message.contains("AttachManagedPolicyToPermissionSet") && message.contains(missing),
        "{message}"
    );
    org.finish().await;
}

/// A grant that names a declared set by name waits for it while it is being created (with a
/// reason saying so, not a failure), then assigns it without waiting for a sync.
#[tokio::test]
async fn a_grant_waits_for_the_declared_set_it_names() {
    let org = org("psets-wait", SMALL_ORG, json!({}), |_| {}).await;
    let sets = Sets::of(&org).await;
    org.moto
        .set_faults(json!({"hold_operations": ["CreatePermissionSet"]}));
    sets.api
        .create(
            &PostParams::default(),
            &set(
                "on-call",
                json!({"name": "OnCall", "managedPolicies": [READ_ONLY]}),
            ),
        )
        .await
        .expect("create");
    let account = org.seed["accounts"][0]
        .as_str()
        .expect("account")
        .to_string();
    org.create(grant(
        "on-call",
        "org",
        sso_user(4),
        json!({"kind": "PermissionSet", "permissionSet": "OnCall", "accountId": account}),
        json!({}),
    ))
    .await;
    let message = wait_grant(&org.grants, "on-call", "PermissionSetPending").await;
    assert!(
        message.contains(&format!(
            "declared by PermissionSet {}/on-call",
            org.cluster.namespace
        )),
        "{message}"
    );
    org.moto.set_faults(json!({}));
    let arn = sets
        .ready("on-call", "Converged")
        .await
        .status
        .and_then(|s| s.arn)
        .expect("arn");
    wait_grant(&org.grants, "on-call", "Granted").await;
    assert_eq!(org.assigned(&account, &arn).await, [org.user_id(4)]);
    org.finish().await;
}

/// On a readOnly connector a set that does not exist is not created, and one that differs from
/// its object is reported (condition, event, metric), never written.
#[tokio::test]
async fn a_read_only_connector_reports_drift_and_writes_nothing() {
    let org = org("psets-ro", SMALL_ORG, json!({"readOnly": true}), |_| {}).await;
    let sets = Sets::of(&org).await;
    sets.api
        .create(
            &PostParams::default(),
            &set("new", json!({"name": "NotThere"})),
        )
        .await
        .expect("create");
    let object = sets.ready("new", "ReadOnly").await;
    let message = object.status.expect("status").conditions[0].message.clone();
    assert!(message.contains("is not created"), "{message}");
    let existing = org.permission_set("PermissionSet01");
    sets.api
        .create(
            &PostParams::default(),
            &set(
                "existing",
                json!({"name": "PermissionSet01", "adopt": true, "managedPolicies": [READ_ONLY]}),
            ),
        )
        .await
        .expect("create");
    let object = sets.ready("existing", "Drifted").await;
    let status = object.status.expect("status");
    assert_eq!(status.drift, [format!("attach {READ_ONLY}")]);
    org.event_noted(
        "Drift",
        &format!("permission set PermissionSet01 was changed outside the operator (readOnly: not put back): attach {READ_ONLY}"),
    )
    .await;
    assert!(sets.managed(&existing).await.is_empty(), "nothing written");
    assert_eq!(
        writes(&org.moto.calls()),
        BTreeMap::new(),
        "a readOnly connector writes nothing"
    );
    let metrics = org.operator.metrics.clone();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry).expect("encode");
    assert!(
        text.lines().any(
            |l| l.starts_with("aws_access_operator_permission_set_drift_total{")
                && l.contains("outcome=\"reported\"")
        ),
        "{text}"
    );
    org.finish().await;
}

/// Killed with SIGKILL after a change was written and before its provisioning went through
/// (AWS refused it): the restarted binary finishes the provisioning from its record, once, and
/// writes the change no second time.
#[tokio::test]
async fn a_kill_between_a_change_and_its_provisioning_finishes_it_once_after_the_restart() {
    let moto = Moto::start();
    let seed = moto.seed(SMALL_ORG);
    let cluster = TestCluster::start("psets-kill").await;
    let config = cluster.kubeconfig_file();
    let ns = cluster.namespace.clone();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_aws-access-operator"));
    let limits = [
        "--rate-limits",
        "sts=1000,iam=1000,organizations=1000,identitycenter=1000",
    ];
    let mut first = spawn_operator(binary, &moto, &config, &ns, &limits);
    let connectors = create_org_connector(&cluster.client, &ns).await;
    wait_condition(&connectors, "org", "Ready", "True").await;
    let sets = Sets::on(&cluster, &moto, &seed).await;
    let arn = sets
        .declare(
            "kill",
            json!({"name": "Kill", "managedPolicies": [READ_ONLY]}),
        )
        .await;
    let account = seed["accounts"][0].as_str().expect("account").to_string();
    let grants: Api<aws_access_operator::api::AccessGrant> =
        Api::namespaced(cluster.client.clone(), &ns);
    grants
        .create(
            &PostParams::default(),
            &grant(
                "kill",
                "org",
                sso_user(4),
                json!({"kind": "PermissionSet", "permissionSet": arn, "accountId": account}),
                json!({}),
            ),
        )
        .await
        .expect("grant");
    wait_grant(&grants, "kill", "Granted").await;

    moto.set_faults(json!({"deny_operations": ["ProvisionPermissionSet"]}));
    moto.reset_calls();
    sets.api
        .patch(
            "kill",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"managedPolicies": [READ_ONLY, S3_READ]}})),
        )
        .await
        .expect("patch");
    sets.ready("kill", "AwsError").await;
    assert_eq!(
        moto.calls().get("AttachManagedPolicyToPermissionSet"),
        Some(&1)
    );
    first.kill().expect("kill -9");
    first.wait().expect("reap");

    moto.set_faults(json!({}));
    moto.reset_calls();
    let mut second = spawn_operator(binary, &moto, &config, &ns, &limits);
    let object = sets.ready("kill", "Converged").await;
    let status = object.status.expect("status");
    assert_eq!(status.accounts.len(), 1, "{:?}", status.accounts);
    assert_eq!(
        (
            status.accounts[0].account_id.as_str(),
            status.accounts[0].state.as_str()
        ),
        (account.as_str(), "Provisioned")
    );
    let calls = moto.calls();
    assert_eq!(
        calls.get("ProvisionPermissionSet"),
        Some(&1),
        "provisioned once after the restart: {calls:?}"
    );
    assert_eq!(
        calls.get("AttachManagedPolicyToPermissionSet"),
        None,
        "the change is not written again"
    );
    assert_eq!(sets.managed(&arn).await, [S3_READ, READ_ONLY]);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    let _ = second.wait();
    cluster.cleanup().await;
}

/// 100 PermissionSets declared at once on an organization of 20 accounts, converged from
/// nothing, then checked with nothing to change. Measured by `make bench` (`--ignored
/// --nocapture`): the calls against their lower bound and the time against the sso-admin
/// lane's bound are printed, never asserted as time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: make bench"]
async fn a_hundred_permission_sets_converged_then_checked() {
    const SETS: usize = 100;
    let rate = 20.0;
    let check_every = Duration::from_secs(45);
    let org = org(
        "psets-100",
        &[
            "--accounts",
            "20",
            "--sso-users",
            "2",
            "--sso-groups",
            "1",
            "--permission-sets",
            "1",
        ],
        json!({}),
        |aws| {
            aws.grant_check = check_every;
            aws.limits = aws_access_operator::aws::RateLimits::parse(&format!(
                "identitycenter={rate},iam=1000,sts=1000,organizations=1000"
            ))
            .expect("limits");
        },
    )
    .await;
    let sets = Sets::of(&org).await;
    org.moto.reset_calls();
    let started = std::time::Instant::now();
    for i in 0..SETS {
        let declared = set(
            &format!("set-{i:03}"),
            json!({"name": format!("Bench{i:03}"), "sessionDuration": "2h",
                "managedPolicies": [READ_ONLY], "inlinePolicy": inline(&["s3:GetObject"]),
                "tags": [{"key": "bench", "value": "yes"}]}),
        );
        sets.api
            .create(&PostParams::default(), &declared)
            .await
            .expect("create");
    }
    wait::until("every set Converged", Duration::from_secs(300), || async {
        let listed = sets.api.list(&Default::default()).await.ok()?;
        let converged = listed
            .items
            .iter()
            .filter(|s| {
                s.status.as_ref().is_some_and(|st| {
                    st.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.reason == "Converged")
                })
            })
            .count();
        (converged == SETS).then_some(())
    })
    .await;
    let converged = started.elapsed();
    let calls = org.moto.calls();
    let total: u64 = calls.values().sum();
    // Lower bound: CreatePermissionSet, one attach and one inline policy per set (settings and
    // tags come with the create); nothing to provision on sets no account uses yet.
    let lower = 3 * SETS as u64;
    let bound = lower as f64 / rate;
    println!(
        "bench: {SETS} permission sets converged from nothing in {:.1} s (sso-admin lane bound {bound:.1} s at {rate} TPS, {:.2}x); {total} AWS calls, lower bound {lower}: {calls:?}",
        converged.as_secs_f64(),
        converged.as_secs_f64() / bound
    );
    assert_eq!(
        total, lower,
        "every call is one of the lower bound's: {calls:?}"
    );

    // One check of every set, with nothing to change.
    org.moto.reset_calls();
    let first_seen = wait::until("the first check", check_every * 3, || async {
        (!org.moto.calls().is_empty()).then(std::time::Instant::now)
    })
    .await;
    let round = wait::until("a check of every set", check_every * 3, || async {
        let calls = org.moto.calls();
        (calls
            .get("ListAccountsForProvisionedPermissionSet")
            .copied()
            == Some(SETS as u64))
        .then_some(calls)
    })
    .await;
    let took = first_seen.elapsed();
    let reads: u64 = round.values().sum();
    let lower = 7 * SETS as u64;
    println!(
        "bench: a check of {SETS} sets with nothing to change: {reads} reads (7 per set: {lower}), no write, over {:.1} s (lane bound {:.1} s; the checks follow the schedule the sets converged on): {round:?}",
        took.as_secs_f64(),
        lower as f64 / rate
    );
    assert!(
        writes(&round).is_empty(),
        "a check with nothing to change writes nothing"
    );
    org.finish().await;
}

/// Every attribute converges with one write per difference, in both directions: settings,
/// customer managed policies, the inline policy, the boundary (managed, customer managed,
/// removed) and tags.
#[tokio::test]
async fn each_attribute_converges_with_one_write_per_difference() {
    let org = org("psets-attrs", SMALL_ORG, json!({}), |_| {}).await;
    let sets = Sets::of(&org).await;
    let arn = sets
        .declare(
            "attrs",
            json!({"name": "Attrs", "description": "first",
                "customerManagedPolicies": [{"name": "a"}, {"name": "b", "path": "/t/"}],
                "inlinePolicy": inline(&["s3:GetObject"]),
                "permissionsBoundary": {"managedPolicyArn": READ_ONLY},
                "tags": [{"key": "keep", "value": "1"}, {"key": "drop", "value": "2"}]}),
        )
        .await;
    let boundary = || async {
        sets.sso
            .get_permissions_boundary_for_permission_set()
            .instance_arn(&sets.instance)
            .permission_set_arn(&arn)
            .send()
            .await
            .ok()
            .and_then(|b| b.permissions_boundary().cloned())
    };
    assert_eq!(
        boundary()
            .await
            .and_then(|b| b.managed_policy_arn().map(str::to_string))
            .as_deref(),
        Some(READ_ONLY)
    );
    // Each step: the spec change, then the writes it takes.
    let steps: Vec<(Value, Vec<(&str, u64)>)> = vec![
        (
            json!({"description": "second", "relayState": "https://example.com/start"}),
            vec![("UpdatePermissionSet", 1)],
        ),
        (
            json!({"customerManagedPolicies": [{"name": "a"}, {"name": "c"}]}),
            vec![
                ("DetachCustomerManagedPolicyReferenceFromPermissionSet", 1),
                ("AttachCustomerManagedPolicyReferenceToPermissionSet", 1),
            ],
        ),
        (
            json!({"inlinePolicy": null}),
            vec![("DeleteInlinePolicyFromPermissionSet", 1)],
        ),
        (
            json!({"permissionsBoundary": {"managedPolicyArn": null,
                "customerManagedPolicy": {"name": "limit", "path": "/b/"}}}),
            vec![("PutPermissionsBoundaryToPermissionSet", 1)],
        ),
        (
            json!({"permissionsBoundary": null}),
            vec![("DeletePermissionsBoundaryFromPermissionSet", 1)],
        ),
        (
            json!({"tags": [{"key": "keep", "value": "changed"}]}),
            vec![("UntagResource", 1), ("TagResource", 1)],
        ),
    ];
    for (change, expected) in steps {
        org.moto.reset_calls();
        sets.api
            .patch(
                "attrs",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": change.clone()})),
            )
            .await
            .expect("patch");
        sets.ready("attrs", "Converged").await;
        assert_eq!(writes(&org.moto.calls()), counts(&expected), "{change}");
    }
    let described = sets
        .sso
        .describe_permission_set()
        .instance_arn(&sets.instance)
        .permission_set_arn(&arn)
        .send()
        .await
        .expect("describe");
    let described = described.permission_set().expect("set");
    assert_eq!(described.description(), Some("second"));
    assert_eq!(described.relay_state(), Some("https://example.com/start"));
    assert_eq!(sets.inline(&arn).await, None);
    assert!(boundary().await.is_none(), "the boundary is removed");
    let tags = sets.tags(&arn).await;
    assert_eq!(tags.get("keep").map(String::as_str), Some("changed"));
    assert!(!tags.contains_key("drop"), "{tags:?}");
    let customer = sets
        .sso
        .list_customer_managed_policy_references_in_permission_set()
        .instance_arn(&sets.instance)
        .permission_set_arn(&arn)
        .send()
        .await
        .expect("customer policies");
    let mut names: Vec<&str> = customer
        .customer_managed_policy_references()
        .iter()
        .map(|p| p.name())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "c"]);
    org.finish().await;
}

/// A provisioning request AWS no longer knows (its status is kept for a while only) is made
/// again, once, rather than asked after forever.
#[tokio::test]
async fn a_provisioning_request_aws_forgot_is_made_again() {
    let org = org("psets-forgot", SMALL_ORG, json!({}), |_| {}).await;
    let sets = Sets::of(&org).await;
    let arn = sets
        .declare(
            "forgot",
            json!({"name": "Forgot", "managedPolicies": [READ_ONLY]}),
        )
        .await;
    let account = org.seed["accounts"][0]
        .as_str()
        .expect("account")
        .to_string();
    grant_on(&org, "forgot", &arn, &account).await;
    // The record says a provisioning to the account is under way, with a request id AWS
    // never gave (as after a long outage of the operator).
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    let name = format!(
        "aws-access-permission-set-{}",
        aws_access_operator::permission_set::record::key(
            &format!("{}/org", org.cluster.namespace),
            "Forgot"
        )
    );
    let kept = config_maps.get(&name).await.expect("record");
    let mut record: Value =
        serde_json::from_str(&kept.data.expect("data")["record"]).expect("record JSON");
    record["provisioning"] = json!({"accounts": {account.clone(): "00000000-0000-4000-8000-000000000000"},
        "startedAt": "2026-01-01T00:00:00Z"});
    org.moto.reset_calls();
    config_maps
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"record": record.to_string()}})),
        )
        .await
        .expect("edit the record");
    wait::until("the account provisioned again", TIMEOUT, || async {
        let object = sets.api.get_opt("forgot").await.ok()??;
        let accounts = object.status?.accounts;
        accounts
            .iter()
            .any(|a| a.account_id == account && a.state == "Provisioned")
            .then_some(())
    })
    .await;
    let calls = org.moto.calls();
    assert_eq!(calls.get("ProvisionPermissionSet"), Some(&1), "{calls:?}");
    assert_eq!(
        calls.get("DescribePermissionSetProvisioningStatus"),
        Some(&1),
        "{calls:?}"
    );
    org.finish().await;
}

/// A set the operator created is not deleted through a connector that has become readOnly: the
/// object goes, the set stays. The object cannot move to another connector (another
/// organization's set would be another object).
#[tokio::test]
async fn a_read_only_connector_releases_a_deleted_set_and_a_set_keeps_its_connector() {
    let org = org("psets-ro-delete", SMALL_ORG, json!({}), |_| {}).await;
    let sets = Sets::of(&org).await;
    let arn = sets.declare("made", json!({"name": "Made"})).await;
    let moved = sets
        .api
        .patch(
            "made",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"connectorRef": {"name": "other"}}})),
        )
        .await;
    match moved {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert!(
                status.message.contains("spec.connectorRef cannot change"),
                "{}",
                status.message
            );
        }
        other => panic!("moving a set to another connector is refused: {other:?}"),
    }
    let connectors: Api<aws_access_operator::api::AwsConnector> =
        Api::namespaced(org.cluster.client.clone(), &org.cluster.namespace);
    connectors
        .patch(
            "org",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"readOnly": true}})),
        )
        .await
        .expect("readOnly");
    org.moto.reset_calls();
    sets.api
        .delete("made", &DeleteParams::default())
        .await
        .expect("delete");
    wait::until("the object to go", TIMEOUT, || async {
        sets.api.get_opt("made").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        sets.exists(&arn).await,
        "a readOnly connector deletes nothing"
    );
    assert_eq!(writes(&org.moto.calls()), BTreeMap::new());
    org.event_noted(
        "Deleted",
        "permission set Made: the connector is readOnly: released and left in AWS",
    )
    .await;
    org.finish().await;
}

/// Two objects declaring one name on one connector: the second is refused, naming the first,
/// and writes nothing; once the first is deleted (and with it the set), the second creates it.
#[tokio::test]
async fn a_name_is_declared_by_one_object_at_a_time() {
    let org = org("psets-dup", SMALL_ORG, json!({}), |_| {}).await;
    let sets = Sets::of(&org).await;
    let first = sets.declare("first", json!({"name": "Dup"})).await;
    org.moto.reset_calls();
    sets.api
        .create(
            &PostParams::default(),
            &set("second", json!({"name": "Dup"})),
        )
        .await
        .expect("create");
    let object = sets.ready("second", "DeclaredElsewhere").await;
    let message = object.status.expect("status").conditions[0].message.clone();
    assert!(
        message.contains(&format!(
            "declared by PermissionSet {}/first",
            org.cluster.namespace
        )),
        "{message}"
    );
    assert_eq!(writes(&org.moto.calls()), BTreeMap::new(), "{message}");
    sets.api
        .delete("first", &DeleteParams::default())
        .await
        .expect("delete");
    wait::until("the first to go", TIMEOUT, || async {
        sets.api
            .get_opt("first")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        !sets.exists(&first).await,
        "the first object's set is deleted"
    );
    let second = sets.ready("second", "Converged").await;
    assert_ne!(second.status.and_then(|s| s.arn), Some(first));
    org.finish().await;
}

/// A declared set deleted in the console is created again at the next check, reported as
/// drift, and the object's status carries the new ARN.
#[tokio::test]
async fn a_set_deleted_in_the_console_is_created_again() {
    let org = org("psets-gone", SMALL_ORG, json!({}), |_| {}).await;
    let sets = Sets::of(&org).await;
    let old = sets
        .declare(
            "gone",
            json!({"name": "Gone", "managedPolicies": [READ_ONLY]}),
        )
        .await;
    sets.sso
        .delete_permission_set()
        .instance_arn(&sets.instance)
        .permission_set_arn(&old)
        .send()
        .await
        .expect("delete in the console");
    let new = wait::until("the set created again", TIMEOUT, || async {
        let arn = sets.api.get_opt("gone").await.ok()??.status?.arn?;
        (arn != old).then_some(arn)
    })
    .await;
    assert!(sets.exists(&new).await);
    assert_eq!(sets.managed(&new).await, [READ_ONLY]);
    wait::until("a Drift event", TIMEOUT, || async {
        org.events("Drift")
            .await
            .iter()
            .any(|e| {
                e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("permission set Gone was deleted in AWS"))
            })
            .then_some(())
    })
    .await;
    org.finish().await;
}
