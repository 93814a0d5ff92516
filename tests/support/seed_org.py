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


def client(service, endpoint, region):
    return boto3.client(service, endpoint_url=endpoint, region_name=region,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


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

    assignments = []

    def assign(account, ps, kind, principal):
        sso.create_account_assignment(InstanceArn=instance_arn, TargetId=account, TargetType="AWS_ACCOUNT",
                                      PermissionSetArn=ps, PrincipalType=kind, PrincipalId=principal)
        assignments.append({"accountId": account, "permissionSetArn": ps, "principalType": kind,
                            "principalId": principal})

    for i, user in enumerate(users[: sizes["assigned_users"]]):
        assign(accounts[i % len(accounts)], permission_sets[i % len(permission_sets)]["arn"], "USER", user["id"])
    for i, group in enumerate(groups):
        for k in range(2):
            assign(accounts[(i + k) % len(accounts)], permission_sets[(i + k) % len(permission_sets)]["arn"],
                   "GROUP", group["id"])

    return {
        "accounts": sorted(all_accounts),
        "root": root,
        "organizationalUnits": units,
        "accountParents": parents,
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
    for name, default in [("accounts", 12), ("iam-users", 9), ("iam-groups", 4), ("iam-roles", 5),
                          ("sso-users", 11), ("sso-groups", 5), ("permission-sets", 4), ("assigned-users", 8), ("access-keys", 0), ("ous", 0)]:
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    sizes = {k.replace("-", "_"): v for k, v in vars(args).items() if k not in ("endpoint", "region")}
    json.dump(seed(args.endpoint, args.region, sizes), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
