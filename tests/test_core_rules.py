"""The rules of SPEC sections 1 and 3 (``tests/core_cases.py``) against :mod:`terminal.core`, the
same cases under CPython and under MicroPython: the CPython terminal and the firmware run this one
file, so one set of cases holds both to the same rules."""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from protocol.rules import INVITE_TTL_MAX_MS
from simulators.hall import Hall
from terminal import core
from terminal.micro_host import find_micropython, firmware_source

from . import core_cases


@pytest.mark.parametrize("name", core_cases.CASES)
def test_cpython(name: str) -> None:
    assert core_cases.run(core, name) is None


@pytest.fixture(scope="module")
def micropython_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Every case run once in the ``micropython`` binary against the board's ``core.py``."""
    folder = tmp_path_factory.mktemp("core")
    shutil.copyfile(firmware_source("core.py"), folder / "core.py")
    shutil.copyfile(Path(core_cases.__file__), folder / "core_cases.py")
    script = (
        f"import sys, json\nsys.path.insert(0, {str(folder)!r})\nimport core, core_cases\n"
        "print(json.dumps({n: core_cases.run(core, n) for n in core_cases.CASES}))\n"
    )
    proc = subprocess.run(
        [find_micropython(), "-X", "heapsize=256k", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results: dict[str, str | None] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


@pytest.mark.parametrize("name", core_cases.CASES)
def test_micropython(name: str, micropython_results: dict[str, str | None]) -> None:
    assert micropython_results[name] is None


def test_every_case_is_listed() -> None:
    cases = {
        name
        for name, fn in vars(core_cases).items()
        if inspect.isfunction(fn) and list(inspect.signature(fn).parameters) == ["core"]
    }
    assert cases == set(core_cases.CASES)


def test_the_core_and_the_protocol_agree_on_the_longest_invitation() -> None:
    assert core._TTL_MAX_MS == INVITE_TTL_MAX_MS


def test_device_add_kind_micro_ships_the_very_file_the_cpython_terminal_imports(hall: Hall) -> None:
    terminal_toml = hall.add_device("M01", "W01", kind="micro")
    board = terminal_toml.parent / "board"
    assert (board / "core.py").read_bytes() == Path(core.__file__).read_bytes()
    assert not (board / "evaluator.py").exists()
