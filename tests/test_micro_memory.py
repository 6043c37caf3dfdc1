"""The firmware's fixed memory cost, measured in the real interpreter: a guard on a cliff.

MicroPython's string table grows in pools; its first four hold 300 names and the fifth costs
3.7 KB of heap at once, enough to take the 10,000-press soak out of its 64 KB heap (it did once,
when two changes added 20 names between them). A change that crosses it must buy the memory back
elsewhere and re-measure ``bench/micro_soak.py`` (docs/micro.md, "Limits and figures").
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from terminal.micro_host import compile_firmware, find_micropython

NAME_POOLS_BEFORE_THE_CLIFF = 4
#: The live heap right after importing the firmware, on the 64-bit unix port (45.4 KB measured, with
#: terminal/core.py as core; 44.9 KB before). The rekey (SPEC section 11) costs 0.9 KB net, 2026-12-01:
#: 44.5 → 45.4 KB loaded from a short folder, 45.8 KB from pytest's longer one (the module paths are
#: names too); ``wire.encode_batch``, which only the golden test used, left the board to pay for part.
#: Taking configurations (SPEC section 13) costs 0.4 KB, 2026-12-01: 46,656 → 47,040 B from a short
#: folder (the state's report, holding a configuration for the loop, loading ``conf`` for a moment).
#: Updates (SPEC section 13) cost 1.2 KB more, 2026-12-01: 47,040 → 48,256 B from a short folder,
#: 48,800 B from pytest's (the update record read at start, the command kept as it came, the update
#: field of the state; no name). Their work is in ``update_step`` (loaded only while an update is
#: under way) and in the boot step, which runs before the firmware and restarts the board when it
#: took a step.
IMPORTED_HEAP_MAX = 48 * 1024
FIRMWARE = ("wire", "clock", "journal", "core", "mqtt", "uplink", "main")


def imported(tmp_path: Path, modules: tuple[str, ...]) -> tuple[int, int, str]:
    """(string pools, live heap) once ``modules`` of the compiled firmware are imported, and the output."""
    code = compile_firmware(tmp_path / "fw")
    script = f"""
import sys, gc, micropython
sys.path.insert(0, {str(code)!r})
for name in {modules!r}:
    __import__(name)
micropython.qstr_info()
gc.collect()
print("heap", gc.mem_alloc())
"""
    out = subprocess.run(
        [find_micropython(), "-X", "heapsize=256k", "-c", script], capture_output=True, text=True, timeout=60
    ).stdout
    return int(out.split("n_pool=")[1].split(",")[0]), int(out.split("heap ")[1].split()[0]), out


def test_the_firmware_stays_below_the_string_table_cliff(tmp_path: Path) -> None:
    pools, heap, out = imported(tmp_path, FIRMWARE)
    assert pools <= NAME_POOLS_BEFORE_THE_CLIFF, out
    assert heap <= IMPORTED_HEAP_MAX, out


def test_taking_a_configuration_up_stays_below_the_cliff_too(tmp_path: Path) -> None:
    """The firmware loads ``conf`` only while it takes a configuration up: with the simulated
    board's names as well (the board's own module is loaded too), its names still fit the four
    pools, so a configuration never costs the 3.7 KB pool on top of the module's 2 KB."""
    code = compile_firmware(tmp_path / "fw")
    script = f"""
import sys, micropython
sys.path.insert(0, {str(code)!r})
for name in ("wire", "clock", "journal", "core", "mqtt", "uplink", "main", "sim_board", "conf"):
    __import__(name)
micropython.qstr_info()
"""
    out = subprocess.run(
        [find_micropython(), "-X", "heapsize=256k", "-c", script], capture_output=True, text=True, timeout=60
    ).stdout
    assert int(out.split("n_pool=")[1].split(",")[0]) <= NAME_POOLS_BEFORE_THE_CLIFF, out


def test_an_update_under_way_stays_below_the_cliff_too(tmp_path: Path) -> None:
    """``update_step`` is loaded while an update is under way (the simulated board's module too)."""
    pools, _heap, out = imported(tmp_path, (*FIRMWARE, "sim_board", "update_step"))
    assert pools <= NAME_POOLS_BEFORE_THE_CLIFF, out
