"""The named-query files: one per module, named like it, each query described and used."""

from __future__ import annotations

import re
from pathlib import Path

import recsys_db
from recsys_db import queries

PACKAGE = Path(recsys_db.__file__).parent
NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
# query-name prefixes of modules whose name reads badly as one
PREFIXES = {"jobs": ("job_",), "install": ("install_", "uninstall_")}
# a statement written inline in Python instead of a named query
INLINE = re.compile(r"""execute\(\s*f?["'](SELECT|SET|INSERT|UPDATE|DELETE|CREATE|DROP|REFRESH|"""
                    r"""ANALYZE|LISTEN|GRANT|REVOKE|COMMENT|COPY)\b""")


def test_each_query_file_belongs_to_a_module_and_names_its_queries_after_it() -> None:
    for path in PACKAGE.glob("*.sql"):
        assert (PACKAGE / f"{path.stem}.py").exists(), f"{path.name} has no module"
        prefixes = PREFIXES.get(path.stem, (f"{path.stem}_",))
        for name in NAME.findall(path.read_text(encoding="utf-8")):
            assert name.startswith(prefixes), f"{path.name}: {name}"


def test_each_query_says_what_it_does() -> None:
    for path in PACKAGE.glob("*.sql"):
        parts = NAME.split(path.read_text(encoding="utf-8"))
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            assert body.lstrip("\n").startswith("-- "), f"{path.name}: {name} has no description"


def test_every_query_is_used_and_no_statement_is_inline() -> None:
    code = {path: path.read_text(encoding="utf-8") for path in PACKAGE.glob("*.py")}
    everything = "\n".join(code.values())
    unused = [name for name in queries._load() if f'"{name}"' not in everything]
    assert unused == []
    inline = [f"{path.name}: {match.group(0)}" for path, text in code.items()
              for match in INLINE.finditer(text)]
    assert inline == []
