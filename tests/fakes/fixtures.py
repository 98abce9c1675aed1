"""Fixtures for the local fakes of S3/SQS (moto server), Resend and Stripe.

Each `*_env` fixture builds on `env` (tests/conftest.py), points the configuration
at its fake and forgets cached settings and backends, so the code under test picks
the real backend (S3ObjectStore, SqsQueue, ResendMailer, StripePayments) and talks
to the fake over the wire.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.platform import config as config_module
from tests.fakes.moto import (
    MOTO_ACCESS_KEY,
    MOTO_ACCOUNT_ID,
    MOTO_SECRET_KEY,
    create_buckets,
    reset_moto,
    start_moto_server,
    unique_bucket_names,
)
from tests.fakes.resend_fake import ResendFake
from tests.fakes.stripe_fake import StripeFake

RESEND_TEST_KEY = "re_test_0123456789abcdef"
STRIPE_TEST_KEY = "sk_test_0123456789abcdef"


def _reconfigure(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> config_module.Settings:
    from shared.ports.backends import reset_backends

    for name, value in values.items():
        monkeypatch.setenv(name, value)
    config_module.reset_settings()
    reset_backends()
    return config_module.get_settings()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server per test process; yields its endpoint URL."""
    server, endpoint = start_moto_server()
    yield endpoint
    server.stop()


@pytest.fixture
def moto_endpoint(moto_server: str) -> str:
    """The moto server, emptied for this test (shared by s3_env and sqs_env)."""
    reset_moto(moto_server)
    return moto_server


@pytest.fixture
def s3_env(env, moto_endpoint, monkeypatch):
    """S3 on moto: unique buckets, the archive with Object Lock, the logs versioned."""
    settings = _reconfigure(
        monkeypatch,
        {
            "S3_ENDPOINT_URL": moto_endpoint,
            "S3_ACCESS_KEY": MOTO_ACCESS_KEY,
            "S3_SECRET_KEY": MOTO_SECRET_KEY,
            **unique_bucket_names(),
        },
    )
    create_buckets(moto_endpoint, settings)
    return settings


@pytest.fixture
def sqs_env(env, moto_endpoint, monkeypatch):
    """SQS on moto; queues are created by `shared.ports.backends.ensure_queue(name)`."""
    return _reconfigure(
        monkeypatch,
        {
            "SQS_ENDPOINT_URL": moto_endpoint,
            "QUEUE_URL_PREFIX": f"{moto_endpoint}/{MOTO_ACCOUNT_ID}/",
            "SQS_ACCESS_KEY": MOTO_ACCESS_KEY,
            "SQS_SECRET_KEY": MOTO_SECRET_KEY,
        },
    )


@pytest.fixture
def resend_fake():
    fake = ResendFake().start()
    yield fake
    fake.stop()
    assert not fake.unknown_routes, f"requests to routes the Resend fake does not know: {fake.unknown_routes}"


@pytest.fixture
def resend_env(env, resend_fake, monkeypatch):
    return _reconfigure(monkeypatch, {"RESEND_API_KEY": RESEND_TEST_KEY, "RESEND_BASE_URL": resend_fake.url})


@pytest.fixture
def stripe_fake():
    fake = StripeFake().start()
    yield fake
    fake.stop()
    assert not fake.unknown_routes, f"requests to routes the Stripe fake does not know: {fake.unknown_routes}"


@pytest.fixture
def stripe_env(env, stripe_fake, monkeypatch):
    return _reconfigure(monkeypatch, {"STRIPE_API_KEY": STRIPE_TEST_KEY, "STRIPE_API_BASE": stripe_fake.url})
