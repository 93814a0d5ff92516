//! Writing status: server-side apply with our field manager, and only when something changed,
//! so that an idle operator makes no writes and wakes no watchers.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::FIELD_MANAGER;
use super::error::Error;
use crate::api::conditions::{ConditionUpdate, SetCondition};

/// Applies condition updates to a condition list, with the object's generation.
pub fn with_conditions(
    current: &[Condition],
    updates: &[ConditionUpdate],
    generation: Option<i64>,
) -> Vec<Condition> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut conditions = current.to_vec();
    for update in updates {
        conditions.set_condition(update, generation, &now);
    }
    conditions
}

/// Writes `status` on the object `name` unless it equals `current`. Returns whether it wrote.
pub async fn write<K, S>(
    api: &Api<K>,
    name: &str,
    current: Option<&S>,
    status: &S,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}
