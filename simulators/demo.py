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
from .hall import Hall, HallError

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
    """Run the demo hall in ``home`` (default: a temporary folder, removed when the demo succeeds).
    If it fails, the last lines of the broker's and the hub's logs are shown and the folder is kept."""
    folder = Path(home) if home else Path(tempfile.mkdtemp(prefix="haocha-demo-"))
    hall: Hall | None = None
    keep = home is not None
    try:
        hall = Hall(folder, hall="DEMO", http={"tls": True})  # MQTT over TLS, the API over HTTPS
        with hall:
            _run(hall, presses, echo, out)
    except Exception:
        keep = True
        if hall is not None and (tails := hall.tails()):
            echo(tails)
        echo(f"the demo failed; its hall, with every process's log, is kept in {folder}")
        raise
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def _run(hall: Hall, presses: int, echo: Callable[[str], None], out: Callable[[str], None]) -> None:
    invited = _provision(hall, echo)
    echo(
        f"broker (TLS) on 127.0.0.1:{hall.broker_port}, hub API on https://127.0.0.1:{hall.http_port}/ "
        f"(CA {hall.ca}); hub home {hall.home}"
    )
    hall.start_broker()
    hall.start_hub()
    hall.wait_listening("hub", hall.http_port, 30)
    business = BusinessSystem(
        f"https://127.0.0.1:{hall.http_port}",
        hall.config.http.token,
        invited,
        [code for code, _ in ITEMS],
        interval_s=0.4,
        tls=hall.tls_context(),
    )
    business.start()
    echo(f"business system opening cases at {', '.join(invited)}")
    try:
        _press(hall, presses, echo)
    finally:
        business.stop()
    result = hall.stats(("window",))
    out(render(result, ["window"], "table"))


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
            raise HallError(f"simulated terminal {device} failed (exit {code}): {hall.last_line(f'sim-{device}')}")
    echo("every press stored once and acknowledged by the hub:")
