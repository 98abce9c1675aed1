"""Configuration: the EU guard (policy 6.3) and start-up validation, with messages naming the variable."""

from __future__ import annotations

import pytest

from shared.platform.config import ConfigurationError, load_settings

PRODUCTION = {
    "PRIVACY_ENV": "production",
    "DATABASE_URL": "postgresql://app@db.internal:5432/privacy",
    "S3_ENDPOINT_URL": "https://s3.fr-par.scw.cloud",
    "SQS_ENDPOINT_URL": "https://sqs.mnq.fr-par.scaleway.com",
    "QUEUE_URL_PREFIX": "https://sqs.mnq.fr-par.scaleway.com/project-0000/",
    "RESEND_API_KEY": "re_live_key",
    "STRIPE_API_KEY": "sk_live_key",
    "PSEUDONYM_KEY": "a-long-random-pseudonym-key",
    "AUDIT_KEYS": "k2027:" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
    "TOKEN_VERIFY_KEY": "a-long-random-verify-key",
}


def refused(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigurationError) as error:
        load_settings(environ)
    return str(error.value)


def test_empty_environment_gives_local_embedded_defaults():
    settings = load_settings({})
    assert settings.environment == "local"
    assert settings.s3_endpoint_url is None and settings.sqs_endpoint_url is None
    assert settings.resend_api_key is None and settings.stripe_api_key is None
    assert settings.effective_database_url.startswith("sqlite:///")


def test_empty_strings_count_as_unset():
    settings = load_settings({"S3_ENDPOINT_URL": "", "S3_REGION": "", "RESEND_API_KEY": ""})
    assert settings.s3_endpoint_url is None and settings.s3_region == "fr-par" and settings.resend_api_key is None


@pytest.mark.parametrize("region", ["fr-par", "nl-ams", "pl-waw"])
def test_eu_regions_are_accepted(region):
    assert load_settings({"S3_REGION": region}).s3_region == region


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "FR-PAR", "fr-par-1"])
def test_other_regions_are_refused_naming_the_variable(region):
    message = refused({"S3_REGION": region})
    assert "S3_REGION" in message and "outside the EU" in message


@pytest.mark.parametrize(
    "name, url",
    [
        ("S3_ENDPOINT_URL", "https://s3.fr-par.scw.cloud"),
        ("S3_ENDPOINT_URL", "https://s3.pl-waw.scw.cloud"),
        ("S3_ENDPOINT_URL", "https://my-bucket.s3.nl-ams.scw.cloud"),
        ("SQS_ENDPOINT_URL", "https://sqs.mnq.fr-par.scaleway.com"),
        ("QUEUE_URL_PREFIX", "https://sqs.mnq.nl-ams.scaleway.com/project-1234/"),
        ("RESEND_BASE_URL", "https://api.resend.com"),
        ("STRIPE_API_BASE", "https://api.stripe.com"),
    ],
)
def test_eu_and_subprocessor_endpoints_are_accepted(name, url):
    environ = {name: url}
    if name == "SQS_ENDPOINT_URL":
        environ["QUEUE_URL_PREFIX"] = url + "/project-1234/"
    load_settings(environ)


@pytest.mark.parametrize(
    "name, url",
    [
        ("S3_ENDPOINT_URL", "https://s3.amazonaws.com"),
        ("S3_ENDPOINT_URL", "https://s3.us-east-1.amazonaws.com"),
        ("S3_ENDPOINT_URL", "https://s3.fr-par.scw.cloud.attacker.example"),
        ("S3_ENDPOINT_URL", "https://evil-s3.fr-par.scw.cloud"),
        ("S3_ENDPOINT_URL", "https://storage.googleapis.com"),
        ("S3_ENDPOINT_URL", "ftp://s3.fr-par.scw.cloud"),
        ("SQS_ENDPOINT_URL", "https://sqs.eu-west-1.amazonaws.com"),
        ("QUEUE_URL_PREFIX", "https://sqs.us-east-1.amazonaws.com/123456789012/"),
        ("RESEND_BASE_URL", "https://api.resend.com.attacker.example"),
        ("RESEND_BASE_URL", "https://relay.example.com"),
        ("STRIPE_API_BASE", "https://stripe-proxy.example.com"),
    ],
)
def test_endpoints_outside_the_eu_are_refused_naming_the_variable(name, url):
    environ = {name: url}
    if name == "SQS_ENDPOINT_URL":
        environ["QUEUE_URL_PREFIX"] = "https://sqs.mnq.fr-par.scaleway.com/project-1234/"
    message = refused(environ)
    assert name in message
    assert "policy 6.3" in message or "not an http(s) URL" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.0.0.53"])
def test_loopback_fakes_are_allowed_outside_production(host):
    url = f"http://{host}:5000"
    settings = load_settings(
        {
            "PRIVACY_ENV": "test",
            "S3_ENDPOINT_URL": url,
            "SQS_ENDPOINT_URL": url,
            "QUEUE_URL_PREFIX": f"{url}/123456789012/",
            "RESEND_BASE_URL": url,
            "STRIPE_API_BASE": url,
        }
    )
    assert settings.s3_endpoint_url == url and settings.stripe_api_base == url


def test_sqs_endpoint_needs_a_queue_url_prefix():
    message = refused({"SQS_ENDPOINT_URL": "https://sqs.mnq.fr-par.scaleway.com"})
    assert "QUEUE_URL_PREFIX" in message


def test_production_with_real_backends_is_accepted():
    settings = load_settings(PRODUCTION)
    assert settings.environment == "production"


def test_production_requires_every_real_backend():
    message = refused({"PRIVACY_ENV": "production"})
    for name in (
        "DATABASE_URL",
        "S3_ENDPOINT_URL",
        "SQS_ENDPOINT_URL",
        "RESEND_API_KEY",
        "STRIPE_API_KEY",
        "PSEUDONYM_KEY",
        "TOKEN_VERIFY_KEY",
    ):
        assert name in message


@pytest.mark.parametrize("missing", ["S3_ENDPOINT_URL", "RESEND_API_KEY", "STRIPE_API_KEY", "PSEUDONYM_KEY"])
def test_production_names_the_one_missing_backend(missing):
    environ = {k: v for k, v in PRODUCTION.items() if k != missing}
    message = refused(environ)
    assert missing in message


def test_production_refuses_the_development_token_key():
    assert "DEV_TOKEN_KEY" in refused({**PRODUCTION, "DEV_TOKEN_KEY": "dev"})


@pytest.mark.parametrize("name", ["S3_ENDPOINT_URL", "SQS_ENDPOINT_URL", "RESEND_BASE_URL", "STRIPE_API_BASE"])
def test_production_refuses_loopback_fakes(name):
    environ = {**PRODUCTION, name: "http://127.0.0.1:5000"}
    assert name in refused(environ)


@pytest.mark.parametrize(
    "name, value",
    [
        ("PRIVACY_ENV", "staging"),
        ("QUEUE_MAX_ATTEMPTS", "0"),
        ("QUEUE_MAX_ATTEMPTS", "three"),
        ("LOG_LEVEL", "TRACE"),
        ("MAX_BODY_BYTES", "10"),
    ],
)
def test_invalid_values_are_refused_naming_the_variable(name, value):
    assert name in refused({name: value})
