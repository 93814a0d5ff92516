//! Prometheus metrics of the controllers, served on `/metrics` in the OpenMetrics text format.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub connector: String,
    pub service: &'static str,
    pub operation: &'static str,
    /// `success`, `throttled` or `error`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorLabels {
    pub connector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InventoryLabels {
    pub connector: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabels {
    pub connector: String,
    /// `Entered`, `AccessDenied`, `Failed` or `Skipped`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub connector: String,
    pub state: String,
}

/// A permission set event: drift found (`put_back` or, read-only, `reported`) or an account's
/// provisioning (`provisioned`, `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SetLabels {
    pub connector: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdentityLabels {
    pub connector: String,
    /// IdentityCenterUser, IdentityCenterGroup or IamUser.
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NoticeLabels {
    pub connector: String,
    pub receiver: String,
    /// `delivered`, `failed` (one attempt) or `given_up`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    pub error: &'static str,
}

/// Every metric the operator exports.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    /// Objects waiting for their connector's share of a controller's reconciliations.
    pub waiting_for_share: Family<ControllerLabels, Gauge>,
    pub leader: Gauge,
    pub aws_calls: Family<CallLabels, Counter>,
    pub aws_throttled: Family<ConnectorLabels, Counter>,
    pub sync_duration: Family<ConnectorLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub inventory_items: Family<InventoryLabels, Gauge>,
    pub member_accounts: Family<MemberLabels, Gauge>,
    pub grants: Family<ReasonLabels, Gauge>,
    /// The last `Ready` reason of each grant, to keep `grants` exact.
    grant_reasons: std::sync::Mutex<std::collections::HashMap<String, String>>,
    pub requests: Family<RequestLabels, Gauge>,
    pub request_transitions: Family<RequestLabels, Counter>,
    pub notifications: Family<NoticeLabels, Counter>,
    /// Changes made outside the operator to declared permission sets.
    pub permission_set_drift: Family<SetLabels, Counter>,
    /// Provisionings of declared permission sets to accounts, by outcome.
    pub permission_set_provisioning: Family<SetLabels, Counter>,
    /// Changes made outside the operator to declared users and groups, by outcome.
    pub identity_drift: Family<IdentityLabels, Counter>,
    /// Declared users and groups written in AWS, by kind and operation.
    pub identity_writes: Family<IdentityLabels, Counter>,
    /// 1 while the admission policy for AccessRequests is confirmed enforced.
    pub request_admission_enforced: Gauge,
    /// When the enforcement in force started (Unix seconds, the API server's clock).
    pub request_admission_since: Gauge,
    /// The last state (and connector) of each request, to keep `requests` exact.
    request_states: std::sync::Mutex<std::collections::HashMap<String, RequestLabels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("aws_access_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register("reconciles", "Reconciliations run", reconciles.clone());
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by error kind",
            reconcile_errors.clone(),
        );
        let reconcile_duration =
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            });
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            reconcile_duration.clone(),
        );
        let waiting_for_share = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "waiting_for_connector_share",
            "Objects waiting to be reconciled while their connector's share of reconciliations runs, by controller",
            waiting_for_share.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        let aws_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "aws_calls",
            "AWS calls made, by connector and operation",
            aws_calls.clone(),
        );
        let aws_throttled = Family::<ConnectorLabels, Counter>::default();
        registry.register(
            "aws_throttled",
            "AWS calls answered with throttling",
            aws_throttled.clone(),
        );
        let sync_duration =
            Family::<ConnectorLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "sync_duration_seconds",
            "Duration of the last inventory sync",
            sync_duration.clone(),
        );
        let inventory_items = Family::<InventoryLabels, Gauge>::default();
        registry.register(
            "inventory_items",
            "Items in the last inventory, by kind",
            inventory_items.clone(),
        );
        let member_accounts = Family::<MemberLabels, Gauge>::default();
        registry.register(
            "member_accounts",
            "Member accounts by the outcome of the last sync of their IAM",
            member_accounts.clone(),
        );
        let grants = Family::<ReasonLabels, Gauge>::default();
        registry.register(
            "grants",
            "AccessGrants by the reason of their Ready condition",
            grants.clone(),
        );
        let requests = Family::<RequestLabels, Gauge>::default();
        registry.register(
            "access_requests",
            "AccessRequests by connector and state",
            requests.clone(),
        );
        let request_transitions = Family::<RequestLabels, Counter>::default();
        registry.register(
            "access_request_transitions",
            "AccessRequests that entered each state, by connector",
            request_transitions.clone(),
        );
        let notifications = Family::<NoticeLabels, Counter>::default();
        registry.register(
            "request_notifications",
            "AccessRequest notice deliveries to webhook receivers, by outcome (failed counts each failed attempt)",
            notifications.clone(),
        );
        let permission_set_drift = Family::<SetLabels, Counter>::default();
        registry.register(
            "permission_set_drift",
            "Changes made outside the operator to declared permission sets: put_back, or reported on a readOnly connector",
            permission_set_drift.clone(),
        );
        let permission_set_provisioning = Family::<SetLabels, Counter>::default();
        registry.register(
            "permission_set_provisioning",
            "Provisionings of declared permission sets to an account, by outcome (provisioned, failed)",
            permission_set_provisioning.clone(),
        );
        let identity_drift = Family::<IdentityLabels, Counter>::default();
        registry.register(
            "identity_drift",
            "Changes made outside the operator to declared users and groups: put_back, or reported on a readOnly connector",
            identity_drift.clone(),
        );
        let identity_writes = Family::<IdentityLabels, Counter>::default();
        registry.register(
            "identity_writes",
            "Declared users and groups written in AWS, by kind and outcome (created, adopted, changed, deleted, released)",
            identity_writes.clone(),
        );
        let request_admission_enforced = Gauge::default();
        registry.register(
            "request_admission_enforced",
            "1 while the admission policy that vouches for AccessRequests is confirmed enforced",
            request_admission_enforced.clone(),
        );
        let request_admission_since = Gauge::default();
        registry.register(
            "request_admission_trusted_since_seconds",
            "Start of the admission policy's confirmed enforcement (API server clock): AccessRequests created after it are trusted",
            request_admission_since.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            waiting_for_share,
            leader,
            aws_calls,
            aws_throttled,
            sync_duration,
            inventory_items,
            member_accounts,
            grants,
            grant_reasons: Default::default(),
            requests,
            request_transitions,
            notifications,
            permission_set_drift,
            permission_set_provisioning,
            identity_drift,
            identity_writes,
            request_admission_enforced,
            request_admission_since,
            request_states: Default::default(),
        }
    }
}

