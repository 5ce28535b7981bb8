"""The cdr and admin sections of sipguard.yaml, and accounts' home_state in the policy file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sipguard.config.sections import AdminSettings
from sipguard.config.settings import Settings, load_settings
from sipguard.policy.loader import load_policy_file
from sipguard.records import CdrSettings
from sipguard.schema.document import ConfigError
from tests.unit.test_settings import MINIMAL  # the four required keys

REPO = Path(__file__).resolve().parents[2]
BASIC = (REPO / "tests" / "policies" / "basic.yaml").read_text()

WITH_TCP = MINIMAL.replace('listen: ["udp:127.0.0.1:5060"]',
                           'listen: ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060", "tcp:[::1]:5070"]')


def _load(tmp_path: Path, extra: str = "", base: str = MINIMAL) -> Settings:
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "policy.yaml").write_text(BASIC)
    path = conf / "sipguard.yaml"
    path.write_text(base + textwrap.dedent(extra))
    return load_settings(path)


def _problems(tmp_path: Path, extra: str, base: str = MINIMAL) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, extra, base)
    return caught.value.problems


def _line(base: str, extra: str, text: str) -> int:
    """The line of the configuration (base + extra) that holds ``text``."""
    lines = (base + textwrap.dedent(extra)).splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


# -- cdr ------------------------------------------------------------------------------------


def test_cdr_defaults_sit_next_to_the_configuration_directory(tmp_path: Path):
    """Without a cdr section records go to SQLite at ../var/cdr.sqlite, spooled in ../var/cdr-spool."""
    cdr = _load(tmp_path).cdr
    assert cdr.enabled is True and cdr.backend == "sqlite"
    assert cdr.path == (tmp_path / "var" / "cdr.sqlite").resolve()
    assert cdr.spool == (tmp_path / "var" / "cdr-spool").resolve()
    assert cdr.dsn == CdrSettings().dsn
    assert (cdr.batch_seconds, cdr.timeout) == (CdrSettings().batch_seconds, CdrSettings().timeout)


def test_cdr_section_is_read(tmp_path: Path):
    """Every cdr key is taken, with paths relative to the configuration file."""
    cdr = _load(tmp_path, """\
        cdr:
          enabled: false
          backend: postgresql
          path: records/calls.sqlite
          dsn: "postgresql://sipguard:secret@127.0.0.1:5432/cdr"
          spool: /tmp/../tmp/sipguard-spool
          batch_seconds: 0
          timeout: 2.5
        """).cdr
    assert cdr == CdrSettings(
        enabled=False, backend="postgresql",
        path=(tmp_path / "conf" / "records" / "calls.sqlite").resolve(),
        dsn="postgresql://sipguard:secret@127.0.0.1:5432/cdr",
        spool=Path("/tmp/sipguard-spool"), batch_seconds=0.0, timeout=2.5)


def test_a_postgres_scheme_dsn_is_accepted(tmp_path: Path):
    """A dsn may say postgres:// as well as postgresql://."""
    cdr = _load(tmp_path, 'cdr:\n  dsn: "postgres://127.0.0.1/cdr"\n').cdr
    assert cdr.dsn == "postgres://127.0.0.1/cdr"


@pytest.mark.parametrize(
    ("extra", "key_line", "expected"),
    [
        ("cdr:\n  backend: mysql\n", "backend:", "cdr.backend: must be one of sqlite, postgresql"),
        ('cdr:\n  dsn: "mysql://127.0.0.1/cdr"\n', "dsn:",
         "cdr.dsn: must be a postgresql:// URL"),
        ("cdr:\n  dsn: 5432\n", "dsn:", "cdr.dsn: must be a postgresql:// URL"),
        ('cdr:\n  path: ""\n', "path:", "cdr.path: must name a file or directory"),
        ("cdr:\n  spool: [a, b]\n", "spool:", "cdr.spool: must name a file or directory"),
        ("cdr:\n  enabled: 1\n", "enabled:", "cdr.enabled: must be true or false"),
        ("cdr:\n  batch_seconds: -1\n", "batch_seconds:", "cdr.batch_seconds: must be a number"),
        ("cdr:\n  timeout: 0\n", "timeout:", "cdr.timeout: must be a number >= 0.1"),
        ("cdr:\n  table: calls\n", "table:", "cdr.table: unknown setting"),
        ("cdr: sqlite\n", "cdr:", "cdr: must be a mapping"),
    ],
)
def test_cdr_errors_name_file_line_and_key(tmp_path: Path, extra: str, key_line: str,
                                           expected: str):
    """Every cdr error says file:line: key.path: message."""
    problems = _problems(tmp_path, extra)
    path = tmp_path / "conf" / "sipguard.yaml"
    line = _line(MINIMAL, extra, key_line)
    assert any(problem.startswith(f"{path}:{line}: {expected}") for problem in problems), problems


# -- admin ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", AdminSettings("127.0.0.1", 8080, False)),  # no section: no admin server
        ("admin:\n", AdminSettings("127.0.0.1", 8080, False)),
        ('admin:\n  listen: "127.0.0.1:0"\n', AdminSettings("127.0.0.1", 0, True)),
        ('admin:\n  listen: "127.0.0.1:9100"\n', AdminSettings("127.0.0.1", 9100, True)),
        ('admin:\n  listen: "[::1]:9000"\n', AdminSettings("::1", 9000, True)),
        ("admin: {}\n", AdminSettings("127.0.0.1", 8080, True)),  # a section: the default address
        ('admin:\n  listen: "127.0.0.1:5060"\n', AdminSettings("127.0.0.1", 5060, True)),  # UDP only
    ],
)
def test_admin_listen_parses(tmp_path: Path, extra: str, expected: AdminSettings):
    """admin.listen takes "HOST:PORT" with an IP address (IPv6 in brackets); no section, no server."""
    assert _load(tmp_path, extra).admin == expected


