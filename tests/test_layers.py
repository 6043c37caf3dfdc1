"""The layers (docs/layers.md) hold: import-linter's contracts in pyproject.toml are kept."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_import_contracts_are_kept() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is in the test extra"
    run = subprocess.run([lint_imports, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "0 broken" in run.stdout


def test_the_contracts_say_what_the_issue_asks() -> None:
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    by_type = {c["type"]: c for c in contracts}
    assert set(by_type["forbidden"]["forbidden_modules"]) >= {"terminal", "hub", "simulators", "haocha"}
    assert "terminal | hub" in by_type["layers"]["layers"]
    assert by_type["layers"]["layers"][-1] == "protocol"
    assert {"hub", "terminal", "protocol"} <= set(by_type["acyclic_siblings"]["ancestors"])
