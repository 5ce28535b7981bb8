"""Configuration and policy loading: defaults, and errors as file:line: key: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipguard.cli import main
from sipguard.config.settings import load_settings, parse_listen
from sipguard.pin.ivr.port import IvrConfig
from sipguard.pin.pins import PinSettings
from sipguard.policy.loader import load_policy
from sipguard.schema.document import ConfigError, parse_marked
from sipguard.sip.transport import Hop

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
    assert settings.trunks[0].address == Hop("127.0.0.1", 5080, "UDP")
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
        ('"udp:127.0.0.1:5060"', '"sctp:127.0.0.1:5060"', "sipguard.yaml:1: listen[0]: must look like udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT"),
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


def test_pin_and_ivr_sections_default(tmp_path: Path):
    """Without pin and ivr sections: the PIN file is ../var/pins.yaml beside the config,
    3 failures lock for 900 s, 6 digits at least; the IVR on loopback with its defaults."""
    settings = load_settings(_write(tmp_path, MINIMAL))
    assert settings.pin.file == (tmp_path.parent / "var" / "pins.yaml").resolve()
    assert (settings.pin.max_failures, settings.pin.lock_seconds, settings.pin.failure_window,
            settings.pin.min_length) == (3, 900.0, 900.0, 6)
    assert settings.ivr == IvrConfig()


def test_pin_and_ivr_sections_load(tmp_path: Path):
    """Every key of both sections is read; prompts and the PIN file are relative to the config."""
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "hello.wav").write_bytes(WAV)
    settings = load_settings(_write(tmp_path, MINIMAL + """\
pin:
  file: pins/pins.yaml
  max_failures: 5
  lock_seconds: 60
  failure_window: 120.5
  min_length: 8
ivr:
  enabled: false
  sip_host: "::1"
  sip_port: 5090
  media_host: 192.0.2.10
  rtp_port: 40000
  digit_timeout: 3
  overall_timeout: 20
  max_digits: 12
  attempts_per_call: 2
  max_sessions: 8
  prompts:
    enter_pin: prompts/hello.wav
"""))
    assert settings.pin == PinSettings((tmp_path / "pins" / "pins.yaml").resolve(), 5, 60.0,
                                       120.5, 8)
    assert settings.ivr == IvrConfig(
        enabled=False, sip_host="::1", sip_port=5090, media_host="192.0.2.10", rtp_port=40000,
        digit_timeout=3.0, overall_timeout=20.0, max_digits=12, attempts_per_call=2,
        max_sessions=8, prompts={"enter_pin": (tmp_path / "prompts" / "hello.wav").resolve()})


WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("pin:\n  min_length: 4", "sipguard.yaml:10: pin.min_length: must be at least 6"),
        ("pin:\n  max_failures: 0", "sipguard.yaml:10: pin.max_failures: must be a whole number >= 1"),
        ("pin:\n  max_failures: 2.5", "sipguard.yaml:10: pin.max_failures: must be a whole number"),
        ("pin:\n  lock_seconds: -1", "sipguard.yaml:10: pin.lock_seconds: must be a number"),
        ("pin:\n  file: ''", "sipguard.yaml:10: pin.file: must name the PIN file"),
        ("pin:\n  pin: 1234", "sipguard.yaml:10: pin.pin: unknown setting"),
        ("pin: [1]", "sipguard.yaml:9: pin: must be a mapping"),
        ("ivr:\n  sip_host: 192.0.2.1", "sipguard.yaml:10: ivr.sip_host: must be a loopback address"),
        ("ivr:\n  sip_host: localhost", "sipguard.yaml:10: ivr.sip_host: 'localhost' is not an IP address"),
        ("ivr:\n  media_host: pbx.example", "sipguard.yaml:10: ivr.media_host: 'pbx.example' is not an IP"),
        ("ivr:\n  sip_port: 70000", "sipguard.yaml:10: ivr.sip_port: must be a whole number from 0 to 65535"),
        ("ivr:\n  enabled: yes please", "sipguard.yaml:10: ivr.enabled: must be true or false"),
        ("ivr:\n  max_digits: 4", "sipguard.yaml:10: ivr.max_digits: must be at least pin.min_length"),
        ("ivr:\n  attempts_per_call: 0", "sipguard.yaml:10: ivr.attempts_per_call: must be a whole number"),
        ("ivr:\n  digit_timeout: 0", "sipguard.yaml:10: ivr.digit_timeout: must be a number >= 0.5"),
        ("ivr:\n  prompt: {}", "sipguard.yaml:10: ivr.prompt: unknown setting"),
        ("ivr:\n  prompts:\n    welcome: a.wav", "sipguard.yaml:11: ivr.prompts.welcome: unknown prompt (known: enter_pin"),
        ("ivr:\n  prompts:\n    refused: missing.wav", "sipguard.yaml:11: ivr.prompts.refused: cannot read"),
        ("ivr:\n  prompts:\n    refused: policy.yaml", "sipguard.yaml:11: ivr.prompts.refused: not a WAV file"),
        ("ivr:\n  prompts: [a.wav]", "sipguard.yaml:10: ivr.prompts: must map prompt names"),
    ],
)
def test_pin_and_ivr_errors_name_file_line_and_key(tmp_path: Path, section: str, expected: str):
    """Errors in the pin and ivr sections read file:line: key.path: message."""
    path = _write(tmp_path, MINIMAL + section + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_edge_section_loads_and_defaults(tmp_path: Path):
    (tmp_path / "apiban.txt").write_text("203.0.113.0/24\n")
    settings = load_settings(_write(tmp_path, MINIMAL + """\
