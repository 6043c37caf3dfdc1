"""The OpenAPI description of the hub's HTTP API, served at ``/openapi.json``.

Every ``/api/v1/`` operation names the bearer scheme, its 401 and its 403 (SPEC section 12); the
public pages say ``security: []`` (SPEC section 10). The bearer is the hub's machine token or a
person's own token (``haocha user token``).
"""

from __future__ import annotations

from typing import Any

from protocol.rules import TEXT_PATTERN

from .alerts import openapi_paths as alert_paths
from .reports import openapi_paths as report_paths
from .tickets import openapi_paths

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_ROW = {
    "type": "object",
    "properties": {
        "cases": {"type": "integer"}, "evaluations": {"type": "integer"},
        "levels": {"type": "object", "additionalProperties": {"type": "integer"}},
        "evaluation_rate": _RATE, "satisfaction_rate": _RATE, "bad_rate": _RATE,
        "mean_score": {"type": ["number", "null"]}, "ignored": {"type": "integer"}, "flagged": {"type": "integer"},
        "events": {"type": "integer"}, "tickets": {"type": "integer"}, "valid_tickets": {"type": "integer"},
        "rectified": {"type": "integer"}, "rectification_rate": _RATE,
    },
    "required": ["cases", "evaluations", "levels", "evaluation_rate", "satisfaction_rate", "bad_rate", "mean_score"],
}  # fmt: skip
_TEXT = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": TEXT_PATTERN}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def spec() -> dict[str, Any]:
    """The description, every ``/api/v1/`` operation with its 403 (a role outside its rights)."""
    description = _spec()
    for path, ops in description["paths"].items():
        if path.startswith("/api/v1/"):
            for op in ops.values():
                op["responses"]["403"] = _error("the token's person (or the machine token) may not do this")
    return description


def _spec() -> dict[str, Any]:
    case_body = {
        "type": "object",
        "required": ["case", "window"],
        "properties": {
            "case": {**_TEXT, "description": "case number (办件编号)"},
            "window": {**_TEXT, "description": "window id"},
            "item": {**_TEXT, "description": "service item code (事项编码)"},
            "staff": {**_TEXT, "description": "staff id"},
        },
    }
    case = {
        "type": "object",
        "properties": {
            k: {"type": ["string", "null"]} for k in ("case", "window", "device", "item", "staff", "status")
        },
    }
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    date = {"type": "string", "format": "date"}
    dims = "(device|window|item|staff|day)"
    by = {"type": "string", "pattern": f"^{dims}(,{dims})*$", "description": "comma-separated grouping"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "haocha hub", "version": "1", "description": "Hall evaluation (好差评) hub API"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/api/v1/cases": {
                "post": {
                    "summary": "Open a case and invite a rating on the window's terminal",
                    "security": secured,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": case_body}}},
                    "responses": {
                        "201": _json("case opened; the invitation is queued", case),
                        "401": _error("token missing or wrong"),
                        "404": _error("unknown window"),
                        "409": _error("case exists"),
                        "413": _error("body over 64 KiB"),
                        "422": _error("bad body"),
                    },
                }
            },
            "/api/v1/cases/{case}": {
                "get": {
                    "summary": "A case and its status",
                    "security": secured,
                    "parameters": [{"name": "case", "in": "path", "required": True, "schema": _TEXT}],
                    "responses": {
                        "200": _json("the case", case),
                        "401": _error("token missing or wrong"),
                        "404": _error("unknown case"),
                    },
                }
            },
            "/api/v1/cases/{case}/cancel": {
                "post": {
                    "summary": "Cancel an open case; its invitation is withdrawn",
                    "security": secured,
                    "parameters": [{"name": "case", "in": "path", "required": True, "schema": _TEXT}],
                    "responses": {
                        "200": _json("cancelled", case),
                        "401": _error("token missing or wrong"),
                        "404": _error("unknown case"),
                        "409": _error("case not open"),
                    },
                }
            },
            "/api/v1/stats": {
                "get": {
                    "summary": "Rates grouped like `haocha stats`",
                    "security": secured,
                    "parameters": [
                        {"name": "by", "in": "query", "schema": by},
                        {"name": "from", "in": "query", "schema": date},
                        {"name": "to", "in": "query", "schema": date},
                    ],
                    "responses": {
                        "200": _json(
                            "rows and total",
                            {
                                "type": "object",
                                "properties": {"rows": {"type": "array", "items": _ROW}, "total": _ROW},
                                "required": ["rows", "total"],
                            },
                        ),
                        "401": _error("token missing or wrong"),
                        "422": _error("bad parameter"),
                    },
                }
            },
            "/display.json": {
                "get": {
                    "summary": "Today's figures for the hall display (public: no staff ids, case numbers or tickets)",
                    "security": [],
                    "responses": {"200": _json("display data", {"type": "object"})},
                }
            },
            "/fleet/": {
                "get": {
                    "summary": "The terminals' wheelhouse as links for pip --find-links (public: no secret)",
                    "security": [],
                    "responses": {
                        "200": {"description": "HTML links", "content": {"text/html": {"schema": {"type": "string"}}}},
                        "404": {"description": "no wheelhouse made yet (haocha fleet wheelhouse)"},
                    },
                }
            },
            "/fleet/{name}": {
                "get": {
                    "summary": "A wheel, the install script (with this hub's address) or the terminal's unit",
                    "security": [],
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {"description": "the file", "content": {"application/octet-stream": {"schema": {}}}},
                        "404": {"description": "no such file in the wheelhouse"},
                    },
                }
            },
            "/fleet/releases/{release}/{name}": {
                "get": {
                    "summary": "A file of a release (SPEC section 13): one its manifest lists, or manifest.json "
                    "and manifest.sig (public: a release holds no secret; terminals check its signature)",
                    "security": [],
                    "parameters": [
                        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                        for name in ("release", "name")
                    ],
                    "responses": {
                        "200": {"description": "the file", "content": {"application/octet-stream": {"schema": {}}}},
                        "404": {"description": "no such release, or no such file in it"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (public: no staff ids, case numbers or tickets)",
                    "security": [],
                    "responses": {
                        "200": {"description": "text format", "content": {"text/plain": {"schema": {"type": "string"}}}}
                    },
                }
            },
            **openapi_paths(),
            **alert_paths(),
            **report_paths(),
            "/": {
                "get": {
                    "summary": "The hall display page",
                    "security": [],
                    "responses": {
                        "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}
                    },
                }
            },
        },
    }
