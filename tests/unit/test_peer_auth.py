"""Digest authentication of a peer on INVITE (RFC 3261 §22, RFC 8760), on a virtual clock."""

from __future__ import annotations

from sipguard.b2bua.calls import SourceFailure
from sipguard.sip.digest import authorization, best_challenge, parse_challenge
from sipguard.sip.message import Request, Response
from tests.unit.b2bua_harness import PBX, PBX_PASSWORD, TRUNK, Harness, invite, only


def _challenged(harness: Harness, call_id: str = "call-1",
                branch: str = "z9hG4bK-i1") -> Response:
    sent = harness.feed(invite(call_id=call_id, branch=branch), PBX)
    (unauthorized,) = [m for m in only(sent, PBX) if isinstance(m, Response)
                       and m.status_code == 401]
    assert isinstance(unauthorized, Response)
    return unauthorized


def _with_credentials(response: Response, call_id: str, branch: str, cseq: int,
                      username: str = "pbx", password: str = PBX_PASSWORD,
                      algorithm: str = "SHA-256", nc: int = 1) -> bytes:
    challenges = [parse_challenge(value) for value in response.headers.values("WWW-Authenticate")]
    (chosen,) = [item for item in challenges if item.algorithm == algorithm]
    value = authorization(chosen, "INVITE", "sip:12125551234@127.0.0.1:5060", username,
                          password, cnonce="c0ffee", nc=nc)
    return invite(call_id=call_id, branch=branch, cseq=cseq,
                  extra=f"Authorization: {value}\r\n")


def test_an_invite_without_credentials_is_challenged_sha256_first():
    harness = Harness(auth=True)
    unauthorized = _challenged(harness)
    offered = [parse_challenge(value).algorithm
               for value in unauthorized.headers.values("WWW-Authenticate")]
    assert offered == ["SHA-256", "MD5"]
    assert best_challenge(unauthorized.headers.values("WWW-Authenticate")) is not None
    assert harness.attempts == [] and harness.commands == []  # a first round is no failure


def test_the_right_credentials_place_the_call_with_either_algorithm():
    for algorithm in ("SHA-256", "MD5"):
        harness = Harness(auth=True)
        unauthorized = _challenged(harness)
        sent = harness.feed(_with_credentials(unauthorized, "call-1", "z9hG4bK-i2", 2,
                                              algorithm=algorithm), PBX)
        assert [m.method for m in only(sent, TRUNK) if isinstance(m, Request)] == ["INVITE"]
        (trunk_invite,) = only(sent, TRUNK)
        assert isinstance(trunk_invite, Request) and "Authorization" not in trunk_invite.headers
        assert harness.attempts[0].account == "asterisk-1"


def test_wrong_password_wrong_user_and_replay_get_the_same_401_and_count():
    harness = Harness(auth=True)
    unauthorized = _challenged(harness)
    attempts = [
        _with_credentials(unauthorized, "call-2", "z9hG4bK-w1", 1, password="wrong password!"),
        _with_credentials(unauthorized, "call-3", "z9hG4bK-w2", 1, username="admin"),
    ]
    answers = []
    for attempt in attempts:
        sent = harness.feed(attempt, PBX)
        answers.append(sorted((m.status_code, len(m.headers.values("WWW-Authenticate")))
                              for m in only(sent, PBX) if isinstance(m, Response)))
    assert answers[0] == answers[1] == [(100, 0), (401, 2)]
    assert harness.attempts == [] and only(sent, TRUNK) == []
    assert [command.reason for command in harness.commands
            if isinstance(command, SourceFailure)] == [
        "authentication failed: wrong password",
        "authentication failed: unknown user or realm"]
    failed = harness.events("sip.auth_failed")
    assert [event.fields["username"] for event in failed] == ["pbx", "admin"]
    assert all(PBX_PASSWORD not in repr(event.fields) for event in failed)
    # The right credentials once, then the very same Authorization again: a replay.
    good = _with_credentials(unauthorized, "call-4", "z9hG4bK-g1", 1, nc=1)
    assert only(harness.feed(good, PBX), TRUNK)
    replay = good.replace(b"call-4", b"call-5").replace(b"z9hG4bK-g1", b"z9hG4bK-g2")
    sent = harness.feed(replay, PBX)
    assert only(sent, TRUNK) == []
    assert harness.commands[-1] == SourceFailure("127.0.0.1",
                                                 "authentication failed: replayed credentials")


def test_a_stale_nonce_is_challenged_again_without_a_failure():
    harness = Harness(auth=True)
    unauthorized = _challenged(harness)
    harness.advance(301.0)  # past the nonce lifetime
    sent = harness.feed(_with_credentials(unauthorized, "call-6", "z9hG4bK-s1", 1), PBX)
    (again,) = [m for m in only(sent, PBX) if isinstance(m, Response) and m.status_code == 401]
    assert isinstance(again, Response)
    assert all(parse_challenge(value).stale for value in again.headers.values("WWW-Authenticate"))
    assert harness.commands == []


