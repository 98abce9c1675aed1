"""The sealing module: AES-256-GCM bound to a key id and a row, keys rotated by key id (issue 14, section 2)."""

from __future__ import annotations

import base64

import pytest

from shared.platform import config as config_module
from shared.platform import sealing
from shared.platform.sealing import SealingError, column_context, reseal, seal, unseal

SECRET = "CANARYTOTPSEEDISSUEFOURTEENQZXWV"
K1 = "k1:" + base64.b64encode(bytes([1]) * 32).decode()
K2 = "k2:" + base64.b64encode(bytes([2]) * 32).decode()
HERE = column_context("accounts", "totp_secret", "account-a")
THERE = column_context("accounts", "totp_secret", "account-b")


@pytest.fixture
def keys(monkeypatch):
    def use(value: str) -> None:
        monkeypatch.setenv("SECRETS_KEYS", value)
        config_module.reset_settings()

    use(K1)
    yield use
    monkeypatch.delenv("SECRETS_KEYS")
    config_module.reset_settings()


def test_a_sealed_value_opens_for_its_own_row_only(keys):
    token = seal(SECRET, context=HERE)
    assert token.startswith("v1:k1:") and SECRET not in token and sealing.is_sealed(token)
    assert len(token) <= 255  # the width of accounts.totp_secret
    assert unseal(token, context=HERE) == SECRET
    with pytest.raises(SealingError) as error:
        unseal(token, context=THERE)
    assert SECRET not in str(error.value) and "account-b" in str(error.value)


def test_each_seal_uses_a_fresh_nonce(keys):
    assert seal(SECRET, context=HERE) != seal(SECRET, context=HERE)


def test_the_key_id_is_authenticated_too(keys):
    keys(f"{K2},{K1}")
    token = seal(SECRET, context=HERE)  # under k2
    with pytest.raises(SealingError):
        unseal(token.replace("v1:k2:", "v1:k1:", 1), context=HERE)


@pytest.mark.parametrize("value", [SECRET, "v1:k1:", "v1:k1:!!!!", "v2:k1:AAAA", "v1:k1:" + "A" * 20])
def test_clear_malformed_or_truncated_values_do_not_open(keys, value):
    with pytest.raises(SealingError) as error:
        unseal(value, context=HERE)
    assert SECRET not in str(error.value)


def test_rotation_reseal_moves_to_the_first_key(keys):
    old = seal(SECRET, context=HERE)
    keys(f"{K2},{K1}")
    assert unseal(old, context=HERE) == SECRET  # k1 still opens
    new = reseal(old, context=HERE)
    assert new.startswith("v1:k2:") and unseal(new, context=HERE) == SECRET
    assert reseal(new, context=HERE) == new  # already under the current key
    keys(K2)
    assert unseal(new, context=HERE) == SECRET
    with pytest.raises(SealingError, match="'k1'"):
        unseal(old, context=HERE)


def test_a_context_names_table_column_and_row():
    with pytest.raises(ValueError):
        column_context("accounts", "totp_secret", "")
