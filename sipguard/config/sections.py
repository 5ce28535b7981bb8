"""The sections of sipguard.yaml for the transports and the call records: ``transport``,
``tls`` and ``cdr`` (and the check that every trunk's transport has a listener)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sipguard.b2bua import Trunk
from sipguard.records import CdrSettings
from sipguard.schema import Problems, choice, integer, line_of, number, section_of, unknown_keys
from sipguard.sip import UDP
from sipguard.transports import (
    VERSIONS,
    StreamSettings,
    TlsSettings,
    client_context,
    server_context,
)

if TYPE_CHECKING:
    from sipguard.config.settings import ListenAddress

TRANSPORT_KEYS = ("idle_timeout", "max_connections", "max_connections_per_source",
                  "connect_timeout", "handshake_timeout")
TLS_KEYS = ("certificate", "key", "client_ca", "verify_client", "ca", "verify_server",
            "min_version")
ADMIN_KEYS = ("listen", "token", "token_file", "users", "session_hours")
MIN_TOKEN = 24  # characters of an API token
CDR_KEYS = ("enabled", "backend", "path", "dsn", "spool", "batch_seconds", "timeout", "writer")
DEFAULT_CDR_FILE = "../var/cdr.sqlite"  # relative to the configuration file
DEFAULT_CDR_SPOOL = "../var/cdr-spool"


def check_trunk_transports(data: dict[str, Any], listen: list[ListenAddress],
                            trunks: list[Trunk], problems: Problems) -> None:
    """A trunk reached over TCP or TLS needs a listener of that transport: its address
    is the Via and Contact the carrier answers and calls back to."""
    for index, trunk in enumerate(trunks):
        transport = trunk.address.transport
        family_v6 = ":" in trunk.address.host
        if transport == UDP:
            continue
        if not any(address.sip_transport == transport and (":" in address.host) == family_v6
                   for address in listen):
            raw = data.get("trunks")
            line = line_of(raw[index], "uri") if isinstance(raw, list) else 1
            problems.add(line, f"trunks[{index}].uri",
                         f"is reached over {transport}: add a {transport.lower()}: address "
                         f"of the same family to listen")


def load_streams(data: dict[str, Any], problems: Problems) -> StreamSettings:
    """The ``transport`` section: limits on TCP and TLS connections."""
    section = section_of(data, "transport", problems)
    unknown_keys(section, "transport", TRANSPORT_KEYS, problems)
    defaults = StreamSettings()
    return StreamSettings(
        idle_timeout=number(section, "idle_timeout", defaults.idle_timeout, problems,
                             "transport", minimum=1.0),
        max_connections=integer(section, "max_connections", defaults.max_connections,
                                 problems, "transport", minimum=1),
        max_connections_per_source=integer(
            section, "max_connections_per_source", defaults.max_connections_per_source,
            problems, "transport", minimum=1),
        connect_timeout=number(section, "connect_timeout", defaults.connect_timeout,
                                problems, "transport", minimum=0.1),
        handshake_timeout=number(section, "handshake_timeout", defaults.handshake_timeout,
                                  problems, "transport", minimum=0.1),
    )


def load_tls(data: dict[str, Any], path: Path, listen: list[ListenAddress],
              problems: Problems) -> TlsSettings:
    """The ``tls`` section; its files are loaded here so a bad one is named at start."""
    section = section_of(data, "tls", problems)
    unknown_keys(section, "tls", TLS_KEYS, problems)
    files: dict[str, Path | None] = {}
    for key in ("certificate", "key", "client_ca", "ca"):
        value = section.get(key)
        if value is None:
            files[key] = None
            continue
        file = (path.parent / str(value)).resolve()
        if file.is_file():
            files[key] = file
        else:
            problems.add(line_of(section, key), f"tls.{key}", f"{file} is not a readable file")
            files[key] = None
    flags: dict[str, bool] = {}
    for key, default in (("verify_client", False), ("verify_server", True)):
        value = section.get(key, default)
        if not isinstance(value, bool):
            problems.add(line_of(section, key), f"tls.{key}", "must be true or false")
            value = default
        flags[key] = value
    min_version = str(section.get("min_version", "1.2"))
    if min_version not in VERSIONS:
        problems.add(line_of(section, "min_version"), "tls.min_version",
                     "must be 1.2 or 1.3 (older TLS is not offered)")
        min_version = "1.2"
    if flags["verify_client"] and files["client_ca"] is None:
        problems.add(line_of(section, "verify_client"), "tls.verify_client",
                     "needs tls.client_ca: the CA client certificates must be signed by")
    settings = TlsSettings(files["certificate"], files["key"], files["client_ca"],
                           flags["verify_client"], files["ca"], flags["verify_server"],
                           min_version)
    if any(address.transport == "tls" for address in listen) and not problems.messages:
        _try_contexts(section, data, settings, problems)
    return settings


def _try_contexts(section: dict[str, Any], data: dict[str, Any], settings: TlsSettings,
                  problems: Problems) -> None:
    """Build both TLS contexts once, so a bad certificate or key fails the start."""
    where = section if section else data
    key = "certificate" if section else "listen"
    name = "tls.certificate" if section else "listen"
    if settings.certificate is None or settings.key is None:
        problems.add(line_of(where, key), name,
                     "a tls: listen address needs tls.certificate and tls.key")
        return
    try:
        server_context(settings)
        client_context(settings)
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        problems.add(line_of(where, key), name, f"cannot use the certificate or key: {error}")


def load_cdr(data: dict[str, Any], path: Path, problems: Problems) -> CdrSettings:
    """The ``cdr`` section: where call records go (SQLite by default), and the spool."""
    section = section_of(data, "cdr", problems)
    unknown_keys(section, "cdr", CDR_KEYS, problems)
    defaults = CdrSettings()
    enabled = section.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.add(line_of(section, "enabled"), "cdr.enabled", "must be true or false")
        enabled = True
    files: dict[str, Path] = {}
    for key, default in (("path", DEFAULT_CDR_FILE), ("spool", DEFAULT_CDR_SPOOL)):
        value = section.get(key, default)
        if not isinstance(value, str) or not value:
            problems.add(line_of(section, key), f"cdr.{key}", "must name a file or directory")
            value = default
        files[key] = (path.parent / value).resolve()
    dsn = section.get("dsn", defaults.dsn)
    if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://")):
        problems.add(line_of(section, "dsn"), "cdr.dsn",
                     "must be a postgresql:// URL (postgresql://user:password@host:port/db)")
        dsn = defaults.dsn
    return CdrSettings(
        enabled=enabled,
        backend=choice(section, "backend", "sqlite", ("sqlite", "postgresql"), problems,
                        "cdr"),
        path=files["path"], dsn=dsn, spool=files["spool"],
        batch_seconds=number(section, "batch_seconds", defaults.batch_seconds, problems,
                              "cdr", minimum=0.0),
        timeout=number(section, "timeout", defaults.timeout, problems, "cdr", minimum=0.1),
        writer=choice(section, "writer", defaults.writer, ("process", "thread"), problems,
                      "cdr"),
    )


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """The ``admin`` section: where the metrics are served (none when absent)."""

    host: str = "127.0.0.1"
    port: int = 8080
    enabled: bool = False
    token: str | None = None  # Authorization: Bearer TOKEN (scripts, the JSON API)
    users: MappingProxyType[str, str] = field(  # user -> scrypt hash (the dashboard)
        default_factory=lambda: MappingProxyType({}))
    session_hours: float = 12.0

    @property
    def has_credentials(self) -> bool:
        """Whether the dashboard and the API can be opened at all (no defaults)."""
        return self.token is not None or bool(self.users)


def load_admin(data: dict[str, Any], listen: list[ListenAddress], path: Path,
               problems: Problems) -> AdminSettings:
    """``admin.listen: "HOST:PORT"`` (IPv6 as "[::1]:8080"); never a SIP listen address."""
    if data.get("admin") is None:
        return AdminSettings()
    admin = section_of(data, "admin", problems)
    unknown_keys(admin, "admin", ADMIN_KEYS, problems)
    text = str(admin.get("listen", "127.0.0.1:8080"))
    host, _, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError(port_text)
    except ValueError:
        problems.add(line_of(admin, "listen"), "admin.listen",
                     'must be "HOST:PORT" with an IP address, such as "127.0.0.1:8080"')
        return AdminSettings()
    if port and any(address.transport in ("tcp", "tls") and address.port == port
                    and _same_or_any(address.host, host) for address in listen):
        problems.add(line_of(admin, "listen"), "admin.listen",
                     "must not be one of the SIP listen addresses")
    token, users = _admin_credentials(admin, path, problems)
    return AdminSettings(host, port, True, token, users,
                         number(admin, "session_hours", 12.0, problems, "admin", minimum=0.1))


def _admin_credentials(admin: dict[str, Any], path: Path,
                       problems: Problems) -> tuple[str | None, MappingProxyType[str, str]]:
    """``admin.token`` (or ``token_file``) and ``admin.users`` (name: scrypt hash)."""
    token = admin.get("token")
    if admin.get("token_file") is not None:
        try:
            token = (path.parent / str(admin["token_file"])).read_text().strip()
        except OSError as error:
            problems.add(line_of(admin, "token_file"), "admin.token_file",
                         f"cannot read it: {error.strerror or error}")
            token = None
    if token is not None and (not isinstance(token, str) or len(token) < MIN_TOKEN):
        problems.add(line_of(admin, "token_file" if "token_file" in admin else "token"),
                     "admin.token", f"must be at least {MIN_TOKEN} characters "
                     "(make one with: openssl rand -hex 24)")
        token = None
    users: dict[str, str] = {}
    raw = section_of(admin, "users", problems, "admin.users")
    for name, stored in raw.items():
        parts = stored.split("$") if isinstance(stored, str) else []
        if len(parts) != 6 or parts[0] != "scrypt":
            problems.add(line_of(raw, name), f"admin.users.{name}",
                         "must be a password hash made by `sipguard admin-password`")
            continue
        users[str(name)] = stored
    return token, MappingProxyType(users)


def _same_or_any(one: str, other: str) -> bool:
    """Whether two listen hosts would take the same port (equal, or one is "any")."""
    first, second = ipaddress.ip_address(one), ipaddress.ip_address(other)
    return first == second or first.is_unspecified or second.is_unspecified
