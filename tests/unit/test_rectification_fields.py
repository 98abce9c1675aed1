"""The fields a rectification may correct: each value checked and normalised, nothing coerced."""

from __future__ import annotations

import pytest

from shared.platform.errors import ValidationFailed
from shared.platform.http import validated
from shared.rights.rectification.fields import Rectification, normalise_phone, normalise_vat, vat_key


@pytest.mark.parametrize(
    "given",
    [
        "06 12 34 56 78",
        "0612345678",
        "06.12.34.56.78",
        "06-12-34-56-78",
        "+33 6 12 34 56 78",
        "+33612345678",
        "0033 6 12 34 56 78",
    ],
)
def test_french_phone_numbers_are_stored_in_one_format(given):
    assert normalise_phone(given) == "+33 6 12 34 56 78"


@pytest.mark.parametrize(
    "given", ["+44 7911 123456", "06 12 34 56", "00 12 34 56 78", "+33 0 12 34 56 78", "06123456789", "0６12345678", ""]
)
def test_other_phone_numbers_are_refused(given):
    with pytest.raises(ValueError):
        normalise_phone(given)


def test_the_vat_key_is_computed_from_the_siren():
    # (12 + 3 * (SIREN mod 97)) mod 97
    assert vat_key("404833048") == (12 + 3 * (404833048 % 97)) % 97
    assert normalise_vat(f"fr {vat_key('404833048'):02d} 404 833 048") == f"FR{vat_key('404833048'):02d}404833048"


@pytest.mark.parametrize(
    "given", ["FR00404833048", "FR4040483304", "DE123456789", "FRXX404833048", "FR 1 404833048", "404833048"]
)
def test_a_vat_number_whose_key_does_not_match_is_refused(given):
    with pytest.raises(ValueError):
        normalise_vat(given)


@pytest.mark.parametrize(
    ("postal_code", "ok"),
    [
        ("75001", True),
        ("01000", True),
        ("20000", True),
        ("97400", True),
        ("98000", True),
        ("00100", False),
        ("99000", False),
        ("7500", False),
        ("750011", False),
        ("2A000", False),
        (" 75001", True),
    ],
)
def test_postal_codes(postal_code, ok):
    fields = {"business_address": {"line1": "1 rue de la Paix", "postal_code": postal_code, "city": "Paris"}}
    if ok:
        assert validated(Rectification, fields).business_address.postal_code == postal_code.strip()
    else:
        with pytest.raises(ValidationFailed):
            validated(Rectification, fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"first_name": 1},
        {"first_name": ["Ann"]},
        {"phone": 612345678},
        {"vat_number": True},
        {"business_address": "1 rue de la Paix, 75001 Paris"},
        {"email": None},
        {"first_name": "Ann\u0000"},
        {"first_name": "Ann", "siret": "40483304800010"},
        {"company_id": "7d0c9c2e-0000-4000-8000-000000000000"},
    ],
)
def test_wrong_types_unknown_fields_and_nulls_are_refused(fields):
    with pytest.raises(ValidationFailed) as refused:
        validated(Rectification, fields)
    # The message names the fields, never the values.
    for value in ("Ann", "40483304800010", "612345678", "Paix"):
        assert value not in refused.value.message


def test_names_keep_accents_hyphens_and_apostrophes():
    body = validated(Rectification, {"first_name": " Zoé-Anne ", "last_name": "d’Arc-O'Neil"})
    assert (body.first_name, body.last_name) == ("Zoé-Anne", "d’Arc-O'Neil")
    assert body.sent() == ["first_name", "last_name"]
