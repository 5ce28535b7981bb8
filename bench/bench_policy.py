"""In-process speed of the policy engine: decisions per second and latency per decision.

    python bench/bench_policy.py [--decisions N] [--policy conf/policy.yaml]

Each decision is a full evaluate() on conf/policy.yaml: cleaning and
normalising the dialled string, phonenumbers' region and type (cached per
E.164 number), every rule stage and the trace. Two workloads are timed:

- cold: every dialled number distinct (the number cache never hits), the worst case;
- warm: numbers drawn from a pool of 500, as real traffic repeats destinations.

Printed: decisions per second on one core, and p50/p99/max latency per decision.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import phonenumbers  # noqa: E402

from sipguard.policy import CallAttempt, Usage, evaluate  # noqa: E402
from sipguard.policy.loader import load_policy  # noqa: E402
from sipguard.policy.numbers import classify  # noqa: E402

REGIONS = ["US", "CA", "GB", "DE", "FR", "JM", "DO", "CU", "MX", "BR", "IN", "AU", "JP", "NG",
           "ZA", "ES", "IT", "NL", "SE", "PL", "LV", "SO", "PK", "PH", "CN", "RU", "TR", "EG"]
FORMS = ["+{e164}", "011{e164}", "9011{e164}", "+{spaced}"]


def make_numbers(count: int, seed: int) -> list[str]:
    """Dialled strings in the forms a PBX sends, over many regions and types."""
    rng = random.Random(seed)
    out: list[str] = []
    kinds = [phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE,
             phonenumbers.PhoneNumberType.PREMIUM_RATE, phonenumbers.PhoneNumberType.TOLL_FREE]
    while len(out) < count:
        region = rng.choice(REGIONS)
        example = phonenumbers.example_number_for_type(region, rng.choice(kinds))
        if example is None:
            continue
        national = str(example.national_number)
        # Vary the last digits so that numbers are distinct (cold cache) yet plausible.
        suffix = f"{rng.randrange(10 ** 4):04d}"
        national = national[:-4] + suffix if len(national) > 6 else national
        e164 = f"{example.country_code}{national}"
        spaced = f"{example.country_code} {national[:3]} {national[3:]}"
        form = rng.choice(FORMS)
        if example.country_code == 1 and rng.random() < 0.5:
            out.append(f"1{national}")
        else:
            out.append(form.format(e164=e164, spaced=spaced))
    return out


def run(policy_path: Path, dialled: list[str]) -> list[float]:
    """Evaluate every string once; return the seconds each decision took."""
    policy = load_policy(policy_path)
    account = policy.accounts[0].name
    when = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    usage = Usage(international_calls_last_hour=2, destination_seen_before=True)
    timings: list[float] = []
    clock = time.perf_counter
    gc.disable()
    try:
        for index, number in enumerate(dialled):
            attempt = CallAttempt(f"bench-{index}", account, "127.0.0.1", "201", number,
                                  extension="201", when=when)
            started = clock()
            evaluate(policy, attempt, usage)
            timings.append(clock() - started)
    finally:
        gc.enable()
    return timings


def report(name: str, timings: list[float]) -> None:
    ordered = sorted(timings)
    total = sum(timings)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e6

    print(f"{name:<6} {len(timings):>7} decisions  {len(timings) / total:>9,.0f}/s on one core"
          f"   p50 {at(0.50):6.1f} us   p99 {at(0.99):6.1f} us   max {ordered[-1] * 1e6:7.1f} us"
          f"   mean {statistics.fmean(timings) * 1e6:6.1f} us")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=20000)
    parser.add_argument("--policy", type=Path, default=REPO / "conf" / "policy.yaml")
    arguments = parser.parse_args()
    count = arguments.decisions
    print(f"policy engine benchmark: {arguments.policy}, Python {sys.version.split()[0]}")
    cold = make_numbers(count, seed=1)
    classify.cache_clear()
    report("cold", run(arguments.policy, cold))
    pool = make_numbers(500, seed=2)
    rng = random.Random(3)
    warm = [rng.choice(pool) for _ in range(count)]
    run(arguments.policy, pool)  # fill the number cache
    report("warm", run(arguments.policy, warm))
    return 0


if __name__ == "__main__":
    sys.exit(main())
