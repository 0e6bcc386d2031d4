"""Random secrets for an installation without a secret store (`make run`, `hdhub run all`).

On first start every secret that has no usable default (service client secret, each
service's secret key, the envelope master keys) is drawn at random and written to
``<data_dir>/secrets.json`` (mode 0600); later starts read the same file, so what was
encrypted or hashed under them stays readable, and processes sharing the data folder share
them. A value set in the environment or mounted in ``HDHUB_SECRETS_DIR`` wins (a cluster
gives every one from a Secret: pods do not share a data folder). Values are never printed or logged. Production never generates: its
secrets come from its secret store, and its settings refuse to start without them.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

from hdhub.common.config import SERVICES

FILE_NAME = "secrets.json"


def _token() -> str:
    return secrets.token_urlsafe(48)


def _aes_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


#: The variables generated, and how (the master keys are 32 bytes, base64).
GENERATED: Mapping[str, Callable[[], str]] = {
    "HDHUB_SERVICE_CLIENT_SECRET": _token,
    **{f"HDHUB_{name.upper()}_SECRET_KEY": _token for name in SERVICES},
    "HDHUB_PORTAL_MASTER_KEY": _aes_key,
    "HDHUB_PSEUDONYMISATION_MASTER_KEY": _aes_key,
    "HDHUB_UPLOADS_MASTER_KEY": _aes_key,
    "HDHUB_INTAKE_MASTER_KEY": _aes_key,
    "HDHUB_NIPPIN_MASTER_KEY": _aes_key,
    "HDHUB_REGISTRATIONS_MASTER_KEY": _aes_key,
}


def ensure(data_dir: Path) -> Path:
    """Read (or create, with the missing values drawn at random) ``data_dir/secrets.json``
    and put each value in the environment unless it is set there already."""
    data_dir.mkdir(parents=True, exist_ok=True)
    # The data folder holds the secrets and, on a laptop, the SQLite files and objects with
    # patient data: readable by its owner only.
    data_dir.chmod(0o700)
    path = data_dir / FILE_NAME
    # Processes started at once over one data folder must agree: one draws, the others read.
    with open(data_dir / f"{FILE_NAME}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        missing = {name: make() for name, make in GENERATED.items() if not stored.get(name)}
        if missing:
            stored.update(missing)
            _write_private(path, stored)
    mounted = Path(os.environ.get("HDHUB_SECRETS_DIR", "/run/secrets/hdhub"))
    for name, value in stored.items():
        if not (mounted / name).is_file():
            os.environ.setdefault(name, value)
    return path


def _write_private(path: Path, values: Mapping[str, str]) -> None:
    """Write with mode 0600 from the first byte (never readable by others, even briefly)."""
    partial = path.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(values, f, indent=1, sort_keys=True)
    os.chmod(partial, 0o600)
    os.replace(partial, path)


__all__ = ["FILE_NAME", "GENERATED", "ensure"]
