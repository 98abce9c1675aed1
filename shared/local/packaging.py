"""The deployable zip: what `make package` keeps of the dependencies, the bytecode it ships, the sizes it prints.

`pip install --target package` (musl wheels) brings every file of every dependency. The functions need
less: botocore's service descriptions for S3 and SQS only (the other 440 services are half its size),
no type stubs, no test suites, no SQL dialects we never speak, not Stripe's request-parameter
TypedDicts (imported under TYPE_CHECKING only). `keep()` is the rule; `prune()` applies it in place.

Bytecode: the functions' tier gets a fraction of a core, and compiling 90 MiB of sources at each cold
start cost over a second of CPU. The dependencies ship `__pycache__/*.cpython-311.pyc` compiled with
UNCHECKED_HASH (never compared with a source: package/ is a build output nobody edits); shared/ and
functions/ with CHECKED_HASH (validated against the source's hash at import, so a developer's edit is
never shadowed by stale bytecode). Scaleway's runtime is CPython 3.11: only a 3.11 interpreter compiles.

    python -m shared.local.packaging build package   # prune, compile, print zip and unpacked sizes

Stdlib and PyYAML only (`make package` installs the local extra first).
"""

from __future__ import annotations

import argparse
import compileall
import fnmatch
import os
import py_compile
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from shared.local.documents import read_yaml  # PyYAML, the local extra's: make package installs it first

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PYTHON = (3, 11)  # serverless.yml: runtime python311
PYC_SUFFIX = f".cpython-{RUNTIME_PYTHON[0]}{RUNTIME_PYTHON[1]}.pyc"

# The AWS services the functions call through boto3 (shared/ports/storage/s3.py, shared/ports/queues/sqs.py).
BOTO_SERVICES = ("s3", "sqs")

# Paths (relative to the package folder, `/`-separated, fnmatch patterns) that no function needs.
DROPPED = (
    "bin/*",  # console scripts of the dependencies
    "*.pyi",  # type stubs
    "*/py.typed",
    "*/__pycache__/*",  # pip's timestamp bytecode: compiled again below
    "boto3/examples/*",
    "certifi/tests/*",
    "sqlalchemy/testing/*",  # test fixtures of SQLAlchemy itself
    "sqlalchemy/ext/mypy/*",
    "sqlalchemy/dialects/mssql/*",  # the functions speak PostgreSQL (and SQLite in tests)
    "sqlalchemy/dialects/mysql/*",
    "sqlalchemy/dialects/oracle/*",
    "sqlalchemy/orm/*",  # the functions use SQLAlchemy Core only (no ORM, no extension)
    "sqlalchemy/ext/*",
    "*.pxd",  # Cython declarations
    "stripe/params/*",  # request-parameter TypedDicts: imported under TYPE_CHECKING only
    "stripe/events/*",  # API v2 event classes (the webhook receives v1 events)
    "pydantic/v1/*",  # pydantic 1 compatibility: nothing imports it
    "urllib3/contrib/emscripten/*",  # urllib3 in a browser
    "aws_lambda_powertools/event_handler/openapi/swagger_ui/*.js",  # no Swagger UI is served
    "aws_lambda_powertools/event_handler/openapi/swagger_ui/*.css",
    # Powertools utilities no function uses (data_classes, typing, jmespath_utils stay).
    *(
        f"aws_lambda_powertools/utilities/{name}/*"
        for name in (
            "parser",
            "auth_alpha",
            "idempotency",
            "parameters",
            "kafka",
            "feature_flags",
            "circuit_breaker",
            "data_masking",
            "batch",
            "streaming",
            "validation",
        )
    ),
)


_DROPPED = re.compile("|".join(fnmatch.translate(pattern) for pattern in DROPPED))


def keep(relative: str) -> bool:
    """Whether the dependency file at `relative` (inside package/) ships."""
    path = relative.replace(os.sep, "/")
    if _DROPPED.match(path):
        return False
    for data in ("botocore/data/", "boto3/data/"):
        if path.startswith(data):
            rest = path[len(data) :]
            return "/" not in rest or rest.split("/", 1)[0] in BOTO_SERVICES  # top-level files: endpoints, retries
    return True


