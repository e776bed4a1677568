"""The GitHub Actions workflows: schema-valid, zizmor-clean, pinned, OIDC-only, and consistent with
the stack files and the project's pins."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.pulumi_harness import REPO, stack_files, stack_name

WORKFLOWS = REPO / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))
BIN = Path(sys.executable).parent
PINNED_USES = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+\.\d+\.\d+\s*$")


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the `on` key as the boolean True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def _steps(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, step) for job_id, job in doc["jobs"].items() for step in job.get("steps", [])]


def _uses_lines() -> list[tuple[Path, str]]:
    return [
        (path, line.strip())
        for path in WORKFLOW_FILES
        for line in path.read_text().splitlines()
        if re.match(r"^\s*(-\s+)?uses:", line)
    ]


def _pin(requirements: Path, package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)", requirements.read_text(), re.MULTILINE)
    assert match, f"{package} is not pinned in {requirements.name}"
    return match.group(1)


def test_the_workflows_exist() -> None:
    assert {p.name for p in WORKFLOW_FILES} >= {"pull-request.yml", "deploy.yml"}


def test_workflows_match_the_github_workflow_schema() -> None:
    result = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, WORKFLOW_FILES),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_reports_no_findings() -> None:
    result = subprocess.run(
        [str(BIN / "zizmor"), "--offline", str(WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_action_is_pinned_by_commit_sha_with_a_version_comment() -> None:
    uses = _uses_lines()
    assert uses
    for path, line in uses:
        ref, _, comment = line.split("uses:", 1)[1].strip().partition(" ")
        if ref.startswith(("./", "$/")):
            continue  # this repository's own reusable workflow
        assert PINNED_USES.match(ref), f"{path.name}: {line!r} is not pinned to a full commit SHA"
        assert VERSION_COMMENT.search(comment), f"{path.name}: {line!r} lacks a '# vX.Y.Z' comment"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_permissions_are_granted_per_job_only(path: Path) -> None:
    doc = _load(path)
    assert doc.get("permissions") == {}, f"{path.name}: top-level permissions must be {{}}"
    for job_id, job in doc["jobs"].items():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{path.name}: job {job_id} must declare its permissions"
        assert set(perms.values()) <= {"read", "write", "none"}
        uses_aws = any(
            "configure-aws-credentials" in str(step.get("uses", "")) for step in job.get("steps", [])
        )
        comments = any(
            str(step.get("with", {}).get("comment-on-pr", "")).lower() == "true"
            for step in job.get("steps", [])
        )
        # id-token only where AWS is assumed through OIDC; pull-requests: write only where the
        # preview is commented; nothing else ever writes.
        assert (perms.get("id-token") == "write") == uses_aws, (path.name, job_id, perms)
        assert (perms.get("pull-requests") == "write") == comments, (path.name, job_id, perms)
        assert {k for k, v in perms.items() if v == "write"} <= {"id-token", "pull-requests"}


def test_aws_access_is_oidc_only() -> None:
    found_oidc = 0
    for path in WORKFLOW_FILES:
        text = path.read_text()
        for forbidden in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "aws-access-key-id",
            "aws-secret-access-key",
        ):
            assert forbidden not in text, f"{path.name} mentions {forbidden}"
        for _, step in _steps(_load(path)):
            if "configure-aws-credentials" in str(step.get("uses", "")):
                assert step["with"]["role-to-assume"].startswith("${{ vars."), step
                found_oidc += 1
    assert found_oidc >= 2  # preview and deploy


def test_checkouts_do_not_persist_credentials() -> None:
    checkouts = [
        step
        for path in WORKFLOW_FILES
        for _, step in _steps(_load(path))
        if "actions/checkout@" in str(step.get("uses"))
    ]
    assert checkouts
    assert all(step.get("with", {}).get("persist-credentials") is False for step in checkouts)


def test_python_version_is_quoted_311() -> None:
    versions = [
        step["with"]["python-version"]
        for path in WORKFLOW_FILES
        for _, step in _steps(_load(path))
        if "actions/setup-python@" in str(step.get("uses"))
    ]
    assert versions and set(versions) == {"3.11"}  # a string: unquoted 3.10 would be read as 3.1
    for path in WORKFLOW_FILES:
        assert "python-version: 3" not in path.read_text()


def _pulumi_steps(path: Path) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, step in _steps(_load(path)) if "pulumi/actions@" in str(step.get("uses"))]


@pytest.mark.parametrize(("name", "command"), [("pull-request.yml", "preview"), ("deploy.yml", "up")])
def test_pulumi_runs_every_stack_with_the_policy_pack(name: str, command: str) -> None:
    doc = _load(WORKFLOWS / name)
    steps = _pulumi_steps(WORKFLOWS / name)
    assert len(steps) == 1
    job_id, step = steps[0]
    settings = step["with"]
    assert settings["command"] == command
    assert settings["policyPacks"] == "policy"
    assert settings["stack-name"] == "${{ matrix.stack }}"
    assert settings["pulumi-version"] == _pin(REPO / "requirements.txt", "pulumi")
    assert step["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    if command == "preview":
        assert settings["comment-on-pr"] is True
    # The matrix covers exactly the AWS stack files, each with its own aws:region (clusterType
    # kubernetes stacks need a cluster of their own: e2e.yml runs them on kind).
    include = doc["jobs"][job_id]["strategy"]["matrix"]["include"]
    configs = {stack_name(path): yaml.safe_load(path.read_text())["config"] for path in stack_files()}
    expected = {
        stack: config["aws:region"]
        for stack, config in configs.items()
        if config.get("ray-on-eks:clusterType") != "kubernetes"
    }
    assert {entry["stack"]: entry["region"] for entry in include} == expected
    # Tests gate every preview and deploy.
    assert doc["jobs"][job_id]["needs"] == "checks"


def test_deploy_is_gated_by_environments_and_never_cancelled() -> None:
    text = (WORKFLOWS / "deploy.yml").read_text()
    assert "cancel-in-progress: true" not in text
    doc = _load(WORKFLOWS / "deploy.yml")
    assert doc["on"] == {"push": {"branches": ["main"]}}
    assert "concurrency" not in doc  # per stack, on the job
    (job_id, _step) = _pulumi_steps(WORKFLOWS / "deploy.yml")[0]
    job = doc["jobs"][job_id]
    assert job["environment"] == "${{ matrix.stack }}"
    assert job["concurrency"]["group"].endswith("${{ matrix.stack }}")
    assert job["concurrency"]["cancel-in-progress"] is False


def test_pull_request_previews_skip_forks() -> None:
    doc = _load(WORKFLOWS / "pull-request.yml")
    assert set(doc["on"]) == {"pull_request"}  # never pull_request_target: no secrets for fork code
    (job_id, _step) = _pulumi_steps(WORKFLOWS / "pull-request.yml")[0]
    assert "head.repo.full_name == github.repository" in doc["jobs"][job_id]["if"]


def test_checks_run_the_project_commands() -> None:
    doc = _load(WORKFLOWS / "checks.yml")
    runs = "\n".join(step.get("run", "") for _, step in _steps(doc))
    for command in (
        "pip install --quiet -r requirements-dev.txt",
        "ruff check .",
        "ruff format --check .",
        "mypy .",
        "python -m pytest",
    ):
        assert command in runs, command


# --------------------------------------------------------------------------------------------------
# e2e.yml: kind + the Pulumi CLI + KubeRay on every pull request
# --------------------------------------------------------------------------------------------------

E2E = WORKFLOWS / "e2e.yml"


def _e2e_job() -> dict[str, Any]:
    (job,) = _load(E2E)["jobs"].values()
    return job


def _e2e_runs() -> list[str]:
    """Each step's ``run`` script with the job's env variables substituted."""
    env = {key: str(value) for key, value in _e2e_job()["env"].items()}
    runs = []
    for step in _e2e_job()["steps"]:
        script = step.get("run", "")
        for key, value in env.items():
            script = script.replace(f'"${key}"', value).replace(f"${key}", value)
        runs.append(script)
    return runs


def test_e2e_runs_on_pull_requests_and_by_hand_without_secrets() -> None:
    doc = _load(E2E)
    assert set(doc["on"]) == {"pull_request", "workflow_dispatch"}
    text = E2E.read_text()
    assert "secrets." not in text and "vars." not in text
    assert _e2e_job()["permissions"] == {"contents": "read"}
    # The passphrase of the throwaway local stack is a literal, documented as not a secret.
    assert _e2e_job()["env"]["PULUMI_CONFIG_PASSPHRASE"] == "e2e-throwaway-not-a-secret"
    assert "NOT a secret" in text


def test_e2e_every_step_is_time_limited() -> None:
    job = _e2e_job()
    assert 0 < job["timeout-minutes"] <= 120
    for step in job["steps"]:
        assert 0 < step.get("timeout-minutes", 0) <= 40, step.get("name")


def test_e2e_installs_the_cli_with_the_official_action_at_the_pinned_version() -> None:
    (step,) = [s for s in _e2e_job()["steps"] if "pulumi/actions@" in str(s.get("uses"))]
    assert "command" not in step["with"]  # install only: the commands run in the steps below
    assert step["with"]["pulumi-version"] == _pin(REPO / "requirements.txt", "pulumi")
    (kind,) = [s for s in _e2e_job()["steps"] if "helm/kind-action@" in str(s.get("uses"))]
    assert kind["with"]["cluster_name"]


def test_e2e_runs_the_lifecycle_in_order() -> None:
    script = "\n".join(_e2e_runs())
    expected = [
        "pulumi login --local",
        "pulumi up --stack kind --yes",
        "--for=jsonpath='{.status.jobStatus}'=SUCCEEDED",
        "python -m workloads submit quickstart --stack kind",
        "pulumi destroy --stack kind --yes",
        "pulumi up --stack kind --yes",
        "--for=jsonpath='{.status.jobStatus}'=SUCCEEDED",
        "pulumi destroy --stack kind --yes",
    ]
    position = 0
    for command in expected:
        found = script.find(command, position)
        assert found >= 0, f"{command!r} missing (or out of order) in e2e.yml"
        position = found + len(command)


def test_e2e_uploads_operator_and_ray_logs_on_failure() -> None:
    steps = _e2e_job()["steps"]
    collect = [s for s in steps if "kubectl logs" in s.get("run", "")]
    upload = [s for s in steps if "actions/upload-artifact@" in str(s.get("uses"))]
    assert collect and upload
    for step in (*collect, *upload):
        assert step["if"] == "failure()"
    script = "\n".join(s["run"] for s in collect)
    assert "deployment/kuberay-operator" in script and '-n "$RAY_NAMESPACE"' in script
    log_dir = _e2e_job()["env"]["LOG_DIR"]
    assert upload[0]["with"]["path"] == log_dir


def test_e2e_names_what_pulumi_kind_yaml_deploys() -> None:
    env = _e2e_job()["env"]
    stack_file = REPO / f"Pulumi.{env['STACK']}.yaml"
    config = yaml.safe_load(stack_file.read_text())["config"]
    assert config["ray-on-eks:clusterType"] == "kubernetes"
    assert config.get("ray-on-eks:namespace", "ray") == env["RAY_NAMESPACE"]
    assert config.get("ray-on-eks:kuberay", {}).get("namespace", "kuberay-system") == env["KUBERAY_NAMESPACE"]
    jobs = {job["name"]: job["workload"] for job in config["ray-on-eks:rayJobs"]}
    assert jobs.get(env["RAY_JOB"]) == "quickstart"
    # The final check that destroy leaves no namespace behind needs retainData false.
    assert config["ray-on-eks:retainData"] is False


def test_e2e_installs_enough_for_the_program_and_the_cli() -> None:
    """The e2e venv leaves out torch and scikit-learn: neither the program nor the CLI may import them."""
    (install,) = [s for s in _e2e_job()["steps"] if "requirements.txt" in s.get("run", "")]
    assert "grep -v -E '^(torch|scikit-learn)=='" in install["run"]
    probe = (
        "import sys\n"
        "sys.modules.update(torch=None, sklearn=None)\n"
        "from tests.pulumi_harness import run_program\n"
        "run = run_program('kind')\n"
        "assert run.error is None, repr(run.error)\n"
        "from workloads import cli, jobs, remote\n"
        "cli.build_parser().parse_args(['submit', 'quickstart', '--stack', 'kind'])\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr


def test_readme_any_kubernetes_section_runs_the_workflow_commands() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Run it on any Kubernetes", 1)[1].split("\n## ", 1)[0]
    commands = [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
        for line in block.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    script = "\n".join(_e2e_runs())
    for command in (
        "pulumi login --local",
        "pulumi up --stack kind --yes",
        "python -m workloads submit quickstart --stack kind",
        "pulumi destroy --stack kind --yes",
    ):
        assert command in script
        assert any(command in line for line in commands), f"README does not show {command!r}"


# ---- images.yml: build once per images/ change, push by content hash ----------------------------------

IMAGE_PATHS = ["images/**", "components/builders/images.py", ".github/workflows/images.yml"]


def test_images_workflow_runs_when_images_change() -> None:
    doc = _load(WORKFLOWS / "images.yml")
    assert doc["on"]["push"] == {"branches": ["main"], "paths": IMAGE_PATHS}
    assert doc["on"]["pull_request"] == {"branches": ["main"], "paths": IMAGE_PATHS}
    assert "workflow_dispatch" in doc["on"]


def test_images_workflow_builds_every_flavour_and_pushes_only_from_main() -> None:
    from components.builders.images import FLAVOURS

    doc = _load(WORKFLOWS / "images.yml")
    build, push = doc["jobs"]["build"], doc["jobs"]["push"]
    for job in (build, push):
        assert job["strategy"]["matrix"]["flavour"] == list(FLAVOURS)
    # Pull requests build without credentials or a push.
    assert build["if"] == "github.event_name == 'pull_request'"
    assert build["permissions"] == {"contents": "read"}
    build_runs = " ".join(step.get("run", "") for step in build["steps"])
    assert "--push" not in build_runs and "docker login" not in build_runs
    # Pushes: main only, OIDC, never cancelled half-way.
    assert "github.ref == 'refs/heads/main'" in push["if"]
    assert push["permissions"] == {"contents": "read", "id-token": "write"}
    assert push["concurrency"]["cancel-in-progress"] is False
    (aws,) = [s for s in push["steps"] if "configure-aws-credentials" in str(s.get("uses"))]
    assert aws["with"]["role-to-assume"] == "${{ vars.IMAGES_ROLE_ARN }}"


def test_images_workflow_tags_by_content_hash_and_skips_existing_tags() -> None:
    doc = _load(WORKFLOWS / "images.yml")
    steps = {step["name"]: step for step in doc["jobs"]["push"]["steps"]}
    tag_step = steps["Content tag and registry"]
    assert 'python3 -m components.builders.images tag "$FLAVOUR"' in tag_step["run"]
    assert "aws ecr describe-images" in tag_step["run"]
    build = steps["Build and push (single manifest, no attestations)"]
    assert build["if"] == "steps.tag.outputs.exists == 'false'"
    for fragment in (
        "--platform linux/amd64",
        "--provenance=false",
        '--tag "${IMAGE}:${TAG}" --push',
        '--file "images/${FLAVOUR}/Dockerfile" images/',
        '--build-arg "REVISION=${REVISION}"',
    ):
        assert fragment in build["run"], fragment
    assert build["env"]["REVISION"] == "${{ github.sha }}"
    assert "rayImages" in steps["Digest for rayImages"]["run"]


def test_images_workflow_passes_values_to_scripts_through_env_only() -> None:
    # No ${{ }} expression inside a shell script: every value reaches it as an environment variable.
    for _, step in _steps(_load(WORKFLOWS / "images.yml")):
        assert "${{" not in step.get("run", ""), step.get("name")
