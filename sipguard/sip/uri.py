"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966).

A :class:`Uri` is parsed from text once and is immutable. ``user`` keeps
its %-escapes as received so that a forwarded URI is byte-for-byte what
arrived; :attr:`Uri.unescaped_user` gives the decoded form for comparisons
and number handling. Other URI schemes are kept opaque in ``opaque``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from urllib.parse import unquote as percent_decode

from sipguard.sip.errors import RemoteProtocolError
from sipguard.sip.grammar import (
    Parameters,
    format_parameters,
    get_parameter,
    is_scheme,
    parse_parameters,
)

SIP_SCHEMES = frozenset({"sip", "sips"})
SUPPORTED_SCHEMES = frozenset({"sip", "sips", "tel"})

_HOST = re.compile(r"[A-Za-z0-9\-.]+\Z")
_BAD_USER = re.compile(r'[ \t<>@"]')
_IPV6 = re.compile(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\Z")
# RFC 3261 §25.1 headers: hname "=" hvalue joined by '&' (hnv-unreserved, unreserved,
# escaped); the end is matched by the caller's bound.
_HEADERS = re.compile(r"[A-Za-z0-9\-_.!~*'()%\[\]/?:+$&=]*=[A-Za-z0-9\-_.!~*'()%\[\]/?:+$&=]*\Z")


@dataclass(frozen=True, slots=True)
class Uri:
    """A parsed URI. For ``tel`` the number is in ``user`` and ``host`` is empty."""

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    parameters: Parameters = ()
    headers: str = ""
    opaque: str = ""
    _text: str = field(default="", compare=False, repr=False)

    @property
    def unescaped_user(self) -> str | None:
        """The user part with %-escapes decoded (RFC 3261 §19.1.2)."""
        if self.user is None:
            return None
        return percent_decode(self.user) if "%" in self.user else self.user

    @property
    def is_sip(self) -> bool:
        """Whether the scheme is sip or sips."""
        return self.scheme in SIP_SCHEMES

    def parameter(self, name: str) -> str | None:
        """A URI parameter's value (``""`` for a flag), or None."""
        return get_parameter(self.parameters, name)

    @property
    def host_for_socket(self) -> str:
        """The host without IPv6 brackets."""
        if self.host.startswith("[") and self.host.endswith("]"):
            return self.host[1:-1]
        return self.host

    def with_changes(self, **changes: object) -> Uri:
        """A copy with some fields replaced (the cached text is dropped)."""
        return replace(self, _text="", **changes)  # type: ignore[arg-type]

    def __str__(self) -> str:
        if self._text:
            return self._text
        if self.opaque:
            return f"{self.scheme}:{self.opaque}"
        parts = [self.scheme, ":"]
        if self.scheme == "tel":
            parts.append(self.user or "")
        else:
            if self.user is not None:
                parts.append(self.user)
                if self.password is not None:
                    parts.append(":" + self.password)
                parts.append("@")
            parts.append(self.host)
            if self.port is not None:
                parts.append(f":{self.port}")
        parts.append(format_parameters(self.parameters))
        if self.headers:
            parts.append("?" + self.headers)
        return "".join(parts)


def parse_host_port(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` where host may be an IPv6 reference ``[...]``."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise RemoteProtocolError(f"Bad IPv6 reference in {text!r}")
        host = text[: end + 1]
        if _IPV6.match(host[1:-1]) is None or not _is_ipv6_address(host[1:-1]):
            raise RemoteProtocolError(f"Bad IPv6 reference in {text!r}")
        rest = text[end + 1 :]
        if not rest:
            return host.lower(), None
        if not rest.startswith(":"):
            raise RemoteProtocolError(f"Bad host and port {text!r}")
        return host.lower(), _parse_port(rest[1:])
    host, colon, port_text = text.partition(":")
    if _HOST.match(host) is None:
        raise RemoteProtocolError(f"Bad host {host!r}")
    return host.lower(), (_parse_port(port_text) if colon else None)


def _is_ipv6_address(text: str) -> bool:
    """Whether ``text`` is an IPv6 address (RFC 5118's ipv6-bug-abnf-3-colons,
    ``0:0:::ffff:127.0.0.1``, is not)."""
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _parse_port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise RemoteProtocolError(f"Bad port {text!r}")
    port = int(text)
    if port > 65535:
        raise RemoteProtocolError(f"Bad port {text!r}")
    return port


def parse_uri(text: str) -> Uri:
    """Parse a URI; raise :class:`RemoteProtocolError` on malformed SIP/tel URIs."""
    scheme, colon, rest = text.partition(":")
    if not colon or not is_scheme(scheme):
        raise RemoteProtocolError(f"Bad URI {text!r}")
    scheme = scheme.lower()
    if scheme == "tel":
        number, _, parameter_text = rest.partition(";")
        if not number:
            raise RemoteProtocolError(f"Bad tel URI {text!r}")
        return Uri(
            scheme="tel",
            user=number,
            parameters=parse_parameters(parameter_text),
            _text=text,
        )
    if scheme not in SIP_SCHEMES:
        if not rest or any(char in rest for char in " \t<>"):
            raise RemoteProtocolError(f"Bad URI {text!r}")
        return Uri(scheme=scheme, opaque=rest, _text=text)
    # '?' may appear in the user part (RFC 3261 §25.1 user-unreserved), so look
    # for the userinfo's '@' before splitting off the URI headers.
    at = rest.find("@")
    question_mark = rest.find("?")
    if 0 <= question_mark < at and _HEADERS.match(rest, question_mark + 1, at):
        # The '@' belongs to a header value (sip:host?Replaces=id@host, sent unescaped
        # by some agents): there is no userinfo. A user part may hold '?' and '=' too
        # (RFC 4475 §3.1.1.2), but ';' and ',' never appear in URI headers.
        at = -1
    headers = ""
    split_from = at + 1 if at >= 0 else 0
    question_mark = rest.find("?", split_from)
    question = question_mark >= 0
    if question:
        rest, headers = rest[:question_mark], rest[question_mark + 1 :]
    user: str | None = None
    password: str | None = None
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, password_text = userinfo.partition(":")
        password = password_text if colon else None
        if not user or _BAD_USER.search(user) is not None:
            raise RemoteProtocolError(f"Bad user part in {text!r}")
    host_port, _, parameter_text = rest.partition(";")
    host, port = parse_host_port(host_port)
    return Uri(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        parameters=parse_parameters(parameter_text),
        headers=headers if question else "",
        _text=text,
    )
