//! The `awsaccess.io/v1alpha1` API: custom resource types, their conditions and the validation
//! rules shared by the CRD (CEL), the controllers and the offline `validate` command.

pub mod conditions;
pub mod connector;
pub mod duration;
pub mod grant;
pub mod health;
pub mod iam_policy;
pub mod identity;
pub mod identity_validation;
pub mod notify;
pub mod permission_set;
pub mod permission_set_validation;
pub mod request;
pub mod rules;
pub mod unknown_fields;
pub mod validation;

pub use conditions::{ConditionStatus, Conditions};
pub use connector::{AwsConnector, AwsConnectorSpec, AwsConnectorStatus};
pub use grant::{AccessGrant, AccessGrantSpec, AccessGrantStatus};
pub use identity::{
    IamUser, IamUserSpec, IdentityCenterGroup, IdentityCenterGroupSpec, IdentityCenterUser,
    IdentityCenterUserSpec, IdentityStatus,
};
pub use permission_set::{PermissionSet, PermissionSetSpec, PermissionSetStatus};
pub use request::{AccessRequest, AccessRequestSpec, AccessRequestStatus};

/// The API group of every kind this operator owns.
pub const GROUP: &str = "awsaccess.io";
/// The finalizer that makes deleting an AccessGrant revoke its access first.
pub const GRANT_FINALIZER: &str = "awsaccess.io/revoke";
/// The finalizer that makes deleting an AwsConnector revoke the access created through it
/// first.
pub const CONNECTOR_FINALIZER: &str = "awsaccess.io/revoke";
/// The finalizer that makes deleting an AccessRequest end the access it holds first.
pub const REQUEST_FINALIZER: &str = "awsaccess.io/revoke";
/// The finalizer that makes deleting a PermissionSet delete (or release) it in AWS first.
pub const PERMISSION_SET_FINALIZER: &str = "awsaccess.io/permission-set";
/// The finalizer that makes deleting an IdentityCenterUser, IdentityCenterGroup or IamUser
/// delete (or release) it in AWS first.
pub const IDENTITY_FINALIZER: &str = "awsaccess.io/identity";
