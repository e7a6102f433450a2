"""Error pages: plain words, no stack traces, the same look as the rest of the app."""

from __future__ import annotations

from flask import Flask, render_template
from werkzeug.exceptions import HTTPException

TITLES = {400: "That request could not be used", 403: "Not allowed", 404: "Page not found",
          405: "Not allowed", 410: "No longer available", 413: "Too large", 429: "Too many attempts",
          500: "Something went wrong"}


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _page)


def _page(exc: HTTPException):  # type: ignore[no-untyped-def]
    code = exc.code or 500
    detail = exc.description if code in (400, 410, 429, 500) else ""
    if code == 404:
        detail = "If you typed the web address, check it is correct. If you followed a link, the record may not exist or you may not have access to it."
    return render_template("error.html", code=code, title=TITLES.get(code, "Error"), detail=detail), code
