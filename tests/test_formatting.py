"""What people read: money, durations, times, states, counts and people, one way everywhere."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pydantic import BaseModel, Field, ValidationError

from credits import formatting as fmt
from credits.grants.models import ProposalStatus
from credits.ledger.models import Currency

MICRO = 1_000_000
PEOPLE = {1: fmt.Person("Ada Lovelace", "ada@example.org"), 2: fmt.Person("", "bob@example.org")}


@pytest.mark.parametrize(
    ("micro", "text"),
    [
        (1_234_500_000, "1,234.50"),
        (1_000 * MICRO, "1,000"),
        (1_500_001, "1.50"),
        (998_455_420, "998.46"),
        (3, "less than 0.01"),
        (-3, "more than -0.01"),
        (-2_500_000, "-2.50"),
        (0, "0"),
        (None, "\u2013"),
    ],
)
def test_credits_read_with_separators_and_two_decimals_at_most(
    micro: int | None, text: str
) -> None:
    assert fmt.credits_number(micro) == text


def test_money_names_its_currency_and_says_credit_for_one() -> None:
    assert fmt.money(1_234_500_000, Currency.GPU) == "1,234.50 GPU credits"
    assert fmt.money(MICRO, "gpu") == "1 GPU credit"
    assert fmt.money(MICRO) == "1 credit"
    assert fmt.money(5 * MICRO, Currency.LABEL) == "5 labelling credits"
    assert fmt.money(672 * MICRO) == "672 credits"


def test_csv_credits_are_exact_decimals_of_credits() -> None:
    assert fmt.csv_credits(1_000 * MICRO) == Decimal(1000)
    assert str(fmt.csv_credits(1_000 * MICRO)) == "1000"
    assert str(fmt.csv_credits(1_500_001)) == "1.500001"
    assert str(fmt.csv_credits(-250_000)) == "-0.25"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (604_800, "7 days"),
        (9_000, "2 h 30 min"),
        (45, "45 s"),
        (86_400 + 3_600 + 60, "1 day 1 h 1 min"),
        (3_600, "1 h"),
        (dt.timedelta(minutes=90), "1 h 30 min"),
    ],
)
def test_durations_read_in_days_hours_and_minutes(seconds: int | dt.timedelta, text: str) -> None:
    assert fmt.duration(seconds) == text


def test_a_cap_in_minutes_reads_as_days() -> None:
    assert fmt.minutes(10_080) == "7 days"


def test_times_show_minutes_and_the_zone_never_microseconds() -> None:
    moment = dt.datetime(2026, 12, 2, 18, 7, 48, 830_379, tzinfo=dt.UTC)
    assert fmt.when(moment) == "2026-12-02 18:07 UTC"
    assert fmt.when("2026-12-02T18:07:48.830379+00:00") == "2026-12-02 18:07 UTC"
    later_zone = dt.datetime(2026, 12, 2, 19, 7, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert fmt.when(later_zone) == "2026-12-02 18:07 UTC"
    assert fmt.when(dt.date(2027, 2, 28)) == "2027-02-28"
    assert fmt.day(dt.datetime(2027, 2, 28, tzinfo=dt.UTC)) == "2027-02-28"


def test_csv_times_are_iso_without_microseconds() -> None:
    moment = dt.datetime(2026, 12, 2, 18, 7, 48, 830_379, tzinfo=dt.UTC)
    assert fmt.csv_time(moment) == "2026-12-02T18:07:48+00:00"
    assert fmt.csv_time("2026-12-02T18:07:48.830379+00:00") == "2026-12-02T18:07:48+00:00"
    assert fmt.csv_time("2026-12-02") == "2026-12-02"


def test_an_exhaustion_date_past_the_period_is_not_shown_as_a_date() -> None:
    ends = dt.date(2027, 6, 1)
    assert fmt.exhaustion(dt.date(2443, 10, 10), ends) == "not within the allocation's period"
    assert fmt.exhaustion(dt.date(2027, 3, 1), ends) == "2027-03-01"
    assert "no recent use" in fmt.exhaustion(None, ends)


def test_an_exhaustion_the_day_after_an_allocations_last_day_is_past_its_period() -> None:
    ends = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)  # the last day is 2027-02-28
    assert fmt.exhaustion(dt.date(2027, 2, 28), ends) == "2027-02-28"
    assert fmt.exhaustion(dt.date(2027, 3, 1), ends) == "not within the allocation's period"


def test_states_read_as_words_and_gpus_are_counted() -> None:
    assert fmt.status("in_review") == "in review"
    assert fmt.status(ProposalStatus.IN_REVIEW) == "in review"
    assert fmt.gpus(500) == "500 GPUs"
    assert fmt.gpus(1) == "1 GPU"
    assert fmt.plural(2_000, "job") == "2,000 jobs"


def test_people_are_named_and_the_platform_reads_as_its_part() -> None:
    assert fmt.person("user:1", PEOPLE) == "Ada Lovelace"
    assert fmt.person("user:1", PEOPLE, with_email=True) == "Ada Lovelace <ada@example.org>"
    assert fmt.person("user:2", PEOPLE) == "bob@example.org"
    assert fmt.person("user:9", PEOPLE) == "a deleted user"
    assert fmt.person("system:scheduler", PEOPLE) == "the scheduler"
    assert fmt.person("system:gpu-sweep", PEOPLE) == "the platform (gpu-sweep)"
    assert fmt.person("vendor-annotator-7", PEOPLE) == "vendor-annotator-7"
    assert fmt.user_id_of("user:12") == 12
    assert fmt.user_id_of("system:cli") is None


def test_a_credits_refusal_names_amounts_in_credits() -> None:
    text = fmt.credits_refusal(672 * MICRO, 327_954_026, Currency.GPU)
    assert text == "this needs 672 GPU credits and only 327.954026 GPU credits are available"


def test_a_credits_refusal_keeps_every_micro_credit() -> None:
    """Rounded, 0.3075 needed of 0.31 available would read as enough."""
    text = fmt.credits_refusal(307_500, 306_000, "label")
    assert text == (
        "this needs 0.3075 labelling credits and only 0.306 labelling credits are available"
    )
    assert "1,000.000001 GPU credits" in fmt.credits_refusal(1_000_000_001, 1, Currency.GPU)


def test_an_events_details_read_in_credits_times_and_names() -> None:
    assert fmt.detail("amount", 1_500_000, PEOPLE) == "1.50 credits"
    assert fmt.detail("hold_micro", 2 * MICRO, PEOPLE) == "2 credits"
    assert fmt.detail("units_micro", 2_500_000, PEOPLE) == "2.5"
    assert fmt.detail("requested", {"gpu": 1_000 * MICRO}, PEOPLE) == "1,000 GPU credits"
    assert fmt.detail("at", "2026-12-02T18:07:48.830379+00:00", PEOPLE) == "2026-12-02 18:07 UTC"
    assert fmt.detail("by", "user:1", PEOPLE) == "Ada Lovelace <ada@example.org>"
    assert fmt.detail("allocations", [1, 2], PEOPLE) == "[1, 2]"


def test_pydantic_errors_read_as_plain_sentences() -> None:
    class Form(BaseModel):
        command: list[str] = Field(min_length=1)
        gpus: int = Field(ge=1)

    with pytest.raises(ValidationError) as raised:
        Form.model_validate({"command": [], "gpus": "x"})
    messages = {str(p["loc"][0]): fmt.validation_message(p) for p in raised.value.errors()}
    assert messages == {"command": "give at least 1 item", "gpus": "enter a whole number"}
    with pytest.raises(ValidationError) as raised:
        Form.model_validate({"command": ["a"], "gpus": 0})
    assert [fmt.validation_message(p) for p in raised.value.errors()] == ["enter 1 or more"]


def test_a_date_only_window_reads_as_its_days() -> None:
    opens = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    closes = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)  # the whole of 2027-02-28 open
    assert fmt.from_day(opens) == "2027-01-01"
    assert fmt.until_day(closes) == "2027-02-28 (the whole day, UTC)"
    assert fmt.until_day(dt.datetime(2027, 3, 1, 9, 30, tzinfo=dt.UTC)) == "2027-03-01 09:30 UTC"


def test_the_period_ends_with_the_latest_allocation_of_the_currency() -> None:
    class Line:
        def __init__(self, currency: Currency, expires_at: dt.datetime | None) -> None:
            self.currency, self.expires_at = currency, expires_at

    june = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)
    lines = [
        Line(Currency.GPU, june),
        Line(Currency.GPU, None),
        Line(Currency.LABEL, dt.datetime(2028, 1, 1, tzinfo=dt.UTC)),
    ]
    assert fmt.latest_end(lines, Currency.GPU) == june
    assert fmt.latest_end([], "gpu") is None


def test_exact_money_keeps_every_micro_credit_for_the_command_line() -> None:
    assert fmt.money(1_500_001, exact=True) == "1.500001 credits"
    assert fmt.money(MICRO, "gpu", exact=True) == "1 GPU credit"
    assert fmt.money(1_000_250_000, exact=True) == "1,000.25 credits"
    assert fmt.money(-2_500_000, exact=True) == "-2.5 credits"


def test_the_last_day_of_an_end_at_midnight_is_the_day_before() -> None:
    assert fmt.last_day(dt.datetime(2027, 3, 1, tzinfo=dt.UTC)) == dt.date(2027, 2, 28)


def test_the_last_day_of_an_end_during_a_day_is_that_day_in_utc() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert fmt.last_day(dt.datetime(2027, 3, 1, 1, 30, tzinfo=plus_two)) == dt.date(2027, 2, 28)
    assert fmt.last_day(dt.datetime(2027, 3, 1, 9, 0, tzinfo=dt.UTC)) == dt.date(2027, 3, 1)
