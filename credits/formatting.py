"""How the platform writes money, durations, times, states and people for people.

One module for the portal (registered once as Jinja filters in
``admin_ui/web.py``), the CLI's human output, CSV exports and the refusals
people read. The API keeps integers (micro-credits) and ISO times; this module
never imports Flask.

- **Money**: the ledger counts integer micro-credits (1 credit = 1,000,000).
  People read credits with thousands separators and two decimals when there
  is a fraction: ``1,234.50 GPU credits``, ``1,000 GPU credits``,
  ``1 credit``; a positive amount under a hundredth reads ``less than 0.01``.
  The exact amount, as forms read it back, is :func:`credits.money.format_credits`;
  the CLI and :func:`credits_refusal` (a refusal for want of credits) write
  amounts exact: ``money(..., exact=True)``.
- **CSV**: :func:`csv_credits` gives a decimal number of credits (exact, no
  grouping) and :func:`csv_time` an ISO time without microseconds.
- **Durations**: ``7 days``, ``2 h 30 min``, ``45 s``.
- **Times**: ``2026-12-02 18:07 UTC`` (minutes, the zone named); a date-only
  deadline as its day, ``2027-02-28``.
- **States**: ``in review`` for ``in_review``.
- **Counts**: ``500 GPUs``, ``1 GPU``.
- **People**: an actor label ``user:4`` as the person's name (and e-mail where
  asked), ``system:scheduler`` as ``the scheduler``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum
from typing import Any

MICRO_PER_CREDIT = 1_000_000
NOTHING = "\u2013"  # an en dash where a value is missing
CURRENCY_NAMES = {"gpu": "GPU", "label": "labelling"}
_HUNDREDTH = Decimal("0.01")


def _currency_value(currency: object) -> str | None:
    if currency is None:
        return None
    value = currency.value if isinstance(currency, Enum) else currency
    return str(value)


def currency_name(currency: object) -> str:
    """'gpu' → 'GPU', 'label' → 'labelling': the word before "credits"."""
    value = _currency_value(currency) or ""
    return CURRENCY_NAMES.get(value, value)


def credits_number(micro: int | None) -> str:
    """1_234_500_000 → '1,234.50'; 1_000_000_000 → '1,000'; 3 → 'less than 0.01'."""
    if micro is None:
        return NOTHING
    if micro % MICRO_PER_CREDIT == 0:
        return f"{micro // MICRO_PER_CREDIT:,}"
    amount = (Decimal(micro) / MICRO_PER_CREDIT).quantize(_HUNDREDTH, rounding=ROUND_HALF_UP)
    if amount == 0:
        return "less than 0.01" if micro > 0 else "more than -0.01"
    text = f"{amount:,.2f}"
    return text[:-3] if text.endswith(".00") else text


def money(micro: int | None, currency: object = None, *, exact: bool = False) -> str:
    """1_234_500_000, 'gpu' → '1,234.50 GPU credits'; 1_000_000 → '1 credit'.

    ``exact`` (the CLI, which ops read back into commands) keeps every decimal:
    1_500_001 → '1.500001 credits'."""
    if micro is None:
        return NOTHING
    number = exact_number(micro) if exact else credits_number(micro)
    unit = "credit" if abs(micro) == MICRO_PER_CREDIT else "credits"
    name = currency_name(currency)
    return f"{number} {name} {unit}" if name else f"{number} {unit}"


def exact_number(micro: int) -> str:
    """1_000_250_000 → '1,000.25'; 1_500_001 → '1.500001': every micro-credit kept."""
    whole, fraction = divmod(abs(micro), MICRO_PER_CREDIT)
    text = f"{'-' if micro < 0 else ''}{whole:,}"
    return text + (f".{fraction:06d}".rstrip("0") if fraction else "")


def csv_credits(micro: int) -> Decimal:
    """1_000_250_000 → Decimal('1000.25'): exact decimal credits for a CSV cell."""
    value = Decimal(micro) / MICRO_PER_CREDIT
    return value.quantize(Decimal(1)) if micro % MICRO_PER_CREDIT == 0 else value.normalize()


def plural(count: int | float, one: str, many: str | None = None) -> str:
    """1, 'GPU' → '1 GPU'; 500 → '500 GPUs'; thousands grouped."""
    word = one if count == 1 else (many or f"{one}s")
    number = f"{count:,}" if isinstance(count, int) else f"{count:,g}"
    return f"{number} {word}"


def gpus(count: int | None) -> str:
    """500 → '500 GPUs', 1 → '1 GPU'."""
    return NOTHING if count is None else plural(count, "GPU")


def duration(seconds: float | int | dt.timedelta | None) -> str:
    """604800 → '7 days'; 9000 → '2 h 30 min'; 45 → '45 s'; 90061 → '1 day 1 h 1 min'."""
    if seconds is None:
        return NOTHING
    total = int(seconds.total_seconds() if isinstance(seconds, dt.timedelta) else seconds)
    sign, total = ("-", -total) if total < 0 else ("", total)
    if total < 60:
        return f"{sign}{total} s"
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    parts = [plural(days, "day")] if days else []
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    return sign + " ".join(parts)


def minutes(count: int | None) -> str:
    """10080 → '7 days'; 150 → '2 h 30 min'."""
    return NOTHING if count is None else duration(count * 60)


def when(moment: dt.datetime | dt.date | str | None) -> str:
    """A moment to the minute with its zone: '2026-12-02 18:07 UTC'; a date as its day.

    A naive datetime is taken as UTC (the database's times are UTC); an aware one
    is shown in UTC. An ISO string is read first.
    """
    if moment is None or moment == "":
        return NOTHING
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    if not isinstance(moment, dt.datetime):
        return day(moment)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def day(moment: dt.date | dt.datetime | None) -> str:
    """A date-only deadline as the day it is: '2027-02-28'."""
    if moment is None:
        return NOTHING
    if isinstance(moment, dt.datetime) and moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d")


def csv_time(moment: dt.datetime | dt.date | str | None) -> str:
    """An ISO time for a CSV cell, without microseconds: '2026-12-02T18:07:48+00:00'."""
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        parsed = (
            dt.datetime.fromisoformat(moment) if "T" in moment else dt.date.fromisoformat(moment)
        )
        moment = parsed
    if isinstance(moment, dt.datetime):
        return moment.replace(microsecond=0).isoformat()
    return moment.isoformat()


def exhaustion(
    projected: dt.date | None, period_ends: dt.date | dt.datetime | None, outlasts: bool = False
) -> str:
    """When credits run out at the recent rate, or why that date does not matter.

    None (no recent use) reads 'not at the recent rate (no recent use)'; credits that
    outlast the allocations (``outlasts``), or a date after the period's end, read
    'not within the allocation's period'.
    """
    if projected is None:
        return "not at the recent rate (no recent use)"
    if outlasts:
        return "not within the allocation's period"
    if isinstance(period_ends, dt.datetime):
        period_ends = last_day(period_ends)
    if period_ends is not None and projected > period_ends:
        return "not within the allocation's period"
    return day(projected)


def status(value: object) -> str:
    """'in_review' → 'in review' (an enum's value too)."""
    if value is None:
        return NOTHING
    text = str(value.value if isinstance(value, Enum) else value)
    return text.replace("_", " ")


@dataclass(frozen=True)
class Person:
    name: str
    email: str


SYSTEM_NAMES = {
    "scheduler": "the scheduler",
    "reconciler": "the reconciler",
    "jobs-settlement": "the job settlement",
    "allocations-sweep": "the allocation sweep",
    "grants": "the grants service",
    "metering": "the metering service",
    "labelling": "the labelling service",
    "label-studio-sweep": "the Label Studio sweep",
    "label-studio-webhook": "Label Studio",
    "datasets": "the datasets service",
    "demo": "the demo",
    "cli": "the command line",
}
_USER = re.compile(r"user:(\d+)")


def user_id_of(label: str | None) -> int | None:
    """'user:4' → 4; anything else → None."""
    match = _USER.fullmatch(label or "")
    return int(match.group(1)) if match else None


def person(label: str | None, people: Mapping[int, Person], *, with_email: bool = False) -> str:
    """An actor label as people read it.

    'user:4' → 'Ada Lovelace' (with ``with_email``, 'Ada Lovelace <ada@…>'),
    or 'a deleted user' when ``people`` does not know them; 'system:scheduler'
    → 'the scheduler'; any other 'system:x' → 'the platform (x)'.
    """
    if not label:
        return NOTHING
    user_id = user_id_of(label)
    if user_id is not None:
        found = people.get(user_id)
        if found is None:
            return "a deleted user"
        named = found.name or found.email
        return f"{named} <{found.email}>" if with_email and found.name else named
    if label.startswith("system:"):
        component = label.removeprefix("system:")
        head = component.split(":", 1)[0]
        return SYSTEM_NAMES.get(head, f"the platform ({status(component)})")
    return label


def credits_refusal(required: int, available: int, currency: object = None) -> str:
    """'this needs 672 GPU credits and only 327.954026 GPU credits are available'.

    Exact, like the CLI's amounts: a refusal is read to decide how much to ask for,
    and rounding could make the two amounts look equal (0.3075 and 0.31)."""
    return (
        f"this needs {money(required, currency, exact=True)}"
        f" and only {money(available, currency, exact=True)} are available"
    )


_MONEY_KEYS = frozenset(
    {"amount", "available", "required", "budget", "remaining", "funded", "awarded", "held"}
)
_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:\d\d|Z)?")


def is_money_key(key: str) -> bool:
    """Whether a record's field named ``key`` holds micro-credits ('amount',
    'hold_micro', 'micro_credits_per_gpu_hour'); micro-units of work are not money."""
    if "units_micro" in key or "quantity_micro" in key:
        return False
    return key in _MONEY_KEYS or key.endswith("_micro") or "micro_credits" in key


def detail(key: str, value: object, people: Mapping[int, Person]) -> str:
    """One field of a recorded event (the audit log's details) as people read it:
    money in credits, times to the minute, people by name and e-mail."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _number_detail(key, value)
    if isinstance(value, str):
        return _text_detail(value, people)
    if value is None:
        return NOTHING
    if isinstance(value, dict) and value and set(value) <= set(CURRENCY_NAMES):
        # Amounts by currency: {"gpu": 1000000000} → '1,000 GPU credits'.
        return ", ".join(
            money(amount, currency) if isinstance(amount, int) else f"{currency}: {amount}"
            for currency, amount in sorted(value.items())
        )
    return json.dumps(value, sort_keys=True)


def _number_detail(key: str, value: int) -> str:
    if is_money_key(key):
        return money(value)
    return str(csv_credits(value)) if key.endswith("_micro") else str(value)


def _text_detail(value: str, people: Mapping[int, Person]) -> str:
    if _ISO_TIME.fullmatch(value):
        return when(value.replace("Z", "+00:00"))
    if user_id_of(value) is not None:
        return person(value, people, with_email=True)
    return value


_VALIDATION = {
    "missing": "this is required",
    "too_short": "give at least {min_length}",
    "too_long": "give at most {max_length}",
    "string_too_short": "this cannot be empty",
    "string_too_long": "at most {max_length} characters",
    "int_parsing": "enter a whole number",
    "int_type": "enter a whole number",
    "float_parsing": "enter a number",
    "greater_than_equal": "enter {ge} or more",
    "greater_than": "enter more than {gt}",
    "less_than_equal": "enter at most {le}",
    "less_than": "enter less than {lt}",
    "string_pattern_mismatch": "this has characters that are not allowed here",
    "url_parsing": "enter a web address, e.g. https://example.org",
    "date_from_datetime_parsing": "enter a date like 2030-01-31",
    "date_parsing": "enter a date like 2030-01-31",
    "datetime_parsing": "enter a date and time like 2030-01-31T09:00",
    "enum": "choose one of {expected}",
}


def validation_message(problem: Mapping[str, Any]) -> str:
    """One of pydantic's errors as a sentence for a form field: 'List should have at
    least 1 item after validation, not 0' reads 'give at least 1 item'."""
    kind = str(problem.get("type", ""))
    context = problem.get("ctx") or {}
    if kind == "value_error":
        return str(problem.get("msg", "is not valid")).removeprefix("Value error, ")
    template = _VALIDATION.get(kind)
    if template is None:
        return str(problem.get("msg", "is not valid")).removeprefix("Value error, ")
    if kind in {"too_short", "too_long"}:
        count = context.get("min_length" if kind == "too_short" else "max_length", 1)
        noun = "item" if count == 1 else "items"
        return f"{template.split(' {', 1)[0]} {count} {noun}"
    try:
        return template.format(**context)
    except (KeyError, IndexError):
        return template.split(" {", 1)[0]


def sentence(text: str) -> str:
    """A refusal as a sentence: capitalised, ending with a full stop."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _at_midnight(moment: dt.datetime) -> bool:
    utc = moment.astimezone(dt.UTC) if moment.tzinfo is not None else moment
    return utc.time() == dt.time(0, 0)


def from_day(moment: dt.datetime | None) -> str:
    """A start typed as a date (midnight UTC) as that day, '2027-01-01'; else :func:`when`."""
    if moment is None:
        return NOTHING
    return day(moment) if _at_midnight(moment) else when(moment)


def until_day(moment: dt.datetime | None) -> str:
    """An end typed as a date keeps that whole day open and is stored as the next
    midnight UTC: shown as the last day, '2027-02-28 (the whole day, UTC)'; any other
    moment as :func:`when`."""
    if moment is None:
        return NOTHING
    if _at_midnight(moment):
        return f"{day(last_day(moment))} (the whole day, UTC)"
    return when(moment)


def last_day(end: dt.datetime) -> dt.date:
    """The last day (UTC) an end keeps open: the day before an end at midnight, else
    the end's own day. What a date field shows for a stored end."""
    utc = end.astimezone(dt.UTC) if end.tzinfo is not None else end
    return utc.date() - dt.timedelta(days=1) if _at_midnight(end) else utc.date()


def latest_end(lines: Iterable[Any], currency: object) -> dt.datetime | None:
    """The latest ``expires_at`` among allocation lines of ``currency`` (the end of the
    period a projected exhaustion is measured against), or None."""
    wanted = _currency_value(currency)
    ends = [
        line.expires_at
        for line in lines
        if _currency_value(line.currency) == wanted and line.expires_at is not None
    ]
    return max(ends, default=None)
