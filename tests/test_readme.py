"""README.md stays true: its commands, stack outputs and CI test command match the code."""

from __future__ import annotations

import re

from tests.pulumi_harness import REPO

README = (REPO / "README.md").read_text()


def test_readme_starts_with_the_two_fresh_machine_commands() -> None:
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in first_block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0].endswith("-m workloads run dt-pytorch")
    assert commands[1].endswith("-m pytest")


def test_ci_runs_the_readmes_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "python -m pytest\n" in ci
    assert "requirements-dev.txt" in ci


def test_every_stack_output_is_documented() -> None:
    exported = set(re.findall(r'pulumi\.export\("([A-Za-z]+)"', (REPO / "__main__.py").read_text()))
    table = README.split("### Stack outputs", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Za-z]+)`", table))
    assert exported, "no exports found in __main__.py"
    assert exported <= documented, f"undocumented stack outputs: {sorted(exported - documented)}"


def test_before_the_first_deploy_checks_what_the_program_installs() -> None:
    """The pre-deploy checks name the real add-ons, service accounts and Ray image tags."""
    from components.builders.storage import (
        FSX_CSI_CONTROLLER_SERVICE_ACCOUNT,
        S3_CSI_DRIVER_SERVICE_ACCOUNT,
    )
    from components.versions import EKS_ADDON_MAJOR_VERSIONS, ray_image

    section = README.split("### Before the first deploy", 1)[1].split("\n### ", 1)[0]
    for addon in EKS_ADDON_MAJOR_VERSIONS:
        assert f"--addon-name {addon}" in section, addon
    for account in (FSX_CSI_CONTROLLER_SERVICE_ACCOUNT, S3_CSI_DRIVER_SERVICE_ACCOUNT):
        assert f"--service-account {account}" in section, account
    for gpu in (False, True):
        assert f"docker manifest inspect {ray_image(gpu=gpu)}\n" in section
    for key in ("fsx.driver", "s3.driver", "managePodIdentityAgent", "fsx.driverVersion"):
        assert f"`{key}" in section, key
