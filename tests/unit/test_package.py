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


def test_libraries_with_relr_relocations_are_found(tmp_path):
    # The same library linked twice: with DT_RELR (which musl 1.2.3 ignores: make package refuses it) and without.
    source = tmp_path / "pointers.c"
    source.write_text("static int x; int *p = &x; int *q = &x;\n")
    for name, flags in (("libpacked.so.1", ["-Wl,-z,pack-relative-relocs"]), ("libplain.so", [])):
        subprocess.run(["gcc", "-shared", "-fPIC", *flags, "-o", str(tmp_path / name), str(source)], check=True)
    (tmp_path / "notes.so.txt").write_text("not an ELF file")
    assert packaging.uses_relr(tmp_path / "libpacked.so.1") and not packaging.uses_relr(tmp_path / "libplain.so")
    assert packaging.libraries_with_relr(tmp_path) == ["libpacked.so.1"]
