"""Per-project domain keys with versions, derived rather than stored.

A domain key is HKDF-SHA256 of the master key with the project code and version as
``info``: the same master key always gives the same key, so replicas agree and nothing
needs storing, backing up or encrypting at rest besides the master key itself (a Secret).
Rotating a project's key is raising its version in settings; pseudonyms made under the
old version stay reproducible as long as the master key is kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hdhub.common.errors import FieldProblem, Problem
from hdhub.pseudonymisation.domain import KeyedHash

PROJECT_CODE = re.compile(r"^HDBP\d{4}$")


class DomainKeys:
    def __init__(self, master: bytes, versions: Mapping[str, int], *, default_version: int = 1) -> None:
        if len(master) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._master = master
        self._versions = dict(versions)
        self._default = default_version
        self._cache: dict[tuple[str, int], bytes] = {}
        self._hashers: dict[tuple[str, int], KeyedHash] = {}

    def hasher(self, project_code: str) -> tuple[int, KeyedHash]:
        """The project's current key version and its keyed hash (made once per key)."""
        version, key = self.current(project_code)
        found = self._hashers.get((project_code, version))
        if found is None:
            found = self._hashers[(project_code, version)] = KeyedHash(key)
        return version, found

    def current(self, project_code: str) -> tuple[int, bytes]:
        """The project's current key version and key."""
        if not PROJECT_CODE.match(project_code):
            raise Problem(
                400,
                "invalid-project",
                "project_code must look like HDBPnnnn",
                errors=[
                    FieldProblem(
                        field="project_code", rule="format", message="Expected HDBP and four digits."
                    )
                ],
            )
        version = self._versions.get(project_code, self._default)
        return version, self.key(project_code, version)

    def key(self, project_code: str, version: int) -> bytes:
        cached = self._cache.get((project_code, version))
        if cached is None:
            cached = HKDF(
                algorithm=hashes.SHA256(),
                length=32,
                salt=None,
                info=f"hdhub-pseudonymisation-domain-key:{project_code}:{version}".encode(),
            ).derive(self._master)
            self._cache[(project_code, version)] = cached
        return cached
