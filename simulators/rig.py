"""An in-process terminal on mock pins, connected to a running hall: tests press its keys."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from simulators.gpio_panel import SimGpioPanel
from simulators.hall import Hall, port_open, wait_for
from terminal.config import load
from terminal.panel import Key, KeyKind
from terminal.runner import Terminal


class TerminalRig:
    def __init__(self, hall: Hall, device: str, config_path: Path | None = None) -> None:
        """``config_path``: the terminal's own copy of its folder (as on a Pi), else the hub's."""
        self.config = load(config_path or hall.terminal_config(device))
        self.sim = SimGpioPanel(self.config)
        self.term = Terminal(self.config, **self.sim.panel_options)
        self._thread = threading.Thread(target=self.term.run, daemon=True)
        self._thread.start()
        wait_for(self.term.started.is_set, 10, "the terminal to start")
        wait_for(lambda: self.term.uplink.connected, 20, f"{device} to connect")

    def press(self, level: str) -> int:
        """Press a rating key and wait for its journal row; returns the seq."""
        before = self.term.journal.last_seq
        self.sim.press(Key(KeyKind.LEVEL, level))
        return int(
            wait_for(
                lambda: self.term.journal.last_seq > before and self.term.journal.last_seq,
                10,
                "the press to be committed",
            )
        )

    def wait_invited(self, case: str) -> None:
        wait_for(
            lambda: (inv := self.term.evaluator.invitation) is not None and inv.case == case,
            20,
            f"the invitation for {case}",
        )

    def wait_acked(self) -> None:
        wait_for(lambda: self.term.journal.acked == self.term.journal.last_seq, 30, "the hub's ack")

    def close(self) -> None:
        self.term.close()
        self._thread.join(timeout=10)
        self.sim.close()


class HubApi:
    """The running hub's HTTP API, as the business system calls it."""

    def __init__(self, hall: Hall) -> None:
        wait_for(lambda: port_open(hall.http_port), 20, "the hub's HTTP API")
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{hall.http_port}",
            headers={"Authorization": f"Bearer {hall.config.http.token}"},
            timeout=10,
        )

    def open_case(self, case: str, window: str, **extra: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/cases", json={"case": case, "window": window, **extra})
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def cancel(self, case: str) -> None:
        assert self.client.post(f"/api/v1/cases/{case}/cancel").status_code == 200

    def stats(self, by: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get("/api/v1/stats", params={"by": by}).json()
        return result

    def close(self) -> None:
        self.client.close()
