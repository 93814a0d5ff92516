# Everything a fresh machine needs is installed by the targets themselves: Rust, Python 3.11
# with pip, a C compiler and Go (which builds the local Kubernetes control plane from the Go
# module proxy, see docs/testing.md) are all they assume.

CARGO  ?= cargo
PYTHON ?= python3
VENV   := .venv
# The AWS settings of the machine never reach the tests or the demo.
CLEAN_AWS_ENV := env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_CA_BUNDLE -u AWS_CONFIG_FILE \
	-u AWS_SHARED_CREDENTIALS_FILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
	-u AWS_REGION -u AWS_DEFAULT_REGION -u AWS_ENDPOINT_URL -u AWS_ROLE_ARN -u AWS_WEB_IDENTITY_TOKEN_FILE

.PHONY: demo test test-oldest controlplane controlplane-oldest bench bench-requests bench-permission-sets bench-identities bench-idle bench-heap bench-organizations venv build crds check-crds lint fmt clean

## demo: a local AWS emulator seeded with a sample organization, a local Kubernetes control
## plane, and the operator running against both; kubectl applies a connector and grants
## (runs until Ctrl-C; DEMO_EXIT=1 stops at the end)
demo: venv build controlplane
	@bash scripts/demo.sh

## test: install the test dependencies (moto into .venv, the control plane of Kubernetes 1.37)
## and run every test
test: venv controlplane
	$(CLEAN_AWS_ENV) $(CARGO) test --locked
	for suite in tests/moto tests/chart tests/health; do \
		$(CLEAN_AWS_ENV) $(VENV)/bin/python -m unittest discover -s $$suite || exit 1; \
	done

## test-oldest: the end-to-end, grant, request, RBAC, chart and shard tests again on the oldest Kubernetes the
## chart supports (1.30)
OLDEST_SUITES := e2e:: grants:: unit_grants:: rbac:: crds:: chart:: requests:: request_trust:: request_notices:: permission_sets:: identities:: shards::
test-oldest: venv controlplane controlplane-oldest
	$(CLEAN_AWS_ENV) TEST_KUBERNETES_VERSION=1.30 $(CARGO) test --locked --test integration -- $(OLDEST_SUITES)

## controlplane: build kube-apiserver, etcd, kubectl and helm once (target/controlplane)
controlplane:
	@bash controlplane/build.sh 1.37 >/dev/null

controlplane-oldest:
	@bash controlplane/build.sh 1.30 >/dev/null

## bench: sync seeded organizations with the release build; prints calls against their lower
## bound, wall time against the busiest rate-limit lane, and peak memory
## (BENCH_SIZE="small org3 design" adds the performance bars' organization, minutes to seed)
## Then 200 AccessRequests approved at once on one connector (bench-requests).
BENCH_SIZE ?= small org3
bench: venv controlplane
	$(CARGO) build --release --locked
	$(CLEAN_AWS_ENV) $(VENV)/bin/python scripts/bench.py --size $(BENCH_SIZE)
	$(MAKE) bench-requests
	$(MAKE) bench-permission-sets
	$(MAKE) bench-identities

## bench-requests: 200 AccessRequests on one connector approved at once, on the local control plane
## (or TEST_KUBECONFIG's cluster); prints the time to all Active against the Identity Center
## lane's bound, and the AWS calls
bench-requests: venv controlplane
	$(CLEAN_AWS_ENV) $(CARGO) test --locked --test integration requests::two_hundred_requests_approved_at_once -- --ignored --nocapture

## bench-permission-sets: 100 PermissionSets on a 20-account organization converged from nothing,
## then checked with nothing to change; prints the calls against their lower bound and the time
## against the sso-admin lane's bound
bench-permission-sets: venv controlplane
	$(CLEAN_AWS_ENV) $(CARGO) test --locked --test integration permission_sets::a_hundred_permission_sets_converged_then_checked -- --ignored --nocapture

## bench-identities: the release operator converges 1,000 Identity Center users and 100 groups
## from nothing, then checks them with nothing to change; prints the calls against their lower
## bound, the time against the Identity Store lane's bound, and the operator's memory
bench-identities: venv controlplane
	$(CARGO) build --release --locked
	$(CLEAN_AWS_ENV) $(CARGO) test --locked --test integration identities::a_thousand_users_and_a_hundred_groups_converged -- --ignored --nocapture

## bench-idle: the release operator converges 1,000 AccessGrants on the 3-account organization
## (the local control plane, or TEST_KUBECONFIG's cluster) and idles; prints convergence time
## against the busiest lane's bound, its memory, its API server requests per grant (from the
## audit log) and the AWS calls of its drift checks while idle (BENCH_GRANTS, BENCH_RATE_LIMITS,
## BENCH_GRANT_CHECK, BENCH_IDLE_SECONDS; docs/performance.md)
bench-idle: venv controlplane
	$(CARGO) build --release --locked
	$(CLEAN_AWS_ENV) $(CARGO) test --locked --test integration idle_memory -- --ignored --nocapture

## bench-organizations: the release operator syncs 20 organizations at once, each in a management
## account of its own (BENCH_ORGS, BENCH_SYNCS_AT_ONCE); syncs them again while granting on all
## of them (BENCH_GRANTS_PER_ORG); grants again with no sync running. Prints each organization's
## times against its own lane's bound, the operator's peak memory and each process's CPU
bench-organizations: venv controlplane
	$(CARGO) build --release --locked
	$(CLEAN_AWS_ENV) $(CARGO) test --locked --test integration organizations::twenty_organizations_sync_and_grant_at_once -- --ignored --nocapture

## bench-heap: bench-idle with the operator under heaptrack (Debian's heaptrack package), ended
## while idle; prints what its heap holds, by owner (scripts/heap_profile.py)
bench-heap: venv controlplane
	$(CARGO) build --release --locked
	mkdir -p target/heaptrack
	$(CLEAN_AWS_ENV) BENCH_HEAPTRACK=$(CURDIR)/target/heaptrack/idle-$$(date +%s) $(CARGO) test --locked --test integration idle_memory -- --ignored --nocapture

## venv: moto's server and boto3 for the tests, in .venv
venv: $(VENV)/.installed

$(VENV)/.installed: tests/support/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/support/requirements.txt
	touch $@

build:
	$(CARGO) build --locked

## crds: regenerate crds/ and the chart's CRDs from the Rust types
crds:
	$(CARGO) run --quiet --locked -- crd --output-dir crds
	$(CARGO) run --quiet --locked -- crd --output-dir charts/aws-access-operator/files/crds

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV)
