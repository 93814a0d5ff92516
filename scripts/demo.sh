#!/usr/bin/env bash
# The demo: a local AWS emulator (moto, through the project's launcher) seeded with a sample
# organization, then the operator's sync against it, twice (the second from the cache).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=./target/debug/aws-access-operator
PYTHON=.venv/bin/python
OUT=target/demo
rm -rf "$OUT" && mkdir -p "$OUT"

# Only what the demo sets reaches the operator: the machine's AWS settings are cleared.
for v in AWS_PROFILE AWS_DEFAULT_PROFILE AWS_CA_BUNDLE AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE \
         AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_REGION AWS_DEFAULT_REGION \
         AWS_ENDPOINT_URL AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE; do unset "$v"; done

"$PYTHON" tests/support/moto_server.py > "$OUT/moto.out" 2> "$OUT/moto.log" &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q '^PORT ' "$OUT/moto.out" 2>/dev/null && break
  sleep 0.1
done
PORT=$(awk '/^PORT /{print $2}' "$OUT/moto.out")
[ -n "$PORT" ] || { echo "the AWS emulator did not start; see $OUT/moto.log" >&2; exit 1; }
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo \
       AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

echo "== a local AWS emulator on $AWS_ENDPOINT_URL, seeded with a sample organization"
"$PYTHON" tests/support/seed_org.py --endpoint "$AWS_ENDPOINT_URL" --accounts 12 --iam-users 9 \
  --sso-users 25 --sso-groups 6 --permission-sets 5 --assigned-users 20 --ous 4 \
  --member-iam-users 2 --members-without-role 1 > "$OUT/organization.json"
"$PYTHON" - "$OUT/organization.json" "$AWS_ENDPOINT_URL" <<'PY'
import datetime, json, sys, urllib.request
org, endpoint = json.load(open(sys.argv[1])), sys.argv[2]
print(f"   {len(org['accounts'])} accounts in {len(org['organizationalUnits'])} organizational units, "
      f"{len(org['iamUsers'])} IAM users, {len(org['iamGroups'])} IAM groups, "
      f"{len(org['iamRoles'])} IAM roles, {len(org['ssoUsers'])} SSO users, {len(org['ssoGroups'])} SSO groups, "
      f"{len(org['permissionSets'])} permission sets, {len(org['assignments'])} assignments")
# Sign-ins in CloudTrail for the first few users, and a role missing in the last member account.
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
events = [{"eventName": "Authenticate", "eventSource": "sso.amazonaws.com", "username": u["userName"],
           "eventTime": (now - datetime.timedelta(hours=3 * i + 1)).isoformat().replace("+00:00", "Z")}
          for i, u in enumerate(org["ssoUsers"][:6])]
def post(path, body):
    request = urllib.request.Request(endpoint + path, data=json.dumps(body).encode(), method="POST")
    urllib.request.urlopen(request).read()
post("/_launcher/cloudtrail/events", events)
# The connector's role (examples/demo/connector.yaml); AssumeRole of a missing role is refused,
# as in AWS.
import boto3
boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="demo",
             aws_secret_access_key="demo").create_role(RoleName="aws-access-operator", AssumeRolePolicyDocument="{}")
post("/_launcher/faults", {"assume_role_needs_role": True})
print(f"   {len(events)} sign-ins in CloudTrail; member accounts: "
      f"{sum(1 for m in org['memberAccounts'].values() if m['role'])} with OrganizationAccountAccessRole, "
      f"{sum(1 for m in org['memberAccounts'].values() if not m['role'])} without")
PY

echo
echo "== aws-access-operator validate -f examples/"
"$BIN" validate -f examples/ | "$PYTHON" -c 'import json,sys
for line in sys.stdin:
    r = json.loads(line)
    print("   {:<13} {:<30} valid={}".format(r["kind"], r["name"], r["valid"]))'

echo
echo "== aws-access-operator sync -f examples/demo/connector.yaml (role chain, every page, 25 per page)"
"$BIN" sync -f examples/demo/connector.yaml -o "$OUT/inventory.json" --state-dir "$OUT/state" \
  --page-size 25 --log-format plain 2> "$OUT/sync.log" || { cat "$OUT/sync.log" >&2; exit 1; }
grep -E 'authenticated|^inventory|^organization|^member|^sign-ins|^cost|^  ' "$OUT/sync.log" \
  | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/   /'

echo
echo "== the same sync again: permission set details come from the cache"
"$BIN" sync -f examples/demo/connector.yaml -o "$OUT/inventory.json" --state-dir "$OUT/state" \
  --page-size 25 2> "$OUT/sync2.log" || { cat "$OUT/sync2.log" >&2; exit 1; }
grep -E '^cost' "$OUT/sync2.log" | sed 's/^/   /'

echo
echo "== aws-access-operator plan -f examples/demo/ --inventory (offline: no AWS call)"
"$BIN" plan -f examples/demo/ --inventory "$OUT/inventory.json" | sed 's/^/   /'

echo
echo "== aws-access-operator apply -f examples/demo/"
"$BIN" apply -f examples/demo/ --state-dir "$OUT/state" --page-size 25 2> "$OUT/apply.log" | sed 's/^/   /' \
  || { cat "$OUT/apply.log" >&2; exit 1; }

echo
echo "== plan again: AWS now matches the grants"
"$BIN" plan -f examples/demo/ --state-dir "$OUT/state" --page-size 25 2>/dev/null | sed 's/^/   /'

echo
echo "== aws-access-operator access --principal user-03@example.com (who can get into what, and why)"
"$BIN" sync -f examples/demo/connector.yaml -o "$OUT/inventory-after.json" --state-dir "$OUT/state" \
  --page-size 25 2> "$OUT/sync3.log" || { cat "$OUT/sync3.log" >&2; exit 1; }
"$BIN" access -f examples/demo/ --inventory "$OUT/inventory-after.json" --principal user-03@example.com \
  | sed 's/^/   /'
ACCOUNT=$("$PYTHON" -c 'import json,sys
org = json.load(open(sys.argv[1]))
units = {u["id"] for u in org["organizationalUnits"] if u["parentId"] != org["root"]}
print(next(a for a, p in sorted(org["accountParents"].items()) if p in units))' "$OUT/organization.json")
echo
echo "== aws-access-operator access --account $ACCOUNT (an account in a nested organizational unit)"
"$BIN" access -f examples/demo/ --inventory "$OUT/inventory-after.json" --account "$ACCOUNT" | sed 's/^/   /'

echo
echo "The inventory is in $OUT/inventory.json; the page state and cache in $OUT/state/;"
echo "the ownership ledger (what apply created or adopted, and for which grants) in $OUT/state/ledger.json."
