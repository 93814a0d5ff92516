"""The demo's view of AWS, straight from the emulator (AWS_ENDPOINT_URL), never through the
operator:

  demo_aws.py setup ORGANIZATION.json   sign-ins in CloudTrail, the connector's role, and a
                                        summary of the seeded organization
  demo_aws.py show                      the access the demo's grants ask for, as AWS holds it
  demo_aws.py set NAME                  what the permission set NAME carries, as AWS holds it
  demo_aws.py tamper NAME               attach AdministratorAccess to NAME, as in the console
  demo_aws.py people USER GROUP         the declared user and group, the user's membership and
                                        the group's assignments, as AWS holds them
"""

import datetime
import json
import os
import sys
import urllib.request

import boto3

ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
ACCOUNT = "123456789012"


def client(service):
    return boto3.client(service, endpoint_url=ENDPOINT, region_name="us-east-1",
                        aws_access_key_id="demo", aws_secret_access_key="demo")


def post(path, body):
    request = urllib.request.Request(ENDPOINT + path, data=json.dumps(body).encode(), method="POST")
    urllib.request.urlopen(request).read()


def setup(path):
    with open(path) as f:
        org = json.load(f)
    print(f"{len(org['accounts'])} accounts in {len(org['organizationalUnits'])} organizational units, "
          f"{len(org['iamUsers'])} IAM users, {len(org['iamGroups'])} IAM groups, "
          f"{len(org['iamRoles'])} IAM roles, {len(org['ssoUsers'])} SSO users, "
          f"{len(org['ssoGroups'])} SSO groups, {len(org['permissionSets'])} permission sets, "
          f"{len(org['assignments'])} assignments")
    # Sign-ins in CloudTrail for the first few users.
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    events = [{"eventName": "Authenticate", "eventSource": "sso.amazonaws.com", "username": u["userName"],
               "eventTime": (now - datetime.timedelta(hours=3 * i + 1)).isoformat().replace("+00:00", "Z")}
              for i, u in enumerate(org["ssoUsers"][:6])]
    post("/_launcher/cloudtrail/events", events)
    # The connector's role (examples/demo/connector.yaml): AssumeRole of a missing role is
    # refused, as in AWS.
    client("iam").create_role(RoleName="aws-access-operator", AssumeRolePolicyDocument="{}")
    post("/_launcher/faults", {"assume_role_needs_role": True})
    members = org["memberAccounts"].values()
    print(f"{len(events)} sign-ins in CloudTrail; member accounts: "
          f"{sum(1 for m in members if m['role'])} with OrganizationAccountAccessRole, "
          f"{sum(1 for m in members if not m['role'])} without")


def show():
    sso = client("sso-admin")
    store = client("identitystore")
    iam = client("iam")
    instance = sso.list_instances()["Instances"][0]
    store_id, instance_arn = instance["IdentityStoreId"], instance["InstanceArn"]

    def user_id(name):
        users = store.list_users(IdentityStoreId=store_id)["Users"]
        return next(u["UserId"] for u in users if u["UserName"] == name)

    def group_id(name):
        groups = store.list_groups(IdentityStoreId=store_id)["Groups"]
        return next(g["GroupId"] for g in groups if g["DisplayName"] == name)

    sets = {}
    for arn in sso.list_permission_sets(InstanceArn=instance_arn)["PermissionSets"]:
        name = sso.describe_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn)["PermissionSet"]["Name"]
        sets[name] = arn

    def assigned(kind, principal, permission_set):
        found = sso.list_account_assignments(InstanceArn=instance_arn, AccountId=ACCOUNT,
                                             PermissionSetArn=sets[permission_set])["AccountAssignments"]
        return any(a["PrincipalType"] == kind and a["PrincipalId"] == principal for a in found)

    def sso_member(user, group):
        members = store.list_group_memberships(IdentityStoreId=store_id, GroupId=group_id(group))
        return any(m["MemberId"].get("UserId") == user_id(user) for m in members["GroupMemberships"])

    def iam_member(user, group):
        return any(u["UserName"] == user for u in iam.get_group(GroupName=group)["Users"])

    rows = [
        (f"user-03@example.com has PermissionSet01 on {ACCOUNT}",
         assigned("USER", user_id("user-03@example.com"), "PermissionSet01")),
        (f"group-01 has PermissionSet02 on {ACCOUNT}",
         assigned("GROUP", group_id("group-01"), "PermissionSet02")),
        ("user-07@example.com is in the Identity Center group group-02",
         sso_member("user-07@example.com", "group-02")),
        ("iam-user-01 is in the IAM group iam-group-03", iam_member("iam-user-01", "iam-group-03")),
        ("user-00@example.com is in the Identity Center group group-00",
         sso_member("user-00@example.com", "group-00")),
        (f"user-05@example.com has PermissionSet03 on {ACCOUNT} (the AccessRequest)",
         assigned("USER", user_id("user-05@example.com"), "PermissionSet03")),
        (f"user-06@example.com has OnCallReader on {ACCOUNT} (the declared permission set)",
         "OnCallReader" in sets and assigned("USER", user_id("user-06@example.com"), "OnCallReader")),
    ]
    for text, held in rows:
        print(f"{'yes' if held else 'no ':<4} {text}")


