"""Where tests/musl/build-runtime.sh leaves the musl CPython, and how to run it under one musl loader."""

from __future__ import annotations

import os
from pathlib import Path

from shared.local.server import PROJECT_ROOT

RUNTIME_DIR = Path(os.environ.get("MUSL_RUNTIME_DIR", Path.home() / ".cache/privacy-functions/musl-runtime"))
PYTHON_HOME = RUNTIME_DIR / "python"
STDLIB = PYTHON_HOME / "lib" / "python3.11"
PACKAGE = PROJECT_ROOT / "package"
LOADERS = ["musl-1.2.3", "musl-1.2.5"]  # Alpine 3.17's musl and Alpine 3.20's


def missing() -> str | None:
    """Why the musl proof cannot run here, or None."""
    if not (RUNTIME_DIR / ".built").is_file():
        return f"no musl runtime in {RUNTIME_DIR} (bash tests/musl/build-runtime.sh)"
    if not (PACKAGE / "psycopg").is_dir():
        return "no package/ (make package)"
    return None


def loader(name: str) -> Path:
    return RUNTIME_DIR / name / "ld-musl-x86_64.so.1"


def interpreter(name: str) -> list[str]:
    """The musl CPython run by one loader (which is also libc): `ld-musl --library-path DIR python -S`.
    The directory holds the loader under the name musllinux wheels link against (libc.musl-x86_64.so.1)."""
    return [str(loader(name)), "--library-path", str(RUNTIME_DIR / name), str(PYTHON_HOME / "bin" / "python3.11"), "-S"]
