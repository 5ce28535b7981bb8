"""YAML documents read with their line numbers, and the field readers both configuration
files share: every problem is reported as ``file:line: key.path: message``.

Owns: loading a YAML file into marked mappings (:mod:`document`), typed field readers
(:mod:`fields`). May import: the standard library, ruamel.yaml and pydantic, nothing of sipguard's.
"""

from sipguard.schema.document import (
    ConfigError,
    MarkedDict,
    Problems,
    dump_yaml,
    line_of,
    load_marked,
    parse_marked,
)
from sipguard.schema.fields import choice, integer, number, section_of, unknown_keys

__all__ = [
    "ConfigError",
    "MarkedDict",
    "Problems",
    "choice",
    "dump_yaml",
    "integer",
    "line_of",
    "load_marked",
    "number",
    "parse_marked",
    "section_of",
    "unknown_keys",
]
