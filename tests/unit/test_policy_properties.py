"""Hypothesis properties of evaluate() on conf/policy.yaml: total, spelling-blind, emergency-safe.

Screening must not be evadable: whatever text arrives as the Request-URI user
part, the engine answers with one decision and a trace; every way of writing
one number screens the same; and an emergency number stays forwarded however
it is decorated.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sipguard.policy import CallAttempt, Decision, Policy, Usage, Verdict, evaluate
from sipguard.policy.loader import load_policy

REPO = Path(__file__).resolve().parents[2]
SHIPPED: Policy = load_policy(REPO / "conf" / "policy.yaml")

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DAY = datetime.fromisoformat("2026-11-23T10:00:00-05:00")
NIGHT = datetime.fromisoformat("2026-11-23T22:00:00-05:00")
SEPARATORS = [" ", "-", ".", "(", ")", "/", "\t"]
EXTENSIONS = [None, "201", "300", "401", "499", "555", "700", "800", "899", "*97", "*98"]

# Characters and fragments a PBX or a fraudster might put in the user part.
DIAL_PIECES = st.sampled_from(
    [
        *"0123456789",
        "+",
        "*",
        "#",
        "%",
        ";",
        "=",
        ",",
        "w",
        "p",
        "W",
        "P",
        "@",
        "?",
        "&",
        *SEPARATORS,
        "%2B",
        "%2b",
        "%25",
        "%3B",
        "%",
        "%ZZ",
        ";isub=",
        ";phone-context=",
        "011",
        "00",
        "9",
        "911",
        "112",
        "\u00a0",
        "\u200b",
        "２",
        "٣",
        "e",
        "x",
    ]
)
DIALLED_TEXT = st.one_of(
    st.text(max_size=40),
    st.lists(DIAL_PIECES, max_size=30).map("".join),
    st.text(alphabet=st.characters(categories=["Nd", "Zs", "Po", "Sm", "Cc"]), max_size=25),
)
WHEN = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from(
            [
                UTC,
                ZoneInfo("America/New_York"),
                ZoneInfo("Asia/Kolkata"),
                ZoneInfo("Pacific/Chatham"),
            ]
        ),
    ),
)
USAGE = st.builds(Usage, st.integers(0, 10_000), st.sampled_from([None, True, False]))


def _attempt(
    dialled: str,
    extension: str | None = None,
    when: datetime | None = DAY,
    account: str = "asterisk-1",
) -> CallAttempt:
    return CallAttempt(
        call_id="property",
        account=account,
        source="192.0.2.10",
        caller=extension or "",
        dialled=dialled,
        extension=extension,
        when=when,
    )


ASCII_EXTENSION = st.text(alphabet=st.characters(codec="ascii"), max_size=6)


@PROPERTY
@given(
    dialled=DIALLED_TEXT,
    extension=st.one_of(st.sampled_from(EXTENSIONS), ASCII_EXTENSION),
    account=st.sampled_from(["asterisk-1", "asterisk-1", "nobody"]),
    when=WHEN,
    usage=USAGE,
)
@example(dialled="+44²079460321", extension=None, account="asterisk-1", when=None, usage=Usage())
@example(dialled="９１１", extension="700", account="asterisk-1", when=None, usage=Usage())
@example(dialled="%C0%AF%00", extension="*97", account="nobody", when=None, usage=Usage())
@example(dialled="9" * 200, extension="401", account="asterisk-1", when=None, usage=Usage())
def test_any_text_yields_one_decision_with_a_trace(
    dialled: str, extension: str | None, account: str, when: datetime | None, usage: Usage
):
    """Any dialled text gives one Decision with a verdict, a rule and a trace, and never raises."""
    decision = evaluate(SHIPPED, _attempt(dialled, extension, when, account), usage)
    assert isinstance(decision, Decision)
    assert decision.verdict in Verdict
    assert decision.action in ("allow", "pin", "deny")
    assert decision.would == decision.action  # the shipped policy enforces every rule
    assert decision.rule
    assert decision.trace and decision.trace[0].stage == "emergency"
    json.dumps(decision.as_dict())
    if decision.verdict is Verdict.FORWARD and decision.rule != "emergency":
        # Forwarding always needs a destination rule that allowed it.
        assert any(
            entry.stage == "destination" and entry.action == "allow" for entry in decision.trace
        ), decision.as_dict()
    if decision.risk_score is not None:
        assert 0 <= decision.risk_score <= 100


# One number per kind of outcome in the shipped policy, as E.164.
NUMBERS = [
    "+12015550123",  # US: allow-us
    "+19725551234",  # Dallas, whose area code starts with the outside-line digit
    "+14162345678",  # CA: allow-ca
    "+18002345678",  # US toll free
    "+19002345678",  # US premium: type:premium_rate
    "+15002345678",  # US personal number
    "+11234567890",  # invalid NANP
    "+18765230123",  # JM: default
    "+18092345678",  # DO: default
    "+17872345678",  # PR: default
    "+442079460321",  # GB: pin-gb
    "+449012345678",  # GB premium
    "+445512345678",  # GB UAN: type:uan
    "+4930123456",  # DE: pin-de
    "+4918012345",  # DE shared cost
    "+33612345678",  # FR: pin-fr
    "+3532212345",  # IE: sales-ireland for 4XX, default otherwise
    "+5371234567",  # CU: irsf-cu
    "+538071234567",  # CU shared cost: irsf-cu
    "+37190123456",  # LV premium
    "+9607712345",  # MV: irsf-mv
    "+81312345678",  # JP: default
    "+4420794603",  # GB, one digit short: type:invalid
]


@st.composite
def spellings(draw: st.DrawFn) -> tuple[str, str]:
    """(E.164 number, one way a PBX could send it)."""
    e164 = draw(st.sampled_from(NUMBERS))
    digits = e164[1:]
    forms = ["+", "011", "9011", "00", "900", "%2B", "%2b", "9+"]
    nanp = digits.startswith("1") and len(digits) == 11
    if nanp:
        forms += ["1", "", "91", "9"]
    form = draw(st.sampled_from(forms))
    body = digits[1:] if nanp and form in ("1", "", "91", "9") else digits
    tokens = [form] if form else []
    for digit in body:
        escaped = draw(st.booleans()) and draw(st.booleans())
        tokens.append(f"%{ord(digit):02X}" if escaped else digit)
    pieces: list[str] = []
    for token in tokens:
        pieces.append(token)
        pieces.extend(draw(st.lists(st.sampled_from(SEPARATORS), max_size=2)))
    if draw(st.booleans()):
        pieces.insert(0, draw(st.sampled_from(SEPARATORS)))
    suffix = draw(
        st.sampled_from(
            [
                "",
                ";isub=1234",
                ";phone-context=+1",
                ";phone-context=example.com",
                ";isub=1;phone-context=+44",
            ]
        )
    )
    return e164, "".join(pieces) + suffix


@PROPERTY
@given(
    spelled=spellings(),
    extension=st.sampled_from([None, "201", "401"]),
    when=st.sampled_from([DAY, NIGHT]),
)
@example(spelled=("+19725551234", "9 972-555-1234"), extension=None, when=DAY)
@example(spelled=("+442079460321", "9 011 44 (20) 7946-0321;isub=7"), extension="401", when=NIGHT)
def test_every_spelling_of_a_number_screens_the_same(
    spelled: tuple[str, str], extension: str | None, when: datetime
):
    """+E.164, 011, 9 011, 00, %2B, national forms, separators and parameters all decide alike."""
    e164, dialled = spelled
    canonical = evaluate(SHIPPED, _attempt(e164, extension, when))
    decision = evaluate(SHIPPED, _attempt(dialled, extension, when))
    assert (decision.action, decision.rule) == (canonical.action, canonical.rule), dialled
    assert decision.number is not None and decision.number.e164 == e164, dialled


@st.composite
def emergency_spellings(draw: st.DrawFn) -> str:
    """911, 112, 999, 000 or 933, maybe after the outside line, decorated."""
    number = draw(st.sampled_from(["911", "112", "999", "000", "933"]))
    digits = ("9" if draw(st.booleans()) else "") + number
    pieces: list[str] = []
    for digit in digits:
        pieces.append(
            f"%{ord(digit):02X}" if draw(st.booleans()) and draw(st.booleans()) else digit
        )
        pieces.extend(draw(st.lists(st.sampled_from(SEPARATORS), max_size=2)))
    suffix = draw(st.sampled_from(["", ";phone-context=+1", ";isub=1"]))
    return "".join(pieces) + suffix


@PROPERTY
@given(
    dialled=emergency_spellings(),
    extension=st.one_of(st.sampled_from(EXTENSIONS), st.text(max_size=4)),
    account=st.sampled_from(["asterisk-1", "nobody"]),
    when=WHEN,
    usage=USAGE,
)
def test_emergency_numbers_are_always_forwarded(
    dialled: str, extension: str | None, account: str, when: datetime | None, usage: Usage
):
    """An emergency number is forwarded whatever separators, escapes or outside line surround it."""
    decision = evaluate(SHIPPED, _attempt(dialled, extension, when, account), usage)
    assert (decision.verdict, decision.rule) == (Verdict.FORWARD, "emergency"), dialled
    assert [entry.stage for entry in decision.trace] == ["emergency"]


@PROPERTY
@given(digits=st.text(alphabet=st.characters(categories=["Nd"]), min_size=6, max_size=14))
@example(digits="44２079460321")
def test_e164_is_plus_and_ascii_digits(digits: str):
    """Whatever digits were dialled, a number's e164 is '+' and ASCII digits, or there is none."""
    decision = evaluate(SHIPPED, _attempt("+" + digits))
    assert decision.number is not None
    e164 = decision.number.e164
    assert e164 is None or re.fullmatch(r"\+[0-9]{2,15}", e164, flags=re.ASCII), e164


@PROPERTY
@given(extension=st.text(max_size=6))
@example(extension="²")
def test_any_extension_text_yields_a_decision(extension: str):
    """Whatever the From user or extension header holds, screening answers instead of raising."""
    decision = evaluate(SHIPPED, _attempt("2015550123", extension))
    assert decision.trace and decision.action in ("allow", "pin", "deny")
