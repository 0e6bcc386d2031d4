"""Install the portal's third-party browser assets from the npm registry and copy the files
it serves (``make assets``).

``npm ci`` installs exactly what services/portal/assets/package-lock.json pins, checking
each tarball against the lockfile's integrity hash; the files below are then copied into
the package (htmx, served by the portal) and the browser tests (axe-core, injected by
Playwright), with a MANIFEST.json naming each file's package, version, the lockfile's
integrity and the file's own SHA-384 (the ``integrity`` attribute of its script tag).
They are committed, so `make run` needs no Node; ``services/portal/tests/test_assets.py``
checks the committed files against the manifest and the manifest against the lockfile.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "services" / "portal" / "assets"
FILES = {
    # package: (file in the package, where it goes)
    "htmx.org": ("dist/htmx.min.js", ROOT / "services/portal/src/hdhub/portal/static/vendor/htmx.min.js"),
    "axe-core": ("axe.min.js", ROOT / "services/portal/tests/browser/vendor/axe.min.js"),
}


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def main() -> None:
    subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=ASSETS, check=True)
    lock = json.loads((ASSETS / "package-lock.json").read_text())["packages"]
    manifests: dict[Path, dict[str, dict[str, str]]] = {}
    for package, (source, target) in FILES.items():
        entry = lock[f"node_modules/{package}"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ASSETS / "node_modules" / package / source, target)
        manifests.setdefault(target.parent, {})[target.name] = {
            "package": package,
            "version": entry["version"],
            "lock_integrity": entry["integrity"],
            "source": source,
            "sri": sri(target.read_bytes()),
        }
    for folder, manifest in manifests.items():
        (folder / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        print(f"{folder.relative_to(ROOT)}: {', '.join(sorted(manifest))}")  # noqa: T201


if __name__ == "__main__":
    main()
