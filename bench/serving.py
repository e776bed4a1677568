"""Serving: the ``serve`` app on Ray Serve against a plain uvicorn server of the same model.

Why: the Serve app was measured collapsing under concurrency (~15 req/s and 10 s p99 at 64 clients
against ~850 req/s from plain uvicorn). This benchmark measures throughput and p50/p99 latency of
both at concurrency 1, 16 and 64, on loopback, in two regimes:

* ``overhead`` -- the digits model as trained (64-128-128-10 MLP): a forward costs microseconds, so
  the numbers are the serving path (ingress, replica, JSON) and nothing else;
* ``compute`` -- the same model code with a hidden width chosen so that ONE row's forward costs at
  least ``--min-forward-ms`` (5 ms): the forward dominates, and batching is what can win.

Fairness: the baseline (``bench._serving_baseline``) runs in its own process with the same torch
thread count as a replica, and both it and the Ray head (every Serve actor is its descendant) are
pinned to the same CPUs. Baseline and Serve runs are interleaved (order alternating per
repetition); medians and min-max are reported with the load average. The load generator is bounded
(a fixed number of requests or a duration, whichever ends first; a per-request timeout) and counts
errors and timeouts. Next to each measurement it records the CPU each process spent per answered
request (HAProxy, proxy actor, replica, controller, the rest of Ray, the baseline, the client): which
hop costs what. ``--profile`` adds a py-spy record of the proxy actor and the replica during a
concurrency-64 Serve run.

Ingress (``--ingress``): ``haproxy`` (default) is what a RayService of this stack runs
(``rayServices[].highThroughputIngress``, workloads/serve_ingress.py): HAProxy on the Serve port and
the replica serving HTTP itself. ``proxy`` is Ray's default path (Python proxy actor -> router ->
replica actor call), kept to measure what the switch gained.

Run (from the repo root, through /work/notes/with-ray on the shared machine):
``python -m bench.serving --repeat 3``
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/serving.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common as common

NAME = "serving"
SERVERS = ("baseline", "serve")
REGIMES = ("overhead", "compute")
CONCURRENCY = (1, 16, 64)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

DESCRIPTION = (
    "Throughput and p50/p99 latency of the serve app on Ray Serve (HAProxy -> replica's own HTTP server, "
    "the stack's default ingress; @serve.batch) "
    "against a plain uvicorn + Starlette server of the same model (one forward per request, same JSON API), "
    "at 1, 16 and 64 concurrent loopback clients, interleaved. Regime 'overhead': the digits model as "
    "trained (a forward costs ~0.03 ms, so this measures the serving path). Regime 'compute': the same "
    "model code with a hidden width whose single-row forward costs >= 5 ms. Both servers on the same CPUs, "
    "1 torch thread each; the CPU table says which process spent what per answered request."
)

INGRESSES = ("haproxy", "proxy")


def ingress_env(ingress: str) -> dict[str, str]:
    """Environment of the local head for ``ingress`` (both variables set either way: explicit)."""
    from workloads.serve_ingress import HIGH_THROUGHPUT_ENV

    return {name: ("1" if ingress == "haproxy" else "0") for name in HIGH_THROUGHPUT_ENV}


# Targets (issue 15): Serve's throughput at least 1.0x / 0.5x the baseline's, p50 at most 2x.
COMPUTE_THROUGHPUT_MIN = 1.0
OVERHEAD_THROUGHPUT_MIN = 0.5
OVERHEAD_P50_MAX = 2.0


# --- The verdict: pure, fed with medians (tests/bench/test_serving_verdict.py). ---


def _throughput_target(
    name: str, baseline: float | None, serve: float | None, minimum: float
) -> dict[str, Any]:
    """``Serve throughput >= minimum x baseline``, stated as ``baseline / Serve <= 1 / minimum``."""
    limit = round(1.0 / minimum, 6)
    if baseline is not None and baseline > 0 and serve is not None and serve <= 0:
        # Serve answered nothing while the baseline did: a miss, not a missing measurement.
        return {"name": name, "value": None, "limit": limit, "unit": "x", "met": False, "verdict": "MISSED"}
    return common.target(name, common.ratio(baseline, serve), limit)


def verdicts(
    medians: Mapping[str, Mapping[int, Mapping[str, Mapping[str, float | None]]]],
) -> list[dict[str, Any]]:
    """The three targets from ``medians[regime][concurrency][server] = {"throughput_rps", "p50_s", ...}``.

    A regime or concurrency that was not measured gives the verdict ``not measured``.
    """

    def cell(regime: str, concurrency: int, server: str, key: str) -> float | None:
        value = ((medians.get(regime) or {}).get(concurrency) or {}).get(server, {}).get(key)
        return None if value is None else float(value)

    return [
        _throughput_target(
            "compute-bound c64: baseline / Serve throughput (Serve >= 1.0x)",
            cell("compute", 64, "baseline", "throughput_rps"),
            cell("compute", 64, "serve", "throughput_rps"),
            COMPUTE_THROUGHPUT_MIN,
        ),
        _throughput_target(
            "overhead-bound c64: baseline / Serve throughput (Serve >= 0.5x)",
            cell("overhead", 64, "baseline", "throughput_rps"),
            cell("overhead", 64, "serve", "throughput_rps"),
            OVERHEAD_THROUGHPUT_MIN,
        ),
        common.target(
            "overhead-bound c1: Serve p50 / baseline p50",
            common.ratio(cell("overhead", 1, "serve", "p50_s"), cell("overhead", 1, "baseline", "p50_s")),
            OVERHEAD_P50_MAX,
        ),
    ]


# --- The load generator. ---


@dataclass
class Load:
    """One bounded load run against one URL."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    timeouts: int = 0
    errors: int = 0
    wall_s: float = 0.0
    client: str = ""

    def summary(self) -> dict[str, Any]:
        ok = len(self.latencies_s)
        ordered = sorted(self.latencies_s)
        return {
            "ok": ok,
            "timeouts": self.timeouts,
            "errors": self.errors,
            "statuses": dict(self.statuses),
            "wall_s": round(self.wall_s, 3),
            "throughput_rps": ok / self.wall_s if self.wall_s > 0 else 0.0,
            "p50_s": percentile(ordered, 50),
            "p99_s": percentile(ordered, 99),
            "client": self.client,
        }


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values (``None`` when empty)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 100))
    return float(ordered[int(rank) - 1])


