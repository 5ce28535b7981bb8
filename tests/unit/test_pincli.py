"""``sipguard pin set|remove|list`` through sipguard.cli.main, with stdin replaced."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from sipguard.cli import main
from sipguard.pin.pins import load_pin_file, verify_pin
from tests.unit.test_settings import BASIC, MINIMAL

PIN = "583920"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """conf/sipguard.yaml in tmp_path; the PIN file defaults to tmp_path/var/pins.yaml."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "policy.yaml").write_text(BASIC)
    path = conf / "sipguard.yaml"
    path.write_text(MINIMAL)
    return path


def pin_command(monkeypatch: pytest.MonkeyPatch, stdin: str, *arguments: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["pin", *arguments])


def test_set_writes_a_hash_and_never_shows_the_pin(
        config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """One line of stdin sets the PIN: a 0600 file under var/ holds its hash only."""
    assert pin_command(monkeypatch, PIN + "\n", "set", "2001", "--config", str(config)) == 0
    assert pin_command(monkeypatch, "719346\n", "set", "2001", "--account", "asterisk-1",
                       "--config", str(config)) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["PIN set for 2001", "PIN set for asterisk-1/2001"]
    assert PIN not in out + err and "719346" not in out + err
    path = config.parent.parent / "var" / "pins.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PIN not in path.read_text()
    pins = load_pin_file(path)
    assert verify_pin(PIN, pins["2001"]) and verify_pin("719346", pins["asterisk-1/2001"])
    # Setting again replaces the hash.
    assert pin_command(monkeypatch, "846201\n", "set", "2001", "--config", str(config)) == 0
    assert verify_pin("846201", load_pin_file(path)["2001"])


@pytest.mark.parametrize(
    ("stdin", "extension", "message"),
    [
        ("111111\n", "2001", "one digit repeated"),
        ("345678\n", "2001", "consecutive digits"),
        ("58392\n", "2001", "at least 6 digits"),
        ("200120\n", "2001", "the extension"),
        ("12ab56\n", "2001", "digits only"),
        ("\n", "2001", "no PIN on standard input"),
        (PIN + "\n", "*", "needs an account"),
    ],
)
def test_set_refuses_trivial_pins(config: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str], stdin: str,
                                  extension: str, message: str) -> None:
    """A trivial or short PIN is refused with the reason, exit 1, and nothing is written."""
    assert pin_command(monkeypatch, stdin, "set", extension, "--config", str(config)) == 1
    out, err = capsys.readouterr()
    assert message in err and out == ""
    assert stdin.strip() == "" or stdin.strip() not in err
    assert not (config.parent.parent / "var" / "pins.yaml").exists()


def test_set_from_a_terminal_asks_twice_without_echo(
        config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """On a terminal the PIN is read with getpass, twice; two different PINs change nothing."""
    answers = iter([PIN, PIN, PIN, "719346"])
    monkeypatch.setattr("sys.stdin", io.StringIO())
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["pin", "set", "2001", "--config", str(config)]) == 0
    assert main(["pin", "set", "2002", "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert out == "PIN set for 2001\n" and "differ" in err
    assert list(load_pin_file(config.parent.parent / "var" / "pins.yaml")) == ["2001"]


def test_remove_and_list(config: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """list prints the keys (never hashes); remove drops one and fails on a missing one."""
    for arguments in (["2001"], ["*", "--account", "asterisk-1"], ["2002"]):
        assert pin_command(monkeypatch, PIN + "\n", "set", *arguments,
                           "--config", str(config)) == 0
    capsys.readouterr()
    assert main(["pin", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["2001", "2002", "asterisk-1/*"] and "scrypt" not in out
    assert main(["pin", "remove", "2002", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "PIN removed for 2002\n"
    assert main(["pin", "remove", "2002", "--config", str(config)]) == 1
    assert "no PIN for 2002" in capsys.readouterr().err
    assert main(["pin", "remove", "*", "--account", "asterisk-1", "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["pin", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "2001\n"


def test_list_without_a_file_and_a_broken_file_is_left_alone(
        config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """No file: nothing listed. A broken file is reported and never overwritten."""
    assert main(["pin", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out == ""
    path = config.parent.parent / "var" / "pins.yaml"
    path.parent.mkdir()
    path.write_text("pins: {'2001': 583920}\n")
    assert pin_command(monkeypatch, "719346\n", "set", "2002", "--config", str(config)) == 1
    assert "pins.yaml:1: pins.2001: is not an scrypt hash" in capsys.readouterr().err
    assert path.read_text() == "pins: {'2001': 583920}\n"


def test_pin_file_comes_from_the_configuration(
        config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pin.file is read relative to the configuration file; min_length is honoured."""
    config.write_text(MINIMAL + "pin:\n  file: secrets/pins.yaml\n  min_length: 8\n")
    assert pin_command(monkeypatch, PIN + "\n", "set", "2001", "--config", str(config)) == 1
    assert pin_command(monkeypatch, "58392017\n", "set", "2001", "--config", str(config)) == 0
    assert list(load_pin_file(config.parent / "secrets" / "pins.yaml")) == ["2001"]