def _files(root: Path) -> Iterator[Path]:
    for directory, _dirs, names in os.walk(root):
        for name in names:
            yield Path(directory) / name


def prune(package: Path) -> tuple[int, int]:
    """Removes from `package` what `keep` refuses; (files removed, bytes removed)."""
    removed = size = 0
    for path in list(_files(package)):
        if not keep(path.relative_to(package).as_posix()):
            size += path.lstat().st_size
            path.unlink()
            removed += 1
    for directory, _dirs, _names in os.walk(package, topdown=False):  # children before their parents
        if directory != str(package) and not os.listdir(directory):
            os.rmdir(directory)
    return removed, size


def strip_libraries(package: Path) -> int:
    """`strip --strip-unneeded` on every shared library, as Debian's dh_strip does: SQLAlchemy's Cython modules
    ship their DWARF (5 of their 6 MiB), cryptography its static symbol table. The dynamic symbols and
    everything the loader reads stay. Returns the bytes saved (0 without strip)."""
    strip = shutil.which("strip")
    if strip is None:
        print("strip not found: shared libraries keep their debug info", file=sys.stderr)
        return 0
    saved = 0
    for path in _files(package):
        if ".so" not in path.name or path.is_symlink():
            continue
        with path.open("rb") as handle:
            if handle.read(4) != b"\x7fELF":
                continue
        before = path.stat().st_size
        subprocess.run([strip, "--strip-unneeded", str(path)], check=True)
        saved += before - path.stat().st_size
    return saved


_PT_DYNAMIC, _DT_NULL, _DT_RELR = 2, 0, 36


def uses_relr(path: Path) -> bool:
    """Whether the ELF64 shared library at `path` has DT_RELR relocations in its dynamic section. musl applies
    them from 1.2.4 on; 1.2.3 skips them silently and the library's pointers stay unrelocated (a SIGSEGV)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:  # ELF64, little-endian (x86_64)
        return False
    phoff, phentsize, phnum = struct.unpack_from("<Q", data, 0x20)[0], *struct.unpack_from("<HH", data, 0x36)
    for index in range(phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + index * phentsize
        )
        if p_type != _PT_DYNAMIC:
            continue
        for entry in range(p_offset, p_offset + p_filesz, 16):
            tag = struct.unpack_from("<q", data, entry)[0]
            if tag == _DT_RELR:
                return True
            if tag == _DT_NULL:
                break
    return False


def libraries_with_relr(package: Path) -> list[str]:
    """The shared libraries of `package` that musl 1.2.3 cannot relocate (package-constraints.txt avoids them)."""
    return sorted(
        path.relative_to(package).as_posix()
        for path in _files(package)
        if ".so" in path.name and not path.is_symlink() and uses_relr(path)
    )


def make_sourceless(package: Path) -> int:
    """Legacy `module.pyc` beside each dependency module, then the `.py` removed: the zip carries each module
    once. Tracebacks through a dependency lose their source lines; shared/ and functions/ keep theirs."""
    if sys.version_info[:2] != RUNTIME_PYTHON:
        raise SystemExit(f"bytecode for the runtime needs CPython {RUNTIME_PYTHON[0]}.{RUNTIME_PYTHON[1]}")
    if not compileall.compile_dir(
        str(package),
        quiet=1,
        force=True,
        legacy=True,
        workers=2,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    ):
        raise SystemExit("a dependency failed to compile")
    removed = 0
    for path in list(_files(package)):
        if path.suffix == ".py" and path.with_suffix(".pyc").exists():
            path.unlink()
            removed += 1
    return removed


def compile_tree(directory: Path, mode: py_compile.PycInvalidationMode, *, exclude: str | None = None) -> bool:
    """Bytecode for every module under `directory`, as the runtime's CPython 3.11 would write it."""
    if sys.version_info[:2] != RUNTIME_PYTHON:
        raise SystemExit(
            f"bytecode for the runtime needs CPython {RUNTIME_PYTHON[0]}.{RUNTIME_PYTHON[1]}, "
            f"this is {sys.version_info[0]}.{sys.version_info[1]} (make package PYTHON=python3.11)"
        )
    return compileall.compile_dir(
        str(directory),
        quiet=1,
        force=True,
        invalidation_mode=mode,
        workers=2,
        rx=re.compile(exclude) if exclude else None,
    )


