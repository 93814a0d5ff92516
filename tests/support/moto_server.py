#!/usr/bin/env python3
"""Starts moto's server on a loopback port with the project's run-time patches.

moto stands in for AWS in the tests and the demo. Where it differs from AWS in a way the
operator depends on, this launcher patches it in memory (installed packages are never edited):

* sso-admin CreatePermissionSet/UpdatePermissionSet default SessionDuration to the number 3600;
  AWS returns an ISO 8601 duration ("PT1H"), and SDKs refuse a number.
* sso-admin lacks DescribePermissionSetProvisioningStatus, and names permission sets
  `arn:aws:sso:::instance/ssoins-…/ps-…`; AWS names them `arn:aws:sso:::permissionSet/ssoins-…/ps-…`.
* IAM ListUsers, ListGroups, GetGroup, ListGroupsForUser and GetAccountAuthorizationDetails
  ignore MaxItems/Marker and return everything in one page.
* identitystore CreateGroupMembership accepts a duplicate membership (AWS: ConflictException),
  and sso-admin CreateAccountAssignment stores a duplicate assignment (AWS: the existing
  assignment stands; the request succeeds without a second one).
* sso-admin ListAccountsForProvisionedPermissionSet answers only the caller's account and
  ListPermissionSetsProvisionedToAccount ignores AccountId; neither pages. AWS provisions a
  permission set to every account it is assigned on (or provisioned to), and pages both.
* identitystore ListGroupMemberships of a group that does not exist, and sso-admin
  ListAccountAssignments and ListAccountsForProvisionedPermissionSet of a permission set that
  does not exist, answer an empty list; AWS answers ResourceNotFoundException.
* sso-admin has no permissions boundaries: the launcher keeps them
  (Put/Get/DeletePermissionsBoundary…PermissionSet); Get of a set without one answers
  ResourceNotFoundException, as AWS does.
* sso-admin has no tags on permission sets, creates a second set of a name the instance has,
  deletes a set still assigned, and provisions a set to an account that lacks a customer managed
  policy it references; AWS keeps tags (TagResource, UntagResource, ListTagsForResource), refuses
  the duplicate name and the delete (ConflictException), and fails that provisioning naming the
  policy (patch_permission_set_admin).
* identitystore lacks UpdateUser and UpdateGroup, IAM users have no permissions boundary, and
  IAM DeleteUser deletes a user still in a group or holding keys, a password or MFA devices;
  AWS has both updates, keeps the boundary and refuses that delete (patch_identities).
* CloudTrail LookupEvents is not in moto at all. The launcher answers it from events seeded with
  `POST /_launcher/cloudtrail/events` (a JSON list, which replaces what was seeded before; each
  event: `eventName`, `eventSource`, `eventTime` (RFC 3339), and optionally `eventId`,
  `username`, `readOnly`, `accessKeyId`, `resources` [{`type`, `name`}], `cloudTrailEvent`),
  as AWS does: newest first, at most 50 a page (`MaxResults` 1-50), a `NextToken` good only for
  the same query, one lookup attribute at most (EventId, EventName, ReadOnly, Username,
  ResourceType, ResourceName, EventSource, AccessKeyId), `StartTime`/`EndTime` inclusive.

Faults come from a WSGI middleware in front of moto, set through `POST /_launcher/faults`
(JSON): `throttle_every` (every Nth AWS request answers Throttling/ThrottlingException),
`error_every` (every Nth answers 500), `deny_assume_role` (role ARNs whose AssumeRole is
AccessDenied), `require_external_id` (role ARN → the ExternalId its trust policy requires: any
other, or none, is AccessDenied), `assume_role_needs_role` (AssumeRole of a role that does not
exist in its account is AccessDenied, as in AWS; moto assumes any), `deny_operations` (operations answered AccessDenied), `hang_after` (requests after the Nth wait until the faults change: lets a test
stop a client at a known point), `hold_operations` (requests of these operations wait until
the faults change: lets a test change AWS while a client is between two calls; with
`hold_accounts`, only the requests signed in those accounts wait), `slow_operations`
(operation → seconds: requests of these operations are answered that much later, as a slow but
working endpoint is), `in_progress_polls` (account assignment creations and deletions
report IN_PROGRESS, and stay so for that many status polls), `fail_assignments` (account
assignment creations FAILED with this reason, creating nothing). `GET /_launcher/calls` counts the AWS requests moto received,
by operation; `POST /_launcher/calls/reset` zeroes them.

The first line on stdout is `PORT <n>`; the server stops on SIGTERM or SIGINT.
"""

import argparse
import os
import signal
import sys
import threading
import time
import uuid


def patch_session_duration():
    from moto.ssoadmin.models import SSOAdminBackend

    def iso(duration):
        if isinstance(duration, (int, float)) or (isinstance(duration, str) and duration.isdigit()):
            seconds = int(duration)
            hours, rest = divmod(seconds, 3600)
            if rest == 0:
                return f"PT{hours}H"
            return f"PT{seconds}S"
        return duration

    original_create = SSOAdminBackend.create_permission_set
    original_update = SSOAdminBackend.update_permission_set

    def create_permission_set(self, name, description, instance_arn, session_duration, relay_state, tags):
        return original_create(self, name, description, instance_arn, iso(session_duration), relay_state, tags)

    def update_permission_set(self, instance_arn, permission_set_arn, description, session_duration, relay_state):
        return original_update(self, instance_arn, permission_set_arn, description, iso(session_duration), relay_state)

    SSOAdminBackend.create_permission_set = create_permission_set
    SSOAdminBackend.update_permission_set = update_permission_set


