#!/usr/bin/env python3
"""Seeds an AWS emulator with a sample organization and prints what it created as JSON.

The organization is deterministic for given sizes: accounts `acct-NN` spread over
organizational units `ou-NN` (the first two under the root, each later one under the one two
before it, so the tree nests), IAM users `iam-user-NN`
in IAM groups, roles with trust policies, Identity Center users `user-NN@example.com` in groups,
permission sets, and account assignments to users and groups. Used by the tests and the demo.
"""

import argparse
import json
import sys

import boto3


# The credentials every client uses: moto's default account, or (--management-account) a role
# assumed in another account, where moto keeps an organization of its own.
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def client(service, endpoint, region):
    return boto3.client(service, endpoint_url=endpoint, region_name=region, **CREDENTIALS)


def act_in(account, endpoint, region):
    """Makes every later client act in `account` (moto answers in the account of the role
    assumed), so that the organization seeded there is an organization of its own."""
    creds = client("sts", endpoint, region).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{MEMBER_ROLE}", RoleSessionName="seed")["Credentials"]
    CREDENTIALS.update(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                       aws_session_token=creds["SessionToken"])


MEMBER_ROLE = "OrganizationAccountAccessRole"


def seed_members(endpoint, region, accounts, sizes):
    """In each created account, the role AWS Organizations creates there (but in the last
    `members_without_role`) and `member_iam_users` users, a group with the first of them and a
    role with a managed policy. Returns what each account has."""
    sts = client("sts", endpoint, region)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]})
    members = {}
    without = len(accounts) - sizes["members_without_role"]
    for i, account in enumerate(accounts):
        if sizes["member_iam_users"] == 0 and sizes["members_without_role"] == 0:
            break
        # moto answers in the account of the role assumed, whether or not the role exists yet.
        creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{MEMBER_ROLE}",
                                RoleSessionName="seed")["Credentials"]
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=region,
                           aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                           aws_session_token=creds["SessionToken"])
        made = {"role": i < without, "iamUsers": [], "iamGroups": [], "iamRoles": []}
        admin = iam.create_policy(PolicyName="admin", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))["Policy"]["Arn"]
        # AWS Organizations (and moto) create the role in every account they create.
        if i < without:
            made["iamRoles"].append(MEMBER_ROLE)
        else:
            for attached in iam.list_attached_role_policies(RoleName=MEMBER_ROLE)["AttachedPolicies"]:
                iam.detach_role_policy(RoleName=MEMBER_ROLE, PolicyArn=attached["PolicyArn"])
            for name in iam.list_role_policies(RoleName=MEMBER_ROLE)["PolicyNames"]:
                iam.delete_role_policy(RoleName=MEMBER_ROLE, PolicyName=name)
            iam.delete_role(RoleName=MEMBER_ROLE)
        for u in range(sizes["member_iam_users"]):
            name = f"member-{i:02d}-user-{u:02d}"
            iam.create_user(UserName=name)
            made["iamUsers"].append(name)
        if made["iamUsers"]:
            group = f"member-{i:02d}-admins"
            iam.create_group(GroupName=group)
            iam.add_user_to_group(GroupName=group, UserName=made["iamUsers"][0])
            iam.attach_group_policy(GroupName=group, PolicyArn=admin)
            made["iamGroups"].append(group)
            role = f"member-{i:02d}-deploy"
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
            iam.put_role_policy(RoleName=role, PolicyName="deploy", PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
            made["iamRoles"].append(role)
        members[account] = made
    return members


def seed(endpoint, region, sizes):
    org = client("organizations", endpoint, region)
    iam = client("iam", endpoint, region)
    sso = client("sso-admin", endpoint, region)
    ids = client("identitystore", endpoint, region)

    org.create_organization(FeatureSet="ALL")
    accounts = []
    for i in range(sizes["accounts"]):
        status = org.create_account(Email=f"acct-{i:02d}@example.com", AccountName=f"acct-{i:02d}")
        accounts.append(status["CreateAccountStatus"]["AccountId"])
    all_accounts = [a["Id"] for a in org.list_accounts()["Accounts"]]
    root = org.list_roots()["Roots"][0]["Id"]
    units = []
    for i in range(sizes["ous"]):
        parent = root if i < 2 else units[i - 2]["id"]
        unit = org.create_organizational_unit(ParentId=parent, Name=f"ou-{i:02d}")["OrganizationalUnit"]
        units.append({"id": unit["Id"], "name": f"ou-{i:02d}", "parentId": parent})
    parents = {account: root for account in all_accounts}
    for i, account in enumerate(accounts):
        slot = i % (len(units) + 1)
        if slot:
            org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=units[slot - 1]["id"])
            parents[account] = units[slot - 1]["id"]

    iam_groups = [f"iam-group-{i:02d}" for i in range(sizes["iam_groups"])]
    for name in iam_groups:
        iam.create_group(GroupName=name)
    iam_users = []
    for i in range(sizes["iam_users"]):
        name = f"iam-user-{i:02d}"
        iam.create_user(UserName=name)
        iam_users.append(name)
        for g in range(i % (len(iam_groups) + 1)):
            iam.add_user_to_group(GroupName=iam_groups[g], UserName=name)
    access_keys = {}
    for name in iam_users[: sizes["access_keys"]]:
        key = iam.create_access_key(UserName=name)["AccessKey"]
        access_keys[name] = [key["AccessKeyId"]]
    roles = []
    for i in range(sizes["iam_roles"]):
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{all_accounts[i % len(all_accounts)]}:root"},
             "Action": "sts:AssumeRole"},
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        name = f"role-{i:02d}"
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        roles.append(name)
    # Policies on the first of each (seen only by a sync with `sync.policies`).
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]})
    read_only = iam.create_policy(PolicyName="read-only", PolicyDocument=policy)["Policy"]["Arn"]
    if iam_groups:
        iam.attach_group_policy(GroupName=iam_groups[0], PolicyArn=read_only)
    if iam_users:
        iam.put_user_policy(UserName=iam_users[0], PolicyName="list-buckets", PolicyDocument=policy)
    if roles:
        iam.attach_role_policy(RoleName=roles[0], PolicyArn=read_only)
        iam.put_role_policy(RoleName=roles[0], PolicyName="list-buckets", PolicyDocument=policy)
    member_accounts = seed_members(endpoint, region, accounts, sizes)

    instance = sso.list_instances()["Instances"][0]
    instance_arn, store = instance["InstanceArn"], instance["IdentityStoreId"]
    users = []
    for i in range(sizes["sso_users"]):
        name = f"user-{i:02d}@example.com"
        user = ids.create_user(IdentityStoreId=store, UserName=name, DisplayName=f"User {i:02d}",
                               Name={"GivenName": "User", "FamilyName": f"{i:02d}"},
                               Emails=[{"Value": name, "Type": "work", "Primary": True}])
        users.append({"id": user["UserId"], "userName": name})
    groups = []
    for i in range(sizes["sso_groups"]):
        group = ids.create_group(IdentityStoreId=store, DisplayName=f"group-{i:02d}")
        members = [u["id"] for j, u in enumerate(users) if j % sizes["sso_groups"] == i or j < 2]
        for member in members:
            ids.create_group_membership(IdentityStoreId=store, GroupId=group["GroupId"], MemberId={"UserId": member})
        groups.append({"id": group["GroupId"], "displayName": f"group-{i:02d}", "members": members})

    permission_sets = []
    for i in range(sizes["permission_sets"]):
        ps = sso.create_permission_set(Name=f"PermissionSet{i:02d}", InstanceArn=instance_arn,
                                       Description=f"permission set {i:02d}")["PermissionSet"]
        permission_sets.append({"arn": ps["PermissionSetArn"], "name": f"PermissionSet{i:02d}"})
    # What the first permission set carries (seen only by a sync with `sync.policies`).
    if permission_sets:
        first = permission_sets[0]["arn"]
        sso.attach_managed_policy_to_permission_set(InstanceArn=instance_arn, PermissionSetArn=first,
                                                    ManagedPolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
        sso.attach_customer_managed_policy_reference_to_permission_set(
            InstanceArn=instance_arn, PermissionSetArn=first,
            CustomerManagedPolicyReference={"Name": "team-boundary", "Path": "/teams/"})
        sso.put_inline_policy_to_permission_set(InstanceArn=instance_arn, PermissionSetArn=first, InlinePolicy=policy)
        sso.put_permissions_boundary_to_permission_set(
            InstanceArn=instance_arn, PermissionSetArn=first,
            PermissionsBoundary={"ManagedPolicyArn": "arn:aws:iam::aws:policy/PowerUserAccess"})
        permission_sets[0]["contents"] = {
            "awsManagedPolicies": [{"name": "ReadOnlyAccess", "arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}],
            "customerManagedPolicies": [{"name": "team-boundary", "path": "/teams/"}],
            "inlinePolicy": policy,
            "permissionsBoundary": {"managedPolicyArn": "arn:aws:iam::aws:policy/PowerUserAccess"},
        }

    assignments = []

    def assign(account, ps, kind, principal):
        sso.create_account_assignment(InstanceArn=instance_arn, TargetId=account, TargetType="AWS_ACCOUNT",
                                      PermissionSetArn=ps, PrincipalType=kind, PrincipalId=principal)
        assignments.append({"accountId": account, "permissionSetArn": ps, "principalType": kind,
                            "principalId": principal})

    # Past one assignment per user, the users come round again, each time on the next account, so
    # that no (user, account, permission set) repeats: `--assigned-users 14600` on 10,000 users is
    # the 15,000 assignments (with the groups') of the largest organization the benchmarks name.
    for i in range(sizes["assigned_users"] if users else 0):
        turn = i // len(users)
        assign(accounts[(i + turn) % len(accounts)], permission_sets[i % len(permission_sets)]["arn"], "USER",
               users[i % len(users)]["id"])
    for i, group in enumerate(groups):
        for k in range(2):
            assign(accounts[(i + k) % len(accounts)], permission_sets[(i + k) % len(permission_sets)]["arn"],
                   "GROUP", group["id"])

    return {
        "accounts": sorted(all_accounts),
        "root": root,
        "organizationalUnits": units,
        "accountParents": parents,
        "memberAccounts": member_accounts,
        "iamUsers": iam_users,
        "iamGroups": iam_groups,
        "iamRoles": roles,
        "accessKeys": access_keys,
        "identityCenter": {"instanceArn": instance_arn, "identityStoreId": store},
        "ssoUsers": users,
        "ssoGroups": groups,
        "permissionSets": permission_sets,
        "assignments": assignments,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--management-account", help="seed the organization of this account (default: moto's own)")
    for name, default in [("accounts", 12), ("iam-users", 9), ("iam-groups", 4), ("iam-roles", 5),
                          ("sso-users", 11), ("sso-groups", 5), ("permission-sets", 4), ("assigned-users", 8), ("access-keys", 0), ("ous", 0),
                          ("member-iam-users", 0), ("members-without-role", 0)]:
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    sizes = {k.replace("-", "_"): v for k, v in vars(args).items()
             if k not in ("endpoint", "region", "management_account")}
    if args.management_account:
        act_in(args.management_account, args.endpoint, args.region)
    json.dump(seed(args.endpoint, args.region, sizes), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
