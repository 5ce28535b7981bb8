"""Digest authentication (sipguard/sip/digest.py): RFC 7616 examples, round trips, nonces, replays, junk."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipguard.sip.digest import (
    ALGORITHMS,
    Challenge,
    Credentials,
    NonceFactory,
    ReplayGuard,
    authorization,
    best_challenge,
    challenge,
    ha1_for,
    parse_challenge,
    parse_credentials,
    response_for,
    verify,
)
from sipguard.sip.errors import LocalProtocolError, RemoteProtocolError

# RFC 7616 §3.9.1
RFC_REALM = "http-auth@example.org"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}
RFC_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC_AUTHORIZATION = (
    'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
    'algorithm={algorithm}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
    'response="{response}", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
SECRET = b"0123456789abcdef0123456789abcdef"


def _rfc_authorization(algorithm: str) -> str:
    return RFC_AUTHORIZATION.format(algorithm=algorithm, response=RFC_RESPONSES[algorithm])


# --- RFC 7616 §3.9.1 worked examples --------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_rfc_7616_example_parses_and_verifies(algorithm: str):
    credentials = parse_credentials(_rfc_authorization(algorithm))
    assert credentials == Credentials(
        scheme="Digest", username="Mufasa", realm=RFC_REALM, nonce=RFC_NONCE,
        uri="/dir/index.html", response=RFC_RESPONSES[algorithm], algorithm=algorithm,
        cnonce=RFC_CNONCE, nc="00000001", qop="auth", opaque=RFC_OPAQUE,
    )
    assert response_for(credentials, "GET", password="Circle of Life") == RFC_RESPONSES[algorithm]
    assert verify(credentials, "GET", password="Circle of Life")
    ha1 = ha1_for("Mufasa", RFC_REALM, "Circle of Life", algorithm)
    assert verify(credentials, "GET", ha1=ha1)
    assert verify(credentials, "GET", ha1=ha1.upper())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_rfc_7616_example_from_the_client_side(algorithm: str):
    parsed = parse_challenge(RFC_CHALLENGE.format(algorithm=algorithm))
    assert parsed == Challenge(realm=RFC_REALM, nonce=RFC_NONCE, algorithm=algorithm,
                               qop=("auth", "auth-int"), opaque=RFC_OPAQUE, stale=False)
    value = authorization(parsed, "GET", "/dir/index.html", "Mufasa", "Circle of Life",
                          RFC_CNONCE, 1)
    assert parse_credentials(value) == parse_credentials(_rfc_authorization(algorithm))


def test_rfc_7616_example_folded_over_lines_with_mixed_case():
    value = _rfc_authorization("MD5").replace(", ", ",\t").replace("Digest", "DIGEST")
    value = value.replace("algorithm=MD5", "Algorithm=md5").replace("qop=auth", 'qop="auth"')
    credentials = parse_credentials(value)
    assert credentials.algorithm == "MD5"
    assert credentials.qop == "auth"
    assert verify(credentials, "GET", password="Circle of Life")


def test_algorithm_defaults_to_md5():
    value = _rfc_authorization("MD5").replace("algorithm=MD5, ", "")
    credentials = parse_credentials(value)
    assert credentials.algorithm == "MD5"
    assert verify(credentials, "GET", password="Circle of Life")
    assert parse_challenge('Digest realm="r", nonce="n"').algorithm == "MD5"


# --- round trips ----------------------------------------------------------


def _server_round_trip(algorithm: str, *, method: str = "INVITE",
                       uri: str = "sip:+442071234567@carrier.example.net",
                       password: str = "s3cret pa\"ss\\word") -> Credentials:
    factory = NonceFactory(SECRET)
    nonce = factory.issue(1000.0, "salt-1")
    header = challenge("sipguard.example", nonce, algorithm, opaque="op 1")
    parsed = parse_challenge(header)
    assert parsed.qop == ("auth",)
    assert parsed.opaque == "op 1"
    value = authorization(parsed, method, uri, 'alice "the" user', password, "c/nonce=1", 1)
    credentials = parse_credentials(value)
    assert factory.check(credentials.nonce, 1001.0) == "ok"
    return credentials


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip_verifies(algorithm: str):
    credentials = _server_round_trip(algorithm)
    assert credentials.algorithm == algorithm
    assert credentials.username == 'alice "the" user'
    assert credentials.nc == "00000001"
    assert verify(credentials, "INVITE", password="s3cret pa\"ss\\word")
    ha1 = ha1_for('alice "the" user', "sipguard.example", "s3cret pa\"ss\\word", algorithm)
    assert verify(credentials, "INVITE", ha1=ha1)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip_with_non_ascii_password(algorithm: str):
    credentials = _server_round_trip(algorithm, password="pässwörd€")
    assert verify(credentials, "INVITE", password="pässwörd€")
    assert not verify(credentials, "INVITE", password="passwort")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_wrong_password_method_or_uri_fails(algorithm: str):
    credentials = _server_round_trip(algorithm)
    password = "s3cret pa\"ss\\word"
    assert not verify(credentials, "INVITE", password="wrong")
    assert not verify(credentials, "REGISTER", password=password)
    assert not verify(credentials, "INVITE", ha1=ha1_for("x", "sipguard.example", password,
                                                         algorithm))
    other_uri = Credentials(**{**_fields(credentials), "uri": "sip:+900@carrier.example.net"})
    assert not verify(other_uri, "INVITE", password=password)
    other_nc = Credentials(**{**_fields(credentials), "nc": "00000002"})
    assert not verify(other_nc, "INVITE", password=password)
    other_realm = Credentials(**{**_fields(credentials), "realm": "elsewhere"})
    assert not verify(other_realm, "INVITE", password=password)


def _fields(credentials: Credentials) -> dict[str, str | None]:
    return {name: getattr(credentials, name) for name in Credentials.__slots__}


def test_verify_refuses_missing_qop_and_auth_int():
    credentials = parse_credentials(_rfc_authorization("MD5"))
    without_qop = Credentials(**{**_fields(credentials), "qop": None})
    # The RFC 2069 response is right, but sipguard wants qop=auth.
    right = response_for(without_qop, "GET", password="Circle of Life")
    assert not verify(Credentials(**{**_fields(without_qop), "response": right}), "GET",
                      password="Circle of Life")
    auth_int = Credentials(**{**_fields(credentials), "qop": "auth-int"})
    assert not verify(auth_int, "GET", password="Circle of Life")
    parsed = parse_credentials(_rfc_authorization("MD5").replace("qop=auth", "qop=auth-int"))
    assert not verify(parsed, "GET", password="Circle of Life")


def test_password_or_ha1_exactly_one():
    credentials = parse_credentials(_rfc_authorization("MD5"))
    with pytest.raises(ValueError):
        verify(credentials, "GET")
    with pytest.raises(ValueError):
        response_for(credentials, "GET", password="a", ha1="b")


def test_authorization_without_qop_is_rfc_2069_style():
    parsed = parse_challenge('Digest realm="r", nonce="abc"')
    assert parsed.qop == ()
    value = authorization(parsed, "INVITE", "sip:1@h", "bob", "pw", "ignored", 1)
    credentials = parse_credentials(value)
    assert (credentials.qop, credentials.cnonce, credentials.nc) == (None, None, None)
    assert credentials.response == response_for(credentials, "INVITE", password="pw")
    assert not verify(credentials, "INVITE", password="pw")  # the server side insists on qop


def test_authorization_refuses_what_it_cannot_do():
    only_auth_int = Challenge(realm="r", nonce="n", qop=("auth-int",))
    with pytest.raises(LocalProtocolError):
        authorization(only_auth_int, "INVITE", "sip:1@h", "bob", "pw", "c", 1)
    offered = Challenge(realm="r", nonce="n", qop=("auth",))
    for nc in (0, -1, 0x1_0000_0000):
        with pytest.raises(LocalProtocolError):
            authorization(offered, "INVITE", "sip:1@h", "bob", "pw", "c", nc)
    with pytest.raises(LocalProtocolError):
        authorization(offered, "INVITE", "sip:1@h", "bob", "pw", "", 1)
    value = authorization(offered, "INVITE", "sip:1@h", "bob", "pw", "c", 0xFFFFFFFF)
    assert parse_credentials(value).nc == "ffffffff"
    with pytest.raises(LocalProtocolError):
        challenge("r", "n", "SHA-512-256")
    with pytest.raises(LocalProtocolError):
        ha1_for("u", "r", "p", "MD5-sess")


def test_challenge_value():
    assert challenge("sipguard", "abc", "sha-256", stale=True, opaque="o") == (
        'Digest realm="sipguard", nonce="abc", algorithm=SHA-256, qop="auth", '
        'opaque="o", stale=TRUE'
    )
    assert challenge("sipguard", "abc", "MD5") == (
        'Digest realm="sipguard", nonce="abc", algorithm=MD5, qop="auth"'
    )
    parsed = parse_challenge(challenge("sipguard", "abc", "MD5", stale=True))
    assert parsed.stale
    assert not parse_challenge('Digest realm="r", nonce="n", stale=FALSE').stale
    assert parse_challenge('Digest realm="r", nonce="n", stale="true"').stale


def test_best_challenge_prefers_sha256_and_skips_junk():
    md5 = challenge("r", "n-md5", "MD5")
    sha = challenge("r", "n-sha", "SHA-256")
    assert best_challenge([md5, sha]) == parse_challenge(sha)
    assert best_challenge([sha, md5]) == parse_challenge(sha)
    junk = [
        'Basic realm="r"',
        'Digest realm="r", nonce="n", algorithm=SHA-512-256, qop="auth"',
        'Digest realm="r", nonce="n", algorithm=MD5-sess, qop="auth"',
        'Digest realm="r", nonce="n", qop="auth-int"',
        'Digest realm="r, nonce="n"',
        "",
    ]
    assert best_challenge([*junk, md5]) == parse_challenge(md5)
    assert best_challenge(junk) is None
    assert best_challenge([]) is None
    first_md5 = challenge("r", "first", "MD5")
    assert best_challenge([first_md5, md5]) == parse_challenge(first_md5)


# --- nonces ---------------------------------------------------------------


def test_nonce_ok_stale_and_future():
    factory = NonceFactory(SECRET, lifetime=300.0)
    nonce = factory.issue(1000.0, "salt")
    assert factory.check(nonce, 1000.0) == "ok"
    assert factory.check(nonce, 1300.0) == "ok"
    assert factory.check(nonce, 1300.5) == "stale"
    assert factory.check(nonce, 999.0) == "ok"  # a little clock skew between nodes
    assert factory.check(nonce, 900.0) == "stale"
    assert factory.check(nonce, float("nan")) == "stale"
    assert "=" not in nonce
    assert set(nonce) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_nonces_differ_by_salt_and_time():
    factory = NonceFactory(SECRET)
    nonces = {factory.issue(1000.0, "a"), factory.issue(1000.0, "b"), factory.issue(1000.001, "a")}
    assert len(nonces) == 3
    assert factory.issue(5.0, "x") == NonceFactory(SECRET).issue(5.0, "x")  # stateless


def test_nonce_from_another_secret_is_invalid():
    nonce = NonceFactory(b"another secret, 16 bytes or more").issue(1000.0, "salt")
    assert NonceFactory(SECRET).check(nonce, 1000.0) == "invalid"


def _flip(nonce: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_tampered_truncated_and_garbage_nonces_are_invalid():
    factory = NonceFactory(SECRET)
    nonce = factory.issue(1000.0, "salt")
    raw_length = len(base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4)))
    for index in range(raw_length):  # version, time, salt and MAC
        assert factory.check(_flip(nonce, index), 1000.0) == "invalid", index
    for cut in (1, 2, 4, 10, len(nonce) - 1):
        assert factory.check(nonce[:-cut], 1000.0) == "invalid", cut
        assert factory.check(nonce[cut:], 1000.0) == "invalid", cut
    for garbage in ("", "x", "====", nonce + "=", nonce + "A", " " + nonce, nonce + "\n",
                    nonce.replace("-", "+").replace("_", "/") + "+/", "é" * 60,
                    "\ud800" * 10, "A" * 54, "A" * 5000):
        assert factory.check(garbage, 1000.0) == "invalid", garbage


def test_nonce_with_other_unused_trailing_bits_is_invalid():
    factory = NonceFactory(SECRET)
    nonce = factory.issue(1000.0, "salt1")
    # 46 raw bytes: the last base64 character carries 4 unused bits.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(nonce[-1])
    variants = {nonce[:-1] + alphabet[(last & ~0b1111) | bits] for bits in range(16)}
    assert sum(factory.check(variant, 1000.0) == "ok" for variant in variants) == 1


def test_nonce_factory_arguments():
    with pytest.raises(ValueError):
        NonceFactory(b"short")
    with pytest.raises(ValueError):
        NonceFactory(SECRET, lifetime=0)


# --- replays --------------------------------------------------------------


def test_replay_guard_counts_per_nonce():
    guard = ReplayGuard()
    assert guard.accept("n1", "00000001")
    assert not guard.accept("n1", "00000001")  # same nc twice
    assert guard.accept("n1", "00000003")  # a gap is fine
    assert not guard.accept("n1", "00000002")  # lower
    assert guard.accept("n1", "0000000A")
    assert not guard.accept("n1", "0000000a")
    assert guard.accept("n2", "00000001")  # other nonce, own counts
    assert guard.accept("n1", "ffffffff")
    assert not guard.accept("n1", "ffffffff")


@pytest.mark.parametrize("nc", ["", "1", "0000001", "000000001", "0000000g", "00000000",
                                "+0000001", " 0000001", "0x000001", "٠٠٠٠٠٠٠١"])
def test_replay_guard_refuses_bad_counts(nc: str):
    assert not ReplayGuard().accept("n", nc)


def test_replay_guard_capacity_evicts_least_recently_used():
    guard = ReplayGuard(capacity=3)
    for nonce in ("a", "b", "c"):
        assert guard.accept(nonce, "00000001")
    assert guard.accept("a", "00000002")  # "a" used again: "b" is now the oldest
    assert guard.accept("d", "00000001")
    assert len(guard) == 3
    assert guard.accept("b", "00000001")  # forgotten, so accepted again
    assert not guard.accept("a", "00000002")  # remembered
    assert not guard.accept("d", "00000001")
    assert len(guard) == 3
    with pytest.raises(ValueError):
        ReplayGuard(capacity=0)


def test_replay_guard_memory_is_bounded():
    guard = ReplayGuard(capacity=100)
    for index in range(1000):
        assert guard.accept(f"n{index}", "00000001")
    assert len(guard) == 100


# --- malformed input ------------------------------------------------------

GOOD = _rfc_authorization("MD5")

MALFORMED_CREDENTIALS = {
    "empty": "",
    "blank": "   ",
    "scheme only": "Digest",
    "scheme and blanks": "Digest   ",
    "basic": "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
    "no space after scheme": GOOD.replace("Digest ", "Digest,"),
    "other scheme": GOOD.replace("Digest", "Digestive"),
    "missing username": GOOD.replace('username="Mufasa", ', ""),
    "missing realm": GOOD.replace('realm="http-auth@example.org", ', ""),
    "missing nonce": GOOD.replace('nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", ', ""),
    "missing uri": GOOD.replace('uri="/dir/index.html", ', ""),
    "missing response": GOOD.replace('response="8ca523f5e9506fed4657c9700eebdbec", ', ""),
    "qop without cnonce": GOOD.replace('cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", ', ""),
    "qop without nc": GOOD.replace("nc=00000001, ", ""),
    "empty nonce": GOOD.replace(f'nonce="{RFC_NONCE}"', 'nonce=""'),
    "empty uri": GOOD.replace('uri="/dir/index.html"', 'uri=""'),
    "nc too short": GOOD.replace("nc=00000001", "nc=0000001"),
    "nc too long": GOOD.replace("nc=00000001", "nc=000000001"),
    "nc not hex": GOOD.replace("nc=00000001", "nc=0000000g"),
    "nc quoted junk": GOOD.replace("nc=00000001", 'nc="1"'),
    "unknown algorithm": GOOD.replace("algorithm=MD5", "algorithm=SHA-512-256"),
    "sess algorithm": GOOD.replace("algorithm=MD5", "algorithm=MD5-sess"),
    "sha256 sess": GOOD.replace("algorithm=MD5", "algorithm=SHA-256-sess"),
    "empty algorithm": GOOD.replace("algorithm=MD5", 'algorithm=""'),
    "response wrong length": GOOD.replace("8ca523f5e9506fed4657c9700eebdbec", "8ca523f5"),
    "response for other algorithm": GOOD.replace("algorithm=MD5", "algorithm=SHA-256"),
    "response not hex": GOOD.replace("8ca523f5e9506fed4657c9700eebdbec", "z" * 32),
    "duplicated username": GOOD + ', username="Simba"',
    "duplicated nonce, other case": GOOD + ', NONCE="x"',
    "duplicated flag-like": GOOD + ", stale=x, stale=y",
    "unterminated quote": GOOD.replace('uri="/dir/index.html"', 'uri="/dir/index.html'),
    "unterminated at end": GOOD + ', foo="bar',
    "escaped closing quote": GOOD + ', foo="bar\\"',
    "text after quote": GOOD.replace('uri="/dir/index.html"', 'uri="/dir/index.html"x'),
    "two quoted strings": GOOD.replace('uri="/dir/index.html"', 'uri="/a" "/b"'),
    "unquoted uri": GOOD.replace('uri="/dir/index.html"', "uri=/dir/index.html"),
    "value with space": GOOD.replace("qop=auth", "qop=au th"),
    "qop quoted list": GOOD.replace("qop=auth", 'qop="auth, auth-int"'),
    "parameter without value": GOOD + ", userhash",
    "parameter with empty value": GOOD + ", foo=",
    "no parameter name": GOOD + ', ="x"',
    "bad parameter name": GOOD + ', f(o)o="x"',
    "empty element": GOOD.replace(", nc=", ", , nc="),
    "trailing comma": GOOD + ",",
    "leading comma": GOOD.replace("Digest ", "Digest , "),
    "semicolons": GOOD.replace(", ", "; "),
    "newline": GOOD.replace(", nc=", ",\r\n nc="),
    "nul": GOOD.replace("Mufasa", "Muf\x00asa"),
    "angle brackets": GOOD.replace('uri="/dir/index.html"', "uri=<sip:a@b>"),
}


@pytest.mark.parametrize("value", MALFORMED_CREDENTIALS.values(), ids=MALFORMED_CREDENTIALS.keys())
def test_malformed_credentials_raise_remote_protocol_error(value: str):
    with pytest.raises(RemoteProtocolError):
        parse_credentials(value)


def test_unknown_parameters_are_ignored_and_quoted_pairs_resolved():
    value = GOOD + ', userhash=false, x-ext="a, \\"b\\" = c"'
    assert parse_credentials(value) == parse_credentials(GOOD)
    escaped = GOOD.replace('username="Mufasa"', 'username="M\\ufasa"')
    assert parse_credentials(escaped).username == "Mufasa"


MALFORMED_CHALLENGES = {
    "empty": "",
    "basic": 'Basic realm="r"',
    "no parameters": "Digest",
    "missing realm": 'Digest nonce="n"',
    "missing nonce": 'Digest realm="r"',
    "empty nonce": 'Digest realm="r", nonce=""',
    "unknown algorithm": 'Digest realm="r", nonce="n", algorithm=SHA-512-256',
    "sess": 'Digest realm="r", nonce="n", algorithm=SHA-256-sess',
    "duplicated": 'Digest realm="r", nonce="n", realm="s"',
    "unterminated": 'Digest realm="r, nonce="n"',
    "bad qop option": 'Digest realm="r", nonce="n", qop="auth, a b"',
    "empty qop option": 'Digest realm="r", nonce="n", qop="auth,,auth-int"',
    "unquoted qop list": 'Digest realm="r", nonce="n", qop=auth,auth-int',
    "empty element": 'Digest realm="r",, nonce="n"',
}


@pytest.mark.parametrize("value", MALFORMED_CHALLENGES.values(), ids=MALFORMED_CHALLENGES.keys())
def test_malformed_challenges_raise_remote_protocol_error(value: str):
    with pytest.raises(RemoteProtocolError):
        parse_challenge(value)


# --- properties -----------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])

FRAGMENTS = st.sampled_from([
    "Digest", "digest", "Basic", " ", "\t", ",", "=", '"', "\\", "\\\"", "<", ">",
    "username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "nc", "qop",
    "opaque", "stale", "MD5", "SHA-256", "auth", "auth-int", "00000001", "TRUE",
    '"Mufasa"', '"/dir/index.html"', '"8ca523f5e9506fed4657c9700eebdbec"', "é", "\x00", "\r\n",
])
SIP_ISH = st.one_of(
    st.text(max_size=200),
    st.lists(FRAGMENTS, max_size=40).map("".join),
    st.tuples(st.just(GOOD), st.integers(0, len(GOOD)), st.integers(0, len(GOOD)),
              st.text(max_size=5)).map(lambda t: t[0][: t[1]] + t[3] + t[0][t[2]:]),
)


@PROPERTY_SETTINGS
@given(SIP_ISH)
def test_parsers_raise_only_remote_protocol_error(value: str):
    for parse in (parse_credentials, parse_challenge):
        with contextlib.suppress(RemoteProtocolError):
            parse(value)
    assert best_challenge([value]) is None or isinstance(best_challenge([value]), Challenge)


@PROPERTY_SETTINGS
@given(SIP_ISH)
def test_parsed_credentials_verify_without_raising(value: str):
    try:
        credentials = parse_credentials(value)
    except RemoteProtocolError:
        return
    assert verify(credentials, "INVITE", password="x") in (True, False)
    assert NonceFactory(SECRET).check(credentials.nonce, 0.0) in ("ok", "stale", "invalid")
    assert ReplayGuard().accept(credentials.nonce, credentials.nc or "") in (True, False)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80), st.sampled_from(ALGORITHMS), st.text(max_size=30),
       st.text(min_size=1, max_size=30), st.integers(1, 0xFFFFFFFF))
def test_round_trip_for_any_username_and_password(username: str, algorithm: str, password: str,
                                                  cnonce: str, nc: int):
    offered = Challenge(realm="sipguard", nonce="abc", algorithm=algorithm, qop=("auth",))
    value = authorization(offered, "INVITE", "sip:+15551234567@trunk", username, password,
                          cnonce, nc)
    try:
        credentials = parse_credentials(value)
    except RemoteProtocolError:
        # Control characters cannot go on the wire in a quoted string.
        assert any((ord(char) < 0x20 and char != "\t") or char == "\x7f"
                   for char in username + cnonce)
        return
    assert credentials.username == username
    assert verify(credentials, "INVITE", password=password)
