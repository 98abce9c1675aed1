"""infra/terraform/main.tf against serverless.yml, the queue contracts and the retention policy.

main.tf is parsed (python-hcl2), not applied: every bucket and queue (with its dead-letter queue) the
functions use exists, the lifecycle rules pass the same drift check log-rotation runs against the live
buckets, visibility timeouts exceed the timeouts of the workers the queues trigger, and the functions'
keys are their own. `terraform fmt -check` runs when a terraform binary is on the PATH; `terraform
validate` needs the Scaleway provider, which cannot be downloaded here (README: "Deploy").
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import hcl2
import pytest

from shared.local.documents import read_yaml
from shared.platform.messages import Contract
from shared.policy import facts as policy
from shared.retention.lifecycle import expected_lifecycle, lifecycle_drift

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "infra" / "terraform"
SERVERLESS = read_yaml(ROOT / "serverless.yml")
ENV = SERVERLESS["provider"]["env"]


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of strings and of block labels: drop them, recursively."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if not str(k).startswith("__")}
    return value


def _load() -> dict[str, Any]:
    document: dict[str, Any] = {"resource": {}, "locals": {}, "output": {}, "variable": {}}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as handle:
            parsed = _unquote(hcl2.load(handle))
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                document["resource"].setdefault(kind, {}).update(named)
        for block in parsed.get("locals", []):
            document["locals"].update(block)
        for key in ("output", "variable"):
            for block in parsed.get(key, []):
                document[key].update(block)
        document.setdefault("terraform", []).extend(parsed.get("terraform", []))
    return document


TF = _load()
RESOURCES = TF["resource"]
LOCALS = TF["locals"]


def _seconds(timeout: str) -> int:
    match = re.fullmatch(r"(\d+)s", str(timeout))
    assert match, f"timeout {timeout!r} is not in seconds"
    return int(match.group(1))


def _sqs_triggers() -> dict[str, list[str]]:
    """queue -> the functions its SQS triggers call."""
    triggers: dict[str, list[str]] = {}
    for name, spec in SERVERLESS["functions"].items():
        for event in spec.get("events") or []:
            if "sqs" in event:
                triggers.setdefault(event["sqs"]["queue"], []).append(name)
    return triggers


def _contract_queues() -> set[str]:
    queues, pending = set(), list(Contract.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if getattr(cls, "QUEUE", None) and cls.__module__.startswith("shared."):  # not the tests' samples
            queues.add(cls.QUEUE)
    return queues


def _buckets() -> dict[str, dict[str, Any]]:
    """bucket name -> its scaleway_object_bucket block."""
    return {block["name"]: block for block in RESOURCES["scaleway_object_bucket"].values()}


def _s3_rules(block: dict[str, Any]) -> list[dict[str, Any]]:
    """A bucket's Terraform lifecycle rules in the S3 API's shape (what storage.get_lifecycle returns)."""
    rules = []
    for rule in block.get("lifecycle_rule", []):
        s3: dict[str, Any] = {"ID": rule.get("id"), "Status": "Enabled" if rule.get("enabled") else "Disabled"}
        s3["Filter"] = {"Prefix": rule.get("prefix", "")}
        if rule.get("expiration"):
            s3["Expiration"] = {"Days": rule["expiration"][0]["days"]}
        if rule.get("noncurrent_version_expiration"):
            s3["NoncurrentVersionExpiration"] = {
                "NoncurrentDays": rule["noncurrent_version_expiration"][0]["noncurrent_days"]
            }
        if "abort_incomplete_multipart_upload_days" in rule:
            s3["AbortIncompleteMultipartUpload"] = {
                "DaysAfterInitiation": rule["abort_incomplete_multipart_upload_days"]
            }
        rules.append(s3)
    return rules


class TerraformBuckets:
    """An ObjectStore whose lifecycle rules are main.tf's (`rules` overrides a bucket's)."""

    def __init__(self, overrides: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.overrides = overrides or {}

    def get_lifecycle(self, bucket: str) -> list[dict[str, Any]]:
        if bucket in self.overrides:
            return self.overrides[bucket]
        return _s3_rules(_buckets()[bucket]) if bucket in _buckets() else []


SETTINGS = SimpleNamespace(
    exports_bucket=ENV["EXPORTS_BUCKET"],
    documents_bucket=ENV["DOCUMENTS_BUCKET"],
    archive_bucket=ENV["ARCHIVE_BUCKET"],
    logs_bucket=ENV["LOGS_BUCKET"],
)


# --- Buckets --------------------------------------------------------------------------------------


def test_every_bucket_the_functions_use_exists():
    used = {ENV[key] for key in ENV if key.endswith("_BUCKET")}
    assert used == {SETTINGS.exports_bucket, SETTINGS.documents_bucket, SETTINGS.archive_bucket, SETTINGS.logs_bucket}
    assert used <= set(_buckets())
    assert set(LOCALS["buckets"]) == set(RESOURCES["scaleway_object_bucket"])  # each one private (bucket ACL)
    assert RESOURCES["scaleway_object_bucket_acl"]["private"]["acl"] == "private"


def test_lifecycle_rules_match_the_retention_rules():
    assert expected_lifecycle(), "the policy names buckets that expire by lifecycle"
    assert lifecycle_drift(TerraformBuckets(), SETTINGS) == []


def test_the_drift_check_would_see_a_rule_that_keeps_exports_too_long():
    rules = _s3_rules(_buckets()[SETTINGS.exports_bucket])
    rules[0]["Expiration"]["Days"] = 8
    drift = lifecycle_drift(TerraformBuckets({SETTINGS.exports_bucket: rules}), SETTINGS)
    assert [d["problem"] for d in drift] == ["expires_too_late"]


def test_interrupted_uploads_are_aborted_after_a_day_in_every_bucket():
    for name, block in _buckets().items():
        whole_bucket = [r for r in _s3_rules(block) if r["Status"] == "Enabled" and not r["Filter"]["Prefix"]]
        days = [
            r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
            for r in whole_bucket
            if "AbortIncompleteMultipartUpload" in r
        ]
        assert days == [1], f"{name}: incomplete multipart uploads must be aborted after 1 day"


def test_the_archive_locks_invoices_for_their_whole_retention():
    archive = _buckets()[SETTINGS.archive_bucket]
    assert archive["object_lock_enabled"] is True and archive["versioning"][0]["enabled"] is True
    (lock,) = RESOURCES["scaleway_object_bucket_lock_configuration"].values()
    retention = lock["rule"][0]["default_retention"][0]
    assert retention["mode"] == "COMPLIANCE"
    assert retention["years"] * 12 == policy.retention_rule("invoices").total_months


# --- Queues ---------------------------------------------------------------------------------------


def test_every_queue_the_functions_use_exists_with_its_dead_letter_queue():
    queues = set(LOCALS["queues"])
    assert set(_sqs_triggers()) == queues, "a queue of serverless.yml's triggers is missing, or one is unused"
    assert _contract_queues() == queues, "a message contract names a queue Terraform does not create"
    work, dead = RESOURCES["scaleway_mnq_sqs_queue"]["work"], RESOURCES["scaleway_mnq_sqs_queue"]["dead_letter"]
    assert work["for_each"] == dead["for_each"] == "${local.queues}"
    assert work["name"] == "${each.key}"
    assert dead["name"] == "${each.key}-dlq"  # SqsQueue's dead-letter URL is <queue>-dlq
    (redrive,) = work["dead_letter_queue"]
    assert redrive["id"] == "${scaleway_mnq_sqs_queue.dead_letter[each.key].id}"
    assert redrive["max_receive_count"] == "${local.queue_max_attempts}"
    assert LOCALS["queue_max_attempts"] == int(ENV["QUEUE_MAX_ATTEMPTS"])


def test_visibility_timeouts_exceed_the_timeouts_of_the_workers():
    assert RESOURCES["scaleway_mnq_sqs_queue"]["work"]["visibility_timeout_seconds"] == "${each.value}"
    for queue, functions in _sqs_triggers().items():
        for function in functions:
            timeout = _seconds(SERVERLESS["functions"][function]["timeout"])
            visibility = LOCALS["queues"][queue]
            assert visibility > timeout, f"{queue}: visible again after {visibility} s, {function} runs {timeout} s"
            assert visibility <= 43200  # Scaleway's maximum


def test_the_queue_url_prefix_is_the_queues_own_url():
    value = TF["output"]["queue_url_prefix"]["value"]
    assert ".url" in value and "var.project_id" not in value  # Scaleway's URLs hold "project-<id>", not the bare id


def test_the_functions_queue_key_cannot_manage_queues():
    credentials = RESOURCES["scaleway_mnq_sqs_credentials"]
    assert credentials["functions"]["permissions"][0] == {"can_publish": True, "can_receive": True, "can_manage": False}
    assert credentials["manager"]["permissions"][0]["can_manage"] is True
    assert RESOURCES["scaleway_mnq_sqs_queue"]["work"]["access_key"].startswith(
        "${scaleway_mnq_sqs_credentials.manager"
    )


# --- Keys, database, provider ---------------------------------------------------------------------


def test_the_functions_have_an_object_storage_only_key_of_their_own():
    (policy_block,) = RESOURCES["scaleway_iam_policy"].values()
    assert policy_block["application_id"] == "${scaleway_iam_application.functions_storage.id}"
    (rule,) = policy_block["rule"]
    assert rule["project_ids"] == ["${var.project_id}"]
    sets = set(rule["permission_set_names"])
    assert sets and all(name.startswith("ObjectStorage") for name in sets)
    assert not sets & {"ObjectStorageFullAccess", "ObjectStorageBucketsWrite", "ObjectStorageBucketsDelete"}
    (key,) = RESOURCES["scaleway_iam_api_key"].values()
    assert key["application_id"] == policy_block["application_id"] and key["default_project_id"] == "${var.project_id}"
    secrets = SERVERLESS["provider"]["secret"]
    assert secrets["S3_ACCESS_KEY"] == "${env:S3_ACCESS_KEY}" and secrets["S3_SECRET_KEY"] == "${env:S3_SECRET_KEY}"
    assert not any("SCW_" in str(value) for value in secrets.values()), "the deploy key is no function's secret"


def test_the_database_has_a_user_of_the_functions_that_is_no_admin():
    (user,) = RESOURCES["scaleway_rdb_user"].values()
    assert user["is_admin"] is False
    (privilege,) = RESOURCES["scaleway_rdb_privilege"].values()
    assert privilege["user_name"] == "${scaleway_rdb_user.functions.name}"
    assert privilege["database_name"] == "${scaleway_rdb_database.privacy.name}"
    instance = RESOURCES["scaleway_rdb_instance"]["main"]
    assert instance["encryption_at_rest"] is True and instance["private_network"][0]["enable_ipam"] is True
    assert "acl_rules" in str(RESOURCES["scaleway_rdb_acl"]["main"])
    assert "sslmode=require" in TF["output"]["database_url"]["value"]
    assert TF["output"]["database_url"]["sensitive"] is True


def test_the_provider_bound_covers_the_features_used():
    (block,) = [b for b in TF["terraform"] if "required_providers" in b]
    constraint = block["required_providers"][0]["scaleway"]["version"]
    lower = re.search(r">=\s*2\.(\d+)", constraint)
    assert lower and int(lower.group(1)) >= 76, constraint  # noncurrent_version_expiration came in 2.76


# --- serverless.yml ------------------------------------------------------------------------------


def test_public_functions_redirect_plain_http_and_removed_functions_go():
    assert SERVERLESS["singleSource"] is True
    for name, spec in SERVERLESS["functions"].items():
        if spec.get("privacy") == "public":
            assert spec.get("httpOption") == "redirected", name


@pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform binary on the PATH")
def test_terraform_fmt_is_clean():
    run = subprocess.run(
        ["terraform", "fmt", "-check", "-diff", "-recursive", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:]