def test_the_trunks_401_is_answered_with_its_credentials_once():
    from dataclasses import replace

    from sipguard.b2bua.calls import PeerAuth
    from tests.unit.b2bua_harness import response_to

    harness = Harness()
    harness.controller.trunks = [replace(harness.controller.trunks[0],
                                         auth=PeerAuth("acme", "s3cret"))]
    sent = harness.feed(invite(), PBX)
    (first,) = only(sent, TRUNK)
    assert isinstance(first, Request)
    challenge_value = ('Digest realm="carrier", nonce="abc123", algorithm=MD5, qop="auth"')
    sent = harness.feed(response_to(first, 407, "Proxy Authentication Required",
                                    extra=[("Proxy-Authenticate", challenge_value)]), TRUNK)
    retried = [m for m in only(sent, TRUNK) if isinstance(m, Request) and m.method == "INVITE"]
    assert len(retried) == 1
    second = retried[0]
    assert second.call_id == first.call_id and second.from_tag == first.from_tag
    assert second.cseq.number == first.cseq.number + 1 and second.to_tag is None
    assert second.body == first.body
    value = second.headers.get("Proxy-Authorization") or ""
    assert 'username="acme"' in value and 'realm="carrier"' in value
    assert [m for m in only(sent, PBX) if isinstance(m, Response)] == []  # the PBX waits
    # A second challenge is not answered again: the PBX gets it.
    sent = harness.feed(response_to(second, 407, "Proxy Authentication Required",
                                    extra=[("Proxy-Authenticate", challenge_value)]), TRUNK)
    assert [m.status_code for m in only(sent, PBX) if isinstance(m, Response)] == [407]
    assert harness.controller.live_calls == 0


def test_a_trunk_that_registers_is_registered_then_refreshed_before_expiry():
    from tests.unit.b2bua_harness import response_to

    harness = _registering_harness()
    (register,) = only(harness.advance(0.0), TRUNK)
    assert isinstance(register, Request) and register.method == "REGISTER"
    assert register.headers.get("Expires") == "300" and "Authorization" not in register.headers
    challenge_value = 'Digest realm="carrier", nonce="n1", algorithm=MD5, qop="auth"'
    sent = harness.feed(response_to(register, 401, "Unauthorized", to_tag=None,
                                    extra=[("WWW-Authenticate", challenge_value)]), TRUNK)
    (again,) = only(sent, TRUNK)
    assert isinstance(again, Request) and again.cseq.number == register.cseq.number + 1
    assert again.call_id == register.call_id and 'username="acme"' in (
        again.headers.get("Authorization") or "")
    harness.feed(response_to(again, 200, "OK", to_tag=None,
                             extra=[("Expires", "100")]), TRUNK)
    assert harness.events("trunk.registered")[0].fields == {"trunk": "carrier", "expires": 100.0}
    assert [m for m in only(harness.advance(79.0), TRUNK) if isinstance(m, Request)] == []
    refresh = [m for m in only(harness.advance(2.0), TRUNK) if isinstance(m, Request)]
    assert {(m.method, m.cseq.number) for m in refresh} == {("REGISTER", again.cseq.number + 1)}
    # A refused registration is tried again a minute later.
    harness.feed(response_to(refresh[0], 403, "Forbidden", to_tag=None), TRUNK)
    assert harness.events("trunk.registration_failed")[0].fields["status"] == 403
    retried = [m for m in only(harness.advance(61.0), TRUNK) if isinstance(m, Request)]
    assert {(m.method, m.cseq.number) for m in retried} == {
        ("REGISTER", refresh[0].cseq.number + 1)}


def test_credentials_for_another_number_are_refused():
    """The digest-uri names the Request-URI: credentials computed for one number do not
    place a call to another (and a user-less digest-uri needs relaxed_uri)."""
    harness = Harness(auth=True)
    unauthorized = _challenged(harness)
    challenges = [parse_challenge(v) for v in unauthorized.headers.values("WWW-Authenticate")]
    value = authorization(challenges[0], "INVITE", "sip:12125550000@127.0.0.1:5060", "pbx",
                          PBX_PASSWORD, cnonce="c0ffee", nc=1)
    sent = harness.feed(invite(call_id="call-7", branch="z9hG4bK-o1", cseq=2,
                               extra=f"Authorization: {value}\r\n"), PBX)
    assert only(sent, TRUNK) == []
    assert harness.commands[-1] == SourceFailure(
        "127.0.0.1", "authentication failed: credentials for another URI")
    userless = authorization(challenges[0], "INVITE", "sip:127.0.0.1:5060", "pbx",
                             PBX_PASSWORD, cnonce="c0ffee", nc=1)
    sent = harness.feed(invite(call_id="call-8", branch="z9hG4bK-o2", cseq=2,
                               extra=f"Authorization: {userless}\r\n"), PBX)
    assert only(sent, TRUNK) == []


