"""What a rectification may correct (policy 2.1, 8.2) and how each value is checked and normalised.

The body is a JSON object of the fields to correct, each sent only to correct it (no `null`):

    first_name, last_name   1 to 100 characters: letters, spaces, hyphens, apostrophes, dots
    phone                   a French number (+33 or 0, then 9 digits), stored as "+33 6 12 34 56 78"
    email                   an address; takes effect only once the new address confirms a mailed code
    company_name            1 to 200 characters
    business_address        {"line1", "line2"?, "postal_code" (5 French digits), "city", "country": "FR"}
    vat_number              FR + key + SIREN, the key matching the SIREN: (12 + 3 * (SIREN mod 97)) mod 97
    company_id              which of the account's companies, when it has several

Unknown fields are refused, no value is coerced (a number is not a string). The SIREN and SIRET
are not rectified here: they come from business verification (KYB), through the DPO.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from shared.platform.runtime import StrictModel

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

ACCOUNT_FIELDS = ("first_name", "last_name", "phone")
COMPANY_FIELDS = ("company_name", "business_address", "vat_number")
EMAIL = "email"
FIELDS = (*ACCOUNT_FIELDS, EMAIL, *COMPANY_FIELDS)

_NAME = re.compile(r"^[^\W\d_]+(?:[ '’.\-]{1,2}[^\W\d_]+)*\.?$")
_FRENCH_PHONE = re.compile(r"^(?:\+33|0033|0)([1-9][0-9]{8})$")
_PHONE_SEPARATORS = re.compile(r"[ .\-]")
# Metropolitan France 01-95 (Corsica is 20), overseas 97 and 98; 00 and 99 are no départements.
_POSTAL_CODE = re.compile(r"^(?:0[1-9]|[1-8][0-9]|9[0-8])[0-9]{3}$")
_VAT = re.compile(r"^FR([0-9]{2})([0-9]{9})$")
_EMAIL = re.compile(r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.[^@\s<>,;:\"()\[\]\\]+$")


def _text(value: str, *, maximum: int) -> str:
    value = unicodedata.normalize("NFC", value).strip()
    if not value:
        raise ValueError("must not be empty")
    if len(value) > maximum:
        raise ValueError(f"must be at most {maximum} characters")
    if any(unicodedata.category(c)[0] == "C" for c in value):
        raise ValueError("must not contain control characters")
    return value


def normalise_phone(value: str) -> str:
    """A French number as stored: "+33 6 12 34 56 78"; ValueError otherwise."""
    compact = _PHONE_SEPARATORS.sub("", value.strip())
    match = _FRENCH_PHONE.match(compact)
    if not match:
        raise ValueError("must be a French phone number (+33 or 0, then 9 digits)")
    digits = match.group(1)
    return "+33 " + digits[0] + "".join(f" {digits[i : i + 2]}" for i in range(1, 9, 2))


def vat_key(siren: str) -> int:
    """The key of a French VAT number: (12 + 3 * (SIREN mod 97)) mod 97."""
    return (12 + 3 * (int(siren) % 97)) % 97


def normalise_vat(value: str) -> str:
    """FR + 2-digit key + SIREN, the key matching the SIREN; ValueError otherwise."""
    compact = re.sub(r"[ .\-]", "", value.strip()).upper()
    match = _VAT.match(compact)
    if not match:
        raise ValueError("must be a French VAT number: FR, a 2-digit key, then the 9-digit SIREN")
    key, siren = match.groups()
    if int(key) != vat_key(siren):
        raise ValueError("the key does not match the SIREN")
    return compact


def vat_siren(vat_number: str) -> str:
    return vat_number[4:]


class BusinessAddress(StrictModel):
    line1: str
    line2: str | None = None
    postal_code: str
    city: str
    country: Literal["FR"] = "FR"

    @field_validator("line1", "line2")
    @classmethod
    def _line(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _text(value, maximum=200)

    @field_validator("city")
    @classmethod
    def _city(cls, value: str) -> str:
        return _text(value, maximum=100)

    @field_validator("postal_code")
    @classmethod
    def _postal_code(cls, value: str) -> str:
        if not _POSTAL_CODE.match(value.strip()):
            raise ValueError("must be a French postal code (5 digits)")
        return value.strip()

    def columns(self) -> dict[str, Any]:
        return {
            "address_line1": self.line1,
            "address_line2": self.line2,
            "postal_code": self.postal_code,
            "city": self.city,
            "country": self.country,
        }


class Rectification(StrictModel):
    """The fields to correct; at least one. `None` means "not sent": an explicit null is refused."""

    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    email: str | None = Field(None, max_length=320)
    company_name: str | None = None
    business_address: BusinessAddress | None = None
    vat_number: str | None = Field(None, max_length=32)
    company_id: str | None = Field(None, pattern=UUID_PATTERN)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(name for name, value in data.items() if value is None and name in cls.model_fields)
            if nulls:
                raise ValueError(f"send a field only to correct it; null is not a value ({', '.join(nulls)})")
        return data

    @model_validator(mode="after")
    def _at_least_one(self) -> Rectification:
        if not self.sent():
            raise ValueError(f"name at least one field to correct: {', '.join(FIELDS)}")
        return self

    @field_validator("first_name", "last_name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = _text(value, maximum=100)
        if not _NAME.match(value):
            raise ValueError("must be letters, spaces, hyphens, apostrophes or dots")
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return normalise_phone(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = value.strip()
        if not _EMAIL.match(value):
            raise ValueError("must be an email address")
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"

    @field_validator("company_name")
    @classmethod
    def _company_name(cls, value: str) -> str:
        return _text(value, maximum=200)

    @field_validator("vat_number")
    @classmethod
    def _vat(cls, value: str) -> str:
        return normalise_vat(value)

    def sent(self) -> list[str]:
        """The fields sent, in the order of FIELDS."""
        return [name for name in FIELDS if name in self.model_fields_set]

    def company_fields(self) -> list[str]:
        return [name for name in COMPANY_FIELDS if name in self.model_fields_set]
