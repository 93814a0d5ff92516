#!/usr/bin/env python3
"""Starts moto's server on a loopback port with the project's run-time patches.

moto stands in for AWS in the tests and the demo. Where it differs from AWS in a way the
operator depends on, this launcher patches it in memory (installed packages are never edited):

* sso-admin CreatePermissionSet/UpdatePermissionSet default SessionDuration to the number 3600;
  AWS returns an ISO 8601 duration ("PT1H"), and SDKs refuse a number.
* sso-admin lacks DescribePermissionSetProvisioningStatus.
* IAM ListUsers, ListGroups, GetGroup, ListGroupsForUser and GetAccountAuthorizationDetails
  ignore MaxItems/Marker and return everything in one page.
* identitystore CreateGroupMembership accepts a duplicate membership (AWS: ConflictException),
  and sso-admin CreateAccountAssignment stores a duplicate assignment (AWS: the existing
  assignment stands; the request succeeds without a second one).

Faults (throttling, 5xx, IN_PROGRESS statuses) are not injected here.

The first line on stdout is `PORT <n>`; the server stops on SIGTERM or SIGINT.
"""

import argparse
import signal
import sys
import threading
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


PATCHES = [patch_session_duration, patch_provisioning_status, patch_iam_paging, patch_duplicates]


def apply_patches():
    for patch in PATCHES:
        patch()


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

    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(args.host, args.port, app, threaded=True)
    print(f"PORT {server.server_port}", flush=True)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
