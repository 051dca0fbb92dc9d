"""The browser UI: server-rendered pages over the same services as the API.

``init_app(app)`` registers the UI's blueprints on the app ``create_app``
builds. Every page reads the logged-in user from the Flask session (a signed,
HttpOnly, SameSite=Lax cookie, Secure outside the embedded profile's plain
HTTP), every form carries a CSRF token, and every page calls one service.
Sessions end on the server (admin_ui/sessions.py) and failed sign-ins are
throttled (admin_ui/throttle.py). Errors on the portal's routes are pages in its
layout (admin_ui/error_pages.py); the API keeps problem details.
"""

from __future__ import annotations

from flask import Flask

from admin_ui import auth, error_pages, throttle, web
from admin_ui.pages import blueprints


def init_app(app: Flask) -> None:
    web.init_app(app)
    error_pages.init_app(app)
    app.register_blueprint(auth.blueprint)
    throttle.init_app(app)
    for blueprint in blueprints():
        app.register_blueprint(blueprint)
