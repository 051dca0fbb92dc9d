"""An order item's image behind a signed, expiring link (credits/labelling/image_links.py).

Label Studio's annotators load each image task from such a link, without a
login to this platform: the signature stands in for it, for one item, until
the link expires.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field

from credits.api.auth import credits_extension, session_factory
from credits.api.datasets import blob_store
from credits.api.openapi import operation
from credits.db import session_scope, utcnow
from credits.labelling.image_links import image_for_link
from credits.labelling.items import served_image_type

blueprint = Blueprint("labelling_media", __name__, url_prefix="/api/v1/labelling")


class ImageLinkQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires: int = Field(ge=0, le=2**40)
    sig: str = Field(pattern=r"^[0-9a-f]{64}$")


@blueprint.get("/items/<int:item_id>/image")
@operation(
    "An order item's image, through the signed link Label Studio was given",
    query=ImageLinkQuery,
    authenticated=False,
    media_type="image/*",
    problems=(403, 404, 410),
)
def item_image(item_id: int) -> Response:
    link = ImageLinkQuery.model_validate(request.args.to_dict())
    settings = credits_extension().settings
    secrets = [settings.secret_key.get_secret_value(), *settings.old_secret_keys]
    with session_scope(session_factory()) as session:
        image = image_for_link(
            session,
            secrets,
            item_id=item_id,
            expires=link.expires,
            signature=link.sig,
            now=utcnow(),
        )
    store = blob_store()
    return Response(
        store.open_range(image.sha256),
        headers={
            "Content-Length": str(store.size(image.sha256)),
            "Cache-Control": "private, max-age=60",  # a take-down stops it within a minute
        },
        content_type=served_image_type(image.media_type),
        direct_passthrough=True,
    )
