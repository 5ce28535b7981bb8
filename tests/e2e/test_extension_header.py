"""The extension that placed a call, read as the README's Asterisk dialplan sends it.

Asterisk adds ``X-Sipguard-Extension`` to the outgoing INVITE only from a pre-dial
handler on the outbound channel (``Dial(...,b(sipguard-headers^s^1))``). Without the
header sipguard falls back to P-Asserted-Identity, then the From user, which the caller
controls; these tests send real INVITEs over loopback and read the extension each
``call.screened`` line names, and what reached the trunk.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from harness import Sipguard, SippUas, udp_invite_transaction

pytestmark = pytest.mark.e2e

ALLOWED = "12125551234"

# Staff may dial the US; the DISA/voicemail range may never dial out.
POLICY = """
accounts:
  - name: asterisk-1
    home_region: US
    time_zone: UTC
    may_dial: [domestic]
    extension_groups:
      - name: staff
        extensions: ["2XX"]
        may_dial: [domestic]
      - name: voicemail-and-disa
        extensions: ["800-899"]
        may_dial: []
destinations:
  default: deny
  rules:
    - {id: allow-us, region: US, action: allow}
"""

# An account without extension groups: nothing depends on the header, so no warning.
POLICY_WITHOUT_GROUPS = """
accounts:
  - name: asterisk-1
    home_region: US
    time_zone: UTC
    may_dial: [domestic]
destinations:
  default: deny
  rules:
    - {id: allow-us, region: US, action: allow}
"""

StartUas = Callable[..., SippUas]
StartSipguard = Callable[..., Sipguard]


def screened(guard: Sipguard, call_id: str) -> dict[str, object]:
    """The call.screened line of one call (sipguard logs the PBX leg's Call-ID)."""
    return guard.wait_for("call.screened", where=lambda e: e.get("call_id") == call_id)[0]


def call_id_of(responses: list[str]) -> str:
    """The Call-ID the responses carry (the raw INVITE's own)."""
    for line in responses[0].split("\r\n"):
        if line.lower().startswith("call-id:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Call-ID in {responses[0]!r}")


def status_of(responses: list[str]) -> int:
    """The final status code among the responses."""
    return int(responses[-1].split(None, 2)[1])


def test_extension_is_read_from_the_header_the_pre_dial_handler_sends(
    start_uas: StartUas, start_sipguard: StartSipguard
) -> None:
    """A call with the header gets that extension; a forged From cannot override it; a
    DISA call whose From carries the outside caller's number is stopped by the DISA
    group; only calls without the header fall back to From, with one warning per peer."""
    uas = start_uas("uas_busy.xml")
    guard = start_sipguard(uas.uri, POLICY)
    target = guard.address()

    # As the pre-dial handler sends it: the header names staff extension 201.
    with_header = udp_invite_transaction(target, ALLOWED, X_Sipguard_Extension="201")
    # A forged From (a staff extension) while the handler says the call came from DISA.
    forged_from = udp_invite_transaction(
        target, ALLOWED, X_Sipguard_Extension="800",
        From=f"<sip:201@127.0.0.1:{target[1]}>;tag=forged")
    # DISA: From carries the outside caller's number, the header says 800.
    disa = udp_invite_transaction(
        target, ALLOWED, X_Sipguard_Extension="800",
        From="<sip:+15551230000@127.0.0.1>;tag=outside")

    line = screened(guard, call_id_of(with_header))
    assert (line["extension"], line["extension_source"]) == ("201", "header"), line
    assert line["action"] == "allow" and status_of(with_header) == 486, line
    line = screened(guard, call_id_of(forged_from))
    assert (line["extension"], line["extension_source"]) == ("800", "header"), line
    assert line["rule"] == "group:voicemail-and-disa" and status_of(forged_from) == 403, line
    line = screened(guard, call_id_of(disa))
    assert (line["extension"], line["extension_source"]) == ("800", "header"), line
    assert status_of(disa) == 403, line
    assert guard.events("peer.extension_header_missing") == [], guard.describe()

    # Without the header: the From user (2001 in the raw INVITE), named as such.
    without = [udp_invite_transaction(target, ALLOWED) for _ in range(2)]
    for responses in without:
        line = screened(guard, call_id_of(responses))
        assert (line["extension"], line["extension_source"]) == ("2001", "from"), line
        assert any("from the From header" in entry for entry in line["trace"]), line
    warnings = guard.wait_for("peer.extension_header_missing")
    assert len(warnings) == 1, warnings  # once per peer, not per call
    assert warnings[0]["account"] == "asterisk-1" and warnings[0]["read_from"] == "From"
    assert warnings[0]["level"] == "warning", warnings[0]

    # P-Asserted-Identity comes before From when there is no header.
    asserted = udp_invite_transaction(
        target, ALLOWED, P_Asserted_Identity="<sip:202@127.0.0.1>")
    line = screened(guard, call_id_of(asserted))
    assert (line["extension"], line["extension_source"]) == ("202", "identity"), line

    # Only the allowed calls reached the trunk, and never with the extension header.
    uas.stop()
    invites = uas.messages("received", "INVITE ")
    assert len(invites) == 4, uas.describe()  # with_header, two without, asserted
    assert all(m.header("X-Sipguard-Extension") is None for m in invites), uas.describe()


def test_no_warning_when_the_account_has_no_extension_groups(
    start_uas: StartUas, start_sipguard: StartSipguard
) -> None:
    """Calls without the header are not warned about when no group depends on it."""
    uas = start_uas("uas_busy.xml")
    guard = start_sipguard(uas.uri, POLICY_WITHOUT_GROUPS)

    responses = udp_invite_transaction(guard.address(), ALLOWED)

    line = screened(guard, call_id_of(responses))
    assert line["extension_source"] == "from" and status_of(responses) == 486, line
    guard.wait_for("call.failed", where=lambda e: e.get("call_id") == line["call_id"])
    assert guard.events("peer.extension_header_missing") == [], guard.describe()
