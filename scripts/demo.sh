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
  --sso-users 25 --sso-groups 6 --permission-sets 5 --assigned-users 20 > "$OUT/organization.json"
"$PYTHON" - "$OUT/organization.json" <<'PY'
import json, sys
org = json.load(open(sys.argv[1]))
print(f"   {len(org['accounts'])} accounts, {len(org['iamUsers'])} IAM users, {len(org['iamGroups'])} IAM groups, "
      f"{len(org['iamRoles'])} IAM roles, {len(org['ssoUsers'])} SSO users, {len(org['ssoGroups'])} SSO groups, "
      f"{len(org['permissionSets'])} permission sets, {len(org['assignments'])} assignments")
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
grep -E 'authenticated|^inventory|^cost|^  ' "$OUT/sync.log" | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/   /'

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
echo "The inventory is in $OUT/inventory.json; the page state and cache in $OUT/state/;"
echo "the ownership ledger (what apply created or adopted, and for which grants) in $OUT/state/ledger.json."
