"""A stand-in ``kubectl`` that serves pod lists from a JSON file, for running cluster scripts for real.

Only what the scripts under test use, with kubectl's semantics, and a loud failure for anything else
(so a script that starts using another flag fails its test instead of passing by accident):

* ``get pods -n NS [-l SELECTOR] [--field-selector=K=V[,...]] -o custom-columns=H:.path,...
  [--no-headers]``: label selectors ``key``, ``!key``, ``key=value``, ``key!=value``; field
  selectors on ``metadata.name``, ``metadata.namespace``, ``status.phase`` (what the API server
  supports for pods); a missing field prints ``<none>``, like kubectl;
* ``delete pod -n NS [--wait=false] NAME...``: removes the pods (NotFound for an unknown one).

State: ``$FAKE_KUBECTL_PODS`` (a JSON list of pod objects, rewritten on delete); every invocation is
appended to ``$FAKE_KUBECTL_LOG``, one JSON argv per line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _field(pod: dict[str, Any], path: str) -> Any:
    node: Any = pod
    for part in path.strip(".").split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _labels_match(pod: dict[str, Any], selector: str) -> bool:
    labels = _field(pod, "metadata.labels") or {}
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            ok = labels.get(key) != value
        elif "=" in term:
            key, value = term.split("=", 1)
            ok = labels.get(key.rstrip("=")) == value
        elif term.startswith("!"):
            ok = term[1:] not in labels
        else:
            ok = term in labels
        if not ok:
            return False
    return True


def _fields_match(pod: dict[str, Any], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if key not in ("metadata.name", "metadata.namespace", "status.phase"):
            _fail(f'field label not supported: "{key}"')
        if _field(pod, key) != value:
            return False
    return True


def _options(
    args: list[str], flags_with_value: set[str], switches: set[str]
) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    positional: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        name, eq, value = arg.partition("=")
        if name in flags_with_value:
            if not eq:
                index += 1
                if index >= len(args):
                    _fail(f"flag needs an argument: {name}")
                value = args[index]
            options[name] = value
        elif name in switches:
            options[name] = value if eq else "true"
        elif arg.startswith("-"):
            _fail(f"unknown flag: {arg}")
        else:
            positional.append(arg)
        index += 1
    return options, positional


def main(argv: list[str]) -> None:
    with open(os.environ["FAKE_KUBECTL_LOG"], "a") as log:
        log.write(json.dumps(argv) + "\n")
    state = Path(os.environ["FAKE_KUBECTL_PODS"])
    pods: list[dict[str, Any]] = json.loads(state.read_text())
    if argv[:2] == ["get", "pods"]:
        opts, rest = _options(argv[2:], {"-n", "-l", "--field-selector", "-o"}, {"--no-headers"})
        if rest:
            _fail(f"unexpected arguments {rest}")
        output = opts.get("-o", "")
        if not output.startswith("custom-columns="):
            _fail(f"output format {output!r} not served by the fake")
        columns = [column.split(":", 1) for column in output.removeprefix("custom-columns=").split(",")]
        namespace = opts.get("-n", "default")
        rows = []
        for pod in pods:
            if _field(pod, "metadata.namespace") != namespace:
                continue
            if not _labels_match(pod, opts.get("-l", "")) or not _fields_match(
                pod, opts.get("--field-selector", "")
            ):
                continue
            rows.append(
                [str(_field(pod, path) if _field(pod, path) is not None else "<none>") for _, path in columns]
            )
        if not rows:
            print(f"No resources found in {namespace} namespace.", file=sys.stderr)
            return
        if opts.get("--no-headers") != "true":
            rows.insert(0, [header for header, _ in columns])
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        for row in rows:
            print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        return
    if argv[:2] == ["delete", "pod"]:
        opts, names = _options(argv[2:], {"-n"}, {"--wait"})
        namespace = opts.get("-n", "default")
        for name in names:
            match = [
                p
                for p in pods
                if _field(p, "metadata.name") == name and _field(p, "metadata.namespace") == namespace
            ]
            if not match:
                _fail(f'pods "{name}" not found')
            pods.remove(match[0])
            print(f'pod "{name}" deleted')
        state.write_text(json.dumps(pods))
        return
    _fail(f"the fake kubectl does not serve {' '.join(argv[:2])!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
