"""The ``sipguard`` command line: the argparse tree in one place (:mod:`main`), one
module per command group (policy check and explain, run, pins, bans, records, locks and
alerts).

Owns: parsing arguments and printing answers. May import every package; nothing imports
it but ``sipguard.__main__``.
"""

from sipguard.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
