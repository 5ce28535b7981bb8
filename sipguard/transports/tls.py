"""TLS for SIP (RFC 3261 §26.3.1, RFC 5630): the contexts sipguard serves and connects with.

TLS 1.2 is the least accepted (``tls.min_version`` may raise it to 1.3).
The server context carries the certificate chain and key from the config;
with ``tls.client_ca`` it asks every client for a certificate, and with
``tls.verify_client: true`` it refuses a client without one that CA signed.
The client context (for trunks reached over TLS, and for PBXes reached back
over TLS) checks the server's certificate against ``tls.ca`` (else the
system's trust store) and its name, unless ``tls.verify_server`` is false.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The ``tls`` section: certificate, key and the trust anchors in each direction."""

    certificate: Path | None = None  # PEM chain: ours, for listeners (and clients when asked)
    key: Path | None = None
    client_ca: Path | None = None  # PEM: CAs whose client certificates are accepted
    verify_client: bool = False  # refuse TLS clients without a certificate client_ca signed
    ca: Path | None = None  # PEM: CAs trusted for servers we connect to (default: the system's)
    verify_server: bool = True  # check the trunk's certificate and name
    min_version: str = "1.2"


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """The context TLS listeners accept with (raises OSError/ssl.SSLError on bad files)."""
    if settings.certificate is None or settings.key is None:
        raise ValueError("a tls listener needs tls.certificate and tls.key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[settings.min_version]
    context.load_cert_chain(settings.certificate, settings.key)
    if settings.client_ca is not None:
        context.load_verify_locations(cafile=settings.client_ca)
        context.verify_mode = ssl.CERT_REQUIRED if settings.verify_client else ssl.CERT_OPTIONAL
    return context


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """The context sipguard connects to TLS servers with (trunks, PBXes reached back)."""
    context = ssl.create_default_context(
        cafile=str(settings.ca) if settings.ca is not None else None)
    context.minimum_version = VERSIONS[settings.min_version]
    if not settings.verify_server:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.certificate is not None and settings.key is not None:
        context.load_cert_chain(settings.certificate, settings.key)  # for mutual TLS
    return context
