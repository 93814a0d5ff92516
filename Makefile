# Everything a fresh machine needs is installed by the targets themselves: Rust, Python 3.11
# with pip, and a C compiler are all they assume.

CARGO  ?= cargo
PYTHON ?= python3
VENV   := .venv
# The AWS settings of the machine never reach the tests or the demo.
CLEAN_AWS_ENV := env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_CA_BUNDLE -u AWS_CONFIG_FILE \
	-u AWS_SHARED_CREDENTIALS_FILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
	-u AWS_REGION -u AWS_DEFAULT_REGION -u AWS_ENDPOINT_URL -u AWS_ROLE_ARN -u AWS_WEB_IDENTITY_TOKEN_FILE

.PHONY: demo test venv build crds check-crds lint fmt clean

## demo: validate the example manifests with the operator's own rules
demo: build
	@echo "== aws-access-operator validate -f examples/"
	@$(CLEAN_AWS_ENV) ./target/debug/aws-access-operator validate -f examples/
	@echo "== every example is valid; a broken role ARN is refused with the field named:"
	@printf 'apiVersion: awsaccess.io/v1alpha1\nkind: AwsConnector\nmetadata: {name: broken}\nspec:\n  region: us-east-1\n  auth: {roleArn: "arn:aws:iam::1234567890123:role/ops"}\n' \
		| tee target/demo-broken.yaml >/dev/null
	@./target/debug/aws-access-operator validate -f target/demo-broken.yaml; \
		echo "(exit code $$?)"

## test: install the test dependencies (moto into .venv) and run every test
test: venv
	$(CLEAN_AWS_ENV) $(CARGO) test --locked
	$(CLEAN_AWS_ENV) $(VENV)/bin/python -m unittest discover -s tests/moto

## venv: moto's server and boto3 for the tests, in .venv
venv: $(VENV)/.installed

$(VENV)/.installed: tests/support/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/support/requirements.txt
	touch $@

build:
	$(CARGO) build --locked

## crds: regenerate crds/ from the Rust types
crds:
	$(CARGO) run --quiet --locked -- crd --output-dir crds

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV)
