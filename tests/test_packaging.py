"""What ships with lrsearch: the packaged study configs, one copy each, inside the package.

``lrsearch run --study NAME`` reads ``./studies/NAME.toml`` first, then the packaged config
(:func:`lrsearch.config.find_config`): a second copy of a packaged config in the repository's
``studies/`` would be the one read from the repository's root, and could drift from the one
the wheel ships.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lrsearch
from lrsearch.config import find_config, load_config

ROOT = Path(__file__).resolve().parent.parent
PACKAGED = Path(lrsearch.__file__).resolve().parent / "studies"
#: Folders of the working tree that hold no source: environments, caches, build outputs.
_NOT_SOURCE = frozenset({"__pycache__", "bench_out", "build", "dist", "node_modules", "site"})


def _packaged() -> list[Path]:
    return sorted(PACKAGED.glob("*.toml"))


def _tomls_outside_the_package() -> list[Path]:
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d not in _NOT_SOURCE]
        here = Path(folder)
        if here.resolve() not in (PACKAGED, ROOT / "lrsearch" / "studies"):
            found += [here / f for f in files if f.endswith(".toml")]
    return found


def test_the_packaged_configs_are_the_ones_the_error_names() -> None:
    names = [p.stem for p in _packaged()]
    assert names, f"no packaged configs in {PACKAGED}"
    with pytest.raises(ValueError, match="packaged configs") as info:
        load_config("no-such-study")
    assert f"the packaged configs ({', '.join(names)})" in str(info.value)


@pytest.mark.parametrize("path", _packaged(), ids=lambda p: p.name)
def test_a_packaged_config_is_a_file_of_the_package(path: Path) -> None:
    # Not a link to a copy elsewhere (a link is a text file on checkouts without symlinks).
    assert path.is_file() and not path.is_symlink()


def test_no_second_copy_of_a_packaged_config() -> None:
    packaged = {p.name: p.read_bytes() for p in _packaged()}
    for path in _tomls_outside_the_package():
        where = path.relative_to(ROOT)
        assert path.read_bytes() not in packaged.values(), f"{where} copies a packaged config"
        if path.parent.name == "studies":
            assert path.name not in packaged, f"{where} shadows the packaged config"


@pytest.mark.parametrize("path", _packaged(), ids=lambda p: p.name)
def test_the_repository_root_reads_the_packaged_config(path: Path) -> None:
    assert find_config(path.stem, cwd=ROOT) == path
