"""What `make package` removes from the dependencies, no function needs.

`package/` holds musl wheels, which this (glibc) interpreter cannot load. The proof uses the same rule
(`shared.local.packaging.keep`) on this interpreter's own copies of the same dependencies: a tree of
them, pruned, is the only place a fresh `python -S` (no site-packages) may import from. There every
handler of serverless.yml imports, without shared/local; a client-area request checks an RS256 token
and queries the database (SQLite and PostgreSQL); `/healthz` answers on each public function; boto3
builds its S3 and SQS clients from the two service descriptions kept; Stripe verifies a v1 webhook
event without the parameter and v2 event classes removed.
"""

from __future__ import annotations

import sys
import sysconfig

import pytest

from shared.local import packaging
from shared.local.server import PROJECT_ROOT
from tests.package_tree import link_tree, probe_every_handler


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    tree = tmp_path_factory.mktemp("pruned") / "package"
    assert link_tree(tree, with_bytecode=True) > 500
    return tree


def test_the_pruned_dependencies_serve_every_function(env, engine, tree):
    assert not (tree / "botocore" / "data" / "ec2").exists() and (tree / "botocore" / "data" / "s3").is_dir()
    assert not (tree / "stripe" / "params").exists() and not (tree / "sqlalchemy" / "orm").exists()

    account, out = probe_every_handler([sys.executable, "-S"], tree, sysconfig.get_paths()["stdlib"], env, engine)
    status, body = out["whoami"]
    assert status == 200 and body["account_id"] == account, out["whoami"]
    assert set(out["healthz"].values()) == {200}, out["healthz"]
    assert out["presigned"] is True and out["stripe"] == "charge.succeeded" and out["isal"] is True
    assert out["outside"] == [], f"imported from outside the pruned tree: {out['outside'][:10]}"
    assert out["tree_modules"] > 300
    assert out["local"] == []


def test_keep_drops_only_what_is_listed():
    keep = packaging.keep
    assert keep("botocore/data/endpoints.json") and keep("botocore/data/sqs/2012-11-05/service-2.json.gz")
    assert not keep("botocore/data/ec2/2016-11-15/service-2.json.gz") and not keep("boto3/data/dynamodb/x.json")
    assert keep("sqlalchemy/dialects/postgresql/psycopg.py") and not keep("sqlalchemy/dialects/mysql/base.py")
    assert keep("stripe/_webhook.py") and not keep("stripe/params/_customer_create_params.py")
    assert not keep("pydantic/__pycache__/main.cpython-311.pyc") and not keep("jwt/py.typed")
    assert keep("cryptography-46.0.0.dist-info/licenses/LICENSE")  # licences ship


@pytest.mark.skipif(not (PROJECT_ROOT / "package").is_dir(), reason="no package/ (make package builds it)")
def test_the_built_package_is_pruned_compiled_and_small():
    package = PROJECT_ROOT / "package"
    files = [p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()]
    assert not [f for f in files if not packaging.keep(f)], "package/ holds what keep() drops: run make package"
    assert not [f for f in files if f.endswith(".py")], "the dependencies ship sourceless bytecode"
    pyc = [f for f in files if f.endswith(".pyc")]
    assert pyc
    flags = {int.from_bytes((package / f).read_bytes()[4:8], "little") for f in pyc[:200]}
    assert flags == {0b01}, "dependencies' bytecode is hash-based and unchecked (PEP 552)"
    # Its size, zipped as serverless zips it: tests/perf/bench_package_cold_start.py prints it (`make bench`).
