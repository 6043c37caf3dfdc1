"""The command-line contract (SPEC section 7), called in-process with click's CliRunner."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from haocha.cli import main

README = (Path(__file__).parent.parent / "README.md").read_text()


def run(*args: str, ok: bool = True) -> click.testing.Result:
    result = CliRunner().invoke(main, list(args))
    if ok:
        assert result.exit_code == 0, (args, result.output, result.stderr)
    return result


@pytest.fixture
def home(tmp_path: Path) -> Path:
    run("hub", "init", "--home", str(tmp_path), "--hall", "H1", "--broker", "127.0.0.1:18830")
    return tmp_path


def all_commands(group: click.Group = main, prefix: str = "") -> list[tuple[str, click.Command]]:
    ctx = click.Context(group)
    out = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        out.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            out.extend(all_commands(command, f"{prefix}{name} "))
    return out


def test_terminal_commands_load_no_hub_modules() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from haocha.cli import main; from click.testing import CliRunner; "
        "CliRunner().invoke(main, ['terminal', 'run', '--help']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('uvicorn', 'starlette', 'sqlite_utils') "
        "or m in ('hub.daemon', 'hub.store')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name, command", all_commands(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_command_has_help_and_is_in_the_readme(name: str, command: click.Command) -> None:
    assert command.help, name
    assert f"haocha {name}" in README, f"README does not mention `haocha {name}`"


def test_hub_init_makes_private_files_and_refuses_to_overwrite(home: Path) -> None:
    assert stat.S_IMODE((home / "hub.toml").stat().st_mode) == 0o600
    token = run("hub", "token", "--home", str(home)).output.strip()
    assert len(token) >= 32 and "\n" not in token
    again = run("hub", "init", "--home", str(home), "--hall", "H1", ok=False)
    assert again.exit_code != 0 and "exists already" in again.stderr


def test_home_defaults_to_haocha_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAOCHA_HOME", str(home))
    assert run("hub", "token").output.strip()


def test_device_add_writes_a_private_terminal_toml(home: Path) -> None:
    run("window", "add", "W01", "--name", "一号窗", "--home", str(home))
    run("device", "add", "T01", "--window", "W01", "--home", str(home))
    path = home / "devices" / "T01" / "terminal.toml"
    config = tomllib.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (config["device"], config["window"], config["broker"]["port"], len(config["key"])) == (
        "T01",
        "W01",
        18830,
        64,
    )
    listed = json.loads(run("device", "list", "--home", str(home), "--format", "json").output)
    assert [d["device"] for d in listed] == ["T01"]


@pytest.mark.parametrize("args, message", [
    (["device", "add", "T01", "--window", "W99"], "unknown window W99"),
    (["device", "add", "hub", "--window", "W01"], "invalid device id"),
    (["device", "add", "T 1", "--window", "W01"], "invalid device id"),
    (["device", "revoke", "T77"], "unknown device T77"),
    (["stats", "--by", "colour"], "choose from"),
])  # fmt: skip
def test_bad_input_is_one_line_and_non_zero(home: Path, args: list[str], message: str) -> None:
    run("window", "add", "W01", "--name", "x", "--home", str(home))
    result = run(*args, "--home", str(home), ok=False)
    assert result.exit_code != 0 and message in result.stderr
    assert "Traceback" not in result.output


def test_bad_hub_toml_key_is_named(home: Path) -> None:
    (home / "hub.toml").write_text("colour = 1\n" + (home / "hub.toml").read_text())
    result = run("stats", "--home", str(home), ok=False)
    assert result.exit_code == 1 and "unknown key 'colour'" in result.stderr


def test_stats_json_shape_on_an_empty_hall(home: Path) -> None:
    out = json.loads(run("stats", "--home", str(home), "--by", "device,day", "--format", "json").stdout)
    assert out["rows"] == []
    assert out["total"]["evaluations"] == 0 and out["total"]["satisfaction_rate"] is None


def test_terminal_journal_of_a_missing_journal_fails_clearly(home: Path) -> None:
    run("window", "add", "W01", "--name", "x", "--home", str(home))
    run("device", "add", "T01", "--window", "W01", "--home", str(home))
    result = run("terminal", "journal", "--config", str(home / "devices/T01/terminal.toml"), ok=False)
    assert result.exit_code == 1 and "no journal at" in result.stderr
