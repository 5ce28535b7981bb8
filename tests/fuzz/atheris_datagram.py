"""Coverage-guided fuzzing of the per-datagram path with atheris (run by hand).

    .venv/bin/pip install atheris
    .venv/bin/python -m tests.fuzz.atheris_datagram -max_total_time=300 [corpus/]

Every input is one datagram from one of a few loopback sources (the first byte
picks which); the target is tests/fuzz/pipeline.py: edge filter, endpoint,
controller and policy. A crash is any exception escaping it.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from tests.fuzz.pipeline import SOURCES, Pipeline

PIPELINE = Pipeline()


def one_input(data: bytes) -> None:
    if not data:
        return
    PIPELINE.feed(data[1:], SOURCES[data[0] % len(SOURCES)])


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