def patch_permission_set_arns():
    from moto.moto_api._internal import mock_random as random
    from moto.ssoadmin.models import PermissionSet

    def generate_id(instance_arn):
        partition, instance_id = instance_arn.split(":")[1], instance_arn.rsplit("/", 1)[-1]
        return f"arn:{partition}:sso:::permissionSet/{instance_id}/ps-{random.get_random_string(length=16).lower()}"

    PermissionSet.generate_id = staticmethod(generate_id)


def patch_provisioning_status():
    import json

    from moto.core.utils import unix_time
    from moto.ssoadmin.exceptions import ResourceNotFoundException
    from moto.ssoadmin.responses import SSOAdminResponse

    original = SSOAdminResponse.provision_permission_set

    def provision_permission_set(self):
        body = json.loads(original(self))
        status = body["PermissionSetProvisioningStatus"]
        requests = self.ssoadmin_backend.__dict__.setdefault("provisioning_requests", {})
        requests[status["RequestId"]] = status
        return json.dumps(body)

    def describe_permission_set_provisioning_status(self):
        request_id = self._get_param("ProvisionPermissionSetRequestId")
        requests = self.ssoadmin_backend.__dict__.get("provisioning_requests", {})
        if request_id not in requests:
            raise ResourceNotFoundException(f"Provisioning request {request_id} not found")
        return json.dumps({"PermissionSetProvisioningStatus": requests[request_id]})

    SSOAdminResponse.provision_permission_set = provision_permission_set
    SSOAdminResponse.describe_permission_set_provisioning_status = describe_permission_set_provisioning_status
    _ = unix_time


def patch_iam_paging():
    from moto.iam.responses import IamResponse

    # operation -> the list in its result that pages
    paged = {
        "list_users": "Users",
        "list_groups": "Groups",
        "get_group": "Users",
        "list_groups_for_user": "Groups",
    }

    def paginate(method_name, key):
        original = getattr(IamResponse, method_name)

        def paginated(self):
            result = original(self)
            body = result.result
            items = list(body.get(key) or [])
            start = int(self._get_param("Marker") or 0)
            size = int(self._get_param("MaxItems") or 100)
            page = items[start : start + size]
            body[key] = page
            if start + size < len(items):
                body["IsTruncated"] = True
                body["Marker"] = str(start + size)
            else:
                body["IsTruncated"] = False
                body.pop("Marker", None)
            return result

        setattr(IamResponse, method_name, paginated)

    for method_name, key in paged.items():
        paginate(method_name, key)

    original_details = IamResponse.get_account_authorization_details

    def get_account_authorization_details(self):
        # One marker over the concatenation of the four lists, as AWS pages them together.
        result = original_details(self)
        body = result.result
        keys = ["UserDetailList", "GroupDetailList", "RoleDetailList", "Policies"]
        flat = [(k, item) for k in keys for item in list(body.get(k) or [])]
        start = int(self._get_param("Marker") or 0)
        size = int(self._get_param("MaxItems") or 100)
        page = flat[start : start + size]
        for k in keys:
            body[k] = [item for key, item in page if key == k]
        body["IsTruncated"] = start + size < len(flat)
        if body["IsTruncated"]:
            body["Marker"] = str(start + size)
        else:
            body.pop("Marker", None)
        return result

    IamResponse.get_account_authorization_details = get_account_authorization_details


def patch_duplicates():
    from moto.identitystore.exceptions import ConflictException
    from moto.identitystore.models import IdentityStoreBackend
    from moto.ssoadmin.models import AccountAssignment, SSOAdminBackend
    from moto.ssoadmin.exceptions import ResourceNotFoundException

    original_membership = IdentityStoreBackend.create_group_membership

    def create_group_membership(self, identity_store_id, group_id, member_id):
        store = self._IdentityStoreBackend__get_identity_store(identity_store_id)
        for membership in store.group_memberships.values():
            if membership["GroupId"] == group_id and membership["MemberId"].get("UserId") == member_id.get("UserId"):
                raise ConflictException(
                    message="Member and Group relationship already exists.",
                    reason="UNIQUENESS_CONSTRAINT_VIOLATION",
                )
        return original_membership(self, identity_store_id, group_id, member_id)

    IdentityStoreBackend.create_group_membership = create_group_membership

    original_assignment = SSOAdminBackend.create_account_assignment

    def create_account_assignment(self, instance_arn, target_id, target_type, permission_set_arn, principal_type, principal_id):
        try:
            existing = self._find_account(instance_arn, target_id, target_type, permission_set_arn, principal_type, principal_id)
        except ResourceNotFoundException:
            return original_assignment(self, instance_arn, target_id, target_type, permission_set_arn, principal_type, principal_id)
        # The request succeeds and is describable, but no second assignment appears.
        existing.request_id = str(uuid.uuid4())
        return existing.to_json(include_creation_date=True, include_request_id=True)

    SSOAdminBackend.create_account_assignment = create_account_assignment
    _ = AccountAssignment


