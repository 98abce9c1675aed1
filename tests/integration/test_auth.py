"""Client tokens, step-up verification (TOTP and mailed codes), rate limiting and DPO credentials."""

from __future__ import annotations

import datetime as dt
import email
import re
import threading
import time
import uuid
from email import policy as email_policy
from pathlib import Path

import jwt
import pyotp
import pytest
import sqlalchemy as sa

from shared.identity import client as auth
from shared.identity import dpo
from shared.local.demo import create_account
from shared.platform.config import ConfigurationError, reset_settings
from shared.platform.errors import AppError
from shared.ports.tables import audit_log, dpo_credentials, totp_used_steps, verification_attempts, verification_codes
from tests.conftest import DEV_TOKEN_KEY

T0 = dt.datetime(2027, 5, 10, 9, 0, tzinfo=dt.UTC)
CODE_IN_MAIL = re.compile(r"code de vérification jefacturebien\.fr : (\d{6})")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_with(env, **overrides) -> str:
    key = overrides.pop("key", DEV_TOKEN_KEY)
    now = int(time.time())
    claims = {
        "iss": env.token_issuer,
        "aud": env.token_audience,
        "sub": overrides.pop("sub", None),
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="HS256")


def refused(call) -> AppError:
    with pytest.raises(AppError) as caught:
        call()
    return caught.value


def with_code(code: str | None) -> dict[str, str]:
    return {} if code is None else {"X-Verification-Code": code}


def step_up(engine, account_id: str, code: str | None = None, *, now=T0, action="export"):
    return auth.require_step_up(engine, account_id, with_code(code), action=action, now=now)


def outbox(env) -> list[Path]:
    return sorted((env.data_dir / "outbox").glob("*.eml"))


def mailed_code(path: Path) -> str:
    message = email.message_from_bytes(path.read_bytes(), policy=email_policy.default)
    return CODE_IN_MAIL.search(message.get_body(("plain",)).get_content()).group(1)


def request_code(env, engine, account_id: str, *, now=T0) -> str:
    """Ask for a step-up without a code; return the code mailed in answer."""
    before = set(outbox(env))
    error = refused(lambda: step_up(engine, account_id, now=now))
    assert (error.status, error.code) == (401, "verification_required")
    [new] = set(outbox(env)) - before
    return mailed_code(new)


def wrong(code: str) -> str:
    return str((int(code[0]) + 1) % 10) + code[1:]


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def audit_outcomes(engine) -> list[str]:
    with engine.connect() as conn:
        return (
            conn.execute(
                sa.select(audit_log.c.outcome).where(audit_log.c.action == "step_up").order_by(audit_log.c.seq)
            )
            .scalars()
            .all()
        )


# --- Client tokens ------------------------------------------------------------------------


def test_dev_token_authenticates_its_account(env, engine):
    account = create_account(engine)
    identity = auth.authenticate_client(bearer(auth.issue_dev_token(account["id"])))
    assert identity == auth.ClientIdentity(account_id=account["id"])
    # Header names are case-insensitive.
    assert auth.authenticate_client({"authorization": f"bearer {auth.issue_dev_token(account['id'])}"}) == identity


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_token"),
        ({"Authorization": ""}, "missing_token"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_token"),
        ({"Authorization": "Bearer"}, "invalid_token"),
        ({"Authorization": "Bearer not.a.jwt"}, "invalid_token"),
    ],
)
def test_missing_or_malformed_token_is_401(env, headers, code):
    error = refused(lambda: auth.authenticate_client(headers))
    assert (error.status, error.code) == (401, code)


def test_token_claims_are_checked(env, engine):
    account_id = create_account(engine)["id"]
    cases = {
        "wrong issuer": token_with(env, sub=account_id, iss="https://evil.example"),
        "wrong audience": token_with(env, sub=account_id, aud="another-service"),
        "no expiry": token_with(env, sub=account_id, exp=None),
        "no subject": token_with(env),
        "wrong key": token_with(env, sub=account_id, key="another-key-0123456789abcdef0123"),
    }
    for case, token in cases.items():
        error = refused(lambda token=token: auth.authenticate_client(bearer(token)))
        assert (error.status, error.code) == (401, "invalid_token"), case


