#!/usr/bin/env bash
# The demo: a local AWS emulator (moto, through the project's launcher) seeded with a sample
# organization, a local Kubernetes control plane (etcd and kube-apiserver, built from the Go
# module proxy), and the operator running against both. Connectors and grants are applied with
# kubectl, as a platform team would; the demo shows them become Ready, what changed in AWS, a
# revoke, an AccessRequest asked for, approved and withdrawn, and who can get into what. It then keeps everything running for kubectl until Ctrl-C
# (DEMO_EXIT=1: it stops at the end), and stops all it started.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=./target/debug/aws-access-operator
PYTHON=.venv/bin/python
OUT=target/demo
NS=aws-access
rm -rf "$OUT" && mkdir -p "$OUT"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
[ -t 1 ] || say() { printf '\n== %s\n' "$*"; }
indent() { sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/   /'; }

# Only what the demo sets reaches the operator: the machine's AWS settings are cleared.
for v in AWS_PROFILE AWS_DEFAULT_PROFILE AWS_CA_BUNDLE AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE \
         AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_REGION AWS_DEFAULT_REGION \
         AWS_ENDPOINT_URL AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE KUBECONFIG; do unset "$v"; done

# Everything started here is stopped on the way out, by PID: the operator, then the control
# plane (its harness stops the API server before etcd), then moto.
PIDS=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
    wait "${PIDS[$i]}" 2>/dev/null || true
  done
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

KUBE_BIN=$(bash controlplane/build.sh 1.37)
kubectl() { "$KUBE_BIN/kubectl" "$@"; }

"$PYTHON" tests/support/moto_server.py > "$OUT/moto.out" 2> "$OUT/moto.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
  grep -q '^PORT ' "$OUT/moto.out" 2>/dev/null && break
  sleep 0.1
done
PORT=$(awk '/^PORT /{print $2}' "$OUT/moto.out")
[ -n "$PORT" ] || { echo "the AWS emulator did not start; see $OUT/moto.log" >&2; exit 1; }
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo \
       AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

say "a local AWS emulator on $AWS_ENDPOINT_URL, seeded with a sample organization"
"$PYTHON" tests/support/seed_org.py --endpoint "$AWS_ENDPOINT_URL" --accounts 12 --iam-users 9 \
  --sso-users 25 --sso-groups 6 --permission-sets 5 --assigned-users 20 --ous 4 \
  --member-iam-users 2 --members-without-role 1 > "$OUT/organization.json"
"$PYTHON" scripts/demo_aws.py setup "$OUT/organization.json" | indent

say "a local Kubernetes control plane (etcd, kube-apiserver) with the CRDs"
"$KUBE_BIN/harness" --bin "$KUBE_BIN" --crds crds --info-file "$OUT/controlplane.json" \
  > /dev/null 2> "$OUT/controlplane.log" &
PIDS+=($!)
for _ in $(seq 1 600); do
  [ -s "$OUT/controlplane.json" ] && break
  kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$OUT/controlplane.log" >&2; exit 1; }
  sleep 0.1
done
[ -s "$OUT/controlplane.json" ] || { echo "the control plane did not start; see $OUT/controlplane.log" >&2; exit 1; }
KUBECONFIG=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["kubeconfig"])' "$OUT/controlplane.json")
export KUBECONFIG
kubectl version 2>/dev/null | indent
kubectl get crds | indent
kubectl create namespace "$NS" | indent
# The chart's admission policy for AccessRequests: the API server vouches for who asks and who
# approves.
POLICY=demo-aws-access-operator-access-requests
HELM_CACHE_HOME="$OUT/helm" HELM_CONFIG_HOME="$OUT/helm" HELM_DATA_HOME="$OUT/helm" \
  "$KUBE_BIN/helm" template demo charts/aws-access-operator \
  --show-only templates/accessrequest-policy.yaml | kubectl apply -f - | indent

say "the approvers' channel: a local webhook receiver (log in $OUT/receiver.log)"
"$PYTHON" scripts/demo_receiver.py > "$OUT/receiver.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  grep -q '^PORT ' "$OUT/receiver.log" 2>/dev/null && break
  sleep 0.1
