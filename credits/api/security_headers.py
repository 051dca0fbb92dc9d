"""Security headers on every response, the portal's pages and the API's documents alike.

A page may load scripts, styles, images and fonts from this site only; the one
inline thing the portal has, the stylesheet inside a chart's SVG, carries the
request's nonce (:func:`csp_nonce`). Nothing else is inline: no ``<script>``
blocks, no ``style`` attributes, no ``on…`` handlers. Anything that is not an
HTML page (JSON, CSV, logs) may load nothing at all. No response may be framed
(``frame-ancestors 'none'``, ``X-Frame-Options: DENY``), none is sniffed for
another type, referrers stay on this site, and HSTS is sent over HTTPS and
always in production (where TLS ends before the app).
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, current_app, g, request

from credits.api.auth import EXTENSION_KEY
from credits.settings import Profile, Settings

NONCE_KEY = "credits_csp_nonce"
HSTS = "max-age=31536000; includeSubDomains"
PAGE_POLICY = (
    "default-src 'self'",
    "script-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)
DOCUMENT_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


def csp_nonce() -> str:
    """This request's nonce for an inline ``<style>`` the page needs."""
    nonce = g.get(NONCE_KEY)
    if not isinstance(nonce, str):
        nonce = secrets.token_urlsafe(18)
        setattr(g, NONCE_KEY, nonce)
    return nonce


def content_security_policy(mimetype: str | None) -> str:
    if mimetype != "text/html":
        return DOCUMENT_POLICY
    style = "style-src 'self'"
    nonce = g.get(NONCE_KEY)
    if isinstance(nonce, str):
        style += f" 'nonce-{nonce}'"
    return "; ".join((*PAGE_POLICY, style))


def _add_headers(response: Response) -> Response:
    settings: Settings = current_app.extensions[EXTENSION_KEY].settings
    headers = response.headers
    headers.setdefault("Content-Security-Policy", content_security_policy(response.mimetype))
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if request.is_secure or settings.profile is Profile.PRODUCTION:
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def init_app(app: Flask) -> None:
    app.after_request(_add_headers)
