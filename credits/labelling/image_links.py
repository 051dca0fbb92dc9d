"""Signed, expiring links to an order item's image, for Label Studio's annotators.

Label Studio keeps only a URL per image task; the annotator's browser loads it.
The link names the item, an expiry (Unix seconds) and an HMAC-SHA256 of both
under the installation's secret key, so it works without a login, only for
that item, and only until it expires; nothing is stored. It lives as long as
an order is expected to run (:data:`LINK_LIFETIME`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from credits.errors import Forbidden
from credits.labelling.errors import ItemNotFound
from credits.labelling.models import Item
from credits.labelling.taken_down import require_image_not_taken_down
from credits.settings import Settings

LINK_LIFETIME = timedelta(days=90)
IMAGE_PATH = "/api/v1/labelling/items/{item_id}/image"


class ImageLinkRefused(Forbidden):
    """The link's signature is wrong or it has expired."""


@dataclass(frozen=True)
class ItemImage:
    sha256: str
    media_type: str


def link_signature(secret: str, *, item_id: int, expires: int) -> str:
    message = f"labelling-item-image:{item_id}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _signed_by(secret: str, item_id: int, expires: int, signature: str) -> bool:
    expected = link_signature(secret, item_id=item_id, expires=expires)
    return hmac.compare_digest(expected, signature)


def image_link(
    public_url: str,
    secret: str,
    *,
    item_id: int,
    now: datetime,
    lifetime: timedelta = LINK_LIFETIME,
) -> str:
    expires = int((now + lifetime).timestamp())
    signature = link_signature(secret, item_id=item_id, expires=expires)
    path = IMAGE_PATH.format(item_id=item_id)
    return f"{public_url.rstrip('/')}{path}?expires={expires}&sig={signature}"


def image_links_from_settings(settings: Settings, *, now: datetime) -> Callable[[Item], str] | None:
    """What gives each image item its link, or None without ``CREDITS_PUBLIC_URL``
    (an image order then cannot go to Label Studio)."""
    if not settings.public_url:
        return None
    public_url, secret = settings.public_url, settings.secret_key.get_secret_value()
    return lambda item: image_link(public_url, secret, item_id=item.id, now=now)


def image_for_link(
    session: Session,
    secrets: Sequence[str],
    *,
    item_id: int,
    expires: int,
    signature: str,
    now: datetime,
) -> ItemImage:
    """The image a link names, when its signature holds under one of ``secrets`` (the
    current key, then the fallbacks of a rotation in progress: Label Studio keeps the
    links it was given for the order's life) and it has not expired.

    Raises ImageLinkRefused, ItemNotFound (a signed link to an item deleted since,
    or to a text item)."""
    if not any(_signed_by(secret, item_id, expires, signature) for secret in secrets):
        raise ImageLinkRefused("this image link is not valid")
    if now.timestamp() > expires:
        raise ImageLinkRefused("this image link has expired")
    item = session.get(Item, item_id)
    if item is None or item.blob_sha256 is None:
        raise ItemNotFound(f"no image item has the id {item_id}")
    require_image_not_taken_down(session, item)
    return ItemImage(sha256=item.blob_sha256, media_type=item.media_type)
