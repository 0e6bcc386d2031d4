"""The third-party browser assets are the npm packages the lockfile pins: each committed
file matches the manifest `make assets` wrote, and the manifest the lockfile."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LOCK = json.loads((ROOT / "services/portal/assets/package-lock.json").read_text())["packages"]
FOLDERS = [
    ROOT / "services/portal/src/hdhub/portal/static/vendor",
    ROOT / "services/portal/tests/browser/vendor",
]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.parent.name)
def test_vendored_files_are_the_locked_packages(folder: Path) -> None:
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert manifest
    for name, entry in manifest.items():
        data = (folder / name).read_bytes()
        assert entry["sri"] == "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode(), name
        locked = LOCK[f"node_modules/{entry['package']}"]
        assert (entry["version"], entry["lock_integrity"]) == (locked["version"], locked["integrity"]), name


def test_package_json_pins_exact_versions() -> None:
    package = json.loads((ROOT / "services/portal/assets/package.json").read_text())
    for name, version in package["dependencies"].items():
        assert version[0].isdigit(), f"{name} must be pinned, not {version}"
        assert LOCK[f"node_modules/{name}"]["version"] == version
