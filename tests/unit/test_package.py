"""The function package (serverless.yml `package.patterns`) holds what the functions run, and no local-only code."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A globby pattern as a regex: `**` crosses folders, `*` does not."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(f"^{out}$")


def packaged(paths: list[str]) -> set[str]:
    patterns = yaml.safe_load((ROOT / "serverless.yml").read_text())["package"]["patterns"]
    kept = set()
    for path in paths:
        included = False
        for pattern in patterns:  # the last matching pattern wins, as in the Serverless Framework
            negated = pattern.startswith("!")
            if _glob_regex(pattern.lstrip("!")).match(path):
                included = not negated
        if included:
            kept.add(path)
    return kept


def _tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def test_the_package_holds_handlers_and_shared_code_but_no_local_only_code():
    files = _tracked()
    kept = packaged(files)
    assert "functions/export-on-request/handler.py" in kept and "shared/platform/http.py" in kept
    assert "shared/notices/templates/mail/verification_code.fr.txt" in kept
    assert not [path for path in kept if path.startswith("shared/local/")]
    assert not [path for path in kept if path.startswith(("tests/", "infra/", "docs/"))]


def test_no_handler_imports_local_only_code():
    handlers = sorted((ROOT / "functions").rglob("*.py"))
    assert handlers
    for path in handlers:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("shared.local"), f"{path} imports {node.module}"
