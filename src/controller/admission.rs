//! Whether, and since when, the API server enforces the admission policy that vouches for
//! AccessRequests (`request::trust` says what that proves). The operator confirms enforcement by
//! seeing the API server refuse something: a server-side dry-run create of an AccessRequest in
//! another user's name, in its own namespace, refused with the policy's rule. Then it takes the
//! API server's time (the creation time of a dry-run ConfigMap) as the start, pins the policy
//! and binding (uid, generation), and keeps all of it in a ConfigMap beside the ledger, so that
//! a restart neither forgets a start (requests created since stay trusted) nor invents one
//! (objects replaced or changed while it was down start a new one, after a new refusal).

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::context::FIELD_MANAGER;
use super::json_configmap::{JsonConfigMaps, StoreError, Written};
use crate::api::AccessRequest;
use crate::fence::Fence;
use crate::request::trust::{self, Enforcement, Pins};

/// How long an answer is reused for what only shows (a pending request's status); an approval
/// always waits for a check that started after its request was read.
pub const FRESH_FOR: Duration = Duration::from_secs(15);
/// How soon the watch looks again while enforcement is not confirmed.
const RETRY: Duration = Duration::from_secs(2);
/// How often the same lack of enforcement is logged again.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// The ConfigMap, in the operator's namespace, that keeps the enforcement.
pub const RECORD_NAME: &str = "aws-access-request-admission";
const DATA_KEY: &str = "enforcement";
/// On the probe: the policy it is meant for.
const PROBE_ANNOTATION: &str = "awsaccess.io/admission-probe";

type Answer = Result<Enforcement, String>;

#[derive(Clone, Default)]
struct Kept {
    enforcement: Option<Enforcement>,
    version: Option<String>,
}

#[derive(Default)]
struct Known {
    /// What the ConfigMap keeps; read once.
    kept: Option<Kept>,
    /// The last answer, and when the check that gave it started.
    last: Option<(Instant, Answer)>,
}

pub struct AdmissionCheck {
    /// The policy's (and its binding's) name; `None`: the operator was not given one.
    name: Option<String>,
    namespace: String,
    known: tokio::sync::Mutex<Known>,
}

impl AdmissionCheck {
    pub fn new(name: Option<String>, namespace: &str) -> Self {
        Self {
            name,
            namespace: namespace.to_string(),
            known: tokio::sync::Mutex::default(),
        }
    }

    /// Whether the operator serves AccessRequests at all (it was given the policy's name).
    pub fn configured(&self) -> bool {
        self.name.is_some()
    }

    /// The enforcement in force, from a check that started no earlier than `fresh_after`
    /// (checks run one at a time; callers waiting on one share its answer).
    pub async fn enforcement(
        &self,
        client: &Client,
        fence: &Fence,
        fresh_after: Instant,
    ) -> Answer {
        let Some(name) = &self.name else {
            return Err("the operator runs without --request-admission-policy: nothing vouches for requesters and reviewers (install the chart with accessRequests.enabled)".into());
        };
        let mut known = self.known.lock().await;
        if let Some((started, answer)) = &known.last
            && *started >= fresh_after
        {
            return answer.clone();
        }
        let started = Instant::now();
        let answer = self.check(name, client, fence, &mut known).await;
        known.last = Some((started, answer.clone()));
        answer
    }

    async fn check(&self, name: &str, client: &Client, fence: &Fence, known: &mut Known) -> Answer {
        let records = records(client, &self.namespace);
        if known.kept.is_none() {
            known.kept = Some(load(&records, name).await?);
        }
        let found = pins(name, client).await?;
        let kept = known.kept.clone().unwrap_or_default();
        if let Some(enforcement) = &kept.enforcement {
            match trust::change(&enforcement.pins, &found) {
                None => return Ok(enforcement.clone()),
                Some(what) => {
                    tracing::warn!(policy = %name, since = %enforcement.since, change = %what, "the admission policy is not the one enforcement was confirmed with: requests created before it is confirmed again are never trusted");
                    // That start can never hold again (uids are never reused, generations only
                    // grow): forgotten here, replaced in the ConfigMap by the next one.
                    known.kept = Some(Kept {
                        enforcement: None,
                        version: kept.version.clone(),
                    });
                }
            }
        }
        // A new start: the API server must refuse a forged request under these very objects.
        probe(name, client, &self.namespace).await?;
        let since = server_time(client, &self.namespace).await?;
        let after = pins(name, client).await?;
        if after != found {
            return Err(format!(
                "the admission policy {name} or its binding changed while enforcement was being confirmed; confirming again"
            ));
        }
        let enforcement = Enforcement {
            name: name.to_string(),
            pins: found,
            since: since.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            confirmed_at: Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        };
        // Kept before it is used: a restart finds the same start.
        fence
            .check()
            .map_err(|f| format!("enforcement confirmed but not kept: {f}"))?;
        let version = match save(&records, &enforcement, kept.version.as_deref()).await {
            Ok(version) => version,
            Err(why) => {
                // Read again next time: another writer may have kept something meanwhile.
                known.kept = None;
                return Err(why);
            }
        };
        tracing::info!(policy = %name, since = %enforcement.since, "the admission policy is enforced (the API server refused a request in another user's name): requests created after this start are trusted");
        known.kept = Some(Kept {
            enforcement: Some(enforcement.clone()),
            version: Some(version),
        });
        Ok(enforcement)
    }
}

/// The policy and binding as they are now, pinned, or what is wrong with them.
async fn pins(name: &str, client: &Client) -> Result<Pins, String> {
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let unreadable = |what: &str, e: kube::Error| format!("the {what} {name} cannot be read: {e}");
    let policy = policies
        .get_opt(name)
        .await
        .map_err(|e| unreadable("ValidatingAdmissionPolicy", e))?;
    let binding = bindings
        .get_opt(name)
        .await
        .map_err(|e| unreadable("ValidatingAdmissionPolicyBinding", e))?;
    trust::inspect(name, policy.as_ref(), binding.as_ref())
}

