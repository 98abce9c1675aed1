"""Cold start (issue 15): importing any handler of serverless.yml loads no SDK of another service, nor the
PostgreSQL driver (the engine loads it at the first connection; a process on SQLite never needs it).

The handler files are imported one after the other in a fresh interpreter, as Scaleway imports them,
and the modules are inspected after each: as long as none has loaded boto3, stripe or resend (or
botocore's client machinery), the next import starts clean, so a culprit is always the handler just
imported. The first request that needs only the database is covered by
tests/integration/test_cold_start_imports.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

from shared.local.server import PROJECT_ROOT, load_manifest

SDKS = ("boto3", "stripe", "resend")
DRIVER = ("psycopg",)
BOTOCORE_MACHINERY = ("botocore.session", "botocore.client", "botocore.loaders")

CHILD = r"""
import importlib.util, json, sys
sys.path.insert(0, {root!r})
report = {{}}
for index, handler in enumerate({handlers!r}):
    spec = importlib.util.spec_from_file_location(f"pf_handler_{{index}}", f"{root}/{{handler}}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert callable(module.handle), handler
    report[handler] = sorted(
        name for name in sys.modules
        if name.split(".")[0] in {sdks!r} or name in {machinery!r}
    )
print(json.dumps(report))
"""


def test_importing_any_handler_loads_no_other_sdk():
    handlers = sorted({spec.handler.rpartition(".")[0] for spec in load_manifest().functions.values()})
    assert len(handlers) >= 10
    child = CHILD.format(root=str(PROJECT_ROOT), handlers=handlers, sdks=SDKS + DRIVER, machinery=BOTOCORE_MACHINERY)
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(report) == set(handlers)
    loaded = {handler: modules[:5] for handler, modules in report.items() if modules}
    assert not loaded, f"handlers importing an SDK or the driver at import time: {loaded}"
