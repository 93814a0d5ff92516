//! `approve`, `deny`, `revoke` and `withdraw`: an AccessRequest changed as the user the
//! kubeconfig authenticates, so that the API server's admission policy checks it exactly as it
//! checks `kubectl`. The name a review carries is the one the API server reports for the caller
//! (a SelfSubjectReview), never one typed here.

use std::process::ExitCode;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{PostParams, ResourceExt};
use kube::{Api, Client};

use super::args::{OutputFormat, PendingArgs, RequestRef, ReviewArgs};
use crate::api::AccessRequest;
use crate::api::request::{Decision, Review, State};

/// How many times a write that lost a race (the operator writes the request's finalizer and
/// status too) is tried again.
const CONFLICT_RETRIES: usize = 5;

async fn client() -> anyhow::Result<Client> {
    Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the cluster of the kubeconfig: {e}"))
}

/// Who the API server says the caller is.
async fn caller(client: &Client) -> anyhow::Result<String> {
    let reviews: Api<SelfSubjectReview> = Api::all(client.clone());
    let answer = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot ask the API server who you are (SelfSubjectReview): {e}")
        })?;
    answer
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| anyhow::anyhow!("the API server did not say who you are"))
}

/// AccessRequests in `namespace`, or in the kubeconfig context's.
fn requests(client: &Client, namespace: Option<&str>) -> Api<AccessRequest> {
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::default_namespaced(client.clone()),
    }
}

/// A refusal by the API server (its message names the admission rule), or another failure.
fn refused(name: &str, error: kube::Error) -> anyhow::Error {
    match error {
        kube::Error::Api(status) => super::InvalidInput(format!(
            "AccessRequest {name}: refused by the API server: {}",
            status.message
        ))
        .into(),
        other => anyhow::anyhow!("AccessRequest {name}: {other}"),
    }
}

/// Reads the request, lets `change` edit it, and writes it back; again after a conflict.
async fn change(
    api: &Api<AccessRequest>,
    name: &str,
    mut change: impl FnMut(&mut AccessRequest) -> anyhow::Result<()>,
) -> anyhow::Result<AccessRequest> {
    for _ in 0..CONFLICT_RETRIES {
        let mut request = api.get(name).await.map_err(|e| refused(name, e))?;
        change(&mut request)?;
        match api.replace(name, &PostParams::default(), &request).await {
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            result => return result.map_err(|e| refused(name, e)),
        }
    }
    Err(anyhow::anyhow!(
        "AccessRequest {name}: it kept changing while being written; try again"
    ))
}

pub async fn review(args: ReviewArgs, decision: Decision) -> anyhow::Result<ExitCode> {
    let client = client().await?;
    let user = caller(&client).await?;
    let name = args.request.name.clone();
    let api = requests(&client, args.request.namespace.as_deref());
    let written = change(&api, &name, |request| {
        let mine: Vec<Decision> = request
            .spec
            .reviews
            .iter()
            .filter(|r| r.user == user)
            .map(|r| r.decision)
            .collect();
        // A review is final; the one thing a reviewer may add is a Revoke of their own approval.
        let taking_back = decision == Decision::Revoke && mine == [Decision::Approve];
        if !mine.is_empty() && !taking_back {
            let made = mine
                .iter()
                .map(|d| format!("{d:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(super::InvalidInput(format!(
                "AccessRequest {name}: {user} reviewed it already ({made}); a review cannot be changed, and only an approval can be taken back (revoke)"
            ))
            .into());
        }
        request.spec.reviews.push(Review {
            user: user.clone(),
            decision,
            comment: args.comment.clone(),
        });
        Ok(())
    })
    .await?;
    let verb = match decision {
        Decision::Approve => "approved",
        Decision::Deny => "denied",
        Decision::Revoke => "revoked",
    };
    println!(
        "{}/{} {verb} by {user}",
        written.namespace().unwrap_or_default(),
        written.name_any()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn withdraw(args: RequestRef) -> anyhow::Result<ExitCode> {
    let client = client().await?;
    let api = requests(&client, args.namespace.as_deref());
    let written = change(&api, &args.name, |request| {
        request.spec.withdrawn = Some(true);
        Ok(())
    })
    .await?;
    println!(
        "{}/{} withdrawn",
        written.namespace().unwrap_or_default(),
        written.name_any()
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether the API server lets the caller `approve` the request `namespace/name`.
async fn may_approve(client: &Client, namespace: &str, name: &str) -> anyhow::Result<bool> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let asked = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(crate::api::GROUP.into()),
                resource: Some("accessrequests".into()),
                verb: Some("approve".into()),
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = reviews
        .create(&PostParams::default(), &asked)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot ask the API server whether you may approve {namespace}/{name}: {e}"
            )
        })?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// One request waiting for the caller's review.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Waiting {
    namespace: String,
    name: String,
    requester: String,
    access: String,
    duration: String,
    approvals: String,
    approve_by: String,
    reason: String,
}

/// The requests the caller may review now: pending, not their own, not reviewed by them yet
/// (unless to take back their approval), and `approve` allowed by the API server.
pub async fn pending(args: PendingArgs) -> anyhow::Result<ExitCode> {
    let client = client().await?;
    let user = caller(&client).await?;
    let api: Api<AccessRequest> = if args.all_namespaces {
        Api::all(client.clone())
    } else {
        requests(&client, args.namespace.as_deref())
    };
    let listed = api
        .list(&Default::default())
        .await
        .map_err(|e| refused("(list)", e))?;
    let mut waiting = Vec::new();
    for request in &listed.items {
        let status = request.status.clone().unwrap_or_default();
        let reviewed = request.spec.reviews.iter().any(|r| r.user == user);
        if status.state != Some(State::Pending) || request.spec.requester.user == user || reviewed {
            continue;
        }
        let namespace = request.namespace().unwrap_or_default();
        if !may_approve(&client, &namespace, &request.name_any()).await? {
            continue;
        }
        waiting.push(Waiting {
            namespace,
            name: request.name_any(),
            requester: request.spec.requester.user.clone(),
            access: status.access.clone().unwrap_or_default(),
            duration: request.spec.duration.clone(),
            approvals: status.approvals.clone().unwrap_or_default(),
            approve_by: status.approve_by.clone().unwrap_or_default(),
            reason: request.spec.reason.clone(),
        });
    }
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&waiting)?),
        OutputFormat::Table => {
            if waiting.is_empty() {
                println!("No AccessRequest waits for a review by {user}.");
            }
            for w in &waiting {
                println!(
                    "{}/{}: {} asks for {} for {} ({} approvals, until {}): {}\n  aws-access-operator approve {} -n {}",
                    w.namespace,
                    w.name,
                    w.requester,
                    w.access,
                    w.duration,
                    w.approvals,
                    w.approve_by,
                    w.reason,
                    w.name,
                    w.namespace
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
