"""Cold start: the CPU a fresh interpreter spends importing each handler, with and without shipped bytecode.

`make package` ships the dependencies as sourceless bytecode (unchecked hashes) and our code with
checked-hash bytecode (shared/local/packaging.py). This builds both layouts from this interpreter's
own dependencies (package/ holds musl wheels this glibc host cannot load), pruned by the same rule:

    sources only   what the zip shipped before: every import compiles its module first
    bytecode       the zip as `make package` builds it now

and imports each handler of serverless.yml in a fresh `python -S`, three times, printing the median CPU
time (user + system) of the whole process. With package/ built, it also prints the zip's figures.
Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import py_compile
import resource
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from shared.local import packaging
from shared.local.documents import read_yaml
from shared.local.server import PROJECT_ROOT
from tests.musl.runtime import PACKAGE, PYTHON_HOME, interpreter, missing
from tests.package_tree import link_tree

pytestmark = pytest.mark.perf

RUNS = 3
# The floor of every handler's import: the libraries each one needs, imported alone from package/.
LIBRARIES = (
    "import sqlalchemy, sqlalchemy.dialects.postgresql, pydantic, jwt, cryptography.hazmat.primitives.ciphers.aead\n"
    "from aws_lambda_powertools.event_handler import APIGatewayRestResolver"
)
CHILD = r"""
import importlib.util, os, sys
tree, root, handler = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path[:0] = [tree, root]
path, _, attribute = handler.rpartition(".")
spec = importlib.util.spec_from_file_location("pf_handler", os.path.join(root, path + ".py"))
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
getattr(module, attribute)
"""


def _cpu_of(tree: Path, root: Path, handler: str, env: dict[str, str], interpreter: list[str] | None = None) -> float:
    command = [*(interpreter or [sys.executable, "-S"]), "-c", CHILD, str(tree), str(root), handler]
    return _cpu_of_command(command, env)


def _cpu_of_command(command: list[str], env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, env=env, check=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _copy_of_our_code(destination: Path) -> Path:
    for top in ("shared", "functions"):
        shutil.copytree(PROJECT_ROOT / top, destination / top, ignore=shutil.ignore_patterns("__pycache__", "local"))
    return destination


def test_cold_import_cpu_with_and_without_bytecode(tmp_path):
    functions = read_yaml(PROJECT_ROOT / "serverless.yml")["functions"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        PRIVACY_ENV="test",
        PRIVACY_DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=f"sqlite:///{tmp_path}/b.db",
        DEV_TOKEN_KEY="bench-dev-token-key-0123456789abcdef",
        PSEUDONYM_KEY="bench",
    )

    plain = tmp_path / "plain"
    link_tree(plain / "package")
    _copy_of_our_code(plain)
    compiled = tmp_path / "compiled"
    link_tree(compiled / "package")
    _copy_of_our_code(compiled)
    packaging.make_sourceless(compiled / "package")
    for top in ("shared", "functions"):
        packaging.compile_tree(compiled / top, py_compile.PycInvalidationMode.CHECKED_HASH)

    # The zip itself, under musl 1.2.5 (tests/musl/build-runtime.sh): the closest thing to the runtime here.
    on_musl = missing() is None
    musl_env = {**env, "PYTHONHOME": str(PYTHON_HOME)}
    rows = []
    for name, spec in functions.items():
        no_bytecode = []
        for _ in range(RUNS):
            no_bytecode.append(
                _cpu_of(plain / "package", plain, spec["handler"], {**env, "PYTHONDONTWRITEBYTECODE": "1"})
            )
        with_bytecode = [_cpu_of(compiled / "package", compiled, spec["handler"], env) for _ in range(RUNS)]
        musl = (
            statistics.median(
                _cpu_of(PACKAGE, PROJECT_ROOT, spec["handler"], musl_env, interpreter("musl-1.2.5"))
                for _ in range(RUNS)
            )
            if on_musl
            else float("nan")
        )
        rows.append((name, statistics.median(no_bytecode), statistics.median(with_bytecode), musl))

    print(f"\ncold import of each handler, median CPU of {RUNS} fresh `python -S` processes (user + system):")
    print(f"{'function':34} {'sources only':>13} {'bytecode':>10} {'package/ on musl 1.2.5':>23}")
    for name, before, after, musl in rows:
        print(f"{name:34} {before:12.3f}s {after:9.3f}s {musl:22.3f}s")
    worst = max(after for _name, _before, after, _musl in rows)
    print(f"slowest with bytecode: {worst:.3f}s CPU (target: under 0.5 s)")
    if on_musl:
        command = [*interpreter("musl-1.2.5"), "-c", f"import sys; sys.path[:0] = [{str(PACKAGE)!r}]\n{LIBRARIES}"]
        floor = statistics.median(_cpu_of_command(command, musl_env) for _ in range(RUNS))
        print(
            f"slowest of package/ on musl: {max(r[3] for r in rows):.3f}s CPU (target: under 0.5 s); "
            f"floor, SQLAlchemy + pydantic + Powertools + PyJWT + cryptography alone: {floor:.3f}s"
        )
    else:
        print(f"package/ on musl not measured: {missing()}")
    print(json.dumps({"cold_import_cpu_seconds": {name: round(after, 3) for name, _b, after, _m in rows}}))

    if (PROJECT_ROOT / "package").is_dir():
        figures = packaging.measure_zip()
        print(
            f"package/ as serverless zips it: {figures['zip_bytes'] / 2**20:.1f} MiB zipped, "
            f"{figures['unpacked_bytes'] / 2**20:.1f} MiB unpacked, {figures['files']} files "
            f"({figures['pyc_files']} .pyc); target: under 20 MiB zipped"
        )
    else:
        print("no package/: `make package` builds it (then this prints the zip's size)")