impl Metrics {
    pub fn observe_reconcile(&self, controller: &'static str, took: Duration) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn observe_error(&self, controller: &'static str, error: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { controller, error })
            .inc();
    }

    /// Records a grant's current reason (`None` once it is gone).
    pub fn observe_grant(&self, grant: &str, reason: Option<&str>) {
        let mut reasons = self.grant_reasons.lock().unwrap_or_else(|p| p.into_inner());
        let previous = match reason {
            Some(reason) => reasons.insert(grant.to_string(), reason.to_string()),
            None => reasons.remove(grant),
        };
        if previous.as_deref() == reason {
            return;
        }
        if let Some(old) = previous {
            self.grants
                .get_or_create(&ReasonLabels { reason: old })
                .dec();
        }
        if let Some(new) = reason {
            self.grants
                .get_or_create(&ReasonLabels {
                    reason: new.to_string(),
                })
                .inc();
        }
    }

    pub fn observe_notice(&self, connector: &str, receiver: &str, outcome: &'static str) {
        self.notifications
            .get_or_create(&NoticeLabels {
                connector: connector.to_string(),
                receiver: receiver.to_string(),
                outcome,
            })
            .inc();
    }

    /// Records whether the admission policy is confirmed enforced, and since when.
    pub fn observe_admission(&self, since: Option<jiff::Timestamp>) {
        self.request_admission_enforced
            .set(i64::from(since.is_some()));
        self.request_admission_since
            .set(since.map_or(0, |t| t.as_second()));
    }

    /// Records a request's current state (`None` once it is gone); a change of state counts
    /// as a transition.
    pub fn observe_request(&self, request: &str, now: Option<RequestLabels>) {
        let mut states = self
            .request_states
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let previous = match &now {
            Some(labels) => states.insert(request.to_string(), labels.clone()),
            None => states.remove(request),
        };
        if previous == now {
            return;
        }
        if let Some(old) = previous {
            self.requests.get_or_create(&old).dec();
        }
        if let Some(new) = now {
            self.requests.get_or_create(&new).inc();
            self.request_transitions.get_or_create(&new).inc();
        }
    }

    /// Counts one AWS call attempt of `connector`.
    pub fn observe_call(
        &self,
        connector: &str,
        service: &'static str,
        operation: &'static str,
        outcome: &'static str,
    ) {
        let labels = CallLabels {
            connector: connector.to_string(),
            service,
            operation,
            outcome,
        };
        self.aws_calls.get_or_create(&labels).inc();
        if outcome == "throttled" {
            let connector = ConnectorLabels {
                connector: connector.to_string(),
            };
            self.aws_throttled.get_or_create(&connector).inc();
        }
    }

    /// Records how long a sync took.
    pub fn observe_sync(&self, connector: &str, seconds: f64) {
        let labels = ConnectorLabels {
            connector: connector.to_string(),
        };
        self.sync_duration.get_or_create(&labels).set(seconds);
    }

    /// Records the sizes of an inventory.
    pub fn observe_inventory(&self, connector: &str, inventory: &crate::sync::Inventory) {
        let counts = inventory.counts(0);
        for (kind, value) in [
            ("accounts", counts.accounts),
            ("organizationalUnits", counts.organizational_units),
            ("memberIamUsers", counts.member_iam_users),
            ("memberIamGroups", counts.member_iam_groups),
            ("memberIamRoles", counts.member_iam_roles),
            ("iamUsers", counts.iam_users),
            ("iamGroups", counts.iam_groups),
            ("iamRoles", counts.iam_roles),
            ("ssoUsers", counts.sso_users),
            ("ssoUsersSignedIn", counts.sso_users_signed_in),
            ("ssoGroups", counts.sso_groups),
            ("permissionSets", counts.permission_sets),
            ("assignments", counts.assignments),
        ] {
            self.inventory_items
                .get_or_create(&InventoryLabels {
                    connector: connector.to_string(),
                    kind,
                })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        use crate::aws::model::member_outcome::{ACCESS_DENIED, ENTERED, FAILED, SKIPPED};
        for outcome in [ENTERED, ACCESS_DENIED, FAILED, SKIPPED] {
            let count = inventory
                .member_accounts
                .iter()
                .filter(|m| m.outcome == outcome)
                .count();
            self.member_accounts
                .get_or_create(&MemberLabels {
                    connector: connector.to_string(),
                    outcome,
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
