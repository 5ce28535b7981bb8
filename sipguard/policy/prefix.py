"""The interim screening rule: blocked prefixes, with an emergency bypass."""

from __future__ import annotations

from dataclasses import dataclass

from sipguard.policy.decision import CallAttempt, Decision, TraceEntry, Verdict

# Emergency numbers of the main numbering plans; a call to one is never blocked.
EMERGENCY_NUMBERS = frozenset(
    {"911", "933", "112", "999", "000", "110", "119", "118", "100", "101", "102", "103",
     "15", "17", "18", "08", "061", "066", "060", "911911"}
)


def dialled_digits(dialled: str) -> str:
    """The dialled string without a leading ``+`` and visual separators."""
    text = dialled.strip()
    if text.startswith("+"):
        text = text[1:]
    return "".join(char for char in text if char not in " -.()")


@dataclass(frozen=True, slots=True)
class PrefixPolicy:
    """Numbers starting with one of ``blocked_prefixes`` are rejected."""

    blocked_prefixes: tuple[str, ...] = ()
    version: str = ""


def evaluate(policy: PrefixPolicy, attempt: CallAttempt) -> Decision:
    """Screen one attempt: emergency bypass first, then the blocked prefixes."""
    digits = dialled_digits(attempt.dialled)
    trace: list[TraceEntry] = []
    if digits in EMERGENCY_NUMBERS:
        trace.append(TraceEntry("emergency", True, f"{digits} is an emergency number"))
        return Decision(Verdict.FORWARD, "emergency number", tuple(trace), "emergency")
    trace.append(TraceEntry("emergency", False, f"{digits} is not an emergency number"))
    matching = [prefix for prefix in policy.blocked_prefixes if digits.startswith(prefix)]
    if matching:
        longest = max(matching, key=len)
        rule = f"blocked_prefix:{longest}"
        trace.append(TraceEntry(rule, True, f"{digits} starts with blocked prefix {longest}"))
        return Decision(Verdict.REJECT, f"blocked prefix {longest}", tuple(trace), rule)
    trace.append(TraceEntry("blocked_prefix", False, f"{digits} matches no blocked prefix"))
    trace.append(TraceEntry("default", True, "interim policy forwards what is not blocked"))
    return Decision(Verdict.FORWARD, "not blocked", tuple(trace), "default")
