"""package/ as `make package` would build it, from this interpreter's own dependencies (tests and benchmarks).

package/ holds musl wheels that this glibc host cannot load; the same pruning rule
(`shared.local.packaging.keep`) applied to the installed copies of the same dependencies shows that
nothing a function needs is removed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from packaging.requirements import Requirement

from shared.local.demo import create_account
from shared.local.documents import read_yaml
from shared.local.packaging import PYC_SUFFIX, keep
from shared.local.server import PROJECT_ROOT

SERVERLESS = read_yaml(PROJECT_ROOT / "serverless.yml")


def runtime_distributions(project: str = "privacy-functions") -> list[metadata.Distribution]:
    """The installed distributions the project's runtime dependencies need, extras and markers resolved."""
    seen: dict[tuple[str, str], metadata.Distribution] = {}
    pending = [(Requirement(r), "") for r in metadata.distribution(project).requires or [] if "extra ==" not in r]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        distribution = metadata.distribution(requirement.name)
        key = distribution.metadata["Name"].lower()
        for wanted in sorted(requirement.extras) or [""]:
            marker_key = (key, wanted)
            if marker_key in seen:
                continue
            seen[marker_key] = distribution
            pending.extend((Requirement(r), wanted) for r in distribution.requires or [])
    unique = {d.metadata["Name"].lower(): d for d in seen.values()}
    return [unique[name] for name in sorted(unique)]


def link_tree(destination: Path, *, with_bytecode: bool = False) -> int:
    """`destination` as package/ would be, from this interpreter's installed dependencies (symlinked files,
    pruned by `keep`): importable with `python -S` to prove the pruning removes nothing a function needs.
    `with_bytecode`: the installed `__pycache__` files of the kept modules too (a faster import)."""
    count = 0
    for distribution in runtime_distributions():
        for file in distribution.files or []:
            relative = file.as_posix()
            if relative.startswith(".."):
                continue
            if not keep(relative):
                if not (with_bytecode and "/__pycache__/" in relative and relative.endswith(PYC_SUFFIX)):
                    continue
                directory, _, name = relative.rpartition("/__pycache__/")
                if not keep(f"{directory}/{name.split('.')[0]}.py"):
                    continue
            source = Path(distribution.locate_file(file))
            target = destination / relative
            if not source.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(source)
                count += 1
    return count


HANDLER_PROBE = r"""
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

import zlib
from isal import isal_zlib  # the export's deflate (a native library)
deflate = isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15)
out["isal"] = zlib.decompress(deflate.compress(payload.encode() * 100) + deflate.flush(), -15) == payload.encode() * 100

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


def probe_every_handler(
    interpreter: list[str], tree: Path, stdlib: str, env: Any, engine: Any, extra_env: dict[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """Runs HANDLER_PROBE with `interpreter` (a command line ending with the python and its flags) on the
    dependencies at `tree`: every handler of serverless.yml imported, whoami answering an RS256 token for an
    account it reads from the database, `/healthz` on each public function. (account id, the probe's output)."""
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
    child_env.update(extra_env or {})
    handlers = {name: spec["handler"] for name, spec in SERVERLESS["functions"].items()}
    public = sorted(name for name, spec in SERVERLESS["functions"].items() if spec.get("privacy") == "public")
    run = subprocess.run(
        [
            *interpreter,
            "-c",
            HANDLER_PROBE,
            str(tree),
            str(PROJECT_ROOT),
            json.dumps(handlers),
            json.dumps(public),
            stdlib,
        ],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, f"exit {run.returncode} (negative: killed by that signal): {run.stderr[-3000:]}"
    out = json.loads(run.stdout.strip().splitlines()[-1])
    return account, out