def patch_provisioning():
    import json

    from moto.ssoadmin.models import SSOAdminBackend
    from moto.ssoadmin.responses import SSOAdminResponse

    def provisioned(backend):
        return backend.__dict__.setdefault("provisioned_accounts", {})

    def provision(backend, permission_set_arn, account_id):
        accounts = provisioned(backend).setdefault(permission_set_arn, [])
        if account_id not in accounts:
            accounts.append(account_id)

    original_create = SSOAdminBackend.create_account_assignment

    def create_account_assignment(self, instance_arn, target_id, target_type, permission_set_arn, principal_type, principal_id):
        result = original_create(self, instance_arn, target_id, target_type, permission_set_arn, principal_type, principal_id)
        provision(self, permission_set_arn, target_id)
        return result

    SSOAdminBackend.create_account_assignment = create_account_assignment

    original_provision = SSOAdminResponse.provision_permission_set

    def provision_permission_set(self):
        if self._get_param("TargetType") == "AWS_ACCOUNT":
            provision(self.ssoadmin_backend, self._get_param("PermissionSetArn"), self._get_param("TargetId"))
        return original_provision(self)

    SSOAdminResponse.provision_permission_set = provision_permission_set

    original_delete = SSOAdminBackend.delete_permission_set

    def delete_permission_set(self, instance_arn, permission_set_arn):
        provisioned(self).pop(permission_set_arn, None)
        return original_delete(self, instance_arn, permission_set_arn)

    SSOAdminBackend.delete_permission_set = delete_permission_set

    def page(response, items, key):
        start = int(response._get_param("NextToken") or 0)
        size = int(response._get_param("MaxResults") or 100)
        body = {key: items[start : start + size]}
        if start + size < len(items):
            body["NextToken"] = str(start + size)
        return json.dumps(body)

    def list_accounts_for_provisioned_permission_set(self):
        arn = self._get_param("PermissionSetArn")
        return page(self, list(provisioned(self.ssoadmin_backend).get(arn, [])), "AccountIds")

    def list_permission_sets_provisioned_to_account(self):
        account = self._get_param("AccountId")
        arns = [arn for arn, accounts in provisioned(self.ssoadmin_backend).items() if account in accounts]
        return page(self, arns, "PermissionSets")

    SSOAdminResponse.list_accounts_for_provisioned_permission_set = list_accounts_for_provisioned_permission_set
    SSOAdminResponse.list_permission_sets_provisioned_to_account = list_permission_sets_provisioned_to_account


def patch_unknown_resources():
    """List calls about a group or permission set that does not exist answer ResourceNotFound, as
    AWS does; moto answers an empty list, which would hide a sync that names deleted things."""
    from moto.identitystore.exceptions import ResourceNotFoundException as StoreNotFound
    from moto.identitystore.models import IdentityStoreBackend
    from moto.ssoadmin.models import SSOAdminBackend
    from moto.ssoadmin.responses import SSOAdminResponse

    original_memberships = IdentityStoreBackend.list_group_memberships

    def list_group_memberships(self, identity_store_id, group_id, **kwargs):
        store = self._IdentityStoreBackend__get_identity_store(identity_store_id)
        if group_id not in store.groups:
            raise StoreNotFound(message="Group does not exist", resource_type="GROUP")
        return original_memberships(self, identity_store_id=identity_store_id, group_id=group_id, **kwargs)

    IdentityStoreBackend.list_group_memberships = list_group_memberships

    original_assignments = SSOAdminBackend.list_account_assignments

    def list_account_assignments(self, instance_arn, account_id, permission_set_arn, **kwargs):
        self._find_permission_set(instance_arn, permission_set_arn)
        return original_assignments(self, instance_arn=instance_arn, account_id=account_id,
                                    permission_set_arn=permission_set_arn, **kwargs)

    SSOAdminBackend.list_account_assignments = list_account_assignments

    # Installed by patch_provisioning, which runs first.
    original_provisioned = SSOAdminResponse.list_accounts_for_provisioned_permission_set

    def list_accounts_for_provisioned_permission_set(self):
        self.ssoadmin_backend._find_permission_set(self._get_param("InstanceArn"), self._get_param("PermissionSetArn"))
        return original_provisioned(self)

    SSOAdminResponse.list_accounts_for_provisioned_permission_set = list_accounts_for_provisioned_permission_set


