"""The extras match the machines (issue 13): a terminal install, ``pip install '.[pi]'`` into a
fresh virtualenv, runs ``haocha terminal`` and has nothing of the hub's web stack or store."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: What ``pip install`` needs of the source tree (a copy: building writes into the tree).
SOURCE = ("pyproject.toml", "README.md", "haocha", "hub", "protocol", "terminal", "simulators")
HUB_ONLY = ("starlette", "uvicorn", "sqlite_utils", "prometheus_client", "cryptography")


@pytest.fixture(scope="module")
def pi_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with ``haocha[pi]`` installed (from the local wheel cache or PyPI)."""
    tmp = tmp_path_factory.mktemp("pi")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCE:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=120)
    pip = [str(tmp / "venv" / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, f"{src}[pi]"], check=True, timeout=300, capture_output=True)
    return tmp / "venv" / "bin"


@pytest.mark.slow
def test_a_pi_install_runs_the_terminal_without_the_hub(pi_venv: Path) -> None:
    run = subprocess.run([str(pi_venv / "haocha"), "terminal", "run", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "--config" in run.stdout, run.stderr
    probe = "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))"
    found = subprocess.run([str(pi_venv / "python"), "-c", probe, *HUB_ONLY], capture_output=True, text=True)
    assert found.stdout.split() == [], "a terminal install pulled the hub's packages"
    drivers = ["gpiozero", "pymodbus", "serial", "paho"]
    found = subprocess.run([str(pi_venv / "python"), "-c", probe, *drivers], capture_output=True, text=True)
    assert found.stdout.split() == drivers


@pytest.mark.slow
def test_a_hub_command_on_a_pi_says_what_is_missing_in_one_line(pi_venv: Path) -> None:
    run = subprocess.run([str(pi_venv / "haocha"), "hub", "run", "--home", "."], capture_output=True, text=True)
    assert run.returncode != 0
    assert run.stderr.count("\n") == 1 and "not installed here" in run.stderr and "haocha[hub]" in run.stderr
    assert "Traceback" not in run.stderr