done
HOOK_PORT=$(awk '/^PORT /{print $2}' "$OUT/receiver.log")
[ -n "$HOOK_PORT" ] || { echo "the webhook receiver did not start; see $OUT/receiver.log" >&2; exit 1; }
# The connector's requestPolicy.notify names this Secret: the URL is never written elsewhere.
kubectl create secret generic demo-webhooks -n "$NS" \
  --from-literal=approvers="http://127.0.0.1:$HOOK_PORT/hook" | indent

say "the operator: aws-access-operator run (log in $OUT/operator.log)"
METRICS_PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" run --lease-namespace "$NS" --connector-namespaces "$NS" --identity demo \
  --metrics-addr "127.0.0.1:$METRICS_PORT" --grant-check-interval 20s --log-format plain \
  --request-admission-policy "$POLICY" \
  > "$OUT/operator.log" 2>&1 &
PIDS+=($!)
echo "   metrics on http://127.0.0.1:$METRICS_PORT/metrics"

say "kubectl apply -f examples/demo/connector.yaml"
kubectl apply -f examples/demo/connector.yaml | indent
kubectl wait -n "$NS" --for=condition=Ready awsconnector/demo-org --timeout=300s | indent
kubectl get -n "$NS" awsconnectors | indent
kubectl get -n "$NS" awsconnector demo-org \
  -o jsonpath='{"   inventory: "}{.status.inventory}{"\n   last sync: "}{.status.lastSync}{"\n"}'

say "kubectl apply -f examples/demo/permission-set.yaml: what OnCallReader means, declared in git"
kubectl apply -f examples/demo/permission-set.yaml | indent
kubectl wait -n "$NS" --for=condition=Ready permissionset/on-call-reader --timeout=120s | indent
kubectl get -n "$NS" permissionsets | indent
"$PYTHON" scripts/demo_aws.py set OnCallReader | indent

say "kubectl apply -f examples/demo/identities.yaml: a person and a team declared in git, the person put in the team, the team given OnCallReader"
kubectl apply -f examples/demo/identities.yaml | indent
kubectl wait -n "$NS" --for=condition=Ready identitycenteruser/dana identitycentergroup/on-call --timeout=120s | indent
kubectl wait -n "$NS" --for=condition=Ready accessgrant/dana-on-call accessgrant/on-call-reads-production --timeout=120s | indent
kubectl get -n "$NS" identitycenterusers,identitycentergroups | indent
"$PYTHON" scripts/demo_aws.py people dana@example.com on-call | indent

say "what AWS holds before the grants"
"$PYTHON" scripts/demo_aws.py show | indent

say "kubectl apply -f examples/demo/grants/"
kubectl apply -f examples/demo/grants/ | indent
kubectl wait -n "$NS" --for=condition=Ready accessgrants --all --timeout=300s | indent
kubectl get -n "$NS" accessgrants | indent
echo
kubectl events -n "$NS" --for accessgrant/user-03-permissionset01 | indent

say "what AWS holds now"
"$PYTHON" scripts/demo_aws.py show | indent

say "someone attaches AdministratorAccess to OnCallReader in the console: the operator puts it back"
"$PYTHON" scripts/demo_aws.py tamper OnCallReader | indent
for _ in $(seq 1 90); do
  "$PYTHON" scripts/demo_aws.py set OnCallReader | grep -q AdministratorAccess || break
  sleep 1
done
"$PYTHON" scripts/demo_aws.py set OnCallReader | indent
kubectl events -n "$NS" --for permissionset/on-call-reader | indent

say "kubectl delete accessgrant user-03-permissionset01: the operator revokes what it created"
kubectl delete -n "$NS" accessgrant user-03-permissionset01 --wait=true --timeout=120s | indent
kubectl events -n "$NS" --for accessgrant/user-03-permissionset01 | indent
"$PYTHON" scripts/demo_aws.py show | indent

