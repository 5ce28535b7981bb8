"""Golden table: conf/policy.yaml against dialled strings as a PBX sends them.

Each row of golden_cases.csv was decided by reading conf/policy.yaml, not by
running the engine: account, extension, the Request-URI user part exactly as
sent, the local time of the call (always with its zone, since an unknown time
counts as outside business hours), and the expected action, deciding rule and
region. An empty region means the number is never analysed (emergency, an
extension that may not dial out, an unknown account) or is not a number.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from sipguard.policy import CallAttempt, Policy, Verdict, evaluate
from sipguard.policy.loader import load_policy

REPO = Path(__file__).resolve().parents[2]
CASES_FILE = Path(__file__).with_name("golden_cases.csv")
COLUMNS = ["account", "extension", "dialled", "local_time", "action", "rule", "region", "comment"]
VERDICTS = {"allow": Verdict.FORWARD, "pin": Verdict.CHALLENGE, "deny": Verdict.REJECT}


@dataclass(frozen=True)
class GoldenCase:
    """One row of the golden table."""

    line: int
    account: str
    extension: str | None
    dialled: str
    when_text: str
    action: str
    rule: str
    region: str
    comment: str

    @property
    def when(self) -> datetime:
        """The time of the call."""
        return datetime.fromisoformat(self.when_text)

    @property
    def label(self) -> str:
        """A test id that says what the row is about."""
        return f"L{self.line}-{self.action}-{self.rule}-{self.dialled!r}"


def _read_cases() -> list[GoldenCase]:
    with CASES_FILE.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        assert header == COLUMNS, header
        return [
            GoldenCase(
                line, account, extension or None, dialled, when, action, rule, region, comment
            )
            for line, (
                account,
                extension,
                dialled,
                when,
                action,
                rule,
                region,
                comment,
            ) in enumerate(reader, start=2)
        ]


CASES = _read_cases()


@pytest.fixture(scope="module")
def shipped_policy() -> Policy:
    """The example policy that ships in conf/."""
    return load_policy(REPO / "conf" / "policy.yaml")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label)
def test_golden_case(shipped_policy: Policy, case: GoldenCase):
    """The shipped policy takes the expected action, by the expected rule, on the expected region."""
    attempt = CallAttempt(
        call_id=f"golden-{case.line}",
        account=case.account,
        source="192.0.2.10",
        caller=case.extension or "",
        dialled=case.dialled,
        extension=case.extension,
        when=case.when,
    )
    decision = evaluate(shipped_policy, attempt)
    got = (decision.action, decision.rule)
    assert got == (case.action, case.rule), f"{case.comment}: {decision.as_dict()}"
    assert decision.verdict is VERDICTS[case.action]
    assert decision.would == case.action, "the shipped policy enforces every rule"
    if case.region:
        assert decision.number is not None and decision.number.region == case.region, case.comment
    else:
        assert decision.number is None or decision.number.e164 is None, case.comment


def test_golden_table_is_broad_enough():
    """The table has at least 200 rows over at least 40 regions and every kind of outcome."""
    assert len(CASES) >= 200
    regions = {case.region for case in CASES if case.region}
    assert len(regions) >= 40, sorted(regions)
    rules = {case.rule for case in CASES}
    assert {
        "allow-us",
        "allow-ca",
        "pin-gb",
        "pin-de",
        "pin-fr",
        "sales-ireland",
        "irsf-cu",
        "irsf-so",
        "irsf-lv",
        "irsf-gn",
        "irsf-sl",
        "irsf-mv",
        "default",
        "emergency",
        "not-dialable",
        "group:voicemail-and-disa",
        "international-after-hours",
        "unknown-account",
        "type:premium_rate",
        "type:shared_cost",
        "type:uan",
        "type:personal_number",
        "type:invalid",
    } <= rules


def test_golden_rows_are_unique_and_timed():
    """No row is listed twice (one instant may be spelled in several zones) and every time has its offset."""
    keys = [(case.account, case.extension, case.dialled, case.when_text) for case in CASES]
    assert len(keys) == len(set(keys))
    assert all(case.when.tzinfo is not None for case in CASES)
    assert all(case.action in VERDICTS for case in CASES)
