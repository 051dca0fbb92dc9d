"""ORCID and ROR checksums, SPDX licences, the manifest hash, record set inference."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credits.datasets.identifiers import (
    CROCKFORD,
    clean_license,
    clean_orcid,
    clean_ror,
    ror_check_digits,
)
from credits.datasets.manifest import canonical_manifest, manifest_hash
from credits.datasets.record_sets import csv_fields, json_lines_fields
from credits.datasets.schemas import FileOut
from credits.identity.service import orcid_check_digit


@pytest.mark.parametrize(
    ("given_id", "canonical"),
    [
        ("0000-0002-1825-0097", "0000-0002-1825-0097"),
        ("https://orcid.org/0000-0002-1694-233x", "0000-0002-1694-233X"),
        (" orcid.org/0000-0001-5109-3700 ", "0000-0001-5109-3700"),
    ],
)
def test_valid_orcids_are_canonical(given_id: str, canonical: str) -> None:
    assert clean_orcid(given_id) == canonical


@pytest.mark.parametrize(
    "bad", ["0000-0002-1825-0098", "0000000218250097", "0000-0002-1825-009", "abcd-0002-1825-0097"]
)
def test_malformed_or_mistyped_orcids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="ORCID"):
        clean_orcid(bad)


@given(st.text(alphabet="0123456789", min_size=15, max_size=15), st.integers(0, 14), st.data())
def test_any_single_mistyped_digit_fails_the_orcid_checksum(
    base: str, position: int, data: st.DataObject
) -> None:
    """ISO 7064 MOD 11-2 catches every single-digit error."""
    valid = base + orcid_check_digit(base)
    typo = data.draw(st.sampled_from([d for d in "0123456789" if d != valid[position]]))
    mistyped = valid[:position] + typo + valid[position + 1 :]
    groups = "-".join(mistyped[i : i + 4] for i in range(0, 16, 4))
    clean_orcid("-".join(valid[i : i + 4] for i in range(0, 16, 4)))
    with pytest.raises(ValueError, match="checksum"):
        clean_orcid(groups)


@pytest.mark.parametrize("ror", ["05dxps055", "03yrm5c26", "https://ror.org/013meh722"])
def test_valid_ror_ids_pass(ror: str) -> None:
    assert clean_ror(ror) == ror.removeprefix("https://ror.org/")


@pytest.mark.parametrize("bad", ["05dxps056", "15dxps055", "05dxpsu55", "05dxps05"])
def test_bad_ror_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="ROR"):
        clean_ror(bad)


@given(st.text(alphabet=CROCKFORD, min_size=6, max_size=6))
def test_a_ror_id_with_its_own_check_digits_passes(body: str) -> None:
    assert clean_ror("0" + body + ror_check_digits(body)) == "0" + body + ror_check_digits(body)


def test_licences_are_checked_against_the_spdx_list() -> None:
    assert clean_license("mit") == "MIT"
    assert clean_license(" CC-BY-SA-4.0 ") == "CC-BY-SA-4.0"
    with pytest.raises(ValueError, match="not an SPDX licence"):
        clean_license("Do whatever")
    with pytest.raises(ValueError, match="deprecated"):
        clean_license("LGPL-2.1")


def test_the_manifest_hash_is_over_sorted_canonical_triples() -> None:
    files = [
        FileOut(name="b.csv", sha256="b" * 64, size=2, media_type="text/csv", download_count=0),
        FileOut(name="ä.txt", sha256="c" * 64, size=0, media_type="text/plain", download_count=5),
        FileOut(name="a.csv", sha256="a" * 64, size=10, media_type="text/csv", download_count=0),
    ]
    text = f'[["a.csv","{"a" * 64}",10],["b.csv","{"b" * 64}",2],["ä.txt","{"c" * 64}",0]]'

    assert canonical_manifest(files) == text
    assert manifest_hash(files) == hashlib.sha256(text.encode()).hexdigest()
    assert manifest_hash(reversed(files)) == manifest_hash(files)


def test_a_cut_off_head_is_read_to_its_last_complete_line() -> None:
    head = b"id,value\n1,2.5\n2,x"  # the last row is cut off mid-way

    fields = csv_fields(head, whole=False)

    assert [(f.name, f.data_type) for f in fields] == [("id", "sc:Integer"), ("value", "sc:Float")]
    assert [(f.name, f.data_type) for f in csv_fields(head, whole=True)] == [
        ("id", "sc:Integer"),
        ("value", "sc:Text"),
    ]


def test_json_lines_fields_skip_nested_values_and_text_a_missing_one() -> None:
    head = b'{"a": 1, "b": {"x": 1}, "c": "t"}\n{"a": 2, "b": {}, "d": 1.5}\n'

    fields = json_lines_fields(head, whole=True)

    assert [(f.name, f.data_type) for f in fields] == [
        ("a", "sc:Integer"),
        ("c", "sc:Text"),
        ("d", "sc:Text"),
    ]
