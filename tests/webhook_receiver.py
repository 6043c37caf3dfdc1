"""A webhook receiver for tests: a real HTTP server on a free loopback port that records every
POST and answers as told (a robot's ``errcode``, an HTTP error, a slow answer)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from simulators.hall import free_port


@dataclass(frozen=True)
class Post:
    path: str
    query: dict[str, str]
    content_type: str
    body: Any


class Receiver:
    """``answers``: (HTTP status, JSON body) for the next posts, in order; then 200 ``{"errcode": 0}``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.posts: list[Post] = []
        self.refused = 0
        self.answers: list[tuple[int, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, answer = receiver._take(self.path, self.headers.get("Content-Type", ""), data)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _take(self, target: str, content_type: str, data: bytes) -> tuple[int, Any]:
        url = urllib.parse.urlsplit(target)
        post = Post(url.path, dict(urllib.parse.parse_qsl(url.query)), content_type, json.loads(data))
        with self._lock:
            if self.answers:
                status, answer = self.answers.pop(0)
                self.refused += 1
                return status, answer
            self.posts.append(post)
        return 200, {"errcode": 0, "errmsg": "ok"}

    def taken(self, path: str | None = None) -> list[Post]:
        with self._lock:
            return [p for p in self.posts if path is None or p.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
