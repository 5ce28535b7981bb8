"""Outbound registration: sipguard REGISTERs with carriers that want it.

A trunk with ``register: true`` (and ``auth``) is registered at start and
refreshed before its binding expires (at 80 % of the granted time). A 401/407
is answered with the trunk's credentials; a failure, a timeout or a refused
registration is tried again after ``RETRY_SECONDS``. Sans-IO like the
controller: it sends through the endpoint and is driven by ``now``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sipguard.b2bua.calls import LogEvent, Trunk, contact_for
from sipguard.sip import (
    Challenge,
    ClientTransaction,
    Endpoint,
    Headers,
    Request,
    Response,
    Uri,
    authorization,
    best_challenge,
)

REFRESH_AT = 0.8  # of the granted expiry
RETRY_SECONDS = 60.0
MIN_BINDING = 60.0  # a shorter grant is refreshed no sooner than this (no REGISTER storms)


@dataclass(slots=True)
class Binding:
    """One trunk's registration."""

    trunk: Trunk
    call_id: str
    from_tag: str
    cseq: int = 0
    due: float = 0.0  # when the next REGISTER goes
    pending: ClientTransaction | None = None
    challenged: bool = False  # the pending REGISTER carries credentials
    registered_until: float | None = None
    expires: int = 3600  # asked for (raised to a registrar's Min-Expires after a 423)
    contact: str = ""  # ours, to find our binding among the registrar's Contacts


class Registrations:
    """REGISTERs for every trunk that asks for one."""

    def __init__(self, endpoint: Endpoint, trunks: list[Trunk], expires: int,
                 token: Callable[[int], str]) -> None:
        self.endpoint = endpoint
        self.expires = expires
        self._token = token
        self.bindings = [Binding(trunk, f"{token(20)}@sipguard", token(10), expires=expires)
                         for trunk in trunks if trunk.register and trunk.auth is not None]
        self._by_transaction: dict[ClientTransaction, Binding] = {}

    def get_timer(self) -> float | None:
        """When the next REGISTER is due (None when no trunk registers)."""
        due = [binding.due for binding in self.bindings if binding.pending is None]
        return min(due) if due else None

    def handle_timer(self, now: float) -> list[LogEvent]:
        for binding in self.bindings:
            if binding.pending is None and binding.due <= now:
                self._send(binding, now)
        return []

    def owns(self, transaction: ClientTransaction) -> bool:
        return transaction in self._by_transaction

    def on_response(self, transaction: ClientTransaction, response: Response,
                    now: float) -> list[LogEvent]:
        binding = self._by_transaction.get(transaction)
        if binding is None or response.status_code < 200:
            return []
        del self._by_transaction[transaction]
        binding.pending = None
        name = binding.trunk.name
        if response.status_code < 300:
            granted = max(_granted(response, binding.contact, binding.expires), MIN_BINDING)
            binding.registered_until = now + granted
            binding.due = now + granted * REFRESH_AT
            return [LogEvent("trunk.registered", "info", {"trunk": name, "expires": granted})]
        if response.status_code in (401, 407) and not binding.challenged:
            header = "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
            auth = binding.trunk.auth
            chosen = best_challenge(
                response.headers.values(header),
                lambda offered: auth is not None and auth.supports(offered.realm,
                                                                   offered.algorithm))
            if chosen is not None:
                self._send(binding, now, (response.status_code, chosen))
                return []
        minimum = (response.headers.get("Min-Expires") or "").strip()
        if response.status_code == 423 and minimum.isdigit() and int(minimum) > binding.expires:
            binding.expires = int(minimum)  # Interval Too Brief (RFC 3261 §10.3): ask again
            self._send(binding, now)
            return []
        binding.due = now + RETRY_SECONDS
        return [LogEvent("trunk.registration_failed", "warning", {
            "trunk": name, "status": response.status_code, "reason": response.reason,
            "retry_in": RETRY_SECONDS})]

    def on_timeout(self, transaction: ClientTransaction, now: float) -> list[LogEvent]:
        binding = self._by_transaction.pop(transaction, None)
        if binding is None:
            return []
        binding.pending = None
        binding.due = now + RETRY_SECONDS
        return [LogEvent("trunk.registration_failed", "warning", {
            "trunk": binding.trunk.name, "status": 408, "reason": "no answer",
            "retry_in": RETRY_SECONDS})]

    def _send(self, binding: Binding, now: float,
              challenge: tuple[int, Challenge] | None = None) -> None:
        trunk = binding.trunk
        assert trunk.auth is not None
        binding.cseq += 1
        registrar = Uri(scheme="sip", host=trunk.uri.host, port=trunk.uri.port)
        aor = Uri(scheme="sip", user=trunk.auth.username, host=trunk.uri.host)
        local = self.endpoint.local_for(trunk.address)
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{aor}>;tag={binding.from_tag}")
        headers.add("To", f"<{aor}>")
        headers.add("Call-ID", binding.call_id)
        headers.add("CSeq", f"{binding.cseq} REGISTER")
        binding.contact = contact_for(local)
        headers.add("Contact", binding.contact)
        headers.add("Expires", str(binding.expires))
        binding.challenged = challenge is not None
        if challenge is not None:
            status, chosen = challenge
            value = authorization(chosen, "REGISTER", str(registrar), trunk.auth.username,
                                  cnonce=self._token(16), nc=1,
                                  **trunk.auth.secret(chosen.realm, chosen.algorithm))
            headers.add("Authorization" if status == 401 else "Proxy-Authorization", value)
        request = Request("REGISTER", registrar, headers)
        transaction = self.endpoint.send_request(request, trunk.address, now)
        binding.pending = transaction
        self._by_transaction[transaction] = binding


def _granted(response: Response, contact: str, asked: int) -> float:
    """The lifetime the registrar granted our binding: our Contact's expires (other
    Contacts are other devices' bindings of the same account), else Expires."""
    ours = contact.strip("<>")
    for value in response.headers.values("Contact"):
        for entry in value.split(","):
            if ours not in entry:
                continue
            for part in entry.split(">", 1)[-1].split(";")[1:]:
                name, _, number = part.strip().partition("=")
                if name.lower() == "expires" and number.strip().isdigit():
                    return float(number)
    expires = response.headers.get("Expires")
    if expires is not None and expires.strip().isdigit():
        return float(expires)
    return float(asked)
