"""``/fleet/``: the wheelhouse a terminal installs from (hub/fleet.py, docs/deploy.md).

Public like the hall display: wheels, the install script and the unit hold no secret (a device's
secrets travel only in its folder, copied by the technician). Only names listed in the wheelhouse
folder are served, so no path reaches anything else.
"""

from __future__ import annotations

import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..fleet import SCRIPT_NAME, served_files
from ..releases import served_file

PREFIX = "/fleet/"
#: Stands for the hub's own address in the install script.
HUB_URL_MARK = "@HUB_URL@"


def fleet_routes(home: Path) -> list[Route]:
    async def index(request: Request) -> Response:
        """pip's ``--find-links`` reads the links of this page."""
        files = served_files(home)
        if not files:
            return PlainTextResponse("no wheelhouse: run `haocha fleet wheelhouse` on the hub\n", status_code=404)
        links = "\n".join(f'<a href="{html.escape(name)}">{html.escape(name)}</a><br>' for name in files)
        return HTMLResponse(f"<!doctype html><title>haocha wheelhouse</title>\n{links}\n")

    async def file(request: Request) -> Response:
        name = request.path_params["name"]
        path = served_files(home).get(name)
        if path is None:
            return PlainTextResponse("not found\n", status_code=404)
        if name == SCRIPT_NAME:  # the script fetches the rest from where it came from
            base = str(request.base_url).rstrip("/")
            return PlainTextResponse(path.read_text().replace(HUB_URL_MARK, base), media_type="text/x-shellscript")
        return FileResponse(path)

    async def release_file(request: Request) -> Response:
        """A release's files, manifest and signature (hub/releases.py): public, like the wheels."""
        path = served_file(home, request.path_params["release"], request.path_params["name"])
        if path is None:
            return PlainTextResponse("not found\n", status_code=404)
        return FileResponse(path)

    return [
        Route(PREFIX, index),
        Route(PREFIX + "releases/{release}/{name}", release_file),
        Route(PREFIX + "{name}", file),
    ]