def test_registration_honours_min_expires_and_reads_its_own_binding():
    from tests.unit.b2bua_harness import response_to

    harness = _registering_harness()
    (register,) = only(harness.advance(0.0), TRUNK)
    assert isinstance(register, Request)
    sent = harness.feed(response_to(register, 423, "Interval Too Brief", to_tag=None,
                                    extra=[("Min-Expires", "900")]), TRUNK)
    (again,) = only(sent, TRUNK)
    assert isinstance(again, Request) and again.headers.get("Expires") == "900"
    ours = again.headers.get("Contact") or ""
    contacts = [("Contact", "<sip:other-phone@198.51.100.9:5060>;expires=30"),
                ("Contact", f"{ours};expires=800")]
    harness.feed(response_to(again, 200, "OK", to_tag=None, contact=None, extra=contacts),
                 TRUNK)
    assert harness.events("trunk.registered")[0].fields["expires"] == 800.0


def _registering_harness() -> Harness:
    """A harness whose trunk registers (acme / s3cret), asking for 300 s."""
    from dataclasses import replace

    from sipguard.b2bua.calls import PeerAuth
    from sipguard.b2bua.registration import Registrations

    harness = Harness()
    trunk = replace(harness.controller.trunks[0], auth=PeerAuth("acme", "s3cret"), register=True)
    harness.controller.trunks = [trunk]
    harness.controller.registrations = Registrations(harness.endpoint, [trunk], 300,
                                                     harness.endpoint.new_token)
    return harness


def _peer_with(harness: Harness, auth: object) -> None:
    from dataclasses import replace

    harness.controller.peers = [replace(harness.controller.peers[0], auth=auth)]


def test_a_peer_configured_with_ha1_authenticates_without_the_password_stored() -> None:
    """Issue 22: HA1 = H(username:realm:password) instead of the password; a peer with an
    MD5 HA1 only is offered MD5 only, and the right password's answer places the call."""
    from sipguard.b2bua.calls import PeerAuth
    from sipguard.sip.digest import ha1_for

    harness = Harness(auth=True)
    md5 = ha1_for("pbx", "sipguard", PBX_PASSWORD, "MD5")
    _peer_with(harness, PeerAuth("pbx", None, False, (("sipguard", "MD5", md5),)))
    unauthorized = _challenged(harness)
    offered = [parse_challenge(value).algorithm
               for value in unauthorized.headers.values("WWW-Authenticate")]
    assert offered == ["MD5"]
    sent = harness.feed(_with_credentials(unauthorized, "call-1", "z9hG4bK-h2", 2,
                                          algorithm="MD5"), PBX)
    assert [m.method for m in only(sent, TRUNK) if isinstance(m, Request)] == ["INVITE"]
    # A wrong password against the same HA1 is refused.
    harness = Harness(auth=True)
    _peer_with(harness, PeerAuth("pbx", None, False, (("sipguard", "MD5", md5),)))
    unauthorized = _challenged(harness)
    sent = harness.feed(_with_credentials(unauthorized, "call-2", "z9hG4bK-h3", 2,
                                          password="not the password", algorithm="MD5"), PBX)
    assert only(sent, TRUNK) == []
    assert 401 in [m.status_code for m in only(sent, PBX) if isinstance(m, Response)]


def test_the_trunks_challenge_is_answered_from_ha1_for_its_realm() -> None:
    """With ha1 for realm "carrier" in SHA-256 only, sipguard answers the SHA-256 challenge
    (not the MD5 one it cannot), and the answer verifies against the password."""
    from dataclasses import replace

    from sipguard.b2bua.calls import PeerAuth
    from sipguard.sip.digest import ha1_for, parse_credentials, verify
    from tests.unit.b2bua_harness import response_to

    sha = ha1_for("acme", "carrier", "s3cret", "SHA-256")
    harness = Harness()
    harness.controller.trunks = [replace(harness.controller.trunks[0], auth=PeerAuth(
        "acme", None, False, (("carrier", "SHA-256", sha),)))]
    sent = harness.feed(invite(), PBX)
    (first,) = only(sent, TRUNK)
    assert isinstance(first, Request)
    challenges = [("WWW-Authenticate", 'Digest realm="carrier", nonce="n1", algorithm=MD5, '
                   'qop="auth"'),
                  ("WWW-Authenticate", 'Digest realm="carrier", nonce="n2", '
                   'algorithm=SHA-256, qop="auth"')]
    sent = harness.feed(response_to(first, 401, "Unauthorized", extra=challenges), TRUNK)
    (second,) = [m for m in only(sent, TRUNK) if isinstance(m, Request) and m.method == "INVITE"]
    credentials = parse_credentials(second.headers.get("Authorization") or "")
    assert credentials.algorithm == "SHA-256" and credentials.nonce == "n2"
    assert verify(credentials, "INVITE", password="s3cret")
