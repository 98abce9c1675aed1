"""A request that needs only the database loads no SDK of another service (cold starts, issue 15).

Each case runs in a fresh interpreter: the function's handler is imported as Scaleway imports it,
one request is served, and the modules then loaded are inspected.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shared.local.demo import create_account
from shared.local.server import PROJECT_ROOT

SDKS = ("boto3", "stripe", "resend")
# Powertools' own __init__ imports the bare `botocore` package (9 ms) to tag AWS calls; a client or
# session of it would mean an S3/SQS client was built.
BOTOCORE_MACHINERY = ("botocore.session", "botocore.client", "botocore.loaders")

CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
from shared.identity.client import issue_dev_token
from shared.local.server import http_event, load_handler, load_manifest, scaleway_context
spec = load_manifest().functions[{function!r}]
handle = load_handler(spec)
event = http_event("GET", {path!r}, headers={{"Authorization": "Bearer " + issue_dev_token({account!r})}})
answer = handle(event, scaleway_context(spec))
print(json.dumps({{"status": answer["statusCode"], "modules": sorted(sys.modules)}}))
"""


@pytest.mark.parametrize(
    ("function", "path"),
    [("whoami", "/"), ("withdraw-consent", "/"), ("erase-account", "/"), ("rectify-account", "/")],
)
def test_a_database_only_request_imports_no_other_sdk(env, engine, function, path):
    account = create_account(engine)
    child = CHILD.format(root=str(PROJECT_ROOT), function=function, path=path, account=account["id"])
    run = subprocess.run(
        [sys.executable, "-c", child], env=dict(os.environ), capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["status"] in (200, 404), result["status"]  # 404: no pending erasure, still a served request
    loaded = set(result["modules"])
    assert "sqlalchemy.engine" in loaded  # the request did reach the database
    sdks = {name for name in loaded if name.split(".")[0] in SDKS} | (loaded & set(BOTOCORE_MACHINERY))
    assert not sdks, f"{function} loaded {sorted(sdks)[:10]}"