edge:
  rate: 20
  burst: 40
  scanner_agents: [friendly-scanner, my-own-scanner]
  unknown_sources: drop
  maxretry: 3
  findtime: 60
  bantime: 120
  bantime_growth: 3
  blocklist: apiban.txt
service:
  control_socket: run/sipguard.sock
"""))
    edge = settings.edge
    assert (edge.rate, edge.burst, edge.unknown_sources) == (20.0, 40.0, "drop")
    assert edge.scanner_agents == ("friendly-scanner", "my-own-scanner")
    assert (edge.bans.maxretry, edge.bans.findtime, edge.bans.bantime, edge.bans.growth) == (
        3, 60.0, 120.0, 3.0)
    assert edge.blocklist == (tmp_path / "apiban.txt").resolve()
    assert settings.control_socket == (tmp_path / "run" / "sipguard.sock").resolve()
    default = load_settings(_write(tmp_path, MINIMAL))
    assert default.edge.unknown_sources == "reject" and default.edge.blocklist is None
    assert "friendly-scanner" in default.edge.scanner_agents
    assert default.control_socket == (tmp_path.parent / "var" / "sipguard.sock").resolve()


@pytest.mark.parametrize(("extra", "expected"), [
    ("edge:\n  unknown_sources: ignore\n", "edge.unknown_sources: must be one of reject, drop"),
    ("edge:\n  blocklist: missing.txt\n", "edge.blocklist:"),
    ("edge:\n  scanner_agents: friendly\n", "edge.scanner_agents: must be a list"),
    ("edge:\n  maxretry: 0\n", "edge.maxretry:"),
    ("edge:\n  bantme: 5\n", "edge.bantme: unknown setting"),
])
def test_edge_errors_name_the_key(tmp_path: Path, extra: str, expected: str):
    with pytest.raises(ConfigError) as raised:
        load_settings(_write(tmp_path, MINIMAL + extra))
    assert any(expected in problem for problem in raised.value.problems), raised.value.problems


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ('    addresses: ["127.0.0.1/32"]', '    adress: 127.0.0.1\n    addresses: ["127.0.0.1/32"]',
         "sipguard.yaml:4: peers[0].adress: unknown setting (known: name, addresses, auth)"),
        ('    addresses: ["127.0.0.1/32"]',
         '    addresses: ["127.0.0.1/32"]\n    auth: {username: a, pasword: x, password: "0123456789abc"}',
         "sipguard.yaml:5: peers[0].auth.pasword: unknown setting"),
        ('    uri: "sip:127.0.0.1:5080"', '    uri: "sip:127.0.0.1:5080"\n    regster: true',
         "sipguard.yaml:8: trunks[0].regster: unknown setting"),
        ("policy: policy.yaml", "policy: policy.yaml\nsip:\n  t1: fast",
         "sipguard.yaml:10: sip.t1: must be a number >= 0.01"),
        ("policy: policy.yaml", "policy: policy.yaml\nsip:\n  ring_timout: 30",
         "sipguard.yaml:10: sip.ring_timout: unknown setting"),
        ("policy: policy.yaml", "policy: policy.yaml\nservice:\n  drain: 3",
         "sipguard.yaml:10: service.drain: unknown setting"),
        ("policy: policy.yaml", "policy: policy.yaml\nlogging:\n  colour: red",
         "sipguard.yaml:10: logging.colour: unknown setting"),
        ("policy: policy.yaml", "policy: policy.yaml\nstore:\n  backend: redis\n  ulr: redis://x",
         "sipguard.yaml:11: store.ulr: unknown setting"),
    ],
)  # fmt: skip
def test_unknown_or_mistyped_keys_at_any_depth(tmp_path: Path, replace: str, by: str,
                                               expected: str) -> None:
    """Issue 22: an unknown key below the top level is an error, with its line and path."""
    assert replace in MINIMAL
    path = _write(tmp_path, MINIMAL.replace(replace, by))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_a_duplicate_key_is_an_error_at_its_second_line(tmp_path: Path) -> None:
    """YAML keeps the last of two equal keys silently; a typo's twin must not win unseen."""
    path = _write(tmp_path, MINIMAL + "sip:\n  t1: 0.5\n  t1: 5\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems == [
        f"{path}:11: (syntax): duplicate key 't1' (first on line 10)"]


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing yet\n", "---\n"])
def test_an_empty_file_says_empty(tmp_path: Path, text: str) -> None:
    """An empty policy (or configuration) says so, at line 1 (not line 0)."""
    _write(tmp_path, MINIMAL, policy=text)
    with pytest.raises(ConfigError) as caught:
        load_policy(tmp_path / "policy.yaml")
    assert caught.value.problems == [
        f"{tmp_path / 'policy.yaml'}:1: (file): empty (nothing but blanks and comments)"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # An unclosed flow sequence: the line it opens on, and where the parser gave up.
        ("accounts:\n  - name: a\n    may_dial: [domestic\ndestinations:\n  default: deny\n",
         ":3: (syntax): while parsing a flow sequence: expected ',' or ']', but got ':' (line 4)"),
        # An unclosed quote: the line the quote opens on.
        ('accounts:\n  - name: "a\n    may_dial: []\n',
         ":2: (syntax): while scanning a quoted scalar: found unexpected end of stream (line 4)"),
        ("accounts: 1\n  bad: 2\n", ":2: (syntax): mapping values are not allowed here"),
    ],
)  # fmt: skip
def test_a_yaml_syntax_error_points_at_the_line_of_the_problem(tmp_path: Path, text: str,
                                                              expected: str) -> None:
    _write(tmp_path, MINIMAL, policy=text)
    with pytest.raises(ConfigError) as caught:
        load_policy(tmp_path / "policy.yaml")
    assert caught.value.problems == [f"{tmp_path / 'policy.yaml'}{expected}"]


