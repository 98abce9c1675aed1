"""Who a request is about when the DPO knows no account id: the identifiers the person gave.

They are personal data: kept sealed on the request (never in its details, the audit or a log),
compared normalised (email lower-cased, phone in E.164, SIRET digits only, name and address
case- and space-folded).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass

from shared.platform.errors import ValidationFailed

MAX_LENGTH = 320
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SIRET = re.compile(r"^\d{14}$")


def fold(text: str) -> str:
    """Case, accents and runs of spaces folded: 'Élodie  MARTIN' and 'elodie martin' compare equal."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def normalise_phone(phone: str) -> str:
    """A French number in E.164 (+33...), other international numbers as +digits."""
    digits = re.sub(r"[\s.\-()]", "", phone)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if re.fullmatch(r"0[1-9]\d{8}", digits):
        digits = "+33" + digits[1:]
    if not re.fullmatch(r"\+\d{8,15}", digits):
        raise ValidationFailed("phone must be a phone number", code="invalid_phone")
    return digits


@dataclass(frozen=True)
class SubjectIdentifiers:
    email: str | None = None
    phone: str | None = None
    siret: str | None = None
    name: str | None = None
    postal_address: str | None = None

    @classmethod
    def parse(cls, **values: object) -> SubjectIdentifiers:
        """Validated and normalised; 400 on a malformed value or when nothing identifies the person."""
        clean: dict[str, str] = {}
        for field, value in values.items():
            if field not in cls.__dataclass_fields__:
                raise ValidationFailed(f"unknown identifier {field!r}", code="invalid_identifier")
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip() or len(value) > MAX_LENGTH:
                raise ValidationFailed(f"{field} must be a non-empty string", code=f"invalid_{field}")
            clean[field] = value.strip()
        if "email" in clean:
            if not _EMAIL.match(clean["email"]):
                raise ValidationFailed("email must be an email address", code="invalid_email")
            clean["email"] = clean["email"].lower()
        if "phone" in clean:
            clean["phone"] = normalise_phone(clean["phone"])
        if "siret" in clean:
            clean["siret"] = re.sub(r"\s", "", clean["siret"])
            if not _SIRET.match(clean["siret"]):
                raise ValidationFailed("siret must be 14 digits", code="invalid_siret")
        if "postal_address" in clean and "name" not in clean:
            raise ValidationFailed("a postal address identifies someone with their name", code="name_required")
        if not ({"email", "phone", "siret", "name"} & clean.keys()):
            raise ValidationFailed(
                "give an email, a phone, a SIRET or a name (with the postal address)", code="identifiers_required"
            )
        return cls(**clean)

    def given(self) -> dict[str, str]:
        """The identifiers given, by name (personal data: seal before storing, never log)."""
        return {field: value for field, value in asdict(self).items() if value is not None}

    @property
    def kinds(self) -> list[str]:
        """Which identifiers were given ('email', 'phone'...): not personal, safe for the audit."""
        return sorted(self.given())
