"""One compiled URL builder per distinct rule for the whole test process.

The suite creates about a thousand Flask apps (most tests build their own), and
werkzeug compiles two Python functions for every rule of each: 85% of what
``create_app`` costs, some two minutes of a CI run. A builder of a rule without
defaults depends only on the rule's parsed parts and on whether it appends
unknown arguments (converters are looked up on the rule it is bound to when it
runs), so the function compiled for the first app serves every later one.
Rules with defaults are compiled as werkzeug does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.routing.rules import Rule

_compile_builder = Rule._compile_builder
_builders: dict[tuple[str, tuple[tuple[bool, str], ...], bool], Callable[..., Any]] = {}


def _shared_builder(self: Rule, append_unknown: bool = True) -> Callable[..., Any]:
    if self.defaults:
        return _compile_builder(self, append_unknown)
    key = (self.rule, tuple(self._trace), append_unknown)
    builder = _builders.get(key)
    if builder is None:
        builder = _builders[key] = _compile_builder(self, append_unknown)
    return builder


def share_url_builders() -> None:
    Rule._compile_builder = _shared_builder  # type: ignore[method-assign]