def test_expired_token_is_401_token_expired(env, engine):
    account_id = create_account(engine)["id"]
    token = token_with(env, sub=account_id, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    error = refused(lambda: auth.authenticate_client(bearer(token)))
    assert (error.status, error.code) == (401, "token_expired")


def test_unsigned_token_is_refused(env, engine):
    account_id = create_account(engine)["id"]
    claims = {"iss": env.token_issuer, "aud": env.token_audience, "sub": account_id, "exp": int(time.time()) + 600}
    token = jwt.encode(claims, None, algorithm="none")
    error = refused(lambda: auth.authenticate_client(bearer(token)))
    assert (error.status, error.code) == (401, "invalid_token")


@pytest.mark.parametrize("status", ["deactivated", "erased"])
def test_inactive_accounts_tokens_are_refused(env, engine, status):
    account_id = create_account(engine, status=status)["id"]
    error = refused(lambda: auth.authenticate_client(bearer(auth.issue_dev_token(account_id))))
    assert (error.status, error.code) == (403, "account_inactive")


def test_pending_erasure_may_still_authenticate_where_allowed(env, engine):
    deactivated = create_account(engine, status="deactivated")["id"]
    erased = create_account(engine, status="erased")["id"]
    token = auth.issue_dev_token(deactivated)
    assert auth.authenticate_client(bearer(token), allow_deactivated=True).account_id == deactivated
    error = refused(lambda: auth.authenticate_client(bearer(auth.issue_dev_token(erased)), allow_deactivated=True))
    assert error.code == "account_inactive"


def test_token_of_an_unknown_account_is_refused(env):
    error = refused(lambda: auth.authenticate_client(bearer(auth.issue_dev_token(str(uuid.uuid4())))))
    assert (error.status, error.code) == (403, "account_inactive")


def test_dev_token_needs_a_development_key(env, monkeypatch):
    monkeypatch.delenv("DEV_TOKEN_KEY")
    reset_settings()
    with pytest.raises(ConfigurationError, match="DEV_TOKEN_KEY"):
        auth.issue_dev_token(str(uuid.uuid4()))


# --- Step-up with TOTP ------------------------------------------------------------------------


def test_totp_code_passes_once_per_time_step(env, engine):
    account = create_account(engine, with_2fa=True)
    totp = pyotp.TOTP(account["totp_secret"])
    code = totp.at(T0)

    assert step_up(engine, account["id"], code) == "totp"
    error = refused(lambda: step_up(engine, account["id"], code, now=T0 + dt.timedelta(seconds=5)))
    assert (error.status, error.code) == (401, "code_already_used")
    # The next time step's code is accepted.
    assert step_up(engine, account["id"], totp.at(T0, counter_offset=1), now=T0 + dt.timedelta(seconds=30)) == "totp"
    assert audit_outcomes(engine) == ["succeeded", "code_already_used", "succeeded"]


def test_totp_window_is_one_step_either_side(env, engine):
    account = create_account(engine, with_2fa=True)
    totp = pyotp.TOTP(account["totp_secret"])
    assert step_up(engine, account["id"], totp.at(T0, counter_offset=-1)) == "totp"
    assert step_up(engine, account["id"], totp.at(T0, counter_offset=1)) == "totp"
    for offset in (-2, 2):
        code = totp.at(T0, counter_offset=offset)
        if code in {totp.at(T0, counter_offset=o) for o in (-1, 0, 1)}:
            continue  # the same six digits in two steps: not a meaningful probe
        error = refused(lambda code=code: step_up(engine, account["id"], code))
        assert (error.status, error.code) == (401, "invalid_code")


def test_totp_replay_is_refused_even_concurrently(env, engine):
    account = create_account(engine, with_2fa=True)
    code = pyotp.TOTP(account["totp_secret"]).at(T0)
    barrier, outcomes = threading.Barrier(4), []

    def attempt() -> None:
        barrier.wait()
        try:
            outcomes.append(step_up(engine, account["id"], code))
        except AppError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["code_already_used"] * 3 + ["totp"]
    assert count(engine, totp_used_steps) == 1


def test_totp_account_without_code_gets_no_mail(env, engine):
    account = create_account(engine, with_2fa=True)
    error = refused(lambda: step_up(engine, account["id"]))
    assert (error.status, error.code) == (401, "verification_required")
    assert outbox(env) == []
    error = refused(lambda: step_up(engine, account["id"], "12ab56"))
    assert (error.status, error.code) == (401, "invalid_code")


# --- Step-up with a mailed code ---------------------------------------------------------------


def test_mailed_code_lifecycle(env, engine):
    account = create_account(engine)
    code = request_code(env, engine, account["id"])
    [mail] = outbox(env)
    sidecar = mail.with_suffix(".json").read_text()
    assert account["email"] in sidecar and code not in sidecar  # the code is not in the subject

    # Hashed at rest: the code appears nowhere in the database.
    with engine.connect() as conn:
        for table in (verification_codes, audit_log):
            for row in conn.execute(sa.select(table)):
                assert code not in repr(tuple(row))
                assert account["email"] not in repr(tuple(row))

    later = T0 + dt.timedelta(minutes=2)
    assert step_up(engine, account["id"], code, now=later) == "mail_code"
    error = refused(lambda: step_up(engine, account["id"], code, now=later))
    assert (error.status, error.code) == (401, "code_already_used")
    assert audit_outcomes(engine) == ["code_sent", "succeeded", "code_already_used"]


def test_mailed_code_expires(env, engine):
    account = create_account(engine)
    code = request_code(env, engine, account["id"])
    expired = T0 + dt.timedelta(seconds=env.verification_code_ttl_seconds)
    error = refused(lambda: step_up(engine, account["id"], code, now=expired))
    assert (error.status, error.code) == (401, "code_expired")


def test_mailed_code_dies_after_too_many_wrong_attempts(env, engine):
    account = create_account(engine)
    code = request_code(env, engine, account["id"])
    for i in range(env.verification_max_attempts):
        error = refused(lambda i=i: step_up(engine, account["id"], wrong(code), now=T0 + dt.timedelta(seconds=i)))
        assert (error.status, error.code) == (401, "invalid_code")
    error = refused(lambda: step_up(engine, account["id"], code, now=T0 + dt.timedelta(seconds=30)))
    assert (error.status, error.code) == (429, "too_many_attempts")


def test_one_mail_per_minute_and_a_new_code_replaces_the_old(env, engine):
    account = create_account(engine)
    first = request_code(env, engine, account["id"])
    error = refused(lambda: step_up(engine, account["id"], now=T0 + dt.timedelta(seconds=30)))
    assert (error.status, error.code) == (401, "verification_required")
    assert len(outbox(env)) == 1

    second = request_code(env, engine, account["id"], now=T0 + dt.timedelta(seconds=61))
    assert len(outbox(env)) == 2
    if first != second:
        error = refused(lambda: step_up(engine, account["id"], first, now=T0 + dt.timedelta(seconds=62)))
        assert error.code == "invalid_code"
    assert step_up(engine, account["id"], second, now=T0 + dt.timedelta(seconds=63)) == "mail_code"


def test_code_of_another_account_does_not_work(env, engine):
    alice, bob = create_account(engine), create_account(engine)
    code = request_code(env, engine, alice["id"])
    request_code(env, engine, bob["id"])
    with engine.connect() as conn:
        bob_code_count = conn.execute(
            sa.select(sa.func.count())
            .select_from(verification_codes)
            .where(verification_codes.c.account_id == bob["id"])
        ).scalar()
    assert bob_code_count == 1
    # Bob's own code is unknown to this test; Alice's code must not unlock Bob (bar a 1-in-a-million clash).
    error = refused(lambda: step_up(engine, bob["id"], code))
    assert (error.status, error.code) == (401, "invalid_code")


# --- Rate limit -------------------------------------------------------------------------------


def test_attempts_are_rate_limited_per_account_and_recorded_even_when_failing(env, engine, monkeypatch):
    monkeypatch.setenv("VERIFICATION_RATE_LIMIT", "3")
    reset_settings()
    account = create_account(engine, with_2fa=True)
    other = create_account(engine, with_2fa=True)
    for i in range(3):
        guess = "000000" if i % 2 else "999999"
        error = refused(
            lambda guess=guess, i=i: step_up(engine, account["id"], guess, now=T0 + dt.timedelta(seconds=i))
        )
        assert error.code == "invalid_code"
    assert count(engine, verification_attempts) == 3  # committed although each call failed

    valid = pyotp.TOTP(account["totp_secret"]).at(T0)
    error = refused(lambda: step_up(engine, account["id"], valid, now=T0 + dt.timedelta(seconds=10)))
    assert (error.status, error.code) == (429, "rate_limited")
    retry_after = int(error.headers["Retry-After"])
    window = env.verification_rate_window_seconds
    assert window - 10 <= retry_after <= window
    assert count(engine, totp_used_steps) == 0  # the refused attempt used nothing up

    # Other accounts are not affected; after the window the account may try again.
    assert step_up(engine, other["id"], pyotp.TOTP(other["totp_secret"]).at(T0), now=T0) == "totp"
    later = T0 + dt.timedelta(seconds=window + 3)
    assert step_up(engine, account["id"], pyotp.TOTP(account["totp_secret"]).at(later), now=later) == "totp"


def test_step_up_for_an_unknown_account_changes_nothing(env, engine):
    error = refused(lambda: step_up(engine, str(uuid.uuid4()), "123456"))
    assert (error.status, error.code) == (403, "account_inactive")
    assert count(engine, audit_log) == 0


# --- DPO credentials --------------------------------------------------------------------------


def make_dpo_token(engine, label: str = "dpo") -> str:
    with engine.begin() as conn:
        return dpo.create_dpo_credential(conn, label)


def test_dpo_credential_authenticates_and_is_hashed_at_rest(env, engine):
    token = make_dpo_token(engine)
    identity = dpo.authenticate_dpo(bearer(token))
    assert identity.label == "dpo"
    assert token.startswith(f"dpo_{identity.credential_id}_")
    secret = token.removeprefix(f"dpo_{identity.credential_id}_")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(dpo_credentials)).all()
        trail = conn.execute(sa.select(audit_log)).all()
    assert len(rows) == 1 and secret not in repr(tuple(rows[0])) and secret not in repr(trail)


