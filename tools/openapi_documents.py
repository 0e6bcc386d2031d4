"""Write every service's OpenAPI document, as ``hdhub run <service>`` serves it, and the
combined one of ``hdhub run all``, to a folder: what the lint test (tests/openapi) and the
generated client read. No database or server is needed: the apps are only built.

    python tools/openapi_documents.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SERVICES = ("registrations", "uploads", "intake", "portal", "sim", "identity", "nippin")


def main(out: Path) -> None:
    for name in (*SERVICES, "pseudonymisation"):
        # Building a service reads its secret key; any will do for a document.
        os.environ.setdefault(f"HDHUB_{name.upper()}_SECRET_KEY", "openapi-document-only-" + "0" * 32)
    from hdhub.cli.services import make_service
    from hdhub.common.web import create_app

    out.mkdir(parents=True, exist_ok=True)
    services = {name: make_service(name) for name in SERVICES}
    for name, service in services.items():
        app = create_app(title=f"hdhub {name}", routers=service.routers())
        (out / f"{name}.json").write_text(json.dumps(app.openapi(), indent=1))
    combined = create_app(title="hdhub", routers=[r for s in services.values() for r in s.routers()])
    (out / "all.json").write_text(json.dumps(combined.openapi(), indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
