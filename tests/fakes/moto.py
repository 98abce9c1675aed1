"""A moto server speaking the S3 and SQS protocols on 127.0.0.1, for the real boto3 code paths."""

from __future__ import annotations

import logging
import os
import urllib.request
import uuid

MOTO_ACCESS_KEY = "moto-test-access-key"
MOTO_SECRET_KEY = "moto-test-secret-key"
MOTO_ACCOUNT_ID = "123456789012"  # moto's queue URLs: {endpoint}/123456789012/{name}
REGION = "fr-par"


def start_moto_server():
    """Start a threaded moto server on a free port; returns (server, endpoint URL)."""
    from moto.server import ThreadedMotoServer

    # Scaleway regions (fr-par...) are unknown to moto's SQS: let it accept them.
    os.environ["MOTO_ALLOW_NONEXISTENT_REGION"] = "true"
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def reset_moto(endpoint: str) -> None:
    """Forget every bucket, object and queue: each test starts from an empty cloud."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def raw_client(service: str, endpoint: str):
    """A plain boto3 client on the moto server, to arrange and inspect state in tests."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=MOTO_ACCESS_KEY,
        aws_secret_access_key=MOTO_SECRET_KEY,
    )


def unique_bucket_names() -> dict[str, str]:
    """Bucket settings for one test: unique names, so nothing leaks between tests."""
    suffix = uuid.uuid4().hex[:10]
    return {
        "EXPORTS_BUCKET": f"exports-{suffix}",
        "DOCUMENTS_BUCKET": f"documents-{suffix}",
        "ARCHIVE_BUCKET": f"archive-{suffix}",
        "LOGS_BUCKET": f"logs-{suffix}",
    }


def create_buckets(endpoint: str, settings) -> None:
    """The buckets as Terraform makes them: archive with Object Lock, logs versioned."""
    s3 = raw_client("s3", endpoint)
    location = {"LocationConstraint": REGION}
    for bucket in (settings.exports_bucket, settings.documents_bucket):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration=location)
    s3.create_bucket(
        Bucket=settings.archive_bucket, CreateBucketConfiguration=location, ObjectLockEnabledForBucket=True
    )
    s3.create_bucket(Bucket=settings.logs_bucket, CreateBucketConfiguration=location)
    s3.put_bucket_versioning(Bucket=settings.logs_bucket, VersioningConfiguration={"Status": "Enabled"})
