"""Static checks of the Helm chart (no helm binary here): values against their schema, every
`.Values` path a template uses exists, the chart's CRDs are the generated ones."""

import json
import os
import re
import unittest

import jsonschema
import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CHART = os.path.join(ROOT, "charts", "aws-access-operator")


def load_values():
    with open(os.path.join(CHART, "values.yaml")) as f:
        return yaml.safe_load(f)


def templates():
    base = os.path.join(CHART, "templates")
    for directory, _, files in os.walk(base):
        for name in files:
            if name.endswith((".yaml", ".tpl", ".txt")):
                path = os.path.join(directory, name)
                with open(path) as f:
                    yield os.path.relpath(path, CHART), f.read()


class ChartTest(unittest.TestCase):
    def test_values_match_the_schema(self):
        with open(os.path.join(CHART, "values.schema.json")) as f:
            schema = json.load(f)
        jsonschema.Draft7Validator.check_schema(schema)
        jsonschema.validate(load_values(), schema)
        # The schema refuses what would break the operator.
        for bad in [{"logFormat": "xml"}, {"grantCheckInterval": "5 minutes"}, {"aws": {"rateLimits": "ec2=5"}},
                    {"replicaCount": 0}, {"watchNamespaces": ["Not_A_Namespace"]}, {"unknownKey": True}]:
            values = load_values()
            values.update(bad)
            with self.assertRaises(jsonschema.ValidationError, msg=str(bad)):
                jsonschema.validate(values, schema)

    def test_every_values_path_in_templates_exists(self):
        values = load_values()
        used = set()
        for name, text in templates():
            for path in re.findall(r"\.Values((?:\.[A-Za-z0-9_]+)+)", text):
                used.add((name, path))
        self.assertGreater(len(used), 20)
        for name, path in sorted(used):
            node = values
            for key in path.strip(".").split("."):
                self.assertIsInstance(node, dict, f"{name}: .Values{path}")
                self.assertIn(key, node, f"{name} uses .Values{path}, which values.yaml does not define")
                node = node[key]

    def test_every_value_is_used(self):
        text = "".join(t for _, t in templates())
        def walk(prefix, node):
            for key, value in node.items():
                path = f"{prefix}.{key}"
                used = f".Values{path}" in text
                if isinstance(value, dict) and value and not used:
                    walk(path, value)
                else:
                    self.assertTrue(used or f".Values{path}." in text, f".Values{path} is never used")
        walk("", load_values())

    def test_chart_crds_are_the_generated_ones(self):
        for name in os.listdir(os.path.join(ROOT, "crds")):
            with open(os.path.join(ROOT, "crds", name)) as a, open(os.path.join(CHART, "files", "crds", name)) as b:
                self.assertEqual(a.read(), b.read(), name)
            with open(os.path.join(ROOT, "crds", name)) as a:
                crd = yaml.safe_load(a)
            self.assertEqual(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
                             "uninstalling the chart keeps the CRDs (and every object of them)")

    def test_every_option_values_set_every_value(self):
        """ci/every-option-values.yaml, which the chart tests lint, render and install, sets
        every value of values.yaml to something other than its default."""
        with open(os.path.join(CHART, "ci", "every-option-values.yaml")) as f:
            every = yaml.safe_load(f)

        def walk(prefix, default, chosen):
            for key, value in default.items():
                path = f"{prefix}.{key}"
                self.assertIn(key, chosen, f"ci/every-option-values.yaml does not set {path}")
                if isinstance(value, dict) and value:
                    walk(path, value, chosen[key])
                elif key not in ("install", "enabled", "create"):
                    # Switches are set to the value that renders the most; the rest all differ.
                    self.assertNotEqual(value, chosen[key], f"{path} is set to its default")
            for key in chosen:
                self.assertIn(key, default, f"ci/every-option-values.yaml sets {prefix}.{key}, which values.yaml lacks")
        walk("", load_values(), every)

    def test_the_chart_readme_lists_every_value(self):
        """`helm show readme` documents every value of values.yaml, by its full path."""
        with open(os.path.join(CHART, "README.md")) as f:
            readme = f.read()

        def walk(prefix, node):
            for key, value in node.items():
                path = f"{prefix}{key}"
                if isinstance(value, dict) and value:
                    walk(path + ".", value)
                else:
                    self.assertIn(f"`{path}`", readme, f"the chart's README does not list {path}")
        walk("", load_values())

    def test_deployment_is_hardened(self):
        text = dict(templates())["templates/deployment.yaml"]
        for needle in ["runAsNonRoot: true", "readOnlyRootFilesystem: true", "allowPrivilegeEscalation: false",
                       'drop: ["ALL"]', "type: RuntimeDefault", "path: /healthz", "path: /readyz"]:
            self.assertIn(needle, text)
        self.assertEqual(load_values()["replicaCount"], 2)

    def test_network_policy_lets_each_credential_mode_through(self):
        text = dict(templates())["templates/networkpolicy.yaml"]
        # EKS Pod Identity: the node's agent on port 80, IPv4 and IPv6.
        self.assertIn("{{- if .Values.networkPolicy.podIdentity }}", text)
        for needle in ["port: 80", "cidr: 169.254.170.23/32", "cidr: fd00:ec2::23/128"]:
            self.assertIn(needle, text)
        self.assertTrue(load_values()["networkPolicy"]["podIdentity"], "on by default")
        # IRSA: STS (global or regional) on 443, like the other AWS endpoints.
        self.assertIn("port: 443", text)


