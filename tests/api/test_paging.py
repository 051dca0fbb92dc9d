"""The next-page Link header: the route that answered, with its query and the next
position, followable as it stands."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from flask import Flask, request
from pydantic import BaseModel

from credits.api.paging import next_page_link


class _Query(BaseModel):
    title: str | None = None
    cursor: int | None = None
    limit: int = 20


def _app() -> Flask:
    app = Flask(__name__)

    @app.get("/orders/<int:order_id>/items")
    def items(order_id: int) -> tuple[dict[str, int], int, dict[str, str]]:
        query = _Query.model_validate(request.args.to_dict())
        last = (query.cursor or 0) + query.limit
        headers = next_page_link(query, cursor=last if last < 50 else None)
        return {"order": order_id, "from": (query.cursor or 0) + 1}, 200, headers

    return app


def _target(link: str) -> str:
    assert link.endswith('>; rel="next"')
    return link[1 : link.index(">")]


def test_next_link_keeps_the_path_and_query_and_moves_the_cursor() -> None:
    client = _app().test_client()

    first = client.get("/orders/7/items?title=a%20%26%20b%3D%C3%A9&limit=20")
    target = _target(first.headers["Link"])
    second = client.get(target)

    parts = urlsplit(target)
    assert parts.path == "/orders/7/items"
    assert parse_qs(parts.query) == {"title": ["a & b=é"], "limit": ["20"], "cursor": ["20"]}
    assert second.get_json() == {"order": 7, "from": 21}


def test_the_last_page_has_no_link() -> None:
    client = _app().test_client()

    last = client.get("/orders/7/items?cursor=40")

    assert last.status_code == 200
    assert "Link" not in last.headers


def test_next_link_keeps_the_mount_point() -> None:
    client = _app().test_client()

    first = client.get("/orders/7/items", environ_overrides={"SCRIPT_NAME": "/credits"})

    assert _target(first.headers["Link"]) == "/credits/orders/7/items?limit=20&cursor=20"
