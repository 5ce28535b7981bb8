"""TLS for the end-to-end tests: certificates (trustme) and stunnel processes.

Debian's SIPp is built without TLS, so a SIPp that speaks TLS is SIPp over TCP
behind stunnel (Debian's stunnel4): a client-mode tunnel in front of the PBX's
SIPp (it checks sipguard's certificate against the test CA, and shows a client
certificate when given one), and a server-mode tunnel in front of the trunk's
SIPp (it shows the trunk's certificate to sipguard).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import trustme
from harness import stop_process, tail, wait_until_bound

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")


@dataclass(frozen=True)
class Certificates:
    """PEM files for one test: a CA, a server certificate for 127.0.0.1 and ::1, a
    client certificate from the same CA, and a server certificate no one trusts."""

    ca: Path
    server_chain: Path
    server_key: Path
    client_chain: Path
    client_key: Path
    stranger_chain: Path  # signed by a CA nothing here trusts
    stranger_key: Path


def make_certificates(directory: Path) -> Certificates:
    """Write a fresh set of certificates into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="sipguard test CA")
    server = ca.issue_cert("127.0.0.1", "::1", "localhost")
    client = ca.issue_cert("pbx.test", common_name="pbx.test")
    stranger = trustme.CA(organization_name="nobody's CA").issue_cert("127.0.0.1")

    def write(name: str, blobs: list[trustme.Blob]) -> Path:
        path = directory / name
        path.write_bytes(b"".join(blob.bytes() for blob in blobs))
        path.chmod(0o600)
        return path

    return Certificates(
        ca=write("ca.pem", [ca.cert_pem]),
        server_chain=write("server.pem", server.cert_chain_pems),
        server_key=write("server.key", [server.private_key_pem]),
        client_chain=write("client.pem", client.cert_chain_pems),
        client_key=write("client.key", [client.private_key_pem]),
        stranger_chain=write("stranger.pem", stranger.cert_chain_pems),
        stranger_key=write("stranger.key", [stranger.private_key_pem]),
    )


class Stunnel:
    """One stunnel process with one service, in the foreground, stopped by its PID."""

    def __init__(self, directory: Path, name: str, accept: tuple[str, int],
                 connect: tuple[str, int], options: dict[str, str]) -> None:
        assert STUNNEL, "stunnel is missing: ./dev installs Debian's stunnel4"
        self.accept = accept
        self.log_path = directory / f"stunnel-{name}.log"
        config = directory / f"stunnel-{name}.conf"
        lines = ["foreground = yes", "pid =", f"output = {self.log_path}", "debug = 5",
                 f"[{name}]", f"accept = {accept[0]}:{accept[1]}",
                 f"connect = {connect[0]}:{connect[1]}", "sslVersionMin = TLSv1.2",
                 *(f"{key} = {value}" for key, value in options.items())]
        config.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen([STUNNEL, str(config)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until_bound(accept[0], accept[1], self.process, timeout=10.0,
                         kind=socket.SOCK_STREAM)

    def log(self) -> str:
        """The end of stunnel's log, for assertion messages."""
        return tail(self.log_path, 40)

    def stop(self) -> None:
        stop_process(self.process)


def client_tunnel(directory: Path, name: str, accept: tuple[str, int],
                  sipguard: tuple[str, int], certificates: Certificates,
                  client_certificate: bool = False) -> Stunnel:
    """A tunnel for the PBX: plain TCP in at ``accept``, TLS to sipguard, whose
    certificate must be the test CA's for 127.0.0.1."""
    options = {"client": "yes", "CAfile": str(certificates.ca), "verifyChain": "yes",
               "checkIP": sipguard[0]}
    if client_certificate:
        options |= {"cert": str(certificates.client_chain), "key": str(certificates.client_key)}
    return Stunnel(directory, name, accept, sipguard, options)


def server_tunnel(directory: Path, name: str, accept: tuple[str, int],
                  trunk: tuple[str, int], chain: Path, key: Path) -> Stunnel:
    """A tunnel for the trunk: TLS in at ``accept`` (showing ``chain``), plain TCP on."""
    return Stunnel(directory, name, accept, trunk, {"cert": str(chain), "key": str(key)})
