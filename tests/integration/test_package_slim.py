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

import datetime as dt
import json
import os
import subprocess
import sys
import sysconfig

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.local import packaging
from shared.local.demo import create_account
from shared.local.server import PROJECT_ROOT
from tests.package_tree import link_tree

SERVERLESS = yaml.safe_load((PROJECT_ROOT / "serverless.yml").read_text())

CHILD = r"""
import importlib.util, json, os, sys, time, hmac, hashlib
tree, root, handlers, public, stdlib = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
sys.path[:0] = [tree, root]
loaded = {}
for name, handler in handlers.items():
    path, _, attribute = handler.rpartition(".")
    spec = importlib.util.spec_from_file_location("pf_" + name.replace("-", "_"), os.path.join(root, path + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    loaded[name] = getattr(module, attribute)

def event(method, path, headers=None):
    return {"path": path, "httpMethod": method, "headers": {"Content-Type": "application/json", **(headers or {})},
            "multiValueHeaders": None, "queryStringParameters": {}, "multiValueQueryStringParameters": None,
            "body": "", "isBase64Encoded": False}

context = {"memoryLimitInMb": 256, "functionName": "whoami", "functionVersion": ""}
out = {}
answer = loaded["whoami"](event("GET", "/", {"Authorization": "Bearer " + os.environ["CHILD_TOKEN"]}), context)
out["whoami"] = [answer["statusCode"], json.loads(answer["body"])]
out["healthz"] = {name: loaded[name](event("GET", "/healthz"), context)["statusCode"] for name in public}

import boto3
for service in ("s3", "sqs"):
    client = boto3.client(service, region_name="fr-par", endpoint_url=f"https://{service}.fr-par.scw.cloud",
                          aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
out["presigned"] = boto3.client("s3", region_name="fr-par", endpoint_url="https://s3.fr-par.scw.cloud",
    aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret").generate_presigned_url(
    "get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60).startswith("https://")

import stripe
payload = json.dumps({"id": "evt_1", "object": "event", "type": "charge.succeeded", "api_version": "2024-06-20",
                      "data": {"object": {"id": "ch_1", "object": "charge"}}})
stamp = str(int(time.time()))
signature = hmac.new(b"whsec_test", f"{stamp}.{payload}".encode(), hashlib.sha256).hexdigest()
out["stripe"] = stripe.Webhook.construct_event(payload, f"t={stamp},v1={signature}", "whsec_test").type

allowed = (os.path.realpath(tree), os.path.realpath(root), os.path.realpath(stdlib))
out["outside"] = sorted(
    name for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None) and not os.path.abspath(module.__file__).startswith(allowed)
       and not os.path.realpath(module.__file__).startswith(os.path.realpath(stdlib))
)
out["tree_modules"] = sum(1 for m in list(sys.modules.values())
                          if (getattr(m, "__file__", None) or "").startswith(tree))
out["local"] = sorted(name for name in sys.modules if name.startswith("shared.local"))
print(json.dumps(out))
"""


def _rsa_pair() -> tuple[str, object]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return public.decode(), key


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    tree = tmp_path_factory.mktemp("pruned") / "package"
    assert link_tree(tree, with_bytecode=True) > 500
    return tree


def test_the_pruned_dependencies_serve_every_function(env, engine, tree):
    assert not (tree / "botocore" / "data" / "ec2").exists() and (tree / "botocore" / "data" / "s3").is_dir()
    assert not (tree / "stripe" / "params").exists() and not (tree / "sqlalchemy" / "orm").exists()

    account = create_account(engine)["id"]
    public_pem, private_key = _rsa_pair()
    now = dt.datetime.now(dt.UTC)
    token = jwt.encode(
        {
            "sub": account,
            "iss": env.token_issuer,
            "aud": env.token_audience,
            "iat": now,
            "exp": now + dt.timedelta(minutes=5),
        },
        private_key,
        algorithm="RS256",
    )
    child_env = dict(os.environ)
    child_env.pop("DEV_TOKEN_KEY", None)
    child_env.update(TOKEN_ALGORITHM="RS256", TOKEN_VERIFY_KEY=public_pem, CHILD_TOKEN=token)
    for name in ("PYTHONPATH", "PYTHONHOME"):
        child_env.pop(name, None)
    handlers = {name: spec["handler"] for name, spec in SERVERLESS["functions"].items()}
    public = sorted(name for name, spec in SERVERLESS["functions"].items() if spec.get("privacy") == "public")
    run = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            CHILD,
            str(tree),
            str(PROJECT_ROOT),
            json.dumps(handlers),
            json.dumps(public),
            sysconfig.get_paths()["stdlib"],
        ],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    status, body = out["whoami"]
    assert status == 200 and body["account_id"] == account, out["whoami"]
    assert set(out["healthz"].values()) == {200}, out["healthz"]
    assert out["presigned"] is True and out["stripe"] == "charge.succeeded"
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
