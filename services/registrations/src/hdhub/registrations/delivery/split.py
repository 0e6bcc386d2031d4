"""The split of a registration for delivery: the patient's identifier goes to
pseudonymisation, the register variables (every field bound for healthdata that is not
personal data) to the central platform."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2 as pseudo_pb
from hdhub.registrations.catalogue.service import Catalogue
from hdhub.registrations.engine.dcd import DcdDefinition
from hdhub.registrations.records.business_key import PSEUDOCODE_FIELDS, SSIN_FORMAT


@dataclass(frozen=True)
class Identifier:
    """What pseudonymisation gets of a patient: the SSIN, else the pseudocode inputs."""

    ssin: str = ""
    pseudocode: pseudo_pb.PseudocodeInputs | None = None


@dataclass(frozen=True)
class Splitter:
    """Which fields of a DCD version are the identifier and which go to the central
    platform, worked out once per version (not per registration)."""

    personal: frozenset[str]
    not_for_hd: frozenset[str]
    ssin_fields: tuple[str, ...]

    @classmethod
    def of(cls, definition: DcdDefinition) -> Splitter:
        return cls(
            frozenset(f.technical_name for f in definition.fields if f.personal_data),
            frozenset(f.technical_name for f in definition.fields if not f.destination_hd),
            tuple(f.technical_name for f in definition.fields if f.format == SSIN_FORMAT and f.personal_data),
        )

    def __call__(self, values: Mapping[str, Any]) -> tuple[Identifier, dict[str, Any]]:
        ssin = next((str(values[n]) for n in self.ssin_fields if values.get(n)), "")
        identifier = Identifier(ssin=ssin)
        if not ssin and any(values.get(n) for n in PSEUDOCODE_FIELDS.values()):
            inputs = pseudo_pb.PseudocodeInputs(
                **{k: str(values.get(n) or "") for k, n in PSEUDOCODE_FIELDS.items()}
            )
            identifier = Identifier(pseudocode=inputs)
        out = self.personal | self.not_for_hd

        def excluded(name: str) -> bool:
            return name in out or (name[-1:].isdigit() and name.rsplit("_", 1)[0] in out)

        return identifier, {k: v for k, v in values.items() if not excluded(k)}


@dataclass
class Splitters:
    """The splitter of each DCD version delivered so far."""

    catalogue: Catalogue
    _known: dict[tuple[str, str], Splitter] = field(default_factory=dict)

    async def of(self, dcd_code: str, dcd_version: str) -> Splitter:
        key = (dcd_code, dcd_version)
        splitter = self._known.get(key)
        if splitter is None:
            entry = await self.catalogue.get(dcd_code, dcd_version)
            splitter = self._known[key] = Splitter.of(entry.definition)
        return splitter