def test_a_rule_without_an_action_says_required(tmp_path: Path) -> None:
    policy = BASIC.replace("    - {id: allow-ca, region: CA, action: allow}",
                           "    - {id: allow-ca, region: CA}")
    assert policy != BASIC
    _write(tmp_path, MINIMAL, policy=policy)
    with pytest.raises(ConfigError) as caught:
        load_policy(tmp_path / "policy.yaml")
    line = BASIC.splitlines().index("    - {id: allow-ca, region: CA, action: allow}") + 1
    assert caught.value.problems == [
        f"{tmp_path / 'policy.yaml'}:{line}: destinations.rules[1].action: "
        "required (one of allow, pin, deny)"]


def test_check_validates_the_configuration_too(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 22: `check --config` runs the configuration through the code `run` uses, so
    `sip.t1: fast` fails check (rc 1) with file:line: path: message, as it fails run."""
    path = _write(tmp_path, MINIMAL)
    assert main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: valid" in out and f"{tmp_path / 'policy.yaml'}: valid" in out
    path.write_text(MINIMAL + "sip:\n  t1: fast\n")
    assert main(["check", "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert f"{path}:10: sip.t1: must be a number >= 0.01" in captured.err
    assert "policy.yaml: valid" in captured.out  # the policy is still checked and reported


def test_the_production_example_loads_and_every_path_is_absolute() -> None:
    """Issue 22 item 7: conf/etc/sipguard/sipguard.yaml is valid, and records, spool,
    journal, control socket, PIN file and policy are absolute paths."""
    path = REPO / "conf" / "etc" / "sipguard" / "sipguard.yaml"
    settings = load_settings(path)
    raw = parse_marked(path.read_text())
    written = [raw["policy"], raw["cdr"]["path"], raw["cdr"]["spool"], raw["pin"]["file"],
               raw["alerts"]["journal"], raw["service"]["control_socket"]]
    assert all(Path(value).is_absolute() for value in written), written
    assert settings.policy_path == Path("/var/lib/sipguard/policy.yaml")
    assert settings.control_socket == Path("/run/sipguard/sipguard.sock")
    assert settings.pin.file == Path("/var/lib/sipguard/pins.yaml")


def test_ha1_instead_of_a_password(tmp_path: Path) -> None:
    """Issue 22 item 5: `ha1: {REALM: HEX}` (32 hex digits MD5, 64 SHA-256) instead of
    the password; a peer's must cover sip.realm."""
    from sipguard.sip.digest import ha1_for

    md5 = ha1_for("pbx", "sipguard", "correct horse battery", "MD5")
    sha = ha1_for("acme", "carrier", "s3cret", "SHA-256")
    config = MINIMAL.replace(
        '    addresses: ["127.0.0.1/32"]',
        f'    addresses: ["127.0.0.1/32"]\n    auth: {{username: pbx, ha1: {{sipguard: "{md5}"}}}}',
    ).replace('    uri: "sip:127.0.0.1:5080"',
              f'    uri: "sip:127.0.0.1:5080"\n    auth: {{username: acme, ha1: {{carrier: ["{sha}"]}}}}')
    settings = load_settings(_write(tmp_path, config))
    peer_auth, trunk_auth = settings.peers[0].auth, settings.trunks[0].auth
    assert peer_auth is not None and peer_auth.password is None
    assert peer_auth.ha1_for("sipguard", "MD5") == md5 and not peer_auth.supports("sipguard", "SHA-256")
    assert trunk_auth is not None and trunk_auth.secret("carrier", "SHA-256") == {"ha1": sha}
    assert settings.secrets == ("peers[0].auth.ha1", "trunks[0].auth.ha1")


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ('{username: pbx, ha1: {sipguard: "abc"}}',
         "peers[0].auth.ha1.sipguard: must be 32 hex digits (MD5) or 64 (SHA-256)"),
        ('{username: pbx, ha1: {other: "' + "a" * 32 + '"}}',
         "peers[0].auth.ha1: has no hash for realm 'sipguard' (sip.realm) in SHA-256 or MD5"),
        ('{username: pbx, password: "correct horse battery", ha1: {sipguard: "' + "a" * 32 + '"}}',
         "peers[0].auth: give either a password or ha1 (the hashes by realm), not both"),
        ("{username: pbx}", "peers[0].auth: give either a password or ha1"),
        ('{username: pbx, password: "short"}', "peers[0].auth.password: must be at least 12"),
    ],
)  # fmt: skip
def test_bad_credentials_name_the_key(tmp_path: Path, auth: str, expected: str) -> None:
    config = MINIMAL.replace('    addresses: ["127.0.0.1/32"]',
                             f'    addresses: ["127.0.0.1/32"]\n    auth: {auth}')
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, config))
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_a_configuration_with_secrets_others_can_read_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 22 item 5: passwords in sipguard.yaml and mode 0644: run refuses to start and
    check says why (as the PIN file's rule); 0600 is accepted; no secrets, no rule."""
    config = MINIMAL.replace('    addresses: ["127.0.0.1/32"]',
                             '    addresses: ["127.0.0.1/32"]\n'
                             '    auth: {username: pbx, password: "correct horse battery"}')
    path = _write(tmp_path, config)
    path.chmod(0o644)
    assert main(["run", "--config", str(path)]) == 1
    message = f"{path}:1: (file): holds secrets (peers[0].auth.password) and is readable by " \
              "group or others (mode 0644): chmod 600 it"
    assert message in capsys.readouterr().err
    assert main(["check", "--config", str(path)]) == 1
    assert message in capsys.readouterr().err
    path.chmod(0o600)
    assert main(["check", "--config", str(path)]) == 0
    path.write_text(MINIMAL)
    path.chmod(0o644)
    assert main(["check", "--config", str(path)]) == 0  # nothing secret in it


def test_the_pin_pepper_file(tmp_path: Path) -> None:
    """pin.pepper_file: read at start; short, unreadable or world-readable is an error."""
    pepper = tmp_path / "pin-pepper"
    pepper.write_bytes(b"k" * 32)
    pepper.chmod(0o640)
    config = MINIMAL + "pin:\n  pepper_file: pin-pepper\n"
    assert load_settings(_write(tmp_path, config)).pin.pepper == b"k" * 32
    for content, mode, expected in [
        (b"short", 0o600, "holds 5 bytes; at least 16"),
        (b"k" * 32, 0o644, "is readable by others (mode 0644)"),
    ]:
        pepper.write_bytes(content)
        pepper.chmod(mode)
        with pytest.raises(ConfigError) as caught:
            load_settings(_write(tmp_path, config))
        assert any(f"sipguard.yaml:10: pin.pepper_file: {pepper}" in problem and expected in problem
                   for problem in caught.value.problems), caught.value.problems
    pepper.unlink()
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, config))
    assert "cannot read" in caught.value.problems[0]