def test_dpo_token_with_a_wrong_secret_or_unknown_id_is_refused(env, engine):
    token = make_dpo_token(engine)
    prefix, _, secret = token.rpartition("_")
    for forged in (f"{prefix}_{secret[:-1]}x", f"dpo_{uuid.uuid4()}_{secret}", "dpo_short_secret", "dpo_"):
        error = refused(lambda forged=forged: dpo.authenticate_dpo(bearer(forged)))
        assert (error.status, error.code) == (401, "invalid_token")


def test_revoked_dpo_credential_is_refused(env, engine):
    token = make_dpo_token(engine)
    identity = dpo.authenticate_dpo(bearer(token))
    with engine.begin() as conn:
        dpo.revoke_dpo_credential(conn, identity.credential_id)
    error = refused(lambda: dpo.authenticate_dpo(bearer(token)))
    assert (error.status, error.code) == (401, "token_revoked")


def test_client_and_dpo_tokens_are_not_interchangeable(env, engine):
    account_id = create_account(engine)["id"]
    dpo_token, client_token = make_dpo_token(engine), auth.issue_dev_token(account_id)
    error = refused(lambda: dpo.authenticate_dpo(bearer(client_token)))
    assert (error.status, error.code) == (401, "wrong_token_type")
    error = refused(lambda: auth.authenticate_client(bearer(dpo_token)))
    assert (error.status, error.code) == (401, "wrong_token_type")
    error = refused(lambda: dpo.authenticate_dpo({}))
    assert (error.status, error.code) == (401, "missing_token")


@pytest.mark.parametrize("label", ["", "x" * 101, "jean.dupont@example.fr"])
def test_dpo_label_must_name_a_role(env, engine, label):
    error = refused(lambda: make_dpo_token(engine, label))
    assert (error.status, error.code) == (400, "invalid_label")
    assert count(engine, dpo_credentials) == 0
