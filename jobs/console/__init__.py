"""The operator console (`/console`): server-rendered pages (Jinja2) with a small script of
our own (static/console.js), served by the API process. No CDN, no build step."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from jobs.console import actions, pages
from jobs.console.common import HERE

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Add the console's routes and its static files to an API app."""
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
