"""A bounded fuzz of the whole per-datagram path (edge, endpoint, controller, policy):
no datagram, from any source, in any order, makes it raise. The open-ended,
coverage-guided version is tests/fuzz/atheris_datagram.py, run by hand."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.pipeline import SOURCES, Pipeline
from tests.unit.b2bua_harness import invite

SEEDS = [invite(), invite("19005551234", extra="User-Agent: friendly-scanner\r\n")]


def _mutations() -> st.SearchStrategy[bytes]:
    cut = st.integers(0, min(len(seed) for seed in SEEDS))
    return st.one_of(
        st.binary(max_size=600),
        st.sampled_from(SEEDS),
        st.builds(lambda seed, a, b, junk: seed[:a] + junk + seed[b:], st.sampled_from(SEEDS),
                  cut, cut, st.binary(max_size=40)),
        st.builds(lambda text: text.encode("utf-8", "surrogateescape"),
                  st.text(alphabet="INVITE SIP/2.0:;<>@\r\n=\"aZ019#*.,-tag=branch", max_size=400)),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(_mutations(), st.integers(0, len(SOURCES) - 1)), max_size=6))
def test_no_datagram_makes_the_pipeline_raise(datagrams: list[tuple[bytes, int]]) -> None:
    pipeline = Pipeline()
    for data, source in datagrams:
        pipeline.feed(data, SOURCES[source])
