"""What a terminal installs from the hall network alone (SPEC section 13, docs/deploy.md): a
wheelhouse in ``{home}/wheelhouse/`` — the haocha wheel, every wheel ``haocha[pi]`` needs for the
Pi's Python and CPU, the install script and the terminal's systemd unit — that the hub serves at
``/fleet/``. Halls have no internet: the wheelhouse is made once where PyPI is reachable (the hub
while it is being set up, or a technician's laptop) and the hub serves it from then on.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import HubError

WHEELHOUSE = "wheelhouse"
#: Files beside the wheels, from the source tree's systemd/ folder.
SCRIPT_NAME = "install-terminal.sh"
UNIT_NAME = "haocha-terminal.service"
#: ``--arch`` → pip platform tags, newest first (Raspberry Pi OS Bookworm: glibc 2.36).
PLATFORMS = {
    "aarch64": ("manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64", "linux_aarch64"),
    "armv7l": ("manylinux_2_34_armv7l", "manylinux_2_31_armv7l", "manylinux2014_armv7l", "linux_armv7l"),
}
#: The project's own source tree when the hub runs from a checkout.
SOURCE = Path(__file__).resolve().parent.parent


class FleetError(HubError):
    """The wheelhouse could not be made (one line saying why)."""


@dataclass(frozen=True)
class Target:
    """The terminal's machine: its CPU (``native``: this one) and its Python's ``major.minor``."""

    arch: str = "aarch64"
    python: str = "3.11"
    #: A second package index, e.g. piwheels (https://www.piwheels.org/simple) for 32-bit Pis,
    #: for which PyPI lacks some binary wheels.
    extra_index: str | None = None

    def pip_options(self) -> list[str]:
        index = ["--extra-index-url", self.extra_index] if self.extra_index else []
        if self.arch == "native":
            return index
        tags = [opt for tag in PLATFORMS[self.arch] for opt in ("--platform", tag)]
        return [*index, *tags, "--python-version", self.python, "--implementation", "cp", "--only-binary=:all:"]


def wheelhouse_dir(home: Path) -> Path:
    return home / WHEELHOUSE


def terminal_requirements(source: Path) -> list[str]:
    """What ``haocha[pi]`` installs, from the source tree's pyproject.toml."""
    try:
        project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise FleetError(f"{source} is not the haocha source tree ({exc})") from None
    return [*project["dependencies"], *project["optional-dependencies"]["pi"]]


def build_wheelhouse(home: Path, target: Target, source: Path = SOURCE) -> list[Path]:
    """Make ``{home}/wheelhouse/`` afresh; return the wheels in it."""
    requirements = terminal_requirements(source)
    folder = wheelhouse_dir(home)
    fresh = folder.with_name(WHEELHOUSE + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="haocha-wheel-") as scratch:  # setuptools writes build/ beside
        _pip("wheel", "--no-deps", "--wheel-dir", str(fresh), str(_package_sources(source, Path(scratch))))
    _pip("download", "--dest", str(fresh), *target.pip_options(), *requirements)
    for name in (SCRIPT_NAME, UNIT_NAME):
        shutil.copy2(source / "systemd" / name, fresh / name)
    shutil.rmtree(folder, ignore_errors=True)
    fresh.rename(folder)  # the hub never serves a half-made wheelhouse
    return sorted(folder.glob("*.whl"))


def _package_sources(source: Path, into: Path) -> Path:
    """What the wheel is made of, copied from the source tree: its packages (as pyproject.toml
    lists them) and the files pyproject names. A checkout's .venv, caches and build/ stay out."""
    project = tomllib.loads((source / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    for name in ("pyproject.toml", project["project"].get("readme", "README.md")):
        shutil.copy2(source / name, into / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in {pattern.rstrip("*") for pattern in patterns}:
        if (source / package).is_dir():
            shutil.copytree(source / package, into / package, ignore=skip)
    return into


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise FleetError(f"pip {args[0]} failed: {_pip_reason(done.stderr)}")


def _pip_reason(stderr: str) -> str:
    """pip's most telling line: the package it found no wheel for, else its last line."""
    lines = [line.strip().removeprefix("ERROR: ") for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("No matching distribution"):
            return line
        if line.startswith("Cannot install "):  # a whole list of versions: name the package
            package = line.removeprefix("Cannot install ").split("==")[0]
            return f"no wheel of {package} fits this platform with its dependencies (a second index: --extra-index)"
    return (lines or ["no output"])[-1]


def served_files(home: Path) -> dict[str, Path]:
    """Name → file of what ``/fleet/`` serves: only plain files of the wheelhouse, by their own name."""
    folder = wheelhouse_dir(home)
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}
