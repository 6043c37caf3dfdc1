"""A working stand-in for the regional 好差评 system (``haocha sim regional``).

It validates every field of the national-format records the hub sends, dedupes evaluations by
``recordId`` (a resend is counted as a duplicate, and as a conflict if its content differs),
applies reason updates, keeps tickets and totals apart, and checks the HMAC signature when given
a secret. It can be told to fail, by options or ``POST /sim/control``: a share of requests
answered 503 at once or stored with the response dropped (``fail_rate``), a forced status for
every request (``status``, e.g. 503 for "down"), slow answers (``slow_s``; beyond the client's
timeout that is a timeout after the commit) and rejection of chosen record ids (``reject_ids``).
``GET /sim/summary`` never fails. State lives in memory and survives :meth:`RegionalSim.stop` /
:meth:`RegionalSim.start`, so a test can take the system down and bring it back.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hub.upstream.signing import verify_hmac

_LOG = logging.getLogger(__name__)
_CODES = re.compile(r"(\d{3}(,\d{3})*)?")  # fullmatch: a trailing newline is no code
_TICKET_STATES = ("registered", "assigned", "appealed", "verified", "feedback")


def _str(r: dict[str, Any], key: str, required: bool = True, most: int = 128) -> str | None:
    value = r.get(key)
    if not isinstance(value, str):
        return f"{key} must be a string"
    if required and not value:
        return f"{key} must not be empty"
    return f"{key} longer than {most}" if len(value) > most else None


def _int(r: dict[str, Any], key: str, allowed: range) -> str | None:
    value = r.get(key)
    if type(value) is not int or value not in allowed:
        return f"{key} must be an integer in {allowed.start}..{allowed.stop - 1}, got {value!r}"
    return None


def _time(r: dict[str, Any], key: str) -> str | None:
    try:
        dt.datetime.strptime(str(r.get(key)), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return f"{key} must be yyyy-MM-dd HH:mm:ss, got {r.get(key)!r}"
    return None


_EVALUATION_FIELDS = {
    "op", "recordId", "hallCode", "windowNo", "deviceNo", "projectNo", "taskCode", "proDepart", "proManager", "pf",
    "satisfaction", "evalDetail", "assessTime", "assessNumber", "suspect",
}  # fmt: skip


def check_evaluation(r: dict[str, Any]) -> str | None:
    """The reason a national-format evaluation record is invalid, or None."""
    unknown = sorted(set(r) - _EVALUATION_FIELDS)
    if unknown:
        return f"unknown fields {unknown}"
    checks = [
        _str(r, "recordId"), _str(r, "hallCode", most=32), _str(r, "windowNo", most=32),
        _str(r, "deviceNo", most=32), _str(r, "projectNo"), _str(r, "taskCode", False, 64),
        _str(r, "proDepart", False), _str(r, "proManager", False, 64), _int(r, "pf", range(5, 6)),
        _int(r, "satisfaction", range(1, 6)), _str(r, "evalDetail", False), _time(r, "assessTime"),
        _int(r, "assessNumber", range(1, 2)), _int(r, "suspect", range(0, 2)),
        None if r.get("op") in ("add", "update") else "op must be add or update",
    ]  # fmt: skip
    problem = next((c for c in checks if c), None)
    if problem:
        return problem
    if not _CODES.fullmatch(r["evalDetail"]):
        return f"evalDetail must be comma-separated 3-digit codes, got {r['evalDetail']!r}"
    if r["evalDetail"] and r["satisfaction"] > 2:
        return "evalDetail is only for satisfaction 1 or 2"
    return None


def check_ticket(r: dict[str, Any]) -> str | None:
    checks = [
        _str(r, "ticketNo"), _str(r, "recordId"), _str(r, "windowNo", most=32), _str(r, "projectNo"),
        _int(r, "satisfaction", range(1, 3)), _str(r, "registerDate", most=10), _time(r, "changeTime"),
        None if r.get("state") in _TICKET_STATES else f"unknown ticket state {r.get('state')!r}",
        _str(r, "evalDetail", False),
    ]  # fmt: skip
    problem = next((c for c in checks if c), None)
    if problem is None and not _CODES.fullmatch(r["evalDetail"]):
        return f"evalDetail must be comma-separated 3-digit codes, got {r['evalDetail']!r}"
    return problem


def check_totals(r: dict[str, Any]) -> str | None:
    checks = [_str(r, "totalsId", most=200), _str(r, "period", most=16), _str(r, "windowNo", most=32)]
    for key in ("cases", "evaluations"):
        if type(r.get(key)) is not int or r[key] < 0:
            checks.append(f"{key} must be a count")
    if not isinstance(r.get("levels"), dict) or set(r["levels"]) - {"1", "2", "3", "4", "5"}:
        checks.append("levels must map satisfaction codes 1..5 to counts")
    return next((c for c in checks if c), None)


class RegionalState:
    """What the regional system has accepted, and the failures it is told to make."""

    def __init__(self, fail_rate: float = 0.0, secret: str = "", seed: int | None = None) -> None:
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.control: dict[str, Any] = {"fail_rate": fail_rate, "status": 0, "slow_s": 0.0, "reject_ids": []}
        self.secret = secret
        self.records: dict[str, dict[str, Any]] = {}
        self.arrivals: list[str] = []
        self.tickets: dict[str, dict[str, Any]] = {}
        self.totals: dict[str, dict[str, Any]] = {}
        self.counts = {"duplicates": 0, "conflicts": 0, "rejected": 0, "updates": 0, "requests": 0, "failed": 0}

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {
                "records": len(self.records),
                **self.counts,
                "tickets": len(self.tickets),
                "totals": len(self.totals),
            }

    def accept(self, path: str, records: list[Any]) -> list[dict[str, Any]]:
        handler: Callable[[dict[str, Any]], dict[str, Any]] = {
            "/api/v1/evaluations": self._evaluation,
            "/api/v1/tickets": self._ticket,
            "/api/v1/totals": self._totals,
        }[path]
        with self.lock:
            return [self._one(handler, r) for r in records]

    def _one(self, handler: Callable[[dict[str, Any]], dict[str, Any]], r: Any) -> dict[str, Any]:
        if not isinstance(r, dict):
            result = {"status": "rejected", "reason": "a record must be an object"}
        elif r.get("recordId", r.get("totalsId")) in self.control["reject_ids"]:
            result = {"status": "rejected", "reason": "refused by the regional system (control)"}
        else:
            result = handler(r)
        if result["status"] == "rejected":
            self.counts["rejected"] += 1
        return result

    def _evaluation(self, r: dict[str, Any]) -> dict[str, Any]:
        problem = check_evaluation(r)
        if problem:
            return {"status": "rejected", "reason": problem}
        rid = r["recordId"]
        known = self.records.get(rid)
        if r["op"] == "update":
            if known is None:
                return {"status": "rejected", "reason": f"update of unknown record {rid}"}
            known["evalDetail"] = r["evalDetail"]
            self.counts["updates"] += 1
            return {"status": "updated"}
        if known is not None:
            self.counts["duplicates"] += 1
            original = {k: v for k, v in known.items() if k != "evalDetail"}
            if original != {k: v for k, v in r.items() if k != "evalDetail"}:
                self.counts["conflicts"] += 1
            return {"status": "duplicate"}
        self.records[rid] = dict(r)
        self.arrivals.append(rid)
        return {"status": "ok"}

    def _ticket(self, r: dict[str, Any]) -> dict[str, Any]:
        problem = check_ticket(r)
        if problem:
            return {"status": "rejected", "reason": problem}
        self.tickets[r["recordId"]] = dict(r)
        return {"status": "ok"}

    def _totals(self, r: dict[str, Any]) -> dict[str, Any]:
        problem = check_totals(r)
        if problem:
            return {"status": "rejected", "reason": problem}
        self.totals[r["totalsId"]] = dict(r)
        return {"status": "ok"}

    def in_order(self) -> list[dict[str, Any]]:
        """Evaluation records in the order they first arrived."""
        with self.lock:
            return [dict(self.records[rid]) for rid in self.arrivals]

    def draw_failure(self) -> str | None:
        """``"503"``, ``"drop"`` or None for this request, by ``fail_rate`` and ``status``."""
        with self.lock:
            if self.control["status"]:
                return "status"
            if self.rng.random() >= self.control["fail_rate"]:
                return None
            return self.rng.choice(["503", "drop"])


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: Any) -> None:
        _LOG.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: Any) -> None:
        raw = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(raw)
        self.close_connection = True

    def do_GET(self) -> None:
        state = self.server.state
        views: dict[str, Callable[[], Any]] = {
            "/sim/summary": state.summary,
            "/sim/records": state.in_order,
            "/sim/tickets": lambda: list(state.tickets.values()),
            "/sim/totals": lambda: list(state.totals.values()),
            "/sim/control": lambda: state.control,
        }
        view = views.get(self.path.split("?")[0])
        self._send(200, view()) if view else self._send(404, {"reason": f"no {self.path}"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/sim/control":
            self._control(body)
            return
        state = self.server.state
        with state.lock:
            state.counts["requests"] += 1
        failure = state.draw_failure()
        if failure in ("503", "status"):
            with state.lock:
                state.counts["failed"] += 1
            self._send(int(state.control["status"] or 503), {"reason": "injected failure"})
            return
        if state.control["slow_s"]:
            time.sleep(float(state.control["slow_s"]))
        status, answer = self._records(body)
        if failure == "drop":
            with state.lock:
                state.counts["failed"] += 1
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # committed, but the answer is lost
            return
        self._send(status, answer)

    def _records(self, body: bytes) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        if state.secret and not verify_hmac(
            state.secret,
            self.headers.get("X-Timestamp", ""),
            self.headers.get("X-Nonce", ""),
            body,
            self.headers.get("X-Signature", ""),
        ):
            return 401, {"reason": "bad signature"}
        if self.path not in ("/api/v1/evaluations", "/api/v1/tickets", "/api/v1/totals"):
            return 404, {"reason": f"no {self.path}"}
        try:
            envelope = json.loads(body)
            records = envelope["records"]
            if not isinstance(records, list) or not records:
                raise ValueError("records must be a non-empty list")
        except (ValueError, KeyError, TypeError) as exc:
            return 400, {"reason": f"bad request body: {exc}"}
        return 200, {"code": 0, "results": state.accept(self.path, records)}

    def _control(self, body: bytes) -> None:
        state = self.server.state
        try:
            change = json.loads(body)
            unknown = set(change) - set(state.control)
            if unknown:
                raise ValueError(f"unknown control keys {sorted(unknown)}")
        except (ValueError, TypeError) as exc:
            self._send(400, {"reason": str(exc)})
            return
        with state.lock:
            state.control.update(change)
        self._send(200, state.control)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: RegionalState) -> None:
        self.state = state
        super().__init__(address, _Handler)


class RegionalSim:
    """The simulator as an object: ``start()``/``stop()`` may alternate; state is kept."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        fail_rate: float = 0.0,
        secret: str = "",
        seed: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.state = RegionalState(fail_rate, secret, seed)
        self.tls = tls  # a server context: HTTPS, as a real regional system serves
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> RegionalSim:
        self._server = _Server((self.host, self.port), self.state)
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="regional-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused until :meth:`start`); idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> RegionalSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
