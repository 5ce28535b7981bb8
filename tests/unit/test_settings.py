"""Configuration and policy loading: defaults, and errors as file:line: key: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipguard.cli import main
from sipguard.policyfile import load_policy
from sipguard.settings import load_settings, parse_listen
from sipguard.yamlfile import ConfigError

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
listen: ["udp:127.0.0.1:5060"]
peers:
  - name: asterisk-1
    addresses: ["127.0.0.1/32"]
trunks:
  - name: carrier
    uri: "sip:127.0.0.1:5080"
policy: policy.yaml
"""


BASIC = (REPO / "tests" / "policies" / "basic.yaml").read_text()


def _write(tmp_path: Path, config: str, policy: str = BASIC) -> Path:
    (tmp_path / "policy.yaml").write_text(policy)
    path = tmp_path / "sipguard.yaml"
    path.write_text(config)
    return path


def test_minimal_contract_loads_with_defaults(tmp_path: Path):
    """The four required keys are enough; everything else takes its default."""
    settings = load_settings(_write(tmp_path, MINIMAL))
    assert [str(address) for address in settings.listen] == ["udp:127.0.0.1:5060"]
    assert settings.peers[0].name == "asterisk-1" and settings.peers[0].matches("127.0.0.1")
    assert not settings.peers[0].matches("127.0.0.2")
    assert settings.trunks[0].address == ("127.0.0.1", 5080)
    assert settings.policy_path == (tmp_path / "policy.yaml").resolve()
    assert settings.timers.t1 == 0.5 and settings.drain_grace == 30.0


def test_shipped_configuration_is_valid():
    """conf/sipguard.yaml and conf/policy.yaml load, and every peer has its policy account."""
    settings = load_settings(REPO / "conf" / "sipguard.yaml")
    policy = load_policy(settings.policy_path)
    prefixes = {rule.prefix for rule in policy.destinations if rule.action.value == "deny"}
    assert {"+1900", "+1976"} <= prefixes
    assert all(policy.account(peer.name) is not None for peer in settings.peers)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("udp:127.0.0.1:5060", "udp:127.0.0.1:5060"),
        ("udp:[::1]:5062", "udp:[::1]:5062"),
        ("UDP:0.0.0.0:0", "udp:0.0.0.0:0"),
    ],
)
def test_listen_addresses_parse(text: str, expected: str):
    """Listen addresses accept IPv4, bracketed IPv6 and port 0."""
    assert str(parse_listen(text)) == expected


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ('uri: "sip:127.0.0.1:5080"', 'uri: "http://x"', "sipguard.yaml:7: trunks[0].uri: must be a sip: URI"),
        ('"127.0.0.1/32"', '"not-an-ip"', "sipguard.yaml:4: peers[0].addresses[0]: 'not-an-ip' is not an IP"),
        ('"udp:127.0.0.1:5060"', '"tcp:127.0.0.1:5060"', "sipguard.yaml:1: listen[0]: must look like udp:HOST:PORT"),
        ("policy: policy.yaml", "policy: policy.yaml\nsurprise: 1", "sipguard.yaml:9: surprise: unknown setting"),
        ("policy: policy.yaml", "policy: policy.yaml\nsip:\n  t1: -1", "sipguard.yaml:10: sip.t1: must be a number"),
    ],
)
def test_config_errors_name_file_line_and_key(tmp_path: Path, replace: str, by: str, expected: str):
    """Every configuration error says file:line: key.path: message."""
    path = _write(tmp_path, MINIMAL.replace(replace, by))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_yaml_syntax_error_names_the_line(tmp_path: Path):
    """A YAML syntax error is reported with its line, not a traceback."""
    path = _write(tmp_path, MINIMAL + "peers: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems[0].startswith(f"{path}:")


def test_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """`sipguard check` exits 0 on a valid policy and 1 with file:line errors on a bad one."""
    _write(tmp_path, MINIMAL)
    assert main(["check", "--policy", str(tmp_path / "policy.yaml")]) == 0
    assert "valid (version" in capsys.readouterr().out
    (tmp_path / "bad.yaml").write_text(BASIC.replace("region: CA", "region: QQ"))
    assert main(["check", "--policy", str(tmp_path / "bad.yaml")]) == 1
    line = BASIC.splitlines().index("    - {id: allow-ca, region: CA, action: allow}") + 1
    assert f"bad.yaml:{line}: destinations.rules[1].region:" in capsys.readouterr().err


def test_explain_prints_decision_and_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """`sipguard explain` shows the verdict and every rule consulted."""
    _write(tmp_path, MINIMAL)
    assert main(["explain", "--policy", str(tmp_path / "policy.yaml"), "+19005551234"]) == 0
    out = capsys.readouterr().out
    assert "action:   deny (premium rate; rule type:premium_rate)" in out
    assert "nanp-premium-900 -> deny" in out
    assert main(["explain", "--policy", str(tmp_path / "policy.yaml"), "12125551234"]) == 0
    assert "action:   allow" in capsys.readouterr().out