async def _aiohttp_load(
    url: str, bodies: Sequence[bytes], *, concurrency: int, requests: int, duration_s: float, timeout_s: float
) -> Load:
    import aiohttp

    result = Load(client=f"aiohttp {aiohttp.__version__}")
    sent = 0
    deadline = 0.0
    headers = {"Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while sent < requests and time.perf_counter() < deadline:
            body = bodies[sent % len(bodies)]
            sent += 1
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except TimeoutError:
                result.timeouts += 1
                continue
            except (aiohttp.ClientError, OSError):
                result.errors += 1
                continue
            result.statuses[str(status)] += 1
            if status == 200:
                result.latencies_s.append(time.perf_counter() - start)
            else:
                result.errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        deadline = start + duration_s
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - start
    return result


def run_load(
    url: str, bodies: Sequence[bytes], *, concurrency: int, requests: int, duration_s: float, timeout_s: float
) -> Load:
    """Send at most ``requests`` POSTs for at most ``duration_s`` from ``concurrency`` clients."""
    return asyncio.run(
        _aiohttp_load(
            url,
            bodies,
            concurrency=concurrency,
            requests=requests,
            duration_s=duration_s,
            timeout_s=timeout_s,
        )
    )


# --- CPU accounting per process: which hop costs what. ---


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """``(ppid, cpu seconds)`` of ``pid`` from /proc, ``None`` when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


HOPS = ("haproxy", "proxy", "replica", "controller", "ray_other")


def classify(cmdline: str) -> str:
    """The hop a Ray process serves: HAProxy, proxy actor, replica, controller or the rest of Ray."""
    if "haproxy" in cmdline.split(" ", 1)[0]:
        return "haproxy"
    if "ProxyActor" in cmdline:
        return "proxy"
    if "ServeReplica" in cmdline:
        return "replica"
    if "ServeController" in cmdline:
        return "controller"
    return "ray_other"


def cpu_by_group(head_pid: int | None, baseline_pid: int | None) -> dict[str, float]:
    """CPU seconds so far per group (Ray processes under the head, the baseline, this client)."""
    groups: dict[str, float] = {}
    if head_pid is not None:
        for pid in descendants(head_pid):
            stat = _proc_stat(pid)
            if stat is not None:
                group = classify(_cmdline(pid))
                groups[group] = groups.get(group, 0.0) + stat[1]
    if baseline_pid is not None:
        stat = _proc_stat(baseline_pid)
        if stat is not None:
            groups["baseline"] = stat[1]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    groups["client"] = usage.ru_utime + usage.ru_stime
    return groups


def cpu_ms_per_request(before: Mapping[str, float], after: Mapping[str, float], ok: int) -> dict[str, float]:
    """CPU milliseconds per answered request, per group (groups that did not move are left out)."""
    result = {}
    for group in sorted(set(before) | set(after)):
        spent = after.get(group, 0.0) - before.get(group, 0.0)
        if spent > 0 and ok > 0:
            result[group] = round(1000.0 * spent / ok, 3)
    return result


# --- Models, servers. ---


def forward_ms(hidden_dim: int, *, rows: int = 1, threads: int = 1, repeat: int = 30) -> float:
    """Median milliseconds of one forward of ``rows`` rows through the dt-pytorch MLP."""
    import torch

    from workloads.dt_pytorch.model import build_model

    torch.set_num_threads(threads)
    model = build_model(input_dim=64, hidden_dim=hidden_dim, num_classes=10).eval()
    inputs = torch.randn(rows, 64)
    samples = []
    with torch.no_grad():
        for _ in range(3):
            model(inputs)
        for _ in range(repeat):
            start = time.perf_counter()
            model(inputs)
            samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def write_models(root: Path, *, min_forward_ms: float, quick: bool) -> dict[str, dict[str, Any]]:
    """The digits model trained as dt-pytorch trains it (a short fit) and a wide one of >= ``min_forward_ms``."""
    import numpy as np
    import torch

    from workloads.dt_pytorch import train
    from workloads.dt_pytorch.data import load_digits
    from workloads.dt_pytorch.model import ModelMeta, build_model, write_model_dir

    split = load_digits(seed=0)
    torch.manual_seed(0)
    hidden = train.HIDDEN_DIM
    model = build_model(input_dim=64, hidden_dim=hidden, num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.as_tensor(split.x_train / split.feature_scale, dtype=torch.float32)
    y = torch.as_tensor(split.y_train, dtype=torch.long)
    for _ in range(60 if quick else 200):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        test = torch.as_tensor(split.x_test / split.feature_scale, dtype=torch.float32)
        accuracy = float((model(test).argmax(dim=1).numpy() == np.asarray(split.y_test)).mean())
    models: dict[str, dict[str, Any]] = {}

    def publish(regime: str, net: torch.nn.Module, width: int, acc: float) -> None:
        meta = ModelMeta(
            input_dim=64,
            hidden_dim=width,
            num_classes=10,
            feature_scale=split.feature_scale,
            dataset="digits",
            epoch=1,
            held_out_accuracy=acc,
        )
        write_model_dir(root / regime, state_dict=net.state_dict(), meta=meta)
        models[regime] = {
            "path": str(root / regime),
            "hidden_dim": width,
            "held_out_accuracy": round(acc, 4),
            "forward_ms_1_row": round(forward_ms(width), 3),
            "forward_ms_64_rows": round(forward_ms(width, rows=64, repeat=10), 3),
        }

    publish("overhead", model, hidden, accuracy)
    width = 4096
    while forward_ms(width, repeat=10) < min_forward_ms and width < 16384:
        width = int(width * 1.25)
    torch.manual_seed(1)
    publish("compute", build_model(input_dim=64, hidden_dim=width, num_classes=10).eval(), width, 0.0)
    models["bodies"] = {"rows": [[float(v) for v in row] for row in split.x_test[:256]]}
    return models


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status == 200:
                    return
        except OSError as error:
            last = str(error)
        time.sleep(0.5)
    raise RuntimeError(f"{url} not healthy after {timeout_s:.0f}s: {last}")


def start_baseline(model_dir: str, port: int, threads: int, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench._serving_baseline",
            "--model",
            model_dir,
            "--port",
            str(port),
            "--threads",
            str(threads),
        ],
        cwd=common.REPO,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def serve_pids(head_pid: int) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for pid in descendants(head_pid):
        found.setdefault(classify(_cmdline(pid)), []).append(pid)
    return found


def py_spy_record(pids: Mapping[str, int], seconds: int, out_dir: Path) -> dict[str, Any]:
    """Start ``py-spy record`` (raw collapsed stacks) on each pid; returns the running processes."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    running = {}
    for name, pid in pids.items():
        out = out_dir / f"{name}.txt"
        running[name] = (
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(seconds),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            ),
            out,
        )
    return running