def patch_permission_set_admin():
    """What sso-admin does to declared permission sets that moto does not:

    * TagResource, UntagResource and ListTagsForResource of a permission set (moto has none):
      tags kept on the set, at most 50, a key tagged again takes the new value.
    * CreatePermissionSet of a name the instance already has answers ConflictException (names
      are unique in an instance); moto creates a second set of that name.
    * DeletePermissionSet of a set that is still assigned on an account answers
      ConflictException; moto deletes it and leaves the assignments naming nothing.
    * ProvisionPermissionSet to an account where a customer managed policy the set references
      (attached, or as its permissions boundary) does not exist FAILS, its status naming the
      policy and the account, and the set is not provisioned there; moto provisions anyway.
    """
    import json

    from moto.iam.models import iam_backends
    from moto.ssoadmin.exceptions import ConflictException, ResourceNotFoundException
    from moto.ssoadmin.models import SSOAdminBackend
    from moto.ssoadmin.responses import SSOAdminResponse

    def find_by_arn(backend, arn):
        for permission_set in backend.permission_sets:
            if permission_set.permission_set_arn == arn:
                return permission_set
        raise ResourceNotFoundException(f"Could not find PermissionSet with id {arn.rsplit('/', 1)[-1]}")

    def tag_resource(self):
        permission_set = find_by_arn(self.ssoadmin_backend, self._get_param("ResourceArn"))
        tags = {t["Key"]: t.get("Value", "") for t in (permission_set.tags or [])}
        for tag in self._get_param("Tags") or []:
            tags[tag["Key"]] = tag.get("Value", "")
        if len(tags) > 50:
            from moto.ssoadmin.exceptions import ServiceQuotaExceededException
            raise ServiceQuotaExceededException("A resource may have at most 50 tags")
        permission_set.tags = [{"Key": k, "Value": v} for k, v in tags.items()]
        return "{}"

    def untag_resource(self):
        permission_set = find_by_arn(self.ssoadmin_backend, self._get_param("ResourceArn"))
        keys = set(self._get_param("TagKeys") or [])
        permission_set.tags = [t for t in (permission_set.tags or []) if t["Key"] not in keys]
        return "{}"

    def list_tags_for_resource(self):
        permission_set = find_by_arn(self.ssoadmin_backend, self._get_param("ResourceArn"))
        return json.dumps({"Tags": list(permission_set.tags or [])})

    SSOAdminResponse.tag_resource = tag_resource
    SSOAdminResponse.untag_resource = untag_resource
    SSOAdminResponse.list_tags_for_resource = list_tags_for_resource

    original_create = SSOAdminBackend.create_permission_set

    def create_permission_set(self, name, description, instance_arn, session_duration, relay_state, tags):
        if any(p.name == name and p.instance_arn == instance_arn for p in self.permission_sets):
            raise ConflictException(f"PermissionSet with name {name} already exists")
        return original_create(self, name, description, instance_arn, session_duration, relay_state, tags)

    SSOAdminBackend.create_permission_set = create_permission_set

    original_delete = SSOAdminBackend.delete_permission_set

    def delete_permission_set(self, instance_arn, permission_set_arn):
        if any(a.permission_set_arn == permission_set_arn for a in self.account_assignments):
            raise ConflictException(
                "Could not delete because PermissionSet has ApplicationProfile associated with it")
        return original_delete(self, instance_arn, permission_set_arn)

    SSOAdminBackend.delete_permission_set = delete_permission_set

    # Installed by patch_provisioning and patch_provisioning_status, which run first.
    original_provision = SSOAdminResponse.provision_permission_set

    def missing_policy(backend, permission_set_arn, account):
        permission_set = find_by_arn(backend, permission_set_arn)
        references = [(p.path, p.name) for p in permission_set.customer_managed_policies]
        boundary = FAULTS.boundaries.get(permission_set_arn, {}) if FAULTS else {}
        customer = boundary.get("CustomerManagedPolicyReference")
        if customer:
            references.append((customer.get("Path", "/"), customer["Name"]))
        existing = iam_backends[account]["global"].managed_policies
        for path, name in references:
            arn = f"arn:aws:iam::{account}:policy{path}{name}"
            if arn not in existing:
                return arn
        return None

    def provision_permission_set(self):
        arn = self._get_param("PermissionSetArn")
        account = self._get_param("TargetId")
        missing = None
        if self._get_param("TargetType") == "AWS_ACCOUNT":
            missing = missing_policy(self.ssoadmin_backend, arn, account)
        if missing is None:
            return original_provision(self)
        request_id = str(uuid.uuid4())
        status = {"Status": "FAILED", "RequestId": request_id, "AccountId": account,
                  "PermissionSetArn": arn,
                  "FailureReason": f"Received a 404 status error: Policy {missing} does not exist or is not attachable."}
        requests = self.ssoadmin_backend.__dict__.setdefault("provisioning_requests", {})
        requests[request_id] = status
        return json.dumps({"PermissionSetProvisioningStatus": status})

    SSOAdminResponse.provision_permission_set = provision_permission_set


