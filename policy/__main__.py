"""Entry point of the ray-on-eks guardrails policy pack (run by ``pulumi preview --policy-pack policy``).

Constructing ``PolicyPack`` starts the analyzer server for the Pulumi engine and blocks, so the
policies themselves live in ``policy/policies.py`` (importable by the tests without an engine).
"""

import sys
from pathlib import Path

# The engine runs this file as a script from the policy folder; the checks are imported as the
# `policy` package from the repository root, exactly as the tests import them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policy.policies import PACK_NAME, POLICIES

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=list(POLICIES),
    description="ray-on-eks guardrails: no AWS keys, private dashboards, restricted security groups, "
    "private encrypted buckets, retained data, sized Ray pods, pinned images.",
)