def top_frames(raw: str, *, limit: int = 12) -> dict[str, Any]:
    """Self and inclusive sample shares of the hottest frames in py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [
            frame.split(" (")[0] + " (" + frame.split(" (")[-1].rsplit("/", 1)[-1] if " (" in frame else frame
            for frame in stack.split(";")
        ]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return {
        "samples": total,
        "self": [[frame, round(100 * n / total, 1)] for frame, n in own.most_common(limit)] if total else [],
        "inclusive": [[frame, round(100 * n / total, 1)] for frame, n in inclusive.most_common(limit * 2)]
        if total
        else [],
    }


# --- The run. ---


def measure_cell(
    url: str,
    bodies: Sequence[bytes],
    *,
    concurrency: int,
    args: Any,
    accounting: Callable[[], dict[str, float]],
) -> dict[str, Any]:
    before = accounting()
    load = run_load(
        url,
        bodies,
        concurrency=concurrency,
        requests=args.requests,
        duration_s=args.duration_s,
        timeout_s=args.timeout_s,
    )
    after = accounting()
    summary = load.summary()
    summary["cpu_ms_per_request"] = cpu_ms_per_request(before, after, summary["ok"])
    summary["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return summary


def median_of(samples: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if s.get(key) is not None]
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(NAME, __doc__.split("\n\n")[0], default_repeat=3)
    parser.add_argument("--requests", type=int, default=4000, help="requests per measurement at most")
    parser.add_argument("--duration-s", type=float, default=8.0, help="seconds per measurement at most")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="per-request timeout")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated client counts")
    parser.add_argument("--regimes", default="overhead,compute", help="overhead and/or compute")
    parser.add_argument("--min-forward-ms", type=float, default=5.0, help="compute regime: one row's forward")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of the baseline (a replica uses 1)"
    )
    parser.add_argument("--replicas", type=int, default=1, help="Serve replicas")
    parser.add_argument("--cpus", default="", help="CPUs for both servers, e.g. 0,1 (default: all)")
    parser.add_argument("--profile", action="store_true", help="py-spy record proxy + replica under load")
    parser.add_argument(
        "--profile-clients", type=int, default=64, help="concurrent clients while --profile records"
    )
    parser.add_argument(
        "--ingress",
        choices=INGRESSES,
        default="haproxy",
        help="haproxy: HAProxy + direct ingress (the stack's RayServices); proxy: Ray's Python proxy actor",
    )
    parser.add_argument(
        "--local-dir", type=Path, default=None, help="the Ray head's state dir (default: temp)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.duration_s = min(args.requests, 60), min(args.duration_s, 2.0)
    concurrencies = [int(c) for c in args.concurrency.split(",") if c]
    regimes = [r for r in args.regimes.split(",") if r]
    unknown = sorted(set(regimes) - set(REGIMES))
    if unknown:
        parser.error(f"--regimes: unknown {unknown}; use {','.join(REGIMES)}")
    run = common.Run(NAME, "Serving: Ray Serve vs plain uvicorn", DESCRIPTION, args)
    cpus = sorted(int(c) for c in args.cpus.split(",") if c) or sorted(os.sched_getaffinity(0))

    from bench._ray import LocalHead, client_env
    from workloads import jobs
    from workloads.catalog import get_workload, workload_env
    from workloads.jobs import Target

    os.environ.update({k: v for k, v in client_env().items() if k == "RAY_USAGE_STATS_ENABLED"})
    # The local head takes RAY_SERVE_* settings from this environment before its own defaults.
    os.environ.update(ingress_env(args.ingress))
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    local_dir = args.local_dir or work / "ray"
    common.progress(NAME, f"writing models under {work}")
    models = write_models(work / "models", min_forward_ms=args.min_forward_ms, quick=args.quick)
    rows = models.pop("bodies")["rows"]
    bodies = [json.dumps({"instances": [row]}).encode() for row in rows]
    cells: dict[str, dict[int, dict[str, list[dict[str, Any]]]]] = {}
    profiles: dict[str, Any] = {}
    failures: list[str] = []
    own_affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)  # inherited by the head (and every Serve actor) and the baseline
    head = LocalHead(local_dir, num_cpus=2)
    try:
        head.start()
        os.sched_setaffinity(0, own_affinity)
        cluster = head._running()
        target = Target(address=head.dashboard_url)
        for regime in regimes:
            model = models[regime]
            common.progress(
                NAME, f"{regime}: hidden {model['hidden_dim']}, forward {model['forward_ms_1_row']} ms"
            )
            env = workload_env(get_workload("serve"), {"MODEL_PATH": model["path"]})
            jobs.deploy_serve(
                target,
                get_workload("serve"),
                env=env,
                staging_dir=work / f"stage-{regime}",
                with_pip=False,
                output=lambda line: common.progress(NAME, line),
                http_host="127.0.0.1",
                http_port=cluster.serve_port,
                num_replicas=args.replicas,
            )
            port = free_port()
            os.sched_setaffinity(0, cpus)
            baseline = start_baseline(model["path"], port, args.threads, work / f"baseline-{regime}.log")
            os.sched_setaffinity(0, own_affinity)
            urls = {"baseline": f"http://127.0.0.1:{port}", "serve": cluster.serve_url}
            try:
                for url in urls.values():
                    wait_healthy(f"{url}/healthz")
                accounting = {
                    "baseline": functools.partial(cpu_by_group, None, baseline.pid),
                    "serve": functools.partial(cpu_by_group, cluster.pid, None),
                }
                for url in urls.values():  # warm up: connections, first forwards
                    run_load(
                        f"{url}/predict", bodies, concurrency=4, requests=50, duration_s=10, timeout_s=30
                    )
                for repetition in range(args.repeat):
                    for concurrency in concurrencies:
                        order = SERVERS if repetition % 2 == 0 else SERVERS[::-1]
                        for server in order:
                            summary = measure_cell(
                                f"{urls[server]}/predict",
                                bodies,
                                concurrency=concurrency,
                                args=args,
                                accounting=accounting[server],
                            )
                            cells.setdefault(regime, {}).setdefault(concurrency, {}).setdefault(
                                server, []
                            ).append(summary)
                            common.progress(
                                NAME,
                                f"{regime} c{concurrency} {server}: {summary['throughput_rps']:.0f} req/s "
                                f"p50 {summary['p50_s']} p99 {summary['p99_s']} "
                                f"timeouts {summary['timeouts']} errors {summary['errors']} "
                                f"cpu/req {summary['cpu_ms_per_request']}",
                            )
                if args.profile:
                    profiles[regime] = profile_serve(
                        head_pid=cluster.pid,
                        serve_url=cluster.serve_url,
                        bodies=bodies,
                        args=args,
                        work=work,
                        regime=regime,
                    )
            finally:
                baseline.terminate()
                try:
                    baseline.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    baseline.kill()
    except Exception as error:
        failures.append(f"{type(error).__name__}: {error}")
        raise
    finally:
        os.sched_setaffinity(0, own_affinity)
        head.stop()
        write_result(
            run,
            args=args,
            models=models,
            cells=cells,
            profiles=profiles,
            failures=failures,
            cpus=cpus,
            concurrencies=concurrencies,
            regimes=regimes,
        )
        shutil.rmtree(work, ignore_errors=True)
    return 0


def profile_serve(
    *, head_pid: int, serve_url: str, bodies: Sequence[bytes], args: Any, work: Path, regime: str
) -> dict[str, Any]:
    """py-spy record the proxy and the replica while ``--profile-clients`` clients load Serve."""
    pids = serve_pids(head_pid)
    chosen = {name: pids[name][0] for name in ("proxy", "replica") if pids.get(name)}
    out_dir = work / f"profile-{regime}"
    out_dir.mkdir(exist_ok=True)
    seconds = max(2, int(args.duration_s))
    running = py_spy_record(chosen, seconds, out_dir)
    load = run_load(
        f"{serve_url}/predict",
        bodies,
        concurrency=args.profile_clients,
        requests=10**9,
        duration_s=seconds + 1,
        timeout_s=args.timeout_s,
    )
    result: dict[str, Any] = {"load": load.summary()}
    for name, (process, out) in running.items():
        try:
            _, error = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            _, error = process.communicate()
        text = out.read_text() if out.exists() else ""
        result[name] = top_frames(text) if text else {"error": error.decode(errors="replace")[-500:]}
    return result


def write_result(
    run: common.Run,
    *,
    args: Any,
    models: Mapping[str, Any],
    cells: Mapping[str, Mapping[int, Mapping[str, list[dict[str, Any]]]]],
    profiles: Mapping[str, Any],
    failures: list[str],
    cpus: list[int],
    concurrencies: list[int],
    regimes: list[str],
) -> None:
    medians: dict[str, dict[int, dict[str, dict[str, float | None]]]] = {}
    rows = []
    hops_rows = []
    for regime in regimes:
        for concurrency in concurrencies:
            per_server = (cells.get(regime) or {}).get(concurrency) or {}
            entry: dict[str, dict[str, float | None]] = {}
            for server in SERVERS:
                samples = per_server.get(server) or []
                entry[server] = {key: median_of(samples, key) for key in ("throughput_rps", "p50_s", "p99_s")}
                throughput = common.summarize([s["throughput_rps"] for s in samples])
                p50 = common.summarize([s["p50_s"] for s in samples if s["p50_s"] is not None])
                p99 = common.summarize([s["p99_s"] for s in samples if s["p99_s"] is not None])
                bad = sum(s["timeouts"] + s["errors"] for s in samples)
                rows.append(
                    [
                        regime,
                        concurrency,
                        server,
                        _fmt_range(throughput, 1.0, 0),
                        _fmt_range(p50, 1000.0, 1),
                        _fmt_range(p99, 1000.0, 1),
                        bad,
                    ]
                )
                cpu: Counter[str] = Counter()
                for sample in samples:
                    cpu.update(sample.get("cpu_ms_per_request") or {})
                if samples:
                    hops_rows.append(
                        [regime, concurrency, server]
                        + [
                            f"{cpu[g] / len(samples):.2f}" if g in cpu else "-"
                            for g in (*HOPS, "baseline", "client")
                        ]
                    )
            medians.setdefault(regime, {})[concurrency] = entry
            base, serve = entry["baseline"]["throughput_rps"], entry["serve"]["throughput_rps"]
            rows[-1].append(common.fmt_x(common.ratio(serve, base)))
            rows[-2].append("")
    targets = verdicts(medians)
    notes = [
        f"models: {json.dumps(dict(models))}",
        f"both servers pinned to CPUs {cpus} (the Ray head and all its actors inherit the affinity); "
        f"baseline torch threads {args.threads}; Serve replicas {args.replicas}; Serve ingress "
        f"{args.ingress} ({'HAProxy + direct ingress, the stack default' if args.ingress == 'haproxy' else 'Python proxy actor'})",
        f"load: at most {args.requests} requests or {args.duration_s} s per measurement, per-request "
        f"timeout {args.timeout_s} s, one digit row per request; client {_client_name(cells)}",
        "CPU ms per request: CPU time each process group spent during the measurement divided by the "
        "answered requests (the Ray head's idle work is included in ray_other)",
    ]
    notes += hop_notes(cells)
    notes += [f"failure: {f[-500:]}" for f in failures]
    for regime, profile in profiles.items():
        for hop in ("proxy", "replica"):
            frames = (profile.get(hop) or {}).get("self") or []
            if frames:
                hot = "; ".join(f"{frame} {share}%" for frame, share in frames[:6])
                notes.append(
                    f"py-spy {regime} c{args.profile_clients} {hop} ({profile[hop]['samples']} samples), "
                    f"self time: {hot}"
                )
    run.write(
        settings={
            "requests": args.requests,
            "duration_s": args.duration_s,
            "timeout_s": args.timeout_s,
            "concurrency": concurrencies,
            "regimes": regimes,
            "threads": args.threads,
            "replicas": args.replicas,
            "cpus": cpus,
            "ingress": args.ingress,
        },
        targets=targets,
        table={
            "columns": [
                "regime",
                "clients",
                "server",
                "req/s",
                "p50 ms",
                "p99 ms",
                "timeouts+errors",
                "Serve/base req/s",
            ],
            "rows": rows,
        },
        extra_tables=[
            {
                "title": "CPU ms per answered request, by process (mean over repetitions)",
                "columns": [
                    "regime",
                    "clients",
                    "server",
                    "haproxy",
                    "proxy",
                    "replica",
                    "controller",
                    "ray other",
                    "baseline",
                    "client",
                ],
                "rows": hops_rows,
            }
        ],
        notes=notes,
        results={"models": dict(models), "medians": medians, "cells": cells, "profiles": dict(profiles)},
    )


def hop_notes(cells: Mapping[str, Mapping[Any, Mapping[str, list[dict[str, Any]]]]]) -> list[str]:
    """Which hop costs what: mean CPU ms per answered request by process group, Serve vs baseline.

    On a machine of ``n`` CPUs, a path spending ``c`` CPU-ms per request cannot answer more than
    ``1000 * n / c`` requests per second however it is scheduled: the note states that ceiling.
    """
    notes = []
    cpus = os.cpu_count() or 1
    for regime, per_c in cells.items():
        for concurrency, per_server in per_c.items():
            means: dict[str, dict[str, float]] = {}
            for server, samples in per_server.items():
                total: Counter[str] = Counter()
                for sample in samples:
                    total.update(sample.get("cpu_ms_per_request") or {})
                means[server] = {g: v / len(samples) for g, v in total.items()} if samples else {}
            serve, base = means.get("serve") or {}, means.get("baseline") or {}
            if not serve or not base:
                continue
            serve_total = sum(v for g, v in serve.items() if g != "client")
            base_total = sum(v for g, v in base.items() if g != "client")
            hops = ", ".join(f"{g} {serve[g]:.2f}" for g in HOPS if g in serve)
            notes.append(
                f"{regime} c{concurrency}: Serve spends {serve_total:.2f} CPU-ms per request ({hops}) against "
                f"{base_total:.2f} in the baseline process: a CPU ceiling of ~{1000 * cpus / serve_total:.0f} "
                f"vs ~{1000 * cpus / base_total:.0f} req/s on {cpus} CPUs"
            )
    return notes


def _fmt_range(summary: Mapping[str, Any], scale: float, digits: int) -> str:
    if not summary or summary.get("median") is None:
        return "n/a"
    return (
        f"{summary['median'] * scale:.{digits}f} "
        f"({summary['min'] * scale:.{digits}f}-{summary['max'] * scale:.{digits}f})"
    )


def _client_name(cells: Mapping[str, Any]) -> str:
    for per_c in cells.values():
        for per_server in per_c.values():
            for samples in per_server.values():
                if samples:
                    return str(samples[0].get("client"))
    return "n/a"


if __name__ == "__main__":
    raise SystemExit(main())
