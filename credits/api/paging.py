"""The ``Link: rel="next"`` header of a paged listing (RFC 8288).

The next page is the route that answered, asked again with the same query and the
next page's position: built from the request itself, so a listing route names
neither its endpoint nor its path parameters again.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from flask import request
from pydantic import BaseModel

# What a path segment may hold unescaped (RFC 3986 pchar), beside "/".
_PATH_SAFE = "/:@!$&'()*+,;=~"


def next_page_link(query: BaseModel, **position: int | None) -> dict[str, str]:
    """``{"Link": '<this route?query&position>; rel="next"'}``, or ``{}`` on the last
    page (when a position is None). ``query`` is the listing's validated query; its
    unset values are left out."""
    if any(value is None for value in position.values()):
        return {}
    values = query.model_dump(mode="json", exclude_none=True) | position
    path = quote(request.script_root + request.path, safe=_PATH_SAFE)
    return {"Link": f'<{path}?{urlencode(values)}>; rel="next"'}
