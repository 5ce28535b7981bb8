"""One log stream: structlog's lines and the standard library's, as one JSON line each."""

from __future__ import annotations

import io
import json
import logging

import structlog

from sipguard import logs


def test_stdlib_and_structlog_lines_are_one_json_line_each() -> None:
    stream = io.StringIO()
    logs.configure("info", "json", stream, process="test", pid=42)
    try:
        logs.get_logger().info("call.screened", call_id="c1")
        logging.getLogger("aiosqlite").warning("database is locked")
        logs.module_logger().debug("ivr.pjsip", line="not at info")  # below the level
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("asyncio").exception("Task exception was never retrieved")
    finally:
        logs.configure()  # back to the defaults on stdout for the other tests
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("call.screened", "info"), ("database is locked", "warning"),
        ("Task exception was never retrieved", "error")]
    assert all(line["process"] == "test" and line["pid"] == 42 and "timestamp" in line
               for line in lines)
    assert lines[0]["call_id"] == "c1"
    assert "ValueError: boom" in lines[2]["exception"]
    assert not logs.debug_enabled()


def test_debug_level_lets_debug_through() -> None:
    stream = io.StringIO()
    logs.configure("debug", "json", stream)
    try:
        assert logs.debug_enabled()
        structlog.get_logger().debug("ivr.pjsip", line="x")
    finally:
        logs.configure()
    assert json.loads(stream.getvalue())["event"] == "ivr.pjsip"
