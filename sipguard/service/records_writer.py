"""The records' writer process's entry point: ``python -m sipguard.service.records_writer
--config FILE --status-fd N``, started by the service (sipguard.records.writer has the
rest: the service's side and the drain loop)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from sipguard import logs
from sipguard.config import load_settings
from sipguard.records import Recorder, Spool, make_sink, serve


def main(argv: list[str] | None = None) -> int:
    """``python -m sipguard.service.records_writer --config FILE --status-fd N``."""
    parser = argparse.ArgumentParser(description="sipguard's call records writer")
    parser.add_argument("--config", required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    arguments = parser.parse_args(argv)
    settings = load_settings(Path(arguments.config))
    logs.configure(settings.log_level, settings.log_format)
    cdr = settings.cdr
    log = logs.get_logger(process="cdr-writer")
    recorder = Recorder(make_sink(cdr), Spool(cdr.spool), log, cdr.batch_seconds)
    asyncio.run(serve(recorder, arguments.status_fd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