@pytest.mark.parametrize(
    "listen",
    ["localhost:8080", "127.0.0.1", "127.0.0.1:", ":8080", "127.0.0.1:http", "127.0.0.1:70000",
     "127.0.0.1:-1", "[::1]", "[::1]:", "999.0.0.1:80"],
)
def test_bad_admin_addresses_are_refused(tmp_path: Path, listen: str):
    """An admin.listen that is not an IP address and a port 0-65535 is an error at its line."""
    extra = f'admin:\n  listen: "{listen}"\n'
    problems = _problems(tmp_path, extra)
    path = tmp_path / "conf" / "sipguard.yaml"
    line = _line(MINIMAL, extra, "listen: \"")
    assert f'{path}:{line}: admin.listen: must be "HOST:PORT" with an IP address' in "\n".join(
        problems), problems


@pytest.mark.parametrize(
    "listen",
    ["127.0.0.1:5060", "[::1]:5070",
     "[0:0:0:0:0:0:0:1]:5070"],  # ::1 written out in full is the same address
)
def test_admin_may_not_take_a_tcp_sip_address(tmp_path: Path, listen: str):
    """An admin address that is one of the TCP SIP listen addresses is refused."""
    extra = f'admin:\n  listen: "{listen}"\n'
    problems = _problems(tmp_path, extra, WITH_TCP)
    path = tmp_path / "conf" / "sipguard.yaml"
    line = _line(WITH_TCP, extra, "listen: \"")
    assert f"{path}:{line}: admin.listen: must not be one of the SIP listen addresses" in problems


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:5061", AdminSettings("127.0.0.1", 5061, True)),  # another port
        ("127.0.0.2:5060", AdminSettings("127.0.0.2", 5060, True)),  # another address
        ("127.0.0.1:0", AdminSettings("127.0.0.1", 0, True)),  # any free port never clashes
    ],
)
def test_admin_beside_tcp_sip_addresses(tmp_path: Path, listen: str, expected: AdminSettings):
    """An admin address differing from every TCP SIP address in host or port is accepted."""
    assert _load(tmp_path, f'admin:\n  listen: "{listen}"\n', WITH_TCP).admin == expected


def test_admin_unknown_key_is_an_error(tmp_path: Path):
    """A key admin does not know is named with its line."""
    extra = 'admin:\n  listen: "127.0.0.1:9100"\n  password: x\n'
    problems = _problems(tmp_path, extra)
    line = _line(MINIMAL, extra, "password:")
    assert any(f"sipguard.yaml:{line}: admin.password: unknown setting" in problem
               for problem in problems), problems


# -- accounts[i].home_state -----------------------------------------------------------------


def _policy(tmp_path: Path, account: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text("accounts:\n" + textwrap.indent(textwrap.dedent(account), "  ")
                    + "destinations:\n  default: deny\n")
    return path


@pytest.mark.parametrize(
    ("account", "expected"),
    [
        ("- name: pbx\n  home_region: US\n  home_state: NY\n", "NY"),
        ("- name: pbx\n  home_state: ca\n", "CA"),  # US is the default home; case is folded
        ("- name: pbx\n  home_region: US\n  home_state: DC\n", "DC"),
        ("- name: pbx\n  home_region: US\n  home_state: PR\n", "PR"),  # a territory
        ("- name: pbx\n  home_region: US\n", None),
        ("- name: pbx\n  home_region: GB\n", None),
    ],
)
def test_home_state_is_read(tmp_path: Path, account: str, expected: str | None):
    """A US account's home_state is kept as two capital letters; none given is None."""
    policy = load_policy_file(_policy(tmp_path, account)).policy
    found = policy.account("pbx")
    assert found is not None and found.home_state == expected


@pytest.mark.parametrize(
    "account",
    [
        "- name: pbx\n  home_region: US\n  home_state: XX\n",
        "- name: pbx\n  home_region: US\n  home_state: New York\n",
        "- name: pbx\n  home_region: US\n  home_state: 12\n",
        "- name: pbx\n  home_region: US\n  home_state: ON\n",  # a Canadian province
        "- name: pbx\n  home_region: CA\n  home_state: NY\n",  # not a US account
        "- name: pbx\n  home_region: GB\n  home_state: ON\n",
    ],
)
def test_bad_home_state_is_an_error_at_its_line(tmp_path: Path, account: str):
    """home_state must be a US state's two letters on a US account; the error names file:line."""
    path = _policy(tmp_path, account)
    with pytest.raises(ConfigError) as caught:
        load_policy_file(path)
    line = 1 + next(number for number, text in enumerate(account.splitlines(), 1)
                    if "home_state" in text)
    assert caught.value.problems == [
        f"{path}:{line}: accounts[0].home_state: must be a US state's two letters "
        "(such as NY), for a US account"]


def test_shipped_policy_has_a_home_state():
    """conf/policy.yaml's first account says its home state (for intrastate vs interstate)."""
    policy = load_policy_file(REPO / "conf" / "policy.yaml").policy
    first = policy.account("asterisk-1")
    assert first is not None and first.home_state == "NY"
