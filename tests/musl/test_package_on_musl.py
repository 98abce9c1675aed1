"""The deployable package/ on musl, as Scaleway's python311 runtime (Alpine) would run it.

tests/musl/build-runtime.sh builds CPython 3.11 with musl-gcc from Debian's sources and keeps two musl
loaders: 1.2.3 (Debian bookworm, Alpine 3.17) and 1.2.5 (Debian trixie, Alpine 3.20+). Scaleway does not
say which musl it runs, so package/ (`make package`, exactly the files the zip ships) must work under both.
Under each loader, with nothing but package/, the repository and the musl stdlib on the path, every handler
of serverless.yml imports and whoami answers a request: an RS256 token verified (cryptography), the account
read from PostgreSQL (psycopg's libpq). Those two are what crashed under musl 1.2.3 with DT_RELR libraries.

Skipped without the runtime or without package/, except under CI=true, where .ci/run builds both.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.musl.runtime import LOADERS, PACKAGE, PYTHON_HOME, STDLIB, interpreter, loader, missing
from tests.package_tree import probe_every_handler


@pytest.fixture(scope="module", autouse=True)
def _runtime():
    if reason := missing():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the musl proof needs {reason} in CI (.ci/run builds both)")
        pytest.skip(reason)


@pytest.mark.parametrize("name", LOADERS)
def test_the_loader_is_the_musl_it_claims(name):
    # musl's loader run alone prints its version: the parametrisation tests what it says it tests.
    run = subprocess.run([str(loader(name))], capture_output=True, text=True, check=False)
    assert f"Version {name.removeprefix('musl-')}" in run.stderr


@pytest.mark.parametrize("name", LOADERS)
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_every_handler_imports_and_whoami_answers_under_musl(name, env, engine):
    account, out = probe_every_handler(
        interpreter(name), PACKAGE, str(STDLIB), env, engine, {"PYTHONHOME": str(PYTHON_HOME)}
    )
    status, body = out["whoami"]
    assert status == 200 and body["account_id"] == account, out["whoami"]
    assert set(out["healthz"].values()) == {200}, out["healthz"]
    assert out["presigned"] is True and out["stripe"] == "charge.succeeded" and out["isal"] is True
    assert out["outside"] == [], f"imported from outside package/: {out['outside'][:10]}"
    assert out["local"] == []
