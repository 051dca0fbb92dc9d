"""credits.money: the one parser of typed amounts and the one formatter (issue 12, finding 11)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credits.money import MAX_MICRO, InvalidCreditsAmount, format_credits, parse_credits

amounts = st.integers(min_value=-MAX_MICRO, max_value=MAX_MICRO)


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("2.5", 2_500_000),
        ("1,000.25", 1_000_250_000),
        ("12,500", 12_500_000_000),
        (".5", 500_000),
        ("+3", 3_000_000),
        ("  7 ", 7_000_000),
        ("0.000001", 1),
        ("007", 7_000_000),
        ("9,007,199,254.740992", MAX_MICRO),
    ],
)
def test_amounts_people_type_are_read_exactly(text: str, micro: int) -> None:
    assert parse_credits(text) == micro


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1e999999", "no exponent"),
        ("1e9", "no exponent"),
        ("1E-3", "no exponent"),
        ("NaN", "enter a number of credits"),
        ("-Infinity", "enter a number of credits"),
        ("inf", "enter a number of credits"),
        ("0x10", "enter a number of credits"),
        ("1_000", "enter a number of credits"),
        ("1 000", "enter a number of credits"),
        ("1,5", "enter a number of credits"),
        ("1,0000", "enter a number of credits"),
        ("1.", "enter a number of credits"),
        ("-", "enter a number of credits"),
        ("\u0661\u0662", "enter a number of credits"),  # Arabic-Indic digits
        ("1.0000001", "at most 6 decimal places"),
        ("9007199254.740993", "at most 9,007,199,254.740992 credits"),
        ("9" * 41, "too long"),
        ("", "enter an amount of credits"),
        ("   ", "enter an amount of credits"),
        ("0", "above zero"),
        ("-2.5", "above zero"),
    ],
)
def test_anything_else_is_one_clear_refusal(text: str, message: str) -> None:
    with pytest.raises(InvalidCreditsAmount) as refused:
        parse_credits(text)
    assert message in refused.value.detail


def test_the_sign_rules_are_the_callers() -> None:
    assert parse_credits("-2.5", signed=True) == -2_500_000
    assert parse_credits("0", zero=True) == 0
    with pytest.raises(InvalidCreditsAmount, match="other than zero"):
        parse_credits("-0", signed=True)
    with pytest.raises(InvalidCreditsAmount, match="zero or more"):
        parse_credits("-1", zero=True)
    with pytest.raises(InvalidCreditsAmount, match="at most"):
        parse_credits("-9007199254.740993", signed=True)


def test_the_formatter_is_exact_and_groups_thousands_on_request() -> None:
    assert format_credits(12_500_000) == "12.5"
    assert format_credits(1_000_250_000, grouping=True) == "1,000.25"
    assert format_credits(-1) == "-0.000001"
    assert format_credits(0) == "0"
    assert format_credits(10**30) == "1" + "0" * 24


@given(micro=amounts, grouping=st.booleans())
def test_what_is_formatted_parses_back_to_the_same_amount(micro: int, grouping: bool) -> None:
    text = format_credits(micro, grouping=grouping)
    assert parse_credits(text, signed=True, zero=True) == micro


@given(text=st.text(max_size=60), signed=st.booleans(), zero=st.booleans())
def test_the_parser_raises_nothing_but_its_own_refusal(text: str, signed: bool, zero: bool) -> None:
    try:
        micro = parse_credits(text, signed=signed, zero=zero)
    except InvalidCreditsAmount:
        return
    assert -MAX_MICRO <= micro <= MAX_MICRO
    assert micro > 0 or (signed and micro != 0) or (zero and micro == 0)


@given(
    text=st.from_regex(r"\A[+-]?[0-9,.eE]{0,30}\Z"),
    signed=st.booleans(),
)
def test_number_like_text_is_read_or_refused_never_crashes(text: str, signed: bool) -> None:
    try:
        parse_credits(text, signed=signed)
    except InvalidCreditsAmount as refusal:
        assert refusal.detail