# --- What the deployment zip holds (serverless.yml `package.patterns`) ---------------------------------


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


def serverless_patterns(root: Path = ROOT) -> list[str]:
    return read_yaml(root / "serverless.yml")["package"]["patterns"]


def packaged(paths: Iterable[str], patterns: list[str]) -> list[str]:
    """The paths the Serverless Framework puts in the zip: the last matching pattern wins."""
    compiled = [(p.startswith("!"), _glob_regex(p.lstrip("!"))) for p in patterns]
    kept = []
    for path in paths:
        included = False
        for negated, regex in compiled:
            if regex.match(path):
                included = not negated
        if included:
            kept.append(path)
    return kept


def zip_contents(root: Path = ROOT) -> list[str]:
    paths = (p.relative_to(root).as_posix() for top in ("shared", "functions", "package") for p in _files(root / top))
    return sorted(packaged(paths, serverless_patterns(root)))


def measure_zip(root: Path = ROOT) -> dict[str, int]:
    """Zips what serverless would (deflated, as it does) into a temporary file: sizes and counts."""
    contents = zip_contents(root)
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "functions.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as handle:
            for relative in contents:
                handle.write(root / relative, relative)
        zipped = archive.stat().st_size
    return {
        "files": len(contents),
        "pyc_files": sum(1 for c in contents if c.endswith(".pyc")),
        "zip_bytes": zipped,
        "unpacked_bytes": sum((root / c).stat().st_size for c in contents),
    }


def build(package: Path, root: Path = ROOT, *, sourceless: bool = True) -> dict[str, int]:
    if relr := libraries_with_relr(package):
        raise SystemExit(
            "these libraries need musl >= 1.2.4 (DT_RELR relocations); pin an older wheel in "
            "package-constraints.txt: " + ", ".join(relr)
        )
    removed, removed_bytes = prune(package)
    stripped = strip_libraries(package)
    if sourceless:
        make_sourceless(package)
    elif not compile_tree(package, py_compile.PycInvalidationMode.UNCHECKED_HASH):
        raise SystemExit("a dependency failed to compile")
    for ours in ("shared", "functions"):
        if not compile_tree(
            root / ours, py_compile.PycInvalidationMode.CHECKED_HASH, exclude=r"[/\\]shared[/\\]local[/\\]"
        ):
            raise SystemExit(f"{ours}/ failed to compile")
    figures = measure_zip(root)
    figures.update(removed_files=removed, removed_bytes=removed_bytes, stripped_bytes=stripped)
    return figures


def _mib(value: int) -> str:
    return f"{value / 1024 / 1024:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.local.packaging")
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="prune and compile package/, then print the zip's figures")
    build_cmd.add_argument("package", type=Path)
    build_cmd.add_argument(
        "--with-sources", action="store_true", help="keep the dependencies' .py (pyc in __pycache__)"
    )
    sub.add_parser("measure", help="print the figures of the zip serverless would build now")
    args = parser.parse_args(argv)
    if args.command == "build":
        figures = build(args.package.resolve(), sourceless=not args.with_sources)
        print(
            f"pruned: {figures['removed_files']} files, {_mib(figures['removed_bytes'])}; "
            f"libraries stripped: {_mib(figures['stripped_bytes'])}"
        )
    else:
        figures = measure_zip()
    print(
        f"zip: {_mib(figures['zip_bytes'])} ({figures['zip_bytes']} bytes), "
        f"unpacked: {_mib(figures['unpacked_bytes'])}, {figures['files']} files of which {figures['pyc_files']} .pyc"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
