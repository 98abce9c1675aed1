"""The function package (serverless.yml `package.patterns`) holds what the functions run, and no local-only code."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

from shared.local import packaging

ROOT = Path(__file__).resolve().parents[2]


def packaged(paths: list[str]) -> set[str]:
    """What the Serverless Framework zips of `paths` (the rule `make package` and the rehearsal use too)."""
    return set(packaging.packaged(paths, packaging.serverless_patterns(ROOT)))


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
