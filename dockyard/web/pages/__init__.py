"""The server-rendered dashboard under `/ui/` (Jinja2 templates, htmx for the live parts,
static files shipped in the package: no CDN, no front-end build).

Pages are thin: they call the same use cases as the JSON API (`controller.usecases`, and
`controller.dashboard` for the dashboard's own reads) and render the result.
"""

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from dockyard.web.pages import access, alerts, jobs, render, runs, workspace


def install(app: FastAPI) -> None:
    """Templates, `/ui/static` and every page route."""
    render.install(app)
    app.mount("/ui/static", StaticFiles(directory=render.STATIC), name="ui-static")
    for module in (access, jobs, runs, workspace, alerts):
        app.include_router(module.router)


def is_page(path: str) -> bool:
    return path == "/" or path == "/ui" or path.startswith("/ui/")