def permission_set(name):
    """The instance and the ARN of the permission set `name`."""
    sso = client("sso-admin")
    instance_arn = sso.list_instances()["Instances"][0]["InstanceArn"]
    for arn in sso.list_permission_sets(InstanceArn=instance_arn)["PermissionSets"]:
        if sso.describe_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn)["PermissionSet"]["Name"] == name:
            return sso, instance_arn, arn
    sys.exit(f"no permission set {name}")


def describe_set(name):
    sso, instance_arn, arn = permission_set(name)
    described = sso.describe_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn)["PermissionSet"]
    managed = sso.list_managed_policies_in_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn)
    inline = sso.get_inline_policy_for_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn)
    tags = sso.list_tags_for_resource(InstanceArn=instance_arn, ResourceArn=arn)["Tags"]
    print(f"{name}: sessions {described['SessionDuration']}, {described.get('Description', '')!r}")
    print("  managed policies: " + ", ".join(p["Name"] for p in managed["AttachedManagedPolicies"]))
    print(f"  inline policy: {inline.get('InlinePolicy') or 'none'}")
    print("  tags: " + ", ".join(f"{t['Key']}={t['Value']}" for t in tags))


def tamper(name):
    sso, instance_arn, arn = permission_set(name)
    sso.attach_managed_policy_to_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn,
                                                ManagedPolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    print(f"attached AdministratorAccess to {name}")


def people(user_name, group_name):
    sso = client("sso-admin")
    store = client("identitystore")
    instance = sso.list_instances()["Instances"][0]
    store_id, instance_arn = instance["IdentityStoreId"], instance["InstanceArn"]
    user = next((u for u in store.list_users(IdentityStoreId=store_id)["Users"]
                 if u["UserName"] == user_name), None)
    group = next((g for g in store.list_groups(IdentityStoreId=store_id)["Groups"]
                  if g["DisplayName"] == group_name), None)
    if user is None or group is None:
        print(f"{user_name}: {'found' if user else 'missing'}; {group_name}: {'found' if group else 'missing'}")
        return
    described = store.describe_user(IdentityStoreId=store_id, UserId=user["UserId"])
    print(f"user {user_name}: {described.get('DisplayName')!r}, {described.get('Title')!r} ({user['UserId']})")
    print(f"group {group_name}: {group.get('Description')!r} ({group['GroupId']})")
    members = store.list_group_memberships(IdentityStoreId=store_id, GroupId=group["GroupId"])["GroupMemberships"]
    held = any(m["MemberId"].get("UserId") == user["UserId"] for m in members)
    print(f"{'yes' if held else 'no ':<4} {user_name} is in {group_name}")
    for arn in sso.list_permission_sets(InstanceArn=instance_arn)["PermissionSets"]:
        name = sso.describe_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn)["PermissionSet"]["Name"]
        found = sso.list_account_assignments(InstanceArn=instance_arn, AccountId=ACCOUNT,
                                             PermissionSetArn=arn)["AccountAssignments"]
        if any(a["PrincipalId"] == group["GroupId"] for a in found):
            print(f"yes  {group_name} has {name} on {ACCOUNT}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["setup"] and len(sys.argv) == 3:
        setup(sys.argv[2])
    elif sys.argv[1:2] == ["set"] and len(sys.argv) == 3:
        describe_set(sys.argv[2])
    elif sys.argv[1:2] == ["tamper"] and len(sys.argv) == 3:
        tamper(sys.argv[2])
    elif sys.argv[1:2] == ["people"] and len(sys.argv) == 4:
        people(sys.argv[2], sys.argv[3])
    elif sys.argv[1:] == ["show"]:
        show()
    else:
        sys.exit(__doc__)
