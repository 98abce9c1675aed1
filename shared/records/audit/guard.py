"""The personal-data guard: audit details that look like personal data are refused, never stored."""

from __future__ import annotations

from typing import Any

from shared.platform.logs import find_personal_data


class PersonalDataRefused(ValueError):
    """Audit details that look like personal data: a programming error, never stored."""


# A key is refused when one of its words (split on "_") is one of these...
_PERSONAL_KEY_WORDS = frozenset(
    {
        "email",
        "phone",
        "telephone",
        "tel",
        "mobile",
        "ip",
        "ipv4",
        "ipv6",
        "name",
        "firstname",
        "lastname",
        "fullname",
        "surname",
        "address",
        "password",
        "passwd",
        "token",
        "secret",
        "otp",
        "totp",
        "iban",
        "birthdate",
        "birthday",
    }
)
# ...or when it is one of these as a whole.
_PERSONAL_KEYS = frozenset({"mail", "e_mail", "user_agent", "useragent", "verification_code"})


def _personal_key(key: str) -> bool:
    normalised = key.strip().lower().replace("-", "_").replace(" ", "_")
    return normalised in _PERSONAL_KEYS or any(word in _PERSONAL_KEY_WORDS for word in normalised.split("_"))


def personal_data_reason(value: str) -> str | None:
    """Why a string looks like personal data, or None (the same detectors as the log filter)."""
    return find_personal_data(value)


def ensure_no_personal_data(value: Any, *, path: str = "details") -> None:
    """Raise PersonalDataRefused when `value` (any JSON value) looks like personal data."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise PersonalDataRefused(f"{path}: keys must be strings")
            if _personal_key(key):
                raise PersonalDataRefused(f"{path}.{key}: key names personal data")
            ensure_no_personal_data(item, path=f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            ensure_no_personal_data(item, path=f"{path}[{index}]")
    elif isinstance(value, str):
        reason = personal_data_reason(value)
        if reason:
            raise PersonalDataRefused(f"{path}: value looks like {reason}")
