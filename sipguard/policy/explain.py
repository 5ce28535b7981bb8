"""A decision and its trace as text: what `sipguard explain` prints, and the dashboard shows."""

from __future__ import annotations

from sipguard.policy.decision import CallAttempt, Decision


def format_decision(attempt: CallAttempt, decision: Decision) -> str:
    """The decision and its trace as text (``explain`` prints this)."""
    number = decision.number
    lines = [f"dialled:  {attempt.dialled}"]
    if number is not None:
        lines.append(f"number:   {number.e164 or '(not a number)'}  region "
                     f"{number.region or '-'}  type {number.number_type.value}  class "
                     f"{decision.number_class or '-'}")
    lines += [f"account:  {attempt.account}   extension: {attempt.extension or '-'}",
              f"action:   {decision.action} ({decision.category}; rule {decision.rule})"]
    if decision.would and decision.would != decision.action:
        lines.append(f"would:    {decision.would} if every rule enforced (report mode)")
    if decision.risk_score is not None:
        lines.append(f"risk:     {decision.risk_score}/100")
    lines.append(f"policy:   version {decision.policy_version}")
    lines.append("trace:")
    for entry in decision.trace:
        mark = "matched" if entry.matched else "-      "
        action = f" -> {entry.action}" if entry.action else ""
        report = " [report]" if entry.mode == "report" else ""
        lines.append(f"  {mark} {entry.stage:<11} {entry.rule}{action}{report}: {entry.detail}")
    return "\n".join(lines)
