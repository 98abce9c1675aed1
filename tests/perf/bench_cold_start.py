"""Cold start: each handler of serverless.yml imported in a fresh interpreter, as Scaleway does.

For every function: the import time of its handler file (median of several fresh processes) and
which heavy libraries that import loaded, beside a naive baseline: a process that imports those
libraries directly (what a handler importing its SDKs at module top would pay): their top modules as
the issue lists them, and the modules of theirs the handlers use (`import pydantic` alone is lazy,
`import cryptography` loads a version string); and a floor: the libraries the handlers are built on
and cannot serve a request without (SQLAlchemy, pydantic's BaseModel, Powertools' event handler and
logger), imported alone. Printed: CPU and wall time, the CPU ratio to each baseline (target <= 0.4)
and to the floor, and the heavy modules loaded. Figures only.

    .venv/bin/python tests/perf/bench_cold_start.py [--runs 7]
    .venv/bin/pytest -q -s -p no:cacheprovider tests/perf/bench_cold_start.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("boto3", "botocore", "stripe", "resend", "sqlalchemy", "pydantic", "aws_lambda_powertools", "cryptography")
# The same libraries as a handler importing its SDKs at module top uses them: pydantic's BaseModel (`import pydantic`
# alone is lazy), Powertools' event handler and logger, the S3 transfer manager, the AEAD cipher the sealed
# columns use (`import cryptography` alone loads its version string).
HEAVY_AS_USED = (
    "boto3",
    "boto3.s3.transfer",
    "botocore.config",
    "stripe",
    "resend",
    "sqlalchemy",
    "pydantic.main",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.logging",
    "cryptography.hazmat.primitives.ciphers.aead",
)
# What every handler imports at least: its models (pydantic's BaseModel), its tables and queries (SQLAlchemy), its
# routing and structured logs (Powertools). The database driver and dialect load at the first connection.
FLOOR = ("sqlalchemy", "pydantic.main", "aws_lambda_powertools.event_handler", "aws_lambda_powertools.logging")
RATIO_TARGET = 0.4
RUNS = int(os.environ.get("BENCH_COLD_START_RUNS", "7"))

_CHILD = r"""
import importlib.util, json, sys, time
sys.path.insert(0, {root!r})
started, cpu = time.perf_counter(), time.process_time()
target = {target!r}
if isinstance(target, tuple):
    for name in target:
        __import__(name)
else:
    spec = importlib.util.spec_from_file_location("pf_cold_start_handler", target)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({{"seconds": seconds, "cpu": cpu, "heavy": sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))}}))
"""


def _environment() -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("S3_", "SQS_", "RESEND_", "STRIPE_", "DATABASE_"))},
        "PRIVACY_ENV": "test",
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "0",
    }


def _one(target: str | tuple[str, ...]) -> dict:
    """One fresh process importing a handler file, or (a tuple) these modules."""
    child = _CHILD.format(root=str(ROOT), target=target, heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", child],
        env=_environment(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cold start child failed for {target}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(target: str | tuple[str, ...], runs: int) -> dict:
    _one(target)  # compiles .pyc files once: Scaleway ships them compiled too
    samples = [_one(target) for _ in range(runs)]
    return {
        "seconds": statistics.median(s["seconds"] for s in samples),
        "cpu": statistics.median(s["cpu"] for s in samples),
        "heavy": samples[-1]["heavy"],
    }


def handlers() -> dict[str, str]:
    """function name -> handler file, from serverless.yml."""
    sys.path.insert(0, str(ROOT))
    from shared.local.server import load_manifest

    return {
        name: str(ROOT / (spec.handler.rpartition(".")[0] + ".py"))
        for name, spec in sorted(load_manifest().functions.items())
    }


def bench(runs: int = RUNS) -> dict:
    """Import CPU time is the figure compared (wall time swings with the machine's load; both printed)."""
    load = os.getloadavg()[0]
    baseline = measure(HEAVY, runs)
    print(
        f"[cold start] naive baseline (import {', '.join(HEAVY)}): CPU {baseline['cpu'] * 1000:5.0f} ms,"
        f" wall {baseline['seconds'] * 1000:5.0f} ms (median of {runs} fresh processes, load average {load:.1f})",
        flush=True,
    )
    as_used = measure(HEAVY_AS_USED, runs)
    print(
        f"[cold start] naive baseline as the handlers use those libraries (import {', '.join(HEAVY_AS_USED)}):"
        f" CPU {as_used['cpu'] * 1000:5.0f} ms, wall {as_used['seconds'] * 1000:5.0f} ms",
        flush=True,
    )
    floor = measure(FLOOR, runs)
    print(
        f"[cold start] floor (import {', '.join(FLOOR)}): CPU {floor['cpu'] * 1000:5.0f} ms,"
        f" wall {floor['seconds'] * 1000:5.0f} ms = {floor['cpu'] / baseline['cpu']:.2f}x the naive baseline,"
        f" {floor['cpu'] / as_used['cpu']:.2f}x as used",
        flush=True,
    )
    figures = {"baseline": baseline, "as_used": as_used, "floor": floor, "handlers": {}}
    for name, target in handlers().items():
        result = measure(target, runs)
        ratio, to_floor = result["cpu"] / baseline["cpu"], result["cpu"] / floor["cpu"]
        to_as_used = result["cpu"] / as_used["cpu"]
        figures["handlers"][name] = {**result, "ratio": ratio, "to_as_used": to_as_used, "to_floor": to_floor}
        print(
            f"[cold start] {name:32s} CPU {result['cpu'] * 1000:5.0f} ms, wall {result['seconds'] * 1000:5.0f} ms"
            f" | ratio {ratio:.2f} (target <= {RATIO_TARGET}), {to_as_used:.2f} as used, {to_floor:.2f}x the floor"
            f" | heavy modules: {', '.join(result['heavy']) or 'none'}",
            flush=True,
        )
    again = measure(HEAVY, runs)
    handled = figures["handlers"].values()
    worst = max(h["ratio"] for h in handled)
    print(
        f"[cold start] worst ratio {worst:.2f} (target <= {RATIO_TARGET}),"
        f" {max(h['to_as_used'] for h in handled):.2f} as used, {max(h['to_floor'] for h in handled):.2f}x the floor;"
        f" the floor alone is {floor['cpu'] / baseline['cpu']:.2f}x the baseline"
        f" ({floor['cpu'] / as_used['cpu']:.2f}x as used); baseline measured again at the end:"
        f" CPU {again['cpu'] * 1000:.0f} ms, wall {again['seconds'] * 1000:.0f} ms",
        flush=True,
    )
    return figures


def test_bench_cold_start() -> None:
    """`make bench` entry point: prints the figures; asserts nothing about time."""
    figures = bench()
    assert figures["handlers"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    bench(parser.parse_args(argv).runs)


if __name__ == "__main__":
    main()
