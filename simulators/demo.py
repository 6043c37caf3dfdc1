"""``haocha demo``: a hall on this machine, from provisioning to the stats table.

Eight windows with terminals of each kind in turn (GPIO, Modbus, serial, MicroPython), half of them
in invited mode with cases opened by a simulated business system through the hub's HTTP API, a
broker, the hub, and the real terminal programs pressed by simulated citizens; it ends by itself.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from hub.stats import render

from .business import BusinessSystem
from .hall import Hall, port_open, wait_for

WINDOWS = [
    ("W01", "综合受理一号窗 General intake 1"),
    ("W02", "综合受理二号窗 General intake 2"),
    ("W03", "不动产登记窗 Real estate"),
    ("W04", "社保医保窗 Social insurance"),
    ("W05", "税务窗 Taxes"),
    ("W06", "公积金窗 Housing fund"),
    ("W07", "出入境窗 Exit-entry"),
    ("W08", "综合咨询窗 Enquiries"),
]
ITEMS = [("11010000-XK-001", "营业执照办理 Business licence"), ("11010000-SB-002", "社保卡补办 Social security card")]


def available_kinds() -> list[str]:
    """gpio always; the others once their simulators are installed."""
    kinds = ["gpio"]
    if importlib.util.find_spec("simulators.panel_sims") is not None:
        kinds += ["modbus", "serial"]
    if importlib.util.find_spec("terminal.micro_host") is not None:
        kinds.append("micro")
    return kinds


def run_demo(home: Path | None, presses: int, echo: Callable[[str], None], out: Callable[[str], None]) -> None:
    folder = Path(home) if home else Path(tempfile.mkdtemp(prefix="haocha-demo-"))
    try:
        with Hall(folder, hall="DEMO") as hall:
            invited = _provision(hall, echo)
            echo(
                f"broker on 127.0.0.1:{hall.broker_port}, hub API on http://127.0.0.1:{hall.http_port}/; "
                f"hub home {folder}"
            )
            hall.start_broker()
            hall.start_hub()
            wait_for(lambda: port_open(hall.http_port), 30, "the hub's HTTP API")
            business = BusinessSystem(
                f"http://127.0.0.1:{hall.http_port}",
                hall.config.http.token,
                invited,
                [code for code, _ in ITEMS],
                interval_s=0.4,
            )
            business.start()
            echo(f"business system opening cases at {', '.join(invited)}")
            try:
                _press(hall, presses, echo)
            finally:
                business.stop()
            result = hall.stats(("window",))
            out(render(result, ["window"], "table"))
    finally:
        if home is None:
            shutil.rmtree(folder, ignore_errors=True)


def _provision(hall: Hall, echo: Callable[[str], None]) -> list[str]:
    """Windows, items and one terminal per window, kinds in turn, each kind free and invited.
    Returns the invited windows."""
    with hall.store() as store:
        from hub.store.registry import add_item, add_window

        for window, name in WINDOWS:
            add_window(store, window, name, None)
        for code, name in ITEMS:
            add_item(store, code, name)
    kinds = available_kinds()
    invited = []
    for i, (window, _name) in enumerate(WINDOWS):
        kind = kinds[i % len(kinds)]
        mode = "invited" if (i // len(kinds)) % 2 else "free"  # each kind once free, once invited
        hall.add_device(f"T{i + 1:02d}", window, kind=kind, mode=mode)
        echo(f"provisioned T{i + 1:02d} ({kind}, {mode}) at {window}")
        if mode == "invited":
            invited.append(window)
    return invited


def _press(hall: Hall, presses: int, echo: Callable[[str], None]) -> None:
    devices = [f"T{i + 1:02d}" for i in range(len(WINDOWS))]
    procs = {d: hall.sim_terminal(d, presses, 10.0, i + 1) for i, d in enumerate(devices)}
    echo(f"{len(devices)} simulated terminals pressing {presses} ratings each …")
    for device, proc in procs.items():
        code = proc.wait(timeout=600)
        if code != 0:
            raise RuntimeError(
                f"simulated terminal {device} failed (exit {code}):\n{hall.log(f'sim-{device}')[-2000:]}"
            )
    echo("every press stored once and acknowledged by the hub:")
