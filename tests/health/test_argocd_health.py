"""Runs the shipped Argo CD health script (Lua) on the fixtures the Rust decision is tested
with: the two must agree."""

import json
import os
import unittest

import lupa
import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def run_lua(script, obj):
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(to_lua(lua, obj))
    result = lua.execute(script)
    return result["status"], result["message"]


def to_lua(lua, value):
    if isinstance(value, dict):
        return {k: (lua.table_from(to_lua(lua, v)) if isinstance(v, (dict, list)) else v) for k, v in value.items()}
    if isinstance(value, list):
        return [lua.table_from(to_lua(lua, v)) if isinstance(v, (dict, list)) else v for v in value]
    return value


class ArgoCdHealthTest(unittest.TestCase):
    def test_script_matches_the_fixtures(self):
        with open(os.path.join(ROOT, "docs", "gitops", "argocd-health.lua")) as f:
            script = f.read()
        with open(os.path.join(ROOT, "tests", "health", "fixtures.json")) as f:
            fixtures = json.load(f)
        self.assertGreaterEqual(len(fixtures), 10)
        for fixture in fixtures:
            status, message = run_lua(script, fixture["object"])
            self.assertEqual(status, fixture["status"], fixture["name"])
            self.assertEqual(message, fixture["message"], fixture["name"])

    def test_argocd_cm_carries_the_same_script_for_every_kind(self):
        with open(os.path.join(ROOT, "docs", "gitops", "argocd-health.lua")) as f:
            script = f.read()
        with open(os.path.join(ROOT, "docs", "gitops", "argocd-cm.yaml")) as f:
            cm = yaml.safe_load(f)
        for kind in ["AwsConnector", "AccessGrant", "PermissionSet", "IdentityCenterUser",
                     "IdentityCenterGroup", "IamUser"]:
            self.assertEqual(cm["data"][f"resource.customizations.health.awsaccess.io_{kind}"].strip(), script.strip())


if __name__ == "__main__":
    unittest.main()