def test_a_merged_key_may_be_overridden_and_indentation_errors_point_at_their_line(
        tmp_path: Path) -> None:
    """`<<: *base` then a key of its own is an override, not a duplicate; a syntax error
    that is no unclosed bracket or quote is reported where the parser found it."""
    config = MINIMAL.replace("policy: policy.yaml",
                             "policy: &policy policy.yaml") + "sip: {<<: {t1: 0.5, t2: 4.0}, t2: 8.0}\n"
    settings = load_settings(_write(tmp_path, config))
    assert (settings.timers.t1, settings.timers.t2) == (0.5, 8.0)
    bad = "accounts:\n  - name: a\n    home_region: US\n    may_dial: [domestic]\n   time_zone: UTC\n"
    _write(tmp_path, MINIMAL, policy=bad)
    with pytest.raises(ConfigError) as caught:
        load_policy(tmp_path / "policy.yaml")
    assert caught.value.problems[0].startswith(f"{tmp_path / 'policy.yaml'}:5: (syntax):")


@pytest.mark.parametrize(
    ("extra", "secret"),
    [
        ("cdr: {backend: postgresql, dsn: 'postgresql://sipguard:s3cret@127.0.0.1/cdr'}",
         "cdr.dsn"),
        ("store: {backend: redis, url: 'redis://:s3cret@127.0.0.1:6379/0'}", "store.url"),
        ("alerts:\n  webhooks:\n    noc: {url: 'http://127.0.0.1:9/', "
         "headers: {Authorization: 'Bearer x'}}", "alerts.webhooks.noc.headers"),
    ],
)
def test_secrets_in_urls_and_headers_count(tmp_path: Path, extra: str, secret: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, MINIMAL + extra + "\n")
    path.chmod(0o644)
    settings = load_settings(path)
    assert secret in settings.secrets
    assert main(["check", "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert f"holds secrets ({secret})" in captured.err
    assert f"{path}: valid" not in captured.out  # refused, so not called valid
    no_password = MINIMAL + "store: {backend: redis, url: 'redis://127.0.0.1:6379/0'}\n"
    assert load_settings(_write(tmp_path, no_password)).secrets == ()


def test_the_pepper_cannot_be_the_pin_file(tmp_path: Path) -> None:
    (tmp_path / "pins.yaml").write_bytes(b"k" * 32)
    (tmp_path / "pins.yaml").chmod(0o600)
    config = MINIMAL + "pin:\n  file: pins.yaml\n  pepper_file: pins.yaml\n"
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, config))
    assert any("must be another file than pin.file" in problem
               for problem in caught.value.problems)