if __name__ == "__main__":
    unittest.main()


class ObservabilityTest(unittest.TestCase):
    """Every metric the operator exports is on the dashboard and in docs/cli.md, and the
    dashboard asks only for metrics that exist."""

    METRICS = ["aws_access_operator_reconciles_total", "aws_access_operator_reconcile_errors_total",
               "aws_access_operator_reconcile_duration_seconds", "aws_access_operator_leader",
               "aws_access_operator_aws_calls_total", "aws_access_operator_aws_throttled_total",
               "aws_access_operator_sync_duration_seconds", "aws_access_operator_inventory_items",
               "aws_access_operator_grants", "aws_access_operator_member_accounts",
               "aws_access_operator_access_requests", "aws_access_operator_access_request_transitions_total",
               "aws_access_operator_request_notifications_total",
               "aws_access_operator_request_admission_enforced",
               "aws_access_operator_request_admission_trusted_since_seconds",
               "aws_access_operator_permission_set_drift_total",
               "aws_access_operator_permission_set_provisioning_total",
               "aws_access_operator_identity_drift_total",
               "aws_access_operator_identity_writes_total",
               "aws_access_operator_waiting_for_connector_share"]

    def test_metrics_are_registered_documented_and_charted(self):
        with open(os.path.join(ROOT, "src", "controller", "metrics.rs")) as f:
            source = f.read()
        registered = {"aws_access_operator_" + n for n in re.findall(r'registry\.register\(\s*"([a-z_]+)"', source)}
        # prometheus-client adds _total to counters.
        exported = {m for m in self.METRICS}
        self.assertEqual({m.removesuffix("_total") for m in exported}, registered)
        with open(os.path.join(ROOT, "docs", "cli.md")) as f:
            readme = f.read()
        with open(os.path.join(ROOT, "docs", "grafana", "aws-access-operator.json")) as f:
            dashboard = json.load(f)
        exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
        for metric in exported:
            self.assertTrue(metric in readme, f"{metric} is not in docs/cli.md")
            self.assertIn(metric.removesuffix("_seconds") if metric.endswith("_seconds") else metric, exprs, f"{metric} is not charted")
        for used in re.findall(r"aws_access_operator_[a-z_]+", exprs):
            base = used.removesuffix("_bucket")
            self.assertIn(base, exported, f"the dashboard uses {used}, which is not exported")