def patch_identities():
    """What AWS does to declared users and groups that moto does not:

    * identitystore UpdateUser and UpdateGroup are missing. AWS applies each AttributeOperation
      to one attribute, replacing it (or, without AttributeValue, removing it); a group's
      displayName another group has answers ConflictException (display names are unique).
    * IAM users have no permissions boundary in moto: CreateUser ignores PermissionsBoundary,
      Put/DeleteUserPermissionsBoundary are missing and GetUser leaves it out. AWS keeps it and
      GetUser returns it.
    * IAM DeleteUser of a user in a group, or with access keys, a console password or MFA
      devices, answers DeleteConflict in AWS ("you must delete the items attached to the user");
      moto checks only policies.
    * IAM UpdateUser with NewPath loses the user's tags in moto (it keeps them by ARN, and the
      path is part of the ARN); in AWS the tags stay with the user.
    """
    from moto.core.responses import EmptyResult
    from moto.iam.exceptions import DeleteConflictException
    from moto.iam.models import IAMBackend, User
    from moto.iam.responses import IamResponse
    from moto.identitystore.exceptions import ConflictException, ValidationException
    from moto.identitystore.responses import IdentityStoreResponse

    user_fields = {"displayName": "DisplayName", "title": "Title", "locale": "Locale",
                   "timezone": "Timezone", "nickName": "NickName", "profileUrl": "ProfileUrl",
                   "userType": "UserType", "preferredLanguage": "PreferredLanguage"}
    name_fields = {"name.givenName": "GivenName", "name.familyName": "FamilyName",
                   "name.middleName": "MiddleName", "name.formatted": "Formatted"}

    def store(response):
        backend = response.identitystore_backend
        return backend._IdentityStoreBackend__get_identity_store(response._get_param("IdentityStoreId"))

    def email(value):
        pick = lambda *keys: next((value[k] for k in keys if k in value), None)
        return {"Value": pick("value", "Value"), "Type": pick("type", "Type"),
                "Primary": bool(pick("primary", "Primary"))}

    def update_user(self):
        users = store(self).users
        user_id = self._get_param("UserId")
        if user_id not in users:
            from moto.identitystore.exceptions import ResourceNotFoundException
            raise ResourceNotFoundException(message="USER not found.", resource_type="USER")
        user = users[user_id]
        for operation in self._get_param("Operations") or []:
            path, value = operation["AttributePath"], operation.get("AttributeValue")
            if path in user_fields:
                user = user._replace(**{user_fields[path]: value})
            elif path in name_fields:
                from moto.identitystore.models import Name
                current = user.Name or Name(None, None, None, None, None, None)
                user = user._replace(Name=current._replace(**{name_fields[path]: value}))
            elif path == "emails":
                user = user._replace(Emails=[email(v) for v in (value or [])])
            else:
                raise ValidationException(message=f"Invalid attribute path {path}")
        users[user_id] = user
        return "{}"

    def update_group(self):
        identity_store = store(self)
        group_id = self._get_param("GroupId")
        if group_id not in identity_store.groups:
            from moto.identitystore.exceptions import ResourceNotFoundException
            raise ResourceNotFoundException(message="GROUP not found.", resource_type="GROUP")
        group = identity_store.groups[group_id]
        for operation in self._get_param("Operations") or []:
            path, value = operation["AttributePath"], operation.get("AttributeValue")
            if path == "displayName":
                if any(g.DisplayName == value and i != group_id for i, g in identity_store.groups.items()):
                    raise ConflictException(message="Duplicate GroupDisplayName", reason="UNIQUENESS_CONSTRAINT_VIOLATION")
                group = group._replace(DisplayName=value)
            elif path == "description":
                group = group._replace(Description=value)
            else:
                raise ValidationException(message=f"Invalid attribute path {path}")
        identity_store.groups[group_id] = group
        return "{}"

    IdentityStoreResponse.update_user = update_user
    IdentityStoreResponse.update_group = update_group

    def boundary(self):
        arn = getattr(self, "permissions_boundary_arn", None)
        if arn:
            return {"PermissionsBoundaryType": "PermissionsBoundaryPolicy", "PermissionsBoundaryArn": arn}
        return None

    User.permissions_boundary = property(boundary)

    original_create_user = IamResponse.create_user

    def create_user(self):
        result = original_create_user(self)
        arn = self._get_param("PermissionsBoundary")
        if arn:
            self.backend.get_user(self._get_param("UserName")).permissions_boundary_arn = arn
        return result

    def put_user_permissions_boundary(self):
        user = self.backend.get_user(self._get_param("UserName"))
        user.permissions_boundary_arn = self._get_param("PermissionsBoundary")
        return EmptyResult()

    def delete_user_permissions_boundary(self):
        user = self.backend.get_user(self._get_param("UserName"))
        user.permissions_boundary_arn = None
        return EmptyResult()

    IamResponse.create_user = create_user
    IamResponse.put_user_permissions_boundary = put_user_permissions_boundary
    IamResponse.delete_user_permissions_boundary = delete_user_permissions_boundary

    original_update_user = IAMBackend.update_user

    def update_user(self, user_name, new_path=None, new_user_name=None):
        # moto keeps tags by ARN, and a new path is a new ARN: the tags stay with the user.
        user = self.get_user(user_name)
        old_arn = user.arn
        tags = self.tagger.list_tags_for_resource(old_arn)["Tags"]
        result = original_update_user(self, user_name, new_path, new_user_name)
        new_arn = self.get_user(new_user_name or user_name).arn
        if new_arn != old_arn:
            self.tagger.delete_all_tags_for_resource(old_arn)
            self.tagger.tag_resource(new_arn, tags)
        return result

    IAMBackend.update_user = update_user

    original_delete_user = IAMBackend.delete_user

    def delete_user(self, user_name):
        user = self.get_user(user_name)
        if self.get_groups_for_user(user_name):
            raise DeleteConflictException("Cannot delete entity, must remove users from group first.")
        if user.access_keys:
            raise DeleteConflictException("Cannot delete entity, must delete access keys first.")
        if user.password is not None:
            raise DeleteConflictException("Cannot delete entity, must delete login profile first.")
        if user.mfa_devices:
            raise DeleteConflictException("Cannot delete entity, must delete MFA device first.")
        return original_delete_user(self, user_name)

    IAMBackend.delete_user = delete_user


