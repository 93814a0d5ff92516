#!/usr/bin/env python3
"""Measures a sync of a seeded organization with the release build: wall time against the
busiest rate-limit lane's bound, AWS calls by operation and lane, and peak memory (RSS).

Usage: scripts/bench.py [--size medium|design] [--runs N] [--binary PATH]

`design` is the organization of the performance bars (50 accounts, 10,000 Identity Center users,
200 groups, 100 permission sets, 2,000 IAM users); seeding it in the emulator takes a while.
The AWS emulator is started through the project's launcher on a loopback port and stopped at
the end. Nothing here is asserted: it prints figures, for docs/performance.md.
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
    "medium": ["--accounts", "20", "--iam-users", "300", "--iam-groups", "10", "--iam-roles", "50",
               "--sso-users", "2000", "--sso-groups", "40", "--permission-sets", "40",
               "--assigned-users", "1500"],
    "design": ["--accounts", "50", "--iam-users", "2000", "--iam-groups", "20", "--iam-roles", "100",
               "--sso-users", "10000", "--sso-groups", "200", "--permission-sets", "100",
               "--assigned-users", "10000"],
}

# The operator's default requests per second per lane (src/aws/ratelimit.rs).
RATES = {"sts": 10.0, "iam": 10.0, "organizations": 4.0, "ssoadmin": 20.0, "identitystore": 20.0}

LANES = {
    "GetCallerIdentity": "sts",
    "ListAccounts": "organizations",
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


def start_emulator(log):
    server = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests/support/moto_server.py")],
                              stdout=subprocess.PIPE, stderr=log, text=True)
    line = server.stdout.readline().split()
    if not line or line[0] != "PORT":
        server.kill()
        raise SystemExit(f"the AWS emulator did not start (first line {line!r})")
    return server, f"http://127.0.0.1:{line[1]}"


def run_sync(binary, connector, output, env):
    """One sync; its wall seconds and peak RSS (MiB), from the kernel's accounting of the child."""
    started = time.monotonic()
    child = subprocess.Popen([binary, "sync", "-f", connector, "-o", output], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    stderr = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the sync failed:\n{stderr}")
    return wall, usage.ru_maxrss / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="medium")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/aws-access-operator"))
    args = parser.parse_args()
    for variable in CLEARED:
        os.environ.pop(variable, None)

    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "emulator.log"), "w") as log:
            server, endpoint = start_emulator(log)
            try:
                seeded = time.monotonic()
                org = json.loads(subprocess.run(
                    [sys.executable, os.path.join(ROOT, "tests/support/seed_org.py"), "--endpoint", endpoint]
                    + SIZES[args.size], check=True, capture_output=True, text=True).stdout)
                print(f"seeded the {args.size} organization in {time.monotonic() - seeded:.0f} s: "
                      f"{len(org['accounts'])} accounts, {len(org['iamUsers'])} IAM users, "
                      f"{len(org['ssoUsers'])} SSO users, {len(org['ssoGroups'])} SSO groups, "
                      f"{len(org['permissionSets'])} permission sets, {len(org['assignments'])} assignments")
                connector = os.path.join(work, "connector.json")
                with open(connector, "w") as f:
                    json.dump({"apiVersion": "awsaccess.io/v1alpha1", "kind": "AwsConnector",
                               "metadata": {"name": "bench", "namespace": "aws"},
                               "spec": {"region": "us-east-1", "auth": {}}}, f)
                env = dict(os.environ, HOME=work, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench",
                           AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
                           AWS_EC2_METADATA_DISABLED="true")
                output = os.path.join(work, "inventory.json")
                runs = [run_sync(args.binary, connector, output, env) for _ in range(args.runs)]
                with open(output) as f:
                    stats = json.load(f)["stats"]
            finally:
                server.terminate()
                server.wait(timeout=10)

    by_lane = {}
    for operation, count in stats["apiCalls"].items():
        by_lane[lane(operation)] = by_lane.get(lane(operation), 0) + count
    bound = {name: count / RATES[name] for name, count in by_lane.items()}
    busiest = max(bound, key=bound.get)
    walls = sorted(w for w, _ in runs)
    peaks = sorted(p for _, p in runs)
    median = walls[len(walls) // 2]
    print(f"\n{args.runs} runs at the default rate limits (median, min-max):")
    print(f"  wall      {median:.2f} s ({walls[0]:.2f}-{walls[-1]:.2f})")
    print(f"  peak RSS  {peaks[len(peaks) // 2]:.1f} MiB ({peaks[0]:.1f}-{peaks[-1]:.1f})")
    print(f"  calls     {stats['totalCalls']} ({stats.get('assignmentListing')} listing, "
          f"pairs found {stats.get('pairDiscovery') or '-'})")
    print(f"  busiest lane {busiest}: {by_lane[busiest]} calls / {RATES[busiest]:g} per s = "
          f"{bound[busiest]:.2f} s; wall / bound = {median / bound[busiest]:.2f}")
    print("\n| lane | calls | rate /s | bound s |\n|---|---|---|---|")
    for name in sorted(by_lane):
        print(f"| {name} | {by_lane[name]} | {RATES[name]:g} | {bound[name]:.2f} |")
    print("\n| operation | calls |\n|---|---|")
    for operation, count in sorted(stats["apiCalls"].items()):
        print(f"| {operation} | {count} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
