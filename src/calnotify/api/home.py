"""``GET /``: where to go from here (the API docs, the OpenAPI document, the health check).

A browser gets a small HTML page, any other client JSON. Like ``/docs``, ``/redoc``,
``/openapi.json`` and ``/healthz`` it needs no token and no ``Version`` header.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from calnotify import __version__

router = APIRouter()

# Where fastapi-offline's Swagger UI and ReDoc files are served (see calnotify.app).
DOCS_ASSETS_URL = "/docs/assets"

LINKS = (
    ("docs", "/docs", "Interactive API documentation (Swagger UI)"),
    ("redoc", "/redoc", "API reference (ReDoc)"),
    ("openapi", "/openapi.json", "OpenAPI document"),
    ("health", "/healthz", "Health check"),
    ("console", "/console", "Operator console"),
)


def _quality(accept: str, media_type: str) -> float:
    """How much ``accept`` wants ``media_type`` (0 to 1), with its wildcards."""
    kind = media_type.split("/", 1)[0]
    best, best_rank = 0.0, -1
    for item in accept.split(","):
        name, *params = (part.strip() for part in item.split(";"))
        name = name.lower()
        if name == media_type:
            rank = 2
        elif name == f"{kind}/*":
            rank = 1
        elif name == "*/*":
            rank = 0
        else:
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        if rank > best_rank:  # the most specific range decides
            best, best_rank = quality, rank
    return best


def wants_html(accept: str | None) -> bool:
    """True when the client prefers HTML to JSON (a browser); JSON wins ties (curl's ``*/*``)."""
    if not accept:
        return False
    return _quality(accept, "text/html") > _quality(accept, "application/json")


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    root = str(request.scope.get("root_path", "")).rstrip("/")
    headers = {"Vary": "Accept"}
    if not wants_html(request.headers.get("accept")):
        body: dict[str, str] = {"name": "calnotify", "version": __version__}
        body.update({key: f"{root}{path}" for key, path, _ in LINKS})
        return JSONResponse(body, headers=headers)
    items = "\n".join(
        f'    <li><a href="{escape(root + path)}">{escape(text)}</a>'
        f" <code>{escape(path)}</code></li>"
        for _, path, text in LINKS
    )
    page = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>calnotify</title>
  <style>
    body {{ font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto;
           padding: 0 1rem; line-height: 1.5; }}
    code {{ color: #555; }}
  </style>
</head>
<body>
  <h1>calnotify <small>{escape(__version__)}</small></h1>
  <p>Self-hosted calendar notifications, wire-compatible with HighLevel's Calendars API.</p>
  <ul>
{items}
  </ul>
</body>
</html>
"""
    return HTMLResponse(page, headers=headers)
