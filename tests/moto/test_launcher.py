"""Pins each run-time patch of tests/support/moto_server.py against the server it starts."""

import os
import subprocess
import sys
import unittest

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

LAUNCHER = os.path.join(os.path.dirname(__file__), "..", "support", "moto_server.py")


class ServerTest(unittest.TestCase):
    """Starts one launcher for the test class; each test starts from an empty moto."""

    @classmethod
    def setUpClass(cls):
        cls.server = subprocess.Popen(
            [sys.executable, LAUNCHER], stdout=subprocess.PIPE, text=True
        )
        line = cls.server.stdout.readline().split()
        assert line and line[0] == "PORT", f"unexpected first line {line!r}"
        cls.endpoint = f"http://127.0.0.1:{line[1]}"

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait(timeout=10)

    def client(self, service):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}),
        )

    def setUp(self):
        # Each test starts from an empty moto.
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"))

    def control(self, method, path, body=None):
        """A call to the launcher's own endpoints (`/_launcher/...`)."""
        import json
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.endpoint}{path}", data=data, method=method)
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read() or b"{}")

    def instance(self):
        sso = self.client("sso-admin")
        instance = sso.list_instances()["Instances"][0]
        return sso, instance["InstanceArn"], instance["IdentityStoreId"]


class LauncherTest(ServerTest):
    def test_session_duration_is_iso8601(self):
        sso, arn, _ = self.instance()
        created = sso.create_permission_set(Name="ReadOnly", InstanceArn=arn)["PermissionSet"]
        self.assertEqual(created["SessionDuration"], "PT1H")
        instance_id = arn.rsplit("/", 1)[-1]
        self.assertRegex(created["PermissionSetArn"], rf"^arn:aws:sso:::permissionSet/{instance_id}/ps-[a-z0-9]{{16}}$")
        given = sso.create_permission_set(Name="Admin", InstanceArn=arn, SessionDuration="PT4H")["PermissionSet"]
        self.assertEqual(given["SessionDuration"], "PT4H")
        described = sso.describe_permission_set(InstanceArn=arn, PermissionSetArn=created["PermissionSetArn"])
        self.assertEqual(described["PermissionSet"]["SessionDuration"], "PT1H")

    def test_provisioning_status_is_describable(self):
        sso, arn, _ = self.instance()
        ps = sso.create_permission_set(Name="ReadOnly", InstanceArn=arn)["PermissionSet"]["PermissionSetArn"]
        started = sso.provision_permission_set(InstanceArn=arn, PermissionSetArn=ps, TargetType="ALL_PROVISIONED_ACCOUNTS")
        request_id = started["PermissionSetProvisioningStatus"]["RequestId"]
        status = sso.describe_permission_set_provisioning_status(InstanceArn=arn, ProvisionPermissionSetRequestId=request_id)
        self.assertEqual(status["PermissionSetProvisioningStatus"]["Status"], "SUCCEEDED")
        with self.assertRaises(ClientError) as missing:
            sso.describe_permission_set_provisioning_status(InstanceArn=arn, ProvisionPermissionSetRequestId="00000000-0000-4000-8000-000000000000")
        self.assertEqual(missing.exception.response["Error"]["Code"], "ResourceNotFoundException")

    def test_iam_lists_honour_max_items(self):
        iam = self.client("iam")
        for i in range(5):
            iam.create_user(UserName=f"user-{i}")
        iam.create_group(GroupName="g1")
        iam.create_group(GroupName="g2")
        iam.create_group(GroupName="g3")
        for i in range(5):
            iam.add_user_to_group(GroupName="g1", UserName=f"user-{i}")
        for g in ("g1", "g2", "g3"):
            iam.add_user_to_group(GroupName=g, UserName="user-0")

        first = iam.list_users(MaxItems=2)
        self.assertEqual(len(first["Users"]), 2)
        self.assertTrue(first["IsTruncated"])
        calls = {
            "list_users": ({}, "Users", 5),
            "list_groups": ({}, "Groups", 3),
            "get_group": ({"GroupName": "g1"}, "Users", 5),
            "list_groups_for_user": ({"UserName": "user-0"}, "Groups", 3),
        }
        for operation, (params, key, total) in calls.items():
            pages = list(iam.get_paginator(operation).paginate(PaginationConfig={"PageSize": 2}, **params))
            self.assertEqual(len(pages), (total + 1) // 2, operation)
            self.assertEqual(sum(len(p[key]) for p in pages), total, operation)

        pages = list(iam.get_paginator("get_account_authorization_details").paginate(
            Filter=["User", "Group"], PaginationConfig={"PageSize": 3}))
        users = sum(len(p["UserDetailList"]) for p in pages)
        groups = sum(len(p["GroupDetailList"]) for p in pages)
        self.assertEqual((users, groups), (5, 3))
        self.assertGreater(len(pages), 1)

    def test_duplicates_are_refused_or_absorbed(self):
        sso, arn, store = self.instance()
        ids = self.client("identitystore")
        user = ids.create_user(IdentityStoreId=store, UserName="alice", DisplayName="Alice",
                               Name={"GivenName": "A", "FamilyName": "L"})["UserId"]
        group = ids.create_group(IdentityStoreId=store, DisplayName="engineers")["GroupId"]
        ids.create_group_membership(IdentityStoreId=store, GroupId=group, MemberId={"UserId": user})
        with self.assertRaises(ClientError) as dup:
            ids.create_group_membership(IdentityStoreId=store, GroupId=group, MemberId={"UserId": user})
        self.assertEqual(dup.exception.response["Error"]["Code"], "ConflictException")
        members = ids.list_group_memberships(IdentityStoreId=store, GroupId=group)["GroupMemberships"]
        self.assertEqual(len(members), 1)

        ps = sso.create_permission_set(Name="ReadOnly", InstanceArn=arn)["PermissionSet"]["PermissionSetArn"]
        request = dict(InstanceArn=arn, TargetId="111122223333", TargetType="AWS_ACCOUNT",
                       PermissionSetArn=ps, PrincipalType="USER", PrincipalId=user)
        first = sso.create_account_assignment(**request)["AccountAssignmentCreationStatus"]
        second = sso.create_account_assignment(**request)["AccountAssignmentCreationStatus"]
        self.assertEqual(second["Status"], "SUCCEEDED")
        self.assertNotEqual(first["RequestId"], second["RequestId"])
        described = sso.describe_account_assignment_creation_status(
            InstanceArn=arn, AccountAssignmentCreationRequestId=second["RequestId"])
        self.assertEqual(described["AccountAssignmentCreationStatus"]["Status"], "SUCCEEDED")
        listed = sso.list_account_assignments(InstanceArn=arn, AccountId="111122223333", PermissionSetArn=ps)
        self.assertEqual(len(listed["AccountAssignments"]), 1)

    def test_lists_about_deleted_things_answer_not_found(self):
        sso, arn, store = self.instance()
        ids = self.client("identitystore")
        group = ids.create_group(IdentityStoreId=store, DisplayName="engineers")["GroupId"]
        self.assertEqual(ids.list_group_memberships(IdentityStoreId=store, GroupId=group)["GroupMemberships"], [])
        ps = sso.create_permission_set(Name="ReadOnly", InstanceArn=arn)["PermissionSet"]["PermissionSetArn"]
        self.assertEqual(sso.list_account_assignments(InstanceArn=arn, AccountId="111122223333",
                                                      PermissionSetArn=ps)["AccountAssignments"], [])
        self.assertEqual(sso.list_accounts_for_provisioned_permission_set(
            InstanceArn=arn, PermissionSetArn=ps)["AccountIds"], [])

        ids.delete_group(IdentityStoreId=store, GroupId=group)
        sso.delete_permission_set(InstanceArn=arn, PermissionSetArn=ps)
        calls = [
            lambda: ids.list_group_memberships(IdentityStoreId=store, GroupId=group),
            lambda: sso.list_account_assignments(InstanceArn=arn, AccountId="111122223333", PermissionSetArn=ps),
            lambda: sso.list_accounts_for_provisioned_permission_set(InstanceArn=arn, PermissionSetArn=ps),
        ]
        for call in calls:
            with self.assertRaises(ClientError) as missing:
                call()
            self.assertEqual(missing.exception.response["Error"]["Code"], "ResourceNotFoundException")

    def test_binds_loopback_only(self):
        refused = subprocess.run([sys.executable, LAUNCHER, "--host", "0.0.0.0"], capture_output=True, text=True)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("loopback", refused.stderr)


if __name__ == "__main__":
    unittest.main()


class PermissionsBoundaryAndRolesTest(ServerTest):
    def tearDown(self):
        self.control("POST", "/_launcher/faults", {})

    def test_permission_sets_are_tagged_unique_guarded_and_provisioned_only_where_policies_exist(self):
        sso, instance, store = self.instance()
        created = sso.create_permission_set(Name="Data", InstanceArn=instance,
                                            Tags=[{"Key": "team", "Value": "a"}])["PermissionSet"]
        arn = created["PermissionSetArn"]
        with self.assertRaises(ClientError) as duplicate:
            sso.create_permission_set(Name="Data", InstanceArn=instance)
        self.assertEqual(duplicate.exception.response["Error"]["Code"], "ConflictException")
        sso.tag_resource(InstanceArn=instance, ResourceArn=arn,
                         Tags=[{"Key": "team", "Value": "b"}, {"Key": "cost", "Value": "1"}])
        sso.untag_resource(InstanceArn=instance, ResourceArn=arn, TagKeys=["cost"])
        tags = sso.list_tags_for_resource(InstanceArn=instance, ResourceArn=arn)["Tags"]
        self.assertEqual(tags, [{"Key": "team", "Value": "b"}])
        # A customer managed policy that exists in one account and not the other.
        sso.attach_customer_managed_policy_reference_to_permission_set(
            InstanceArn=instance, PermissionSetArn=arn,
            CustomerManagedPolicyReference={"Name": "lake", "Path": "/data/"})
        iam = self.client("iam")
        iam.create_policy(PolicyName="lake", Path="/data/", PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}')
        here, there = "123456789012", "210987654321"
        ok = sso.provision_permission_set(InstanceArn=instance, PermissionSetArn=arn,
                                          TargetType="AWS_ACCOUNT", TargetId=here)
        self.assertEqual(ok["PermissionSetProvisioningStatus"]["Status"], "SUCCEEDED")
        failed = sso.provision_permission_set(InstanceArn=instance, PermissionSetArn=arn,
                                              TargetType="AWS_ACCOUNT", TargetId=there)
        request = failed["PermissionSetProvisioningStatus"]["RequestId"]
        status = sso.describe_permission_set_provisioning_status(
            InstanceArn=instance, ProvisionPermissionSetRequestId=request)["PermissionSetProvisioningStatus"]
        self.assertEqual(status["Status"], "FAILED")
        self.assertIn(f"arn:aws:iam::{there}:policy/data/lake", status["FailureReason"])
        accounts = sso.list_accounts_for_provisioned_permission_set(InstanceArn=instance, PermissionSetArn=arn)
        self.assertEqual(accounts["AccountIds"], [here])
        # Assigned: the set cannot be deleted until the assignment goes.
        ids = self.client("identitystore")
        user = ids.create_user(IdentityStoreId=store, UserName="a", DisplayName="A",
                               Name={"GivenName": "A", "FamilyName": "B"})["UserId"]
        sso.create_account_assignment(InstanceArn=instance, TargetId=here, TargetType="AWS_ACCOUNT",
                                      PermissionSetArn=arn, PrincipalType="USER", PrincipalId=user)
        with self.assertRaises(ClientError) as assigned:
            sso.delete_permission_set(InstanceArn=instance, PermissionSetArn=arn)
        self.assertEqual(assigned.exception.response["Error"]["Code"], "ConflictException")
        sso.delete_account_assignment(InstanceArn=instance, TargetId=here, TargetType="AWS_ACCOUNT",
                                      PermissionSetArn=arn, PrincipalType="USER", PrincipalId=user)
        sso.delete_permission_set(InstanceArn=instance, PermissionSetArn=arn)

    def test_permissions_boundaries_are_kept_and_missing_ones_not_found(self):
        sso, instance, _ = self.instance()
        arn = sso.create_permission_set(Name="Bounded", InstanceArn=instance)["PermissionSet"]["PermissionSetArn"]
        with self.assertRaises(ClientError) as refused:
            sso.get_permissions_boundary_for_permission_set(InstanceArn=instance, PermissionSetArn=arn)
        self.assertEqual(refused.exception.response["Error"]["Code"], "ResourceNotFoundException")
        boundary = {"CustomerManagedPolicyReference": {"Name": "limit", "Path": "/teams/"}}
        sso.put_permissions_boundary_to_permission_set(InstanceArn=instance, PermissionSetArn=arn,
                                                       PermissionsBoundary=boundary)
        got = sso.get_permissions_boundary_for_permission_set(InstanceArn=instance, PermissionSetArn=arn)
        self.assertEqual(got["PermissionsBoundary"], boundary)
        sso.delete_permissions_boundary_from_permission_set(InstanceArn=instance, PermissionSetArn=arn)
        with self.assertRaises(ClientError):
            sso.get_permissions_boundary_for_permission_set(InstanceArn=instance, PermissionSetArn=arn)

    def test_assuming_a_missing_role_is_denied_when_asked(self):
        iam, sts = self.client("iam"), self.client("sts")
        iam.create_role(RoleName="present", AssumeRolePolicyDocument="{}")
        present, missing = "arn:aws:iam::123456789012:role/present", "arn:aws:iam::123456789012:role/missing"
        # moto assumes any role by default.
        sts.assume_role(RoleArn=missing, RoleSessionName="seed")
        self.control("POST", "/_launcher/faults", {"assume_role_needs_role": True})
        sts.assume_role(RoleArn=present, RoleSessionName="seed")
        with self.assertRaises(ClientError) as refused:
            sts.assume_role(RoleArn=missing, RoleSessionName="seed")
        self.assertEqual(refused.exception.response["Error"]["Code"], "AccessDenied")
        self.assertIn(missing, refused.exception.response["Error"]["Message"])


class FaultsAndProvisioningTest(ServerTest):
    def tearDown(self):
        self.control("POST", "/_launcher/faults", {})

    def test_assignments_provision_and_page(self):
        sso, arn, store = self.instance()
        ids = self.client("identitystore")
        user = ids.create_user(IdentityStoreId=store, UserName="a", DisplayName="A",
                               Name={"GivenName": "A", "FamilyName": "B"})["UserId"]
        ps = sso.create_permission_set(Name="ReadOnly", InstanceArn=arn)["PermissionSet"]["PermissionSetArn"]
        accounts = [f"11112222{i:04d}" for i in range(5)]
        for account in accounts:
            sso.create_account_assignment(InstanceArn=arn, TargetId=account, TargetType="AWS_ACCOUNT",
                                          PermissionSetArn=ps, PrincipalType="USER", PrincipalId=user)
        pages = list(sso.get_paginator("list_accounts_for_provisioned_permission_set").paginate(
            InstanceArn=arn, PermissionSetArn=ps, PaginationConfig={"PageSize": 2}))
        self.assertEqual(len(pages), 3)
        self.assertEqual([a for p in pages for a in p["AccountIds"]], accounts)
        provisioned = sso.list_permission_sets_provisioned_to_account(InstanceArn=arn, AccountId=accounts[0])
        self.assertEqual(provisioned["PermissionSets"], [ps])
        none = sso.list_permission_sets_provisioned_to_account(InstanceArn=arn, AccountId="999999999999")
        self.assertEqual(none["PermissionSets"], [])

    def test_held_operations_wait_until_the_faults_change(self):
        import threading

        iam = self.client("iam")
        self.control("POST", "/_launcher/faults", {"hold_operations": ["ListRoles"]})
        iam.list_users()  # not held
        answered = threading.Event()
        caller = threading.Thread(target=lambda: (iam.list_roles(), answered.set()))
        caller.start()
        self.assertFalse(answered.wait(1.0), "a held operation answered before the faults changed")
        iam.create_role(RoleName="made-while-held", AssumeRolePolicyDocument="{}")
        self.control("POST", "/_launcher/faults", {})
        self.assertTrue(answered.wait(10), "the held request was not released")
        caller.join()

    def test_faults_throttle_count_and_deny(self):
        iam = self.client("iam")
        self.control("POST", "/_launcher/calls/reset")
        self.control("POST", "/_launcher/faults", {"throttle_every": 2})
        iam.list_users()
        with self.assertRaises(ClientError) as throttled:
            iam.list_users()
        self.assertEqual(throttled.exception.response["Error"]["Code"], "Throttling")
        sso = self.client("sso-admin")
        sso.list_instances()
        with self.assertRaises(ClientError) as json_throttled:
            sso.list_instances()
        self.assertEqual(json_throttled.exception.response["Error"]["Code"], "ThrottlingException")
        self.assertEqual(self.control("GET", "/_launcher/calls"), {"ListUsers": 2, "ListInstances": 2})

        self.control("POST", "/_launcher/faults", {"deny_operations": ["ListRoles"],
                                                   "deny_assume_role": ["arn:aws:iam::111122223333:role/x"]})
        with self.assertRaises(ClientError) as denied:
            iam.list_roles()
        self.assertEqual(denied.exception.response["Error"]["Code"], "AccessDenied")
        sts = self.client("sts")
        with self.assertRaises(ClientError) as refused:
            sts.assume_role(RoleArn="arn:aws:iam::111122223333:role/x", RoleSessionName="test")
        self.assertEqual(refused.exception.response["Error"]["Code"], "AccessDenied")
        sts.assume_role(RoleArn="arn:aws:iam::111122223333:role/y", RoleSessionName="test")

        self.control("POST", "/_launcher/faults",
                     {"require_external_id": {"arn:aws:iam::111122223333:role/z": "the-right-external-id"}})
        for wrong in ({}, {"ExternalId": "a-wrong-external-id"}):
            with self.assertRaises(ClientError) as refused:
                sts.assume_role(RoleArn="arn:aws:iam::111122223333:role/z", RoleSessionName="test", **wrong)
            self.assertEqual(refused.exception.response["Error"]["Code"], "AccessDenied")
        sts.assume_role(RoleArn="arn:aws:iam::111122223333:role/z", RoleSessionName="test",
                        ExternalId="the-right-external-id")


class CloudTrailTest(ServerTest):
    """LookupEvents, which moto lacks, answered from seeded events as AWS answers it."""

    def seed(self):
        import datetime

        start = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)
        events = []
        for i in range(120):
            name = ("Authenticate", "Federate", "ListUsers")[i % 3]
            source = "signin.amazonaws.com" if name == "ListUsers" else "sso.amazonaws.com"
            events.append({"eventId": f"e-{i:03d}", "eventName": name, "eventSource": source,
                           "eventTime": (start + datetime.timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
                           "username": f"user-{i % 7:02d}@example.com",
                           "resources": [{"type": "AWS::SSO::User", "name": f"user-{i % 7:02d}"}]})
        self.assertEqual(self.control("POST", "/_launcher/cloudtrail/events", events), {"events": 120})
        return start

    def test_pages_of_fifty_newest_first_for_one_query(self):
        import datetime

        start = self.seed()
        trail = self.client("cloudtrail")
        self.control("POST", "/_launcher/calls/reset")
        attribute = [{"AttributeKey": "EventSource", "AttributeValue": "sso.amazonaws.com"}]
        pages = list(trail.get_paginator("lookup_events").paginate(LookupAttributes=attribute))
        self.assertEqual([len(p["Events"]) for p in pages], [50, 30])
        events = [e for p in pages for e in p["Events"]]
        self.assertTrue(all(e["EventSource"] == "sso.amazonaws.com" for e in events))
        times = [e["EventTime"] for e in events]
        self.assertEqual(times, sorted(times, reverse=True), "newest first")
        self.assertEqual(events[0]["EventId"], "e-118", "the newest from sso.amazonaws.com")
        self.assertEqual(self.control("GET", "/_launcher/calls"), {"LookupEvents": 2})

        # Inclusive time range, and the other attributes.
        window = trail.lookup_events(StartTime=start + datetime.timedelta(minutes=10),
                                     EndTime=start + datetime.timedelta(minutes=19))
        self.assertEqual(len(window["Events"]), 10)
        self.assertNotIn("NextToken", window)
        by_name = trail.lookup_events(LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": "user-03"}],
                                      MaxResults=5)
        self.assertEqual(len(by_name["Events"]), 5)
        self.assertTrue(all(e["Username"] == "user-03@example.com" for e in by_name["Events"]))

    def test_what_aws_refuses_is_refused(self):
        self.seed()
        trail = self.client("cloudtrail")
        first = trail.lookup_events(MaxResults=10)
        self.assertIn("NextToken", first)
        cases = [
            ({"MaxResults": 51}, "InvalidMaxResultsException"),
            ({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "Federate"},
                                   {"AttributeKey": "Username", "AttributeValue": "x"}]},
             "InvalidLookupAttributesException"),
            # A token is good only for the query that gave it.
            ({"MaxResults": 20, "NextToken": first["NextToken"]}, "InvalidNextTokenException"),
            ({"NextToken": "not-a-token"}, "InvalidNextTokenException"),
        ]
        for request, code in cases:
            with self.assertRaises(ClientError) as refused:
                trail.lookup_events(**request)
            self.assertEqual(refused.exception.response["Error"]["Code"], code, request)
        second = trail.lookup_events(MaxResults=10, NextToken=first["NextToken"])
        self.assertEqual(len(second["Events"]), 10)
        self.assertNotEqual(second["Events"][0]["EventId"], first["Events"][0]["EventId"])
