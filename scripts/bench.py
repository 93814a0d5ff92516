#!/usr/bin/env python3
"""Measures a sync of seeded organizations with the release build: AWS calls by operation against
the lower bound the seeded data needs, wall time against the busiest rate-limit lane's bound, and
peak memory (RSS).

Usage: scripts/bench.py [--size SIZE ...] [--runs N] [--binary PATH]
                        [--endpoint URL --seeded ORG.json]

Sizes: `small` (the test suite's organization), `org3` (3 accounts, 150 IAM users, 80 Identity
Center users, 30 permission sets), `medium` (21 accounts, 2,000 Identity Center users) and
`design`, the organization of the performance bars (51 accounts, 2,000 IAM users, 10,000
Identity Center users, 200 groups, 100 permission sets, 10,400 assignments), which takes the
emulator minutes to seed, and `huge`, the same with 15,000 assignments (the memory bar's).
Each size gets its own emulator, started through the project's launcher on a loopback port and
stopped after it; `--endpoint` with `--seeded` (the seeder's JSON) measures an emulator seeded
before instead. Nothing here is asserted: it prints figures, for docs/performance.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

SIZES = {
    "small": [],
    "org3": ["--accounts", "2", "--iam-users", "150", "--iam-groups", "10", "--iam-roles", "30",
             "--sso-users", "80", "--sso-groups", "10", "--permission-sets", "30",
             "--assigned-users", "80"],
    "medium": ["--accounts", "20", "--ous", "6", "--iam-users", "300", "--iam-groups", "10", "--iam-roles", "50",
               "--sso-users", "2000", "--sso-groups", "40", "--permission-sets", "40",
               "--assigned-users", "1500"],
    "design": ["--accounts", "50", "--ous", "10", "--iam-users", "2000", "--iam-groups", "20", "--iam-roles", "100",
               "--sso-users", "10000", "--sso-groups", "200", "--permission-sets", "100",
               "--assigned-users", "10000"],
    "huge": ["--accounts", "50", "--ous", "10", "--iam-users", "2000", "--iam-groups", "20", "--iam-roles", "100",
             "--sso-users", "10000", "--sso-groups", "200", "--permission-sets", "100",
             "--assigned-users", "14600"],
}

# The operator's default requests per second per lane (src/aws/ratelimit.rs).
RATES = {"sts": 10.0, "iam": 10.0, "organizations": 4.0, "ssoadmin": 20.0, "identitystore": 20.0}

LANES = {
    "GetCallerIdentity": "sts",
    "ListRoots": "organizations",
    "ListOrganizationalUnitsForParent": "organizations",
    "ListAccountsForParent": "organizations",
    "GetAccountAuthorizationDetails": "iam",
    "ListAccessKeys": "iam",
    "GetAccessKeyLastUsed": "iam",
    "GenerateCredentialReport": "iam",
    "GetCredentialReport": "iam",
    "ListUsers": "identitystore",
    "ListGroups": "identitystore",
    "ListGroupMemberships": "identitystore",
}

CLEARED = ["AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CA_BUNDLE", "AWS_CONFIG_FILE",
           "AWS_SHARED_CREDENTIALS_FILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
           "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
           "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]


def lane(operation):
    return LANES.get(operation, "ssoadmin")


def pages(items, size):
    """Calls to list `items` at `size` a page: an empty list still takes one."""
    return max(1, -(-items // size))


def tree_pages(org):
    """The organization's tree: the child units and the accounts of the root and of every
    organizational unit, each parent at least one call."""
    units = org.get("organizationalUnits", [])
    parents = [org.get("root")] + [u["id"] for u in units]
    placed = list(org.get("accountParents", {}).values())
    return {
        "ListOrganizationalUnitsForParent": sum(pages(sum(1 for u in units if u["parentId"] == p), 20)
                                                for p in parents),
        "ListAccountsForParent": sum(pages(placed.count(p), 20) for p in parents),
    }


def lower_bound(org):
    """The calls the seeded data needs at the largest page sizes: every page of every list, one
    call per item only where AWS has no list call (DescribePermissionSet), and the cheaper of the
    two ways to list assignments, finding the pairs included."""
    per_pair, per_principal, accounts_of_set = {}, {}, {}
    for a in org["assignments"]:
        pair = (a["permissionSetArn"], a["accountId"])
        per_pair[pair] = per_pair.get(pair, 0) + 1
        per_principal[a["principalId"]] = per_principal.get(a["principalId"], 0) + 1
        accounts_of_set.setdefault(a["permissionSetArn"], set()).add(a["accountId"])
    per_set = sum(pages(len(accounts_of_set.get(p["arn"], ())), 100) for p in org["permissionSets"])
    per_account = sum(pages(sum(1 for accounts in accounts_of_set.values() if account in accounts), 100)
                      for account in org["accounts"])
    per_pair_cost = min(per_set, per_account) + sum(pages(n, 100) for n in per_pair.values())
    principals = [u["id"] for u in org["ssoUsers"]] + [g["id"] for g in org["ssoGroups"]]
    per_principal_cost = sum(pages(per_principal.get(p, 0), 100) for p in principals)
    return {
        "GetCallerIdentity": 1,
        "ListRoots": 1,
        **tree_pages(org),
        "GetAccountAuthorizationDetails": pages(
            len(org["iamUsers"]) + len(org["iamGroups"]) + len(org["iamRoles"]), 1000),
        "ListInstances": 1,
        "ListUsers": pages(len(org["ssoUsers"]), 100),
        "ListGroups": pages(len(org["ssoGroups"]), 100),
        "ListGroupMemberships": sum(pages(len(g["members"]), 100) for g in org["ssoGroups"]),
        "ListPermissionSets": pages(len(org["permissionSets"]), 100),
        "DescribePermissionSet": len(org["permissionSets"]),
        "assignments (the cheaper listing)": min(per_pair_cost, per_principal_cost),
    }


def start_emulator(log):
    server = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests/support/moto_server.py")],
                              stdout=subprocess.PIPE, stderr=log, text=True)
    line = server.stdout.readline().split()
    if not line or line[0] != "PORT":
        server.kill()
        raise SystemExit(f"the AWS emulator did not start (first line {line!r})")
    return server, f"http://127.0.0.1:{line[1]}"


def resident(pid):
    """The process's resident memory now, KiB: (anonymous, file-backed), from /proc."""
    found = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile"):
                    found[key] = int(value.split()[0])
    except OSError:
        pass
    return found.get("RssAnon", 0), found.get("RssFile", 0)