# The fault middleware, once started: the patches read the boundaries it keeps.
FAULTS = None

PATCHES = [
    patch_session_duration,
    patch_permission_set_arns,
    patch_provisioning_status,
    patch_iam_paging,
    patch_duplicates,
    patch_provisioning,
    patch_unknown_resources,
    patch_permission_set_admin,
    patch_identities,
]


class Faults:
    """The fault middleware: counts AWS requests by operation and injects what it is told."""

    def __init__(self, app):
        import collections

        self.app = app
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.calls = collections.Counter()
        self.settings = {}
        self.seen = 0
        # request id -> remaining IN_PROGRESS polls, or a failure reason
        self.pending = {}
        # CloudTrail events LookupEvents answers from, newest first
        self.trail = []
        # permission set ARN -> its permissions boundary
        self.boundaries = {}

    @staticmethod
    def operation(environ, body):
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            return target.rsplit(".", 1)[-1], "json"
        from urllib.parse import parse_qs

        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [None])[0]
        if action is None:
            action = parse_qs(environ.get("QUERY_STRING", "")).get("Action", [None])[0]
        return action, "query"

    def control(self, environ, start_response, body):
        import json

        path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
        with self.lock:
            if path == "/_launcher/faults" and method == "POST":
                self.settings = json.loads(body or b"{}")
                self.seen = 0
                self.changed.notify_all()
                answer = self.settings
            elif path == "/_launcher/calls" and method == "GET":
                answer = dict(self.calls)
            elif path == "/_launcher/calls/reset" and method == "POST":
                self.calls.clear()
                answer = {}
            elif path == "/_launcher/cloudtrail/events" and method == "POST":
                self.trail = sorted((trail_event(e) for e in json.loads(body or b"[]")),
                                    key=lambda e: e["EventTime"], reverse=True)
                answer = {"events": len(self.trail)}
            else:
                start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", "2")])
                return [b"{}"]
        payload = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]

    @staticmethod
    def error(start_response, protocol, status, code, message):
        import json

        request_id = str(uuid.uuid4())
        if protocol == "json":
            body = json.dumps({"__type": code, "message": message}).encode()
            headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code),
                       ("x-amzn-RequestId", request_id)]
        else:
            body = (f'<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>'
                    f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>").encode()
            headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
        start_response(status, headers + [("Content-Length", str(len(body)))])
        return [body]

    @staticmethod
    def from_accounts(environ, accounts):
        """Whether the request was signed in one of `accounts` (any, when there are none): by
        the access key in its signature, as moto tells the account of a request."""
        if not accounts:
            return True
        import re

        from moto.iam.models import get_account_id_from

        found = re.search(r"Credential=([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
        return bool(found) and get_account_id_from(found.group(1)) in accounts

    def __call__(self, environ, start_response):
        import io

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if environ["PATH_INFO"].startswith("/_launcher/"):
            return self.control(environ, start_response, body)
        operation, protocol = self.operation(environ, body)
        if operation is None or environ["PATH_INFO"].startswith("/moto-api"):
            if environ["PATH_INFO"] == "/moto-api/reset":
                # What the launcher keeps for moto goes with moto's state.
                with self.lock:
                    self.boundaries.clear()
            return self.app(environ, start_response)
        with self.lock:
            self.calls[operation] += 1
            self.seen += 1
            seen, settings = self.seen, self.settings
            hang_after = settings.get("hang_after")
            held = operation in settings.get("hold_operations", []) and self.from_accounts(
                environ, settings.get("hold_accounts"))
            if held or (hang_after is not None and seen > hang_after):
                # Hold the request until the test changes the faults (or a minute passes).
                self.changed.wait_for(lambda: self.settings is not settings, timeout=60)
        slow = (settings.get("slow_operations") or {}).get(operation)
        if slow:
            time.sleep(float(slow))
        if operation in settings.get("deny_operations", []):
            code = "AccessDeniedException" if protocol == "json" else "AccessDenied"
            return self.error(start_response, protocol, "403 Forbidden", code,
                              f"User is not authorized to perform: {operation}")
        if operation == "AssumeRole" and (settings.get("deny_assume_role") or settings.get("require_external_id")
                                          or settings.get("assume_role_needs_role")):
            from urllib.parse import parse_qs

            params = parse_qs(body.decode())
            role = params.get("RoleArn", [""])[0]
            required = (settings.get("require_external_id") or {}).get(role)
            given = params.get("ExternalId", [None])[0]
            missing = settings.get("assume_role_needs_role") and not role_exists(role)
            if role in (settings.get("deny_assume_role") or []) or (required is not None and given != required) \
                    or missing:
                return self.error(start_response, protocol, "403 Forbidden", "AccessDenied",
                                  f"User is not authorized to perform: sts:AssumeRole on resource: {role}")
        every = settings.get("throttle_every") or 0
        if every and seen % every == 0:
            code = "ThrottlingException" if protocol == "json" else "Throttling"
            return self.error(start_response, protocol, "400 Bad Request", code, "Rate exceeded")
        every = settings.get("error_every") or 0
        if every and seen % every == 0:
            code = "InternalServerException" if protocol == "json" else "ServiceUnavailable"
            return self.error(start_response, protocol, "500 Internal Server Error", code, "injected failure")
        if operation == "CreateAccountAssignment" and settings.get("fail_assignments"):
            return self.failed_creation(start_response, body, settings["fail_assignments"])
        if operation in self.ASSIGNMENT_STATUS and (settings.get("in_progress_polls") or self.pending):
            return self.assignment_status(environ, start_response, operation, settings)
        if operation == "LookupEvents" and protocol == "json":
            return self.lookup_events(start_response, body)
        if operation in self.BOUNDARY_OPERATIONS and protocol == "json":
            return self.permissions_boundary(start_response, operation, body)
        return self.app(environ, start_response)

    BOUNDARY_OPERATIONS = {"PutPermissionsBoundaryToPermissionSet", "GetPermissionsBoundaryForPermissionSet",
                           "DeletePermissionsBoundaryFromPermissionSet"}

    def permissions_boundary(self, start_response, operation, body):
        """A permission set's permissions boundary, kept by the launcher (moto has none). Get of a
        set without one answers ResourceNotFoundException, as AWS does."""
        import json

        request = json.loads(body or b"{}")
        arn = request.get("PermissionSetArn", "")
        with self.lock:
            if operation == "PutPermissionsBoundaryToPermissionSet":
                self.boundaries[arn] = request.get("PermissionsBoundary", {})
                return self.json_response(start_response, "200 OK", {})
            if operation == "DeletePermissionsBoundaryFromPermissionSet":
                self.boundaries.pop(arn, None)
                return self.json_response(start_response, "200 OK", {})
            boundary = self.boundaries.get(arn)
        if boundary is None:
            return self.error(start_response, "json", "400 Bad Request", "ResourceNotFoundException",
                              f"Could not find PermissionsBoundary for PermissionSet {arn}")
        return self.json_response(start_response, "200 OK", {"PermissionsBoundary": boundary})

    LOOKUP_KEYS = {"EventId", "EventName", "ReadOnly", "Username", "ResourceType", "ResourceName",
                   "EventSource", "AccessKeyId"}

    def lookup_events(self, start_response, body):
        """CloudTrail LookupEvents over the seeded events, paged as AWS pages it."""
        import base64
        import hashlib
        import json

        def refuse(code, message):
            return self.error(start_response, "json", "400 Bad Request", code, message)

        request = json.loads(body or b"{}")
        attributes = request.get("LookupAttributes") or []
        if len(attributes) > 1:
            return refuse("InvalidLookupAttributesException",
                          "You cannot specify more than one lookup attribute.")
        for attribute in attributes:
            if attribute.get("AttributeKey") not in self.LOOKUP_KEYS:
                return refuse("InvalidLookupAttributesException",
                              f"Invalid attribute key: {attribute.get('AttributeKey')}")
        size = request.get("MaxResults", 50)
        if not isinstance(size, int) or not 1 <= size <= 50:
            return refuse("InvalidMaxResultsException", "MaxResults must be between 1 and 50.")
        start, end = request.get("StartTime"), request.get("EndTime")
        if start is not None and end is not None and start > end:
            return refuse("InvalidTimeRangeException", "StartTime must be before EndTime.")
        query = {k: request.get(k) for k in ("LookupAttributes", "StartTime", "EndTime", "MaxResults")}
        fingerprint = hashlib.sha256(json.dumps(query, sort_keys=True).encode()).hexdigest()[:16]
        offset = 0
        if request.get("NextToken"):
            try:
                token = json.loads(base64.b64decode(request["NextToken"]))
                offset = int(token["offset"])
                if token["query"] != fingerprint:
                    raise ValueError("another query")
            except Exception:
                return refuse("InvalidNextTokenException", "Invalid NextToken.")

        def matches(event):
            if start is not None and event["EventTime"] < start:
                return False
            if end is not None and event["EventTime"] > end:
                return False
            for attribute in attributes:
                key, value = attribute["AttributeKey"], attribute.get("AttributeValue")
                if key in ("ResourceType", "ResourceName"):
                    if not any(r.get(key) == value for r in event.get("Resources", [])):
                        return False
                elif key == "ReadOnly":
                    if event.get("ReadOnly") != value:
                        return False
                elif event.get(key) != value:
                    return False
            return True

        with self.lock:
            found = [e for e in self.trail if matches(e)]
        page = found[offset:offset + size]
        answer = {"Events": page}
        if offset + size < len(found):
            answer["NextToken"] = base64.b64encode(json.dumps(
                {"offset": offset + size, "query": fingerprint}).encode()).decode()
        return self.json_response(start_response, "200 OK", answer)

    ASSIGNMENT_STATUS = {
        "CreateAccountAssignment": "AccountAssignmentCreationStatus",
        "DeleteAccountAssignment": "AccountAssignmentDeletionStatus",
        "DescribeAccountAssignmentCreationStatus": "AccountAssignmentCreationStatus",
        "DescribeAccountAssignmentDeletionStatus": "AccountAssignmentDeletionStatus",
    }

    def json_response(self, start_response, status, payload):
        import json

        data = json.dumps(payload).encode()
        start_response(status, [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))])
        return [data]

    def failed_creation(self, start_response, body, reason):
        import json

        request = json.loads(body or b"{}")
        request_id = str(uuid.uuid4())
        status = {"Status": "FAILED", "RequestId": request_id, "FailureReason": reason,
                  "TargetId": request.get("TargetId"), "TargetType": "AWS_ACCOUNT",
                  "PermissionSetArn": request.get("PermissionSetArn"),
                  "PrincipalType": request.get("PrincipalType"), "PrincipalId": request.get("PrincipalId")}
        with self.lock:
            self.pending[request_id] = reason
        return self.json_response(start_response, "200 OK", {"AccountAssignmentCreationStatus": status})

    def assignment_status(self, environ, start_response, operation, settings):
        """Rewrites the status of assignment operations: IN_PROGRESS for a number of polls."""
        import json

        key = self.ASSIGNMENT_STATUS[operation]
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda _: None

        if operation.startswith("Describe"):
            request_id = json.loads(environ["wsgi.input"].getvalue() or b"{}").get(
                "AccountAssignmentCreationRequestId" if "Creation" in operation else "AccountAssignmentDeletionRequestId")
            with self.lock:
                state = self.pending.get(request_id)
            if isinstance(state, str):
                return self.json_response(start_response, "200 OK",
                                          {key: {"Status": "FAILED", "RequestId": request_id, "FailureReason": state}})
        chunks = self.app(environ, capture)
        data = b"".join(chunks)
        if not captured.get("status", "").startswith("200"):
            start_response(captured["status"], captured["headers"])
            return [data]
        payload = json.loads(data or b"{}")
        status = payload.get(key, {})
        request_id = status.get("RequestId")
        with self.lock:
            if operation.startswith("Describe"):
                remaining = self.pending.get(request_id, 0)
                if isinstance(remaining, int) and remaining > 0:
                    self.pending[request_id] = remaining - 1
                    status["Status"] = "IN_PROGRESS"
            else:
                polls = settings.get("in_progress_polls") or 0
                if polls:
                    self.pending[request_id] = polls
                    status["Status"] = "IN_PROGRESS"
        payload[key] = status
        return self.json_response(start_response, "200 OK", payload)


