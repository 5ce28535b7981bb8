"""The service configuration (conf/sipguard.yaml), validated once into frozen objects.

Only ``listen``, ``peers``, ``trunks`` and ``policy`` are needed; every
other key has a default. Every error names the file, the line and the key
path. Loading the policy file lives here too, so that the policy package
stays free of YAML.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sipguard.alerts import AlertSettings, load_alert_settings
from sipguard.b2bua import Peer, Trunk
from sipguard.config.peers import load_peers, load_trunks, secret_keys
from sipguard.config.sections import (
    AdminSettings,
    check_trunk_transports,
    load_admin,
    load_cdr,
    load_streams,
    load_tls,
)
from sipguard.edge import SCANNER_AGENTS, BanSettings
from sipguard.pin import MIN_PIN_LENGTH, PROMPT_NAMES, IvrConfig, PinSettings
from sipguard.records import CdrSettings
from sipguard.schema import ConfigError, Problems, line_of, load_marked
from sipguard.schema import choice as _choice
from sipguard.schema import integer as _integer
from sipguard.schema import number as _number
from sipguard.schema import section_of as _section
from sipguard.schema import unknown_keys as _unknown_keys
from sipguard.sip import (
    DEFAULT_MAX_MESSAGE_SIZE,
    TimerSettings,
)
from sipguard.transports import StreamSettings, TlsSettings

DEFAULT_CONFIG_PATHS = (Path("conf/sipguard.yaml"), Path("/etc/sipguard/sipguard.yaml"))
DEFAULT_PIN_FILE = "../var/pins.yaml"  # relative to the configuration file
DEFAULT_CONTROL_SOCKET = "../var/sipguard.sock"  # the CLI reaches the running service here
EDGE_KEYS = ("rate", "burst", "max_sources", "scanner_agents", "unknown_sources", "findtime",
             "maxretry", "bantime", "bantime_growth", "max_bantime", "blocklist",
             "sync_seconds")
SIP_KEYS = ("t1", "t2", "t4", "timer_d", "max_message_size", "user_agent", "realm",
            "register_expires", "auth_algorithms", "extension_header", "ring_timeout",
            "max_call_duration")
SERVICE_KEYS = ("receive_queue", "drain_grace", "policy_poll", "event_loop", "control_socket")
LOGGING_KEYS = ("level", "format")
STORE_KEYS = ("backend", "url", "timeout")
PIN_KEYS = ("file", "max_failures", "lock_seconds", "failure_window", "min_length",
            "pepper_file")
IVR_KEYS = ("enabled", "sip_host", "sip_port", "media_host", "rtp_port", "digit_timeout",
            "overall_timeout", "max_digits", "attempts_per_call", "max_sessions", "answer_after",
            "workers", "prompts")


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One address to receive SIP on (``transport`` is udp, tcp or tls)."""

    transport: str
    host: str
    port: int

    @property
    def sip_transport(self) -> str:
        """The transport as SIP writes it in a Via (UDP, TCP, TLS)."""
        return self.transport.upper()

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """What is dropped before parsing, and how failures turn into bans (``edge``)."""

    rate: float = 50.0  # requests a second from one source (peers and trunks: no limit)
    burst: float = 100.0
    max_sources: int = 100_000  # sources tracked at once (a flood cannot grow the table)
    scanner_agents: tuple[str, ...] = SCANNER_AGENTS
    unknown_sources: str = "reject"  # reject (403) or drop (no answer at all)
    bans: BanSettings = field(default_factory=BanSettings)
    blocklist: Path | None = None  # IPs/CIDRs, one a line (APIBAN's ipset format)
    sync_seconds: float = 2.0  # how often each node takes the store's bans


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service needs, validated."""

    path: Path
    listen: tuple[ListenAddress, ...]
    peers: tuple[Peer, ...]
    trunks: tuple[Trunk, ...]
    policy_path: Path
    timers: TimerSettings = field(default_factory=TimerSettings)
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    user_agent: str = "sipguard"
    realm: str = "sipguard"  # the digest realm peers with credentials authenticate in
    register_expires: int = 3600  # seconds asked for when registering with a carrier
    auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    extension_header: str = "X-Sipguard-Extension"
    ring_timeout: float = 180.0
    max_call_duration: float = 14400.0
    receive_queue: int = 8192
    drain_grace: float = 30.0
    policy_poll: float = 2.0
    store_backend: str = "memory"
    store_url: str = "redis://127.0.0.1:6379/0"
    store_timeout: float = 0.05
    event_loop: str = "auto"
    log_level: str = "info"
    log_format: str = "auto"
    pin: PinSettings = field(default_factory=lambda: PinSettings(Path("var/pins.yaml")))
    ivr: IvrConfig = field(default_factory=IvrConfig)
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    control_socket: Path = Path("var/sipguard.sock")
    secrets: tuple[str, ...] = ()  # paths of the passwords, hashes and tokens in the file
    streams: StreamSettings = field(default_factory=StreamSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    cdr: CdrSettings = field(default_factory=CdrSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)


def find_config(explicit: str | None) -> Path:
    """The configuration file to use: the one given, else the first default that exists."""
    if explicit:
        return Path(explicit)
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.exists():
            return candidate
    return DEFAULT_CONFIG_PATHS[0]


def settings_or_report(explicit: str | None) -> Settings | None:
    """The configuration a command names (``--config``, else the default), or None after
    printing its problems on stderr (``file:line: key.path: message``)."""
    try:
        return load_settings(find_config(explicit))
    except ConfigError as error:
        error.report()
        return None


def parse_listen(text: str) -> ListenAddress:
    """Parse ``udp:HOST:PORT``, ``tcp:…`` or ``tls:…`` (``udp:[::1]:5060`` for IPv6)."""
    transport, colon, rest = text.partition(":")
    transport = transport.lower()
    if not colon or transport not in ("udp", "tcp", "tls"):
        raise ValueError("must look like udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT")
    if rest.startswith("["):
        host, bracket, port_text = rest[1:].partition("]")
        if not bracket or not port_text.startswith(":"):
            raise ValueError(f"IPv6 addresses are written {transport}:[::1]:5060")
        port_text = port_text[1:]
    else:
        host, _, port_text = rest.rpartition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{port_text!r} is not a port number")
    return ListenAddress(transport, host, int(port_text))


def load_settings(path: Path) -> Settings:
    """Read and validate the configuration file."""
    data = load_marked(path)
    problems = Problems(path)
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: (top): must be a mapping of settings"])
    known = {"listen", "peers", "trunks", "policy", "sip", "service", "logging", "store", "pin",
             "ivr", "edge", "transport", "tls", "cdr", "admin", "alerts"}
    for key in data:
        if key not in known:
            known_list = ", ".join(sorted(known))
            problems.add(line_of(data, key), key, f"unknown setting (known: {known_list})")

    listen: list[ListenAddress] = []
    raw_listen = data.get("listen")
    if not isinstance(raw_listen, list) or not raw_listen:
        problems.add(line_of(data, "listen"), "listen",
                     'must be a list such as ["udp:127.0.0.1:5060"]')
    else:
        for index, item in enumerate(raw_listen):
            try:
                listen.append(parse_listen(str(item)))
            except ValueError as error:
                problems.add(line_of(raw_listen, index), f"listen[{index}]", str(error))

    if listen and all(address.transport != "udp" for address in listen):
        problems.add(line_of(data, "listen"), "listen",
                     "needs a udp address too (the IVR and OPTIONS pings speak UDP)")
    peers = load_peers(data, problems)
    trunks = load_trunks(data, problems)
    tls = load_tls(data, path, listen, problems)
    check_trunk_transports(data, listen, trunks, problems)

    policy_value = data.get("policy")
    if not isinstance(policy_value, str) or not policy_value:
        problems.add(line_of(data, "policy"), "policy", "must name the policy file")
        policy_path = path.parent / "policy.yaml"
    else:
        policy_path = (path.parent / policy_value).resolve()

    sip = _section(data, "sip", problems)
    service = _section(data, "service", problems)
    logging = _section(data, "logging", problems)
    store = _section(data, "store", problems)
    for name, section, keys in (("sip", sip, SIP_KEYS), ("service", service, SERVICE_KEYS),
                                ("logging", logging, LOGGING_KEYS), ("store", store, STORE_KEYS)):
        _unknown_keys(section, name, keys, problems)
    timers = TimerSettings(
        t1=_number(sip, "t1", 0.5, problems, "sip", minimum=0.01),
        t2=_number(sip, "t2", 4.0, problems, "sip", minimum=0.01),
        t4=_number(sip, "t4", 5.0, problems, "sip", minimum=0.0),
        timer_d=_number(sip, "timer_d", 32.0, problems, "sip", minimum=0.0),
    )
    pin = _load_pin(data, path, problems)
    settings = Settings(
        path=path,
        listen=tuple(listen),
        peers=tuple(peers),
        trunks=tuple(trunks),
        policy_path=policy_path,
        timers=timers,
        max_message_size=int(_number(sip, "max_message_size", DEFAULT_MAX_MESSAGE_SIZE,
                                     problems, "sip", minimum=1024)),
        user_agent=str(sip.get("user_agent", "sipguard")),
        realm=str(sip.get("realm", "sipguard")),
        register_expires=_integer(sip, "register_expires", 3600, problems, "sip", minimum=60),
        auth_algorithms=_algorithms(sip, problems),
        extension_header=str(sip.get("extension_header", "X-Sipguard-Extension")),
        ring_timeout=_number(sip, "ring_timeout", 180.0, problems, "sip", minimum=1.0),
        max_call_duration=_number(sip, "max_call_duration", 14400.0, problems, "sip",
                                  minimum=1.0),
        receive_queue=int(_number(service, "receive_queue", 8192, problems, "service",
                                  minimum=16)),
        drain_grace=_number(service, "drain_grace", 30.0, problems, "service", minimum=0.0),
        policy_poll=_number(service, "policy_poll", 2.0, problems, "service", minimum=0.1),
        event_loop=_choice(service, "event_loop", "auto", ("auto", "asyncio", "uvloop"),
                           problems, "service"),
        store_backend=_choice(store, "backend", "memory", ("memory", "redis"), problems,
                              "store"),
        store_url=str(store.get("url", "redis://127.0.0.1:6379/0")),
        store_timeout=_number(store, "timeout", 0.05, problems, "store", minimum=0.001),
        log_level=_choice(logging, "level", "info", ("debug", "info", "warning", "error"),
                          problems, "logging"),
        log_format=_choice(logging, "format", "auto", ("auto", "json", "console"),
                           problems, "logging"),
        pin=pin,
        ivr=_load_ivr(data, path, pin, listen, problems),
        edge=_load_edge(data, path, problems),
        control_socket=(path.parent / str(service.get("control_socket",
                                                      DEFAULT_CONTROL_SOCKET))).resolve(),
        streams=load_streams(data, problems),
        tls=tls,
        cdr=load_cdr(data, path, problems),
        admin=load_admin(data, listen, path, problems),
        alerts=load_alert_settings(data, problems, path),
        secrets=secret_keys(data),
    )
    for index, peer in enumerate(peers):
        if peer.auth is not None and not any(peer.auth.supports(settings.realm, algorithm)
                                             for algorithm in settings.auth_algorithms):
            problems.add(line_of(data["peers"], index), f"peers[{index}].auth.ha1",
                         f"has no hash for realm {settings.realm!r} (sip.realm) in "
                         f"{' or '.join(settings.auth_algorithms)}")
    problems.raise_if_any()
    return settings


def exposed_secrets(settings: Settings) -> str | None:
    """Why the service must not start with this file, or None: it holds secrets and
    others than its owner may read it (the PIN file's rule, for the passwords)."""
    if not settings.secrets:
        return None
    try:
        mode = settings.path.stat().st_mode & 0o777
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (f"{settings.path}:1: (file): holds secrets ({', '.join(settings.secrets)}) and is "
            f"readable by group or others (mode {mode:04o}): chmod 600 it, owned by the "
            "service's user")








def _load_pin(data: dict[str, Any], path: Path, problems: Problems) -> PinSettings:
    """The ``pin`` section: where the PIN hashes are, and the lockout."""
    section = _section(data, "pin", problems)
    _unknown_keys(section, "pin", PIN_KEYS, problems)
    file_value = section.get("file", DEFAULT_PIN_FILE)
    if not isinstance(file_value, str) or not file_value:
        problems.add(line_of(section, "file"), "pin.file", "must name the PIN file")
        file_value = DEFAULT_PIN_FILE
    min_length = section.get("min_length", MIN_PIN_LENGTH)
    if isinstance(min_length, int) and not isinstance(min_length, bool) \
            and min_length < MIN_PIN_LENGTH:
        problems.add(line_of(section, "min_length"), "pin.min_length",
                     f"must be at least {MIN_PIN_LENGTH}: shorter PINs are guessed too easily")
        min_length = MIN_PIN_LENGTH
    else:
        min_length = _integer(section, "min_length", MIN_PIN_LENGTH, problems, "pin",
                              minimum=MIN_PIN_LENGTH, maximum=32)
    pin_file = (path.parent / file_value).resolve()
    return PinSettings(
        file=pin_file,
        pepper=_pepper(section, path, pin_file, problems),
        max_failures=_integer(section, "max_failures", 3, problems, "pin", minimum=1),
        lock_seconds=_number(section, "lock_seconds", 900.0, problems, "pin", minimum=1.0),
        failure_window=_number(section, "failure_window", 900.0, problems, "pin", minimum=1.0),
        min_length=min_length,
    )


MIN_PEPPER_BYTES = 16


def _pepper(section: dict[str, Any], path: Path, pin_file: Path,
            problems: Problems) -> bytes | None:
    """``pin.pepper_file``: a secret outside the PIN file (``head -c 32 /dev/urandom``) that
    every PIN hash is keyed with, so that the PIN file alone cannot be brute-forced."""
    value = section.get("pepper_file")
    if value is None:
        return None
    where = line_of(section, "pepper_file")
    if not isinstance(value, str) or not value:
        problems.add(where, "pin.pepper_file", "must name the pepper file")
        return None
    pepper_path = (path.parent / value).resolve()
    if pepper_path == pin_file:
        problems.add(where, "pin.pepper_file", "must be another file than pin.file: the "
                     "pepper is what a copy of the PIN file alone does not have")
        return None
    try:
        pepper = pepper_path.read_bytes()
        mode = pepper_path.stat().st_mode & 0o777
    except OSError as error:
        problems.add(where, "pin.pepper_file", f"cannot read {pepper_path}: "
                     f"{error.strerror or error}")
        return None
    if len(pepper) < MIN_PEPPER_BYTES:
        problems.add(where, "pin.pepper_file", f"{pepper_path} holds {len(pepper)} bytes; at "
                     f"least {MIN_PEPPER_BYTES} (head -c 32 /dev/urandom > {pepper_path})")
        return None
    if mode & 0o007:
        problems.add(where, "pin.pepper_file", f"{pepper_path} is readable by others (mode "
                     f"{mode:04o}): chmod 600 (or 640, group sipguard)")
        return None
    return pepper


def _ip_literal(section: dict[str, Any], key: str, default: str, problems: Problems,
                loopback: bool) -> str:
    value = section.get(key, default)
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError:
        problems.add(line_of(section, key), f"ivr.{key}", f"{value!r} is not an IP address")
        return default
    if loopback and not address.is_loopback:
        problems.add(line_of(section, key), f"ivr.{key}",
                     "must be a loopback address (127.0.0.1 or ::1): the IVR takes calls "
                     "from sipguard only")
        return default
    return str(address)


def _load_ivr(data: dict[str, Any], path: Path, pin: PinSettings, listen: list[ListenAddress],
              problems: Problems) -> IvrConfig:
    """The ``ivr`` section: the PIN IVR's addresses, timeouts, limits and prompts."""
    section = _section(data, "ivr", problems)
    _unknown_keys(section, "ivr", IVR_KEYS, problems)
    defaults = IvrConfig()
    # The PBX sends its RTP to the IVR: by default to the address it sends SIP to.
    media_default = next((address.host for address in listen
                          if not ipaddress.ip_address(address.host).is_unspecified),
                         defaults.media_host)
    enabled = section.get("enabled", defaults.enabled)
    if not isinstance(enabled, bool):
        problems.add(line_of(section, "enabled"), "ivr.enabled", "must be true or false")
        enabled = defaults.enabled
    max_digits = _integer(section, "max_digits", defaults.max_digits, problems, "ivr",
                          minimum=1, maximum=64)
    if max_digits < pin.min_length:
        problems.add(line_of(section, "max_digits"), "ivr.max_digits",
                     f"must be at least pin.min_length ({pin.min_length}), or no PIN fits")
    return IvrConfig(
        enabled=enabled,
        sip_host=_ip_literal(section, "sip_host", defaults.sip_host, problems, loopback=True),
        sip_port=_integer(section, "sip_port", defaults.sip_port, problems, "ivr", 0, 65535),
        media_host=_ip_literal(section, "media_host", media_default, problems,
                               loopback=False),
        rtp_port=_integer(section, "rtp_port", defaults.rtp_port, problems, "ivr", 0, 65535),
        digit_timeout=_number(section, "digit_timeout", defaults.digit_timeout, problems,
                              "ivr", minimum=0.5),
        overall_timeout=_number(section, "overall_timeout", defaults.overall_timeout,
                                problems, "ivr", minimum=1.0),
        max_digits=max_digits,
        attempts_per_call=_integer(section, "attempts_per_call", defaults.attempts_per_call,
                                   problems, "ivr", minimum=1, maximum=10),
        max_sessions=_integer(section, "max_sessions", defaults.max_sessions, problems, "ivr",
                              minimum=1),
        answer_after=_number(section, "answer_after", defaults.answer_after, problems, "ivr",
                             minimum=0.0),
        workers=_integer(section, "workers", defaults.workers, problems, "ivr", minimum=1,
                         maximum=64),
        prompts=_load_prompts(section, path, problems),
    )


def _load_prompts(section: dict[str, Any], path: Path, problems: Problems) -> dict[str, Path]:
    """``ivr.prompts``: prompt name -> WAV file (relative to the configuration file)."""
    raw = section.get("prompts")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.add(line_of(section, "prompts"), "ivr.prompts",
                     f"must map prompt names ({', '.join(PROMPT_NAMES)}) to WAV files")
        return {}
    prompts: dict[str, Path] = {}
    for name, value in raw.items():
        where = f"ivr.prompts.{name}"
        if name not in PROMPT_NAMES:
            problems.add(line_of(raw, name), where,
                         f"unknown prompt (known: {', '.join(PROMPT_NAMES)})")
            continue
        if not isinstance(value, str) or not value:
            problems.add(line_of(raw, name), where, "must name a WAV file")
            continue
        wav = (path.parent / value).resolve()
        try:
            with wav.open("rb") as handle:
                head = handle.read(12)
        except OSError as error:
            problems.add(line_of(raw, name), where,
                         f"cannot read {wav}: {error.strerror or error}")
            continue
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            problems.add(line_of(raw, name), where, f"not a WAV file: {wav}")
            continue
        prompts[name] = wav
    return prompts


def _load_edge(data: dict[str, Any], path: Path, problems: Problems) -> EdgeSettings:
    """The ``edge`` section: rate limit, scanners, unknown sources, bans, blocklist."""
    section = _section(data, "edge", problems)
    _unknown_keys(section, "edge", EDGE_KEYS, problems)
    defaults, ban_defaults = EdgeSettings(), BanSettings()
    agents = section.get("scanner_agents", list(defaults.scanner_agents))
    if not isinstance(agents, list) or not all(isinstance(agent, str) and agent
                                               for agent in agents):
        problems.add(line_of(section, "scanner_agents"), "edge.scanner_agents",
                     "must be a list of User-Agent substrings")
        agents = list(defaults.scanner_agents)
    blocklist: Path | None = None
    if section.get("blocklist") is not None:
        blocklist = (path.parent / str(section["blocklist"])).resolve()
        if not blocklist.is_file():
            problems.add(line_of(section, "blocklist"), "edge.blocklist",
                         f"{blocklist} is not a readable file")
    bans = BanSettings(
        findtime=_number(section, "findtime", ban_defaults.findtime, problems, "edge",
                         minimum=1.0),
        maxretry=_integer(section, "maxretry", ban_defaults.maxretry, problems, "edge",
                          minimum=1),
        bantime=_number(section, "bantime", ban_defaults.bantime, problems, "edge",
                        minimum=1.0),
        growth=_number(section, "bantime_growth", ban_defaults.growth, problems, "edge",
                       minimum=1.0),
        max_bantime=_number(section, "max_bantime", ban_defaults.max_bantime, problems,
                            "edge", minimum=1.0),
    )
    return EdgeSettings(
        rate=_number(section, "rate", defaults.rate, problems, "edge", minimum=1.0),
        burst=_number(section, "burst", defaults.burst, problems, "edge", minimum=1.0),
        max_sources=_integer(section, "max_sources", defaults.max_sources, problems, "edge",
                             minimum=16),
        scanner_agents=tuple(agents),
        unknown_sources=_choice(section, "unknown_sources", defaults.unknown_sources,
                                ("reject", "drop"), problems, "edge"),
        bans=bans,
        blocklist=blocklist,
        sync_seconds=_number(section, "sync_seconds", defaults.sync_seconds, problems, "edge",
                             minimum=0.1),
    )


def _algorithms(sip: dict[str, Any], problems: Problems) -> tuple[str, ...]:
    """``sip.auth_algorithms``: the digest algorithms offered to peers, best first."""
    value = sip.get("auth_algorithms", ["SHA-256", "MD5"])
    if (not isinstance(value, list) or not value
            or not all(item in ("SHA-256", "MD5") for item in value)):
        problems.add(line_of(sip, "auth_algorithms"), "sip.auth_algorithms",
                     "must list SHA-256 and/or MD5, best first")
        return ("SHA-256", "MD5")
    return tuple(dict.fromkeys(value))









