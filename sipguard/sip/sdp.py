"""The little of SDP (RFC 4566) a B2BUA that never touches media needs.

When sipguard moves a challenged call's media from the IVR to the trunk, it
re-INVITEs the PBX with the trunk's SDP. RFC 3264 §8 wants the o= line of a
new offer in the same session to repeat the previous one with its version
incremented, so the trunk's o= line is replaced by the one the PBX knows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SdpOrigin:
    """The o= line: username, session id, version, and network type, address type, address."""

    username: str
    session_id: str
    version: int
    network: str  # "IN IP4 127.0.0.1"

    def __str__(self) -> str:
        return f"o={self.username} {self.session_id} {self.version} {self.network}"

    def next_version(self) -> SdpOrigin:
        """The same origin with the version incremented."""
        return SdpOrigin(self.username, self.session_id, self.version + 1, self.network)


def origin_of(body: bytes) -> SdpOrigin | None:
    """The o= line of an SDP body, or None when it has none (or a malformed one)."""
    for line in body.splitlines():
        if line.startswith(b"o="):
            parts = line[2:].decode("utf-8", "replace").split()
            if len(parts) != 6 or not parts[2].isdigit():
                return None
            return SdpOrigin(parts[0], parts[1], int(parts[2]), " ".join(parts[3:]))
    return None


def with_origin(body: bytes, origin: SdpOrigin) -> bytes:
    """The body with its o= line replaced (line endings kept)."""
    lines = body.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.startswith(b"o="):
            ending = line[len(line.rstrip(b"\r\n")):] or b"\r\n"
            lines[index] = str(origin).encode() + ending
            break
    return b"".join(lines)


def connection_address(body: bytes) -> tuple[str, int] | None:
    """The first audio stream's address and port (session or media c= line), if any."""
    session_host: str | None = None
    media_host: str | None = None
    port: int | None = None
    for raw in body.splitlines():
        line = raw.decode("utf-8", "replace")
        if line.startswith("c=") and len(line.split()) == 3:
            host = line.split()[2].split("/")[0]
            if port is None:
                session_host = host
            elif media_host is None:
                media_host = host
        elif line.startswith("m=audio ") and port is None:
            fields = line.split()
            if len(fields) > 1 and fields[1].isdigit():
                port = int(fields[1])
        elif line.startswith("m=") and port is not None:
            break
    chosen = media_host or session_host
    if chosen is None or port is None:
        return None
    return chosen, port