def role_exists(arn):
    """Whether the role `arn` names exists in its account (AWS refuses AssumeRole of one that
    does not, as AccessDenied; moto assumes any)."""
    from moto.iam.models import iam_backends

    parts = arn.split(":")
    if len(parts) < 6 or not parts[5].startswith("role/"):
        return False
    account, name = parts[4], parts[5].rsplit("/", 1)[-1]
    return any(role.name == name for role in iam_backends[account]["global"].roles.values())


def trail_event(seeded):
    """A seeded event in LookupEvents' shape (EventTime in epoch seconds, as the JSON protocol
    carries timestamps)."""
    import datetime
    import json

    when = datetime.datetime.fromisoformat(seeded["eventTime"].replace("Z", "+00:00")).timestamp()
    event = {
        "EventId": seeded.get("eventId") or str(uuid.uuid4()),
        "EventName": seeded["eventName"],
        "EventSource": seeded["eventSource"],
        "EventTime": when,
        "ReadOnly": str(seeded.get("readOnly", "false")).lower(),
        "Resources": [{"ResourceType": r.get("type"), "ResourceName": r.get("name")}
                      for r in seeded.get("resources", [])],
        "CloudTrailEvent": seeded.get("cloudTrailEvent") or json.dumps(
            {"eventName": seeded["eventName"], "eventSource": seeded["eventSource"],
             "eventTime": seeded["eventTime"]}),
    }
    for key, name in (("username", "Username"), ("accessKeyId", "AccessKeyId")):
        if seeded.get(key):
            event[name] = seeded[key]
    return event


def apply_patches():
    for patch in PATCHES:
        patch()


def exit_with_parent():
    """Asks Linux to stop this server (SIGTERM) when the process that started it ends, however
    it ends: a test binary killed with SIGKILL leaves no emulator behind. The signal follows the
    starting thread, which in the tests is the test's own, and it ends the server only after
    the test is done with it."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        # The parent ended before the signal was armed.
        os.kill(os.getpid(), signal.SIGTERM)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log-requests", action="store_true", help="log every request to stderr")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the emulator binds to loopback only")

    if not args.log_requests:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
    apply_patches()
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    global FAULTS
    app = FAULTS = Faults(DomainDispatcherApplication(create_backend_app))
    server = make_server(args.host, args.port, app, threaded=True)
    print(f"PORT {server.server_port}", flush=True)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    exit_with_parent()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