# A kubeconfig that authenticates as the ServiceAccount $1 of $NS (a token from the API server).
kubeconfig_of() {
  local token server ca
  token=$(kubectl create token "$1" -n "$NS" --duration 1h)
  server=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  cat > "$OUT/$1.kubeconfig" <<KUBECONFIG_END
apiVersion: v1
kind: Config
clusters: [{name: demo, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: $1, user: {token: "$token"}}]
contexts: [{name: $1, context: {cluster: demo, user: $1, namespace: $NS}}]
current-context: $1
KUBECONFIG_END
  echo "$OUT/$1.kubeconfig"
}

say "an AccessRequest: alice asks for access, bob approves it (docs/requests.md)"
kubectl apply -f examples/demo/requests/people.yaml | indent
ALICE=$(kubeconfig_of alice)
BOB=$(kubeconfig_of bob)
for _ in $(seq 1 100); do
  KUBECONFIG=$BOB kubectl auth can-i approve accessrequests >/dev/null 2>&1 && break
  sleep 0.2
done
echo "   as alice: kubectl create -f examples/demo/requests/hotfix.yaml"
KUBECONFIG=$ALICE kubectl create -f examples/demo/requests/hotfix.yaml | indent
kubectl wait -n "$NS" --for=jsonpath='{.status.state}'=Pending accessrequest/hotfix-42 --timeout=120s | indent
kubectl get -n "$NS" accessrequests | indent
echo "   the approvers' channel got:"
for _ in $(seq 1 100); do grep -q '^\[approvers channel\]' "$OUT/receiver.log" && break; sleep 0.2; done
grep '^\[approvers channel\]' "$OUT/receiver.log" | indent
echo "   as bob: aws-access-operator requests (what he may review now, as the API server says)"
KUBECONFIG=$BOB "$BIN" requests | indent
echo "   as alice: aws-access-operator approve hotfix-42 (her own request)"
(KUBECONFIG=$ALICE "$BIN" approve hotfix-42 2>&1 || true) | indent
echo "   as bob: aws-access-operator approve hotfix-42"
KUBECONFIG=$BOB "$BIN" approve hotfix-42 --comment "go ahead" | indent
kubectl wait -n "$NS" --for=condition=Active accessrequest/hotfix-42 --timeout=120s | indent
kubectl get -n "$NS" accessrequests | indent
"$PYTHON" scripts/demo_aws.py show | indent

say "alice withdraws the request: the access ends at once"
KUBECONFIG=$ALICE "$BIN" withdraw hotfix-42 | indent
kubectl wait -n "$NS" --for=condition=Ended accessrequest/hotfix-42 --timeout=120s | indent
kubectl get -n "$NS" accessrequests | indent
echo
kubectl events -n "$NS" --for accessrequest/hotfix-42 | indent
"$PYTHON" scripts/demo_aws.py show | indent
echo "   the approvers' channel got:"
for _ in $(seq 1 100); do [ "$(grep -c '^\[approvers channel\]' "$OUT/receiver.log")" -ge 3 ] && break; sleep 0.2; done
grep '^\[approvers channel\]' "$OUT/receiver.log" | indent

say "aws-access-operator access --principal user-07@example.com (who can get into what, and why)"
"$BIN" sync -f examples/demo/connector.yaml -o "$OUT/inventory.json" --state-dir "$OUT/state" \
  --page-size 25 2> "$OUT/sync.log" || { cat "$OUT/sync.log" >&2; exit 1; }
"$BIN" access -f examples/demo/ --inventory "$OUT/inventory.json" --principal user-07@example.com | indent

echo
echo "The control plane is running. Poke at it with kubectl:"
echo "   export KUBECONFIG=$KUBECONFIG"
echo "   $KUBE_BIN/kubectl get awsconnectors,permissionsets,accessgrants,accessrequests -A"
echo "The operator's log: $OUT/operator.log; its metrics: http://127.0.0.1:$METRICS_PORT/metrics"
if [ "${DEMO_EXIT:-0}" = 1 ]; then
  echo "DEMO_EXIT=1: stopping."
  exit 0
fi
echo "Ctrl-C stops the operator, the control plane and the AWS emulator."
# A waited-for child, not a foreground one: a signal to this script is handled at once.
sleep infinity &
PIDS+=($!)
wait "${PIDS[-1]}"
