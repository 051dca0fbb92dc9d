"""Dataset file names: what safe_file_name lets through, what it refuses and why."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credits.storage import UnsafeFileName, duplicate_names, safe_file_name
from credits.storage.names import MAX_NAME_BYTES, MAX_PART_BYTES

BIDI_AND_INVISIBLE = [
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
    "\u200e",
    "\u200f",
    "\u061c",
    "\u200b",
    "\u2060",
    "\ufeff",
]


@pytest.mark.parametrize(
    "name",
    [
        "data.csv",
        "train/part-0001.jsonl",
        "a/b/c/d.parquet",
        "README",
        ".hidden",
        "...x",
        "console.csv",
        "com10.txt",
        "résumé.txt",
        "数据集/训练.csv",
        "\u0646\u0627\u0645\u200c\u0641\u0627\u06cc\u0644.txt",  # Persian, with the ZWNJ it needs
        "2024-01-01 12-00.csv",
        "e" * MAX_PART_BYTES,
    ],
)
def test_safe_names_pass_unchanged(name: str) -> None:
    assert safe_file_name(name) == name


def test_names_are_returned_nfc_normalised() -> None:
    decomposed = "re\u0301sume\u0301.txt"

    assert safe_file_name(decomposed) == "r\u00e9sum\u00e9.txt"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "may not be empty"),
        ("../etc/passwd", "'..' as a folder"),
        ("data/../../x", "'..' as a folder"),
        ("..", "'..' as a folder"),
        ("./data.csv", "'.' as a folder"),
        ("/etc/passwd", "must be relative"),
        ("C:/Windows/x", "drive letter"),
        ("c:x", "drive letter"),
        # What Windows cannot create: reserved characters, a trailing dot, devices.
        ("2024-01-01 12:00.csv", "':', which Windows refuses"),
        ("data/a:stream", "':', which Windows refuses"),
        ("what?.csv", "'?', which Windows refuses"),
        ("x<y>.csv", "'<', which Windows refuses"),
        ('say"hi".txt', "'\"', which Windows refuses"),
        ("pipe|.csv", "'|', which Windows refuses"),
        ("star*.csv", "'*', which Windows refuses"),
        ("...", "end with a dot"),
        ("trailing.", "end with a dot"),
        ("data./x.csv", "end with a dot"),
        ("CON", "device on Windows"),
        ("aux.csv", "device on Windows"),
        ("data/NUL.txt", "device on Windows"),
        ("lpt9.log", "device on Windows"),
        # What a server makes of a name whose bytes were not UTF-8 (Latin-1, say).
        ("r\ufffdsum\ufffd.csv", "U+FFFD"),
        ("..\\..\\x", "backslash"),
        ("data\\x.csv", "backslash"),
        ("a//b", "empty folder"),
        ("a/", "may not end with /"),
        ("nul\x00byte", "U+0000"),
        ("line\nbreak", "U+000A"),
        ("tab\there", "U+0009"),
        ("del\x7f", "U+007F"),
        ("c1\x85", "U+0085"),
        ("line\u2028sep", "U+2028"),
        (" data.csv", "white space"),
        ("data.csv ", "white space"),
        ("x" * 10_000, f"at most {MAX_NAME_BYTES} bytes"),
        ("f" * (MAX_PART_BYTES + 1), f"at most {MAX_PART_BYTES} bytes"),
        ("é" * 128, f"at most {MAX_PART_BYTES} bytes"),  # 256 bytes of UTF-8
        ("/".join(["d"] * 33), "at most 32 folders deep"),
        ("lone\udc80surrogate", "U+DC80"),
    ],
)
def test_unsafe_names_are_refused_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(UnsafeFileName, match=re.escape(reason)):
        safe_file_name(name)


@pytest.mark.parametrize("character", BIDI_AND_INVISIBLE)
def test_bidi_controls_and_invisible_characters_are_refused(character: str) -> None:
    # "invoice\u202efdp.exe" shows as "invoiceexe.pdf".
    with pytest.raises(UnsafeFileName, match=f"U\\+{ord(character):04X}"):
        safe_file_name(f"invoice{character}fdp.exe")


def test_a_refusal_is_one_line() -> None:
    with pytest.raises(UnsafeFileName) as refused:
        safe_file_name("a\nb")

    assert "\n" not in str(refused.value)
    assert refused.value.status == 422


@given(st.text(max_size=300))
def test_a_name_let_through_never_climbs_hides_or_overflows(name: str) -> None:
    try:
        safe = safe_file_name(name)
    except UnsafeFileName:
        return
    parts = safe.split("/")
    assert ".." not in parts
    assert "." not in parts
    assert "" not in parts
    assert "\\" not in safe
    assert not safe.startswith("/")
    assert all(
        unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Zl", "Zp"} or c in "\u200c\u200d"
        for c in safe
    )
    assert len(safe.encode()) <= MAX_NAME_BYTES
    assert all(len(part.encode()) <= MAX_PART_BYTES for part in parts)
    assert unicodedata.is_normalized("NFC", safe)
    assert safe_file_name(safe) == safe


@given(st.lists(st.sampled_from(["a", "b", "..", "\u202e", "\x00", "\\", "/", ".", " ", "é"])))
def test_names_built_from_dangerous_pieces_are_safe_or_refused(pieces: list[str]) -> None:
    try:
        safe = safe_file_name("".join(pieces))
    except UnsafeFileName:
        return
    assert ".." not in safe.split("/")
    assert not {"\u202e", "\x00", "\\"} & set(safe)


def test_duplicates_ignore_case_and_unicode_form() -> None:
    names = ["data.csv", "Data.CSV", "re\u0301sume\u0301.txt", "r\u00e9sum\u00e9.txt", "other.csv"]

    assert duplicate_names(names) == ["Data.CSV", "r\u00e9sum\u00e9.txt"]


def test_a_file_where_another_needs_a_folder_is_a_duplicate() -> None:
    assert duplicate_names(["train", "train/a.csv"]) == ["train/a.csv"]
    assert duplicate_names(["train/a.csv", "train"]) == ["train"]
    assert duplicate_names(["train/a.csv", "train/b.csv", "test/a.csv"]) == []
