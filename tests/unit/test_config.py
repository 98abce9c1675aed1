"""Configuration: the EU guard (policy 6.3) and start-up validation, with messages naming the variable."""

from __future__ import annotations

import base64
import re

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
    "SECRETS_KEYS": "k1:" + base64.b64encode(bytes(range(32))).decode(),
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
        "SECRETS_KEYS",
    ):
        assert name in message


@pytest.mark.parametrize(
    "missing", ["S3_ENDPOINT_URL", "RESEND_API_KEY", "STRIPE_API_KEY", "PSEUDONYM_KEY", "SECRETS_KEYS"]
)
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


# --- DATABASE_URL under the EU guard (issue 14, section 5) -----------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///relative/privacy.db",
        "sqlite:////var/lib/privacy/privacy.db",
        "postgresql://app:pw@rw-a94bb20e-1f62-4203-9b60-234c12170876.rdb.fr-par.scw.cloud:5826/privacy",
        "postgresql+psycopg://app@ro-0000.rdb.nl-ams.scw.cloud:5432/privacy?sslmode=verify-full",
        "postgres://app@rw-1.rdb.pl-waw.scw.cloud/privacy",
        "postgresql://app@privacy-db.prodpn.internal:5432/privacy",
        "postgresql://app@172.16.4.2:5432/privacy",
        "postgresql://app@10.0.0.7/privacy",
        "postgresql://app@192.168.1.20/privacy",
    ],
)
def test_eu_and_private_database_hosts_are_accepted_in_production(url):
    assert load_settings({**PRODUCTION, "DATABASE_URL": url}).database_url == url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/test",
        "postgresql://postgres@localhost/test",
        "postgresql://u@[::1]:5432/x",
        "postgresql://u@db:5432/privacy",
    ],
)
def test_loopback_and_dotless_database_hosts_are_local_runs_only(url):
    assert load_settings({"PRIVACY_ENV": "test", "DATABASE_URL": url}).database_url == url
    message = refused({**PRODUCTION, "DATABASE_URL": url})
    assert "DATABASE_URL" in message and "loopback" in message


@pytest.mark.parametrize(
    "url, host",
    [
        (
            "postgresql://u:pw@mydb.c9akciq32.eu-west-1.rds.amazonaws.com:5432/x",
            "mydb.c9akciq32.eu-west-1.rds.amazonaws.com",
        ),
        ("postgresql://u:pw@db.example.com/x", "db.example.com"),
        ("postgresql://u@rw-1.rdb.fr-par.scw.cloud.attacker.example/x", "rw-1.rdb.fr-par.scw.cloud.attacker.example"),
        ("postgresql://u@rw-1.rdb.us-east-1.scw.cloud/x", "rw-1.rdb.us-east-1.scw.cloud"),
        ("postgresql://u@51.159.10.20:5432/x", "51.159.10.20"),  # a public IP: the region cannot be told
        # libpq also connects to hosts given as parameters or as a list: each one is checked.
        ("postgresql://u@localhost/x?host=db.attacker.example", "db.attacker.example"),
        ("postgresql://u@rw-1.rdb.fr-par.scw.cloud,db.attacker.example/x", "db.attacker.example"),
        ("postgresql://u@rw-1.rdb.fr-par.scw.cloud/x?hostaddr=8.8.8.8", "8.8.8.8"),
    ],
)
def test_database_hosts_outside_the_eu_are_refused_naming_the_variable(url, host):
    for environ in ({"DATABASE_URL": url}, {**PRODUCTION, "DATABASE_URL": url}):
        message = refused(environ)
        assert "DATABASE_URL" in message and "policy 6.3" in message and repr(host) in message
        assert "pw" not in message.replace("policy", "")  # never the password of the URL


@pytest.mark.parametrize(
    "url", ["postgresql:///privacy", "postgresql://u@localhost/x?service=prod", "mysql://u@db.example.com/x"]
)
def test_database_urls_whose_host_cannot_be_checked_are_refused(url):
    assert "DATABASE_URL" in refused({"DATABASE_URL": url})


# --- SECRETS_KEYS (issue 14, section 2) -------------------------------------------------------


def test_secrets_keys_list_the_sealing_key_first():
    old, new = bytes(32), bytes(range(32))
    value = f"k2:{base64.b64encode(new).decode()},k1:{base64.urlsafe_b64encode(old).decode()}"
    assert load_settings({"SECRETS_KEYS": value}).sealing_keys == (("k2", new), ("k1", old))
    assert load_settings({}).sealing_keys[0][0] == "dev"  # local and test runs: a development key


@pytest.mark.parametrize(
    "value",
    [
        "k1:" + base64.b64encode(b"sixteen-byte-key").decode(),  # AES-128 is not enough
        base64.b64encode(bytes(32)).decode(),  # no key id
        "k1:not base64!",
        "k 1:" + base64.b64encode(bytes(32)).decode(),
        "k1:{0},k1:{0}".format(base64.b64encode(bytes(32)).decode()),
    ],
)
def test_invalid_secrets_keys_are_refused_without_echoing_them(value):
    message = refused({"SECRETS_KEYS": value})
    assert "SECRETS_KEYS" in message
    for key_material in re.findall(r"[A-Za-z0-9+/=_-]{16,}", value):
        assert key_material not in message