# The sync runs as the child of a small, fresh interpreter rather than of this script: the
# kernel's peak RSS of a process counts the pages of the one it was forked from, and this script
# holds the seeded organization (about 30 MiB of Python objects for the `huge` one), which
# would otherwise be the figure printed. The helper prints the child's pid, then its exit code
# and peak RSS (KiB).
SPAWN = """
import os, sys
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.execv(sys.argv[1], sys.argv[1:])
print(pid, flush=True)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, flush=True)
"""


def run_sync(binary, connector, output, env):
    """One sync; its wall seconds, its peak RSS (MiB) from the kernel's accounting of the child,
    and the largest anonymous and file-backed parts seen (MiB), sampled every 20 ms."""
    started = time.monotonic()
    helper = subprocess.Popen([sys.executable, "-I", "-S", "-c", SPAWN, binary, "sync", "-f", connector,
                               "-o", output], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    child = int(helper.stdout.readline())
    anon = file = 0
    while helper.poll() is None:
        now_anon, now_file = resident(child)
        anon, file = max(anon, now_anon), max(file, now_file)
        time.sleep(0.02)
    wall = time.monotonic() - started
    code, peak = (int(word) for word in helper.stdout.readline().split())
    stderr = helper.stderr.read()
    if code != 0:
        raise SystemExit(f"the sync failed:\n{stderr}")
    return wall, peak / 1024.0, anon / 1024.0, file / 1024.0


def differences(org, inventory):
    """What the synced inventory has otherwise than the seeded organization, item for item (the
    items the seeder made; the emulator's own, such as its default IAM roles, aside)."""
    found = []

    def compare(what, seeded, synced):
        missing, extra = sorted(set(seeded) - set(synced)), sorted(set(synced) - set(seeded))
        if missing or extra:
            found.append(f"{what}: {len(missing)} missing (e.g. {missing[:2]}), {len(extra)} extra (e.g. {extra[:2]})")

    compare("accounts", org["accounts"], [a["id"] for a in inventory["accountsList"]])
    compare("account parents", org.get("accountParents", {}).items(),
            [(a["id"], a.get("parentId")) for a in inventory["accountsList"]])
    compare("organizational units", [(u["id"], u["parentId"]) for u in org.get("organizationalUnits", [])],
            [(u["id"], u["parentId"]) for u in inventory.get("organizationalUnits", [])])
    compare("IAM users", org["iamUsers"], [u["name"] for u in inventory["iamUsers"]])
    compare("IAM groups", org["iamGroups"], [g["name"] for g in inventory["iamGroups"]])
    seeded_roles = set(org["iamRoles"])
    compare("IAM roles", org["iamRoles"], [r["name"] for r in inventory["iamRoles"] if r["name"] in seeded_roles
                                           or r["name"].startswith("role-")])
    compare("SSO users", [u["id"] for u in org["ssoUsers"]], [u["id"] for u in inventory["ssoUsers"]])
    compare("SSO group members", [(g["id"], m) for g in org["ssoGroups"] for m in g["members"]],
            [(g["id"], m) for g in inventory["ssoGroups"] for m in g["members"]])
    compare("permission sets", [p["arn"] for p in org["permissionSets"]],
            [p["arn"] for p in inventory["permissionSets"]])
    key = lambda a: (a["accountId"], a["permissionSetArn"], a["principalType"], a["principalId"])
    compare("assignments", [key(a) for a in org["assignments"]], [key(a) for a in inventory["assignments"]])
    return found


def describe(org):
    return (f"{len(org['accounts'])} accounts, {len(org['iamUsers'])} IAM users, "
            f"{len(org['ssoUsers'])} SSO users, {len(org['ssoGroups'])} SSO groups, "
            f"{len(org['permissionSets'])} permission sets, {len(org['assignments'])} assignments")


def measure(binary, endpoint, runs, work):
    """`runs` syncs of the organization at `endpoint`: their (wall, RSS), and the last one's stats."""
    connector = os.path.join(work, "connector.json")
    with open(connector, "w") as f:
        json.dump({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
                   "metadata": {"name": "bench", "namespace": "aws"},
                   "spec": {"region": "us-east-1", "auth": {}}}, f)
    env = dict(os.environ, HOME=work, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench",
               AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    output = os.path.join(work, "inventory.json")
    measured = [run_sync(binary, connector, output, env) for _ in range(runs)]
    with open(output) as f:
        inventory = json.load(f)
    inventory["accountsList"] = inventory.pop("accounts")
    return measured, inventory


def report(name, org, measured, inventory):
    stats = inventory["stats"]
    bound_by_operation = lower_bound(org)
    lower = sum(bound_by_operation.values())
    by_lane = {}
    for operation, count in stats["apiCalls"].items():
        by_lane[lane(operation)] = by_lane.get(lane(operation), 0) + count
    bound = {lane_name: count / RATES[lane_name] for lane_name, count in by_lane.items()}
    busiest = max(bound, key=bound.get)
    walls = sorted(m[0] for m in measured)
    peaks = sorted(m[1] for m in measured)
    anons = sorted(m[2] for m in measured)
    files = sorted(m[3] for m in measured)
    median = walls[len(walls) // 2]
    total = stats["totalCalls"]
    print(f"\n## {name}: {describe(org)}\n")
    print(f"{len(measured)} runs at the default rate limits (median, min-max):")
    print(f"  calls     {total}; lower bound {lower}; calls / lower bound = {total / lower:.3f} "
          f"({stats.get('assignmentListing')} listing, pairs found {stats.get('pairDiscovery') or '-'})")
    print(f"  wall      {median:.2f} s ({walls[0]:.2f}-{walls[-1]:.2f})")
    print(f"  busiest lane {busiest}: {by_lane[busiest]} calls / {RATES[busiest]:g} per s = "
          f"{bound[busiest]:.2f} s; wall / bound = {median / bound[busiest]:.2f}")
    print(f"  peak RSS  {peaks[len(peaks) // 2]:.1f} MiB ({peaks[0]:.1f}-{peaks[-1]:.1f}); largest seen: "
          f"anonymous {anons[len(anons) // 2]:.1f} MiB, file-backed {files[len(files) // 2]:.1f} MiB")
    found = differences(org, inventory)
    print("  inventory " + ("the seeded organization, item for item" if not found
                            else "DIFFERS from the seeded organization: " + "; ".join(found)))
    print("\n| lane | calls | rate /s | bound s |\n|---|---|---|---|")
    for lane_name in sorted(by_lane):
        print(f"| {lane_name} | {by_lane[lane_name]} | {RATES[lane_name]:g} | {bound[lane_name]:.2f} |")
    print("\n| operation | calls |\n|---|---|")
    for operation, count in sorted(stats["apiCalls"].items()):
        print(f"| {operation} | {count} |")
    print("\n| lower bound | calls |\n|---|---|")
    for operation, count in bound_by_operation.items():
        print(f"| {operation} | {count} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", nargs="+", choices=sorted(SIZES), default=["small", "org3"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/aws-access-operator"))
    parser.add_argument("--endpoint", help="an emulator seeded before (with --seeded)")
    parser.add_argument("--seeded", help="the seeder's JSON of the organization at --endpoint")
    args = parser.parse_args()
    for variable in CLEARED:
        os.environ.pop(variable, None)

    with tempfile.TemporaryDirectory() as work:
        if args.endpoint:
            with open(args.seeded) as f:
                org = json.load(f)
            measured, inventory = measure(args.binary, args.endpoint, args.runs, work)
            report("the organization at " + args.endpoint, org, measured, inventory)
            return 0
        for size in args.size:
            with open(os.path.join(work, f"emulator-{size}.log"), "w") as log:
                server, endpoint = start_emulator(log)
                try:
                    seeded = time.monotonic()
                    org = json.loads(subprocess.run(
                        [sys.executable, os.path.join(ROOT, "tests/support/seed_org.py"), "--endpoint", endpoint]
                        + SIZES[size], check=True, capture_output=True, text=True).stdout)
                    print(f"seeded {size} in {time.monotonic() - seeded:.0f} s", flush=True)
                    measured, inventory = measure(args.binary, endpoint, args.runs, work)
                finally:
                    server.terminate()
                    server.wait(timeout=10)
            report(size, org, measured, inventory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
