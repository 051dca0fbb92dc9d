"""Links that leave the request: to the installation's configured public origin.

With ``CREDITS_PUBLIC_URL`` set, every absolute link the platform writes (export
documents, landing pages, the transparency page's verify command, password-reset
mails, the OIDC callback) starts with it, never with the request's ``Host``
header, which any client chooses. Without it (the embedded profile, a test) the
request's own origin is all there is.
"""

from __future__ import annotations

from typing import Any

from flask import request, url_for

from credits.api.auth import credits_extension


def public_base_url() -> str:
    """The public origin with a trailing slash: the setting, else this request's."""
    configured = credits_extension().settings.public_url.strip()
    return configured.rstrip("/") + "/" if configured else request.url_root


def public_url_for(endpoint: str, **values: Any) -> str:
    """``url_for(endpoint, **values)`` made absolute under the public origin.

    The configured origin already names the path the app is mounted under (as
    :func:`public_base_url` does), so the app's own mount point (``SCRIPT_NAME``)
    is taken off the path before it is appended."""
    configured = credits_extension().settings.public_url.strip()
    if not configured:
        return url_for(endpoint, _external=True, **values)
    path = url_for(endpoint, **values)
    mount = request.script_root
    if mount and path.startswith(mount + "/"):
        path = path[len(mount) :]
    return configured.rstrip("/") + path
