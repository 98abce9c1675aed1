"""package/ as `make package` would build it, from this interpreter's own dependencies (tests and benchmarks).

package/ holds musl wheels that this glibc host cannot load; the same pruning rule
(`shared.local.packaging.keep`) applied to the installed copies of the same dependencies shows that
nothing a function needs is removed.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from shared.local.packaging import PYC_SUFFIX, keep


def runtime_distributions(project: str = "privacy-functions") -> list[metadata.Distribution]:
    """The installed distributions the project's runtime dependencies need, extras and markers resolved."""
    seen: dict[tuple[str, str], metadata.Distribution] = {}
    pending = [(Requirement(r), "") for r in metadata.distribution(project).requires or [] if "extra ==" not in r]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        distribution = metadata.distribution(requirement.name)
        key = distribution.metadata["Name"].lower()
        for wanted in sorted(requirement.extras) or [""]:
            marker_key = (key, wanted)
            if marker_key in seen:
                continue
            seen[marker_key] = distribution
            pending.extend((Requirement(r), wanted) for r in distribution.requires or [])
    unique = {d.metadata["Name"].lower(): d for d in seen.values()}
    return [unique[name] for name in sorted(unique)]


def link_tree(destination: Path, *, with_bytecode: bool = False) -> int:
    """`destination` as package/ would be, from this interpreter's installed dependencies (symlinked files,
    pruned by `keep`): importable with `python -S` to prove the pruning removes nothing a function needs.
    `with_bytecode`: the installed `__pycache__` files of the kept modules too (a faster import)."""
    count = 0
    for distribution in runtime_distributions():
        for file in distribution.files or []:
            relative = file.as_posix()
            if relative.startswith(".."):
                continue
            if not keep(relative):
                if not (with_bytecode and "/__pycache__/" in relative and relative.endswith(PYC_SUFFIX)):
                    continue
                directory, _, name = relative.rpartition("/__pycache__/")
                if not keep(f"{directory}/{name.split('.')[0]}.py"):
                    continue
            source = Path(distribution.locate_file(file))
            target = destination / relative
            if not source.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(source)
                count += 1
    return count