/// A create the API server admits or refuses, and stores nothing of.
fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        field_manager: Some(FIELD_MANAGER.to_string()),
    }
}

/// A server-side dry-run create of an AccessRequest in another user's name: `Ok` only when the
/// API server refuses it with the policy's rule. Nothing is stored.
async fn probe(name: &str, client: &Client, namespace: &str) -> Result<(), String> {
    let api: Api<AccessRequest> = Api::namespaced(client.clone(), namespace);
    let forged: AccessRequest = serde_json::from_value(serde_json::json!({
        "apiVersion": "awsaccess.io/v1alpha1",
        "kind": "AccessRequest",
        "metadata": {
            "generateName": "admission-probe-",
            // Another release's policy lets a probe of this one through (it names its own).
            "annotations": {PROBE_ANNOTATION: name}
        },
        "spec": {
            "connectorRef": {"name": "admission-probe"},
            "requester": {"user": "aws-access-operator:admission-probe:not-the-caller"},
            "principal": {"kind": "SsoUser", "name": "admission-probe"},
            "target": {"kind": "SsoGroupMembership", "group": "admission-probe"},
            "duration": "1m",
            "reason": "a dry run that the admission policy must refuse"
        }
    }))
    .map_err(|e| format!("the admission probe cannot be built: {e}"))?;
    let params = dry_run();
    match api.create(&params, &forged).await {
        Ok(_) => Err(format!(
            "the API server admitted a dry-run AccessRequest in another user's name: the admission policy {name} is not enforced (yet)"
        )),
        Err(kube::Error::Api(status)) if trust::confirms(&status.message, name) => Ok(()),
        Err(kube::Error::Api(status)) => Err(format!(
            "the dry-run AccessRequest in another user's name (create accessrequests in {namespace}) was refused, but not by the admission policy {name}: {} ({})",
            status.message, status.code
        )),
        Err(e) => Err(format!(
            "the dry-run AccessRequest in another user's name could not be sent: {e}"
        )),
    }
}

/// The API server's time now: the creation time it gives a dry-run ConfigMap (nothing stored).
async fn server_time(client: &Client, namespace: &str) -> Result<Timestamp, String> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let object = ConfigMap {
        metadata: ObjectMeta {
            generate_name: Some("aws-access-clock-".into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let params = dry_run();
    let created = config_maps.create(&params, &object).await.map_err(|e| {
        format!("the API server's time cannot be read (dry-run create configmaps): {e}")
    })?;
    created
        .metadata
        .creation_timestamp
        .map(|t| t.0)
        .ok_or_else(|| "the API server gave a dry-run ConfigMap no creationTimestamp".into())
}

fn records(client: &Client, namespace: &str) -> JsonConfigMaps {
    JsonConfigMaps::new(client.clone(), namespace, None, DATA_KEY)
}

fn unkept(error: StoreError) -> String {
    format!("the ConfigMap where the start of enforcement is kept, {error}")
}

/// What is kept: the enforcement of the policy `name` (none when nothing is kept, or it was kept
/// for another policy) and the ConfigMap's resourceVersion, for the next write.
async fn load(records: &JsonConfigMaps, name: &str) -> Result<Kept, String> {
    let Some((enforcement, version)) = records
        .get::<Enforcement>(RECORD_NAME)
        .await
        .map_err(unkept)?
    else {
        return Ok(Kept::default());
    };
    Ok(Kept {
        enforcement: (enforcement.name == name).then_some(enforcement),
        version: Some(version),
    })
}

async fn save(
    records: &JsonConfigMaps,
    enforcement: &Enforcement,
    version: Option<&str>,
) -> Result<String, String> {
    match records
        .put(RECORD_NAME, enforcement, version)
        .await
        .map_err(unkept)?
    {
        Written::Version(version) => Ok(version),
        Written::Conflict => Err(format!(
            "the ConfigMap {RECORD_NAME}, where the start of enforcement is kept, changed meanwhile; confirming again"
        )),
    }
}

/// Keeps the answer fresh while the operator leads: confirms enforcement as soon as the policy
/// is in place (so that requests are trusted from the earliest moment), and notices a change
/// within `FRESH_FOR`. Logs each new start once, and a lack of one once a minute; the metrics
/// show the current answer.
pub async fn watch_over(ctx: std::sync::Arc<super::context::Context>) {
    if !ctx.admission.configured() {
        return;
    }
    // The start last logged, or when the last warning was.
    let mut shown: Option<Result<String, Instant>> = None;
    loop {
        let answer = ctx
            .admission
            .enforcement(&ctx.client, &ctx.fence, Instant::now())
            .await;
        match (&answer, &shown) {
            (Ok(e), Some(Ok(since))) if *since == e.since => {}
            (Ok(e), _) => {
                tracing::info!(policy = %e.name, since = %e.since, "AccessRequests created after this start are trusted");
                shown = Some(Ok(e.since.clone()));
            }
            // While it lasts, the warning comes again once a minute, not at every look.
            (Err(_), Some(Err(at))) if at.elapsed() < WARN_EVERY => {}
            (Err(why), _) => {
                tracing::warn!(%why, "no AccessRequest is trusted until the admission policy is confirmed enforced");
                shown = Some(Err(Instant::now()));
            }
        }
        ctx.metrics
            .observe_admission(answer.as_ref().ok().and_then(|e| e.since()));
        tokio::time::sleep(if answer.is_ok() { FRESH_FOR } else { RETRY }).await;
    }
}
