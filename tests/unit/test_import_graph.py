"""The dependency graph of shared/ is visible and acyclic.

The layer contracts themselves are import-linter's (pyproject.toml, run by `make test`). These
checks add what it does not: no import circle between any two modules, and imports of project
modules at module top, so the graph import-linter reads is the whole graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
# SDKs a module may import inside a function, on purpose, for cold start (with a comment saying so).
DEFERRABLE = {
    "boto3",
    "botocore",
    "stripe",
    "resend",
    "requests",
    "jwt",
    "pyotp",
    "alembic",
    "dotenv",
    "cryptography",
    "jinja2",
    "psycopg",
}


def _sources() -> list[Path]:
    files = sorted((ROOT / "shared").rglob("*.py")) + sorted((ROOT / "functions").rglob("*.py"))
    assert len(files) > 40, "the source tree was not found"
    return files


def _comment_above(lines: list[str], lineno: int) -> str:
    """The import's line and the run of import and comment lines right above it (one comment covers a group)."""
    start = lineno - 1
    while start > 0 and lines[start - 1].strip().startswith(("import ", "from ", "#")):
        start -= 1
    return " ".join(lines[start:lineno]).lower()


def test_no_import_circle_between_modules():
    graph = grimp.build_graph("shared")
    modules = sorted(graph.modules)
    assert "shared.platform.http" in modules
    circles = []
    for module in modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=imported, imported=module):
                circles.append(" <-> ".join(sorted((module, imported))))
    assert not sorted(set(circles)), f"import circles: {sorted(set(circles))}"


def test_project_imports_stand_at_module_top_and_deferred_sdks_say_why():
    problems = []
    for path in _sources():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if not isinstance(inner, ast.Import | ast.ImportFrom):
                    continue
                names = [alias.name for alias in inner.names] if isinstance(inner, ast.Import) else [inner.module or ""]
                where = f"{path.relative_to(ROOT)}:{inner.lineno}"
                for name in names:
                    top = name.split(".")[0]
                    if top not in DEFERRABLE:
                        problems.append(f"{where}: `{name}` imported inside a function")
                    else:
                        said = _comment_above(lines, inner.lineno)
                        if "cold start" not in said and "deferred" not in said:
                            problems.append(f"{where}: deferred import of `{name}` without a comment saying why")
    assert not problems, "\n".join(problems)
