from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import SettingsConfigDict

from hdhub.common.config import ServiceSettings, platform
from hdhub.common.envelope import MasterKeySettings


class NippinSettings(ServiceSettings, MasterKeySettings):
    """Also ``HDHUB_NIPPIN_MASTER_KEY`` (``_FILE``, ``RETIRED_MASTER_KEYS``): the key that
    wraps the data keys of the messages (they hold SSINs), encrypted at rest; required in
    production."""

    model_config = SettingsConfigDict(env_prefix="HDHUB_NIPPIN_", extra="ignore")

    service_name: str = "nippin"
    #: How messages reach MyCareNet, per installation: REST (posted, the TACK is the
    #: response) or FILE_SYSTEM (written to a folder a MyCareNet gateway collects; the TACK
    #: comes back as a file).
    interface: Literal["REST", "FILE_SYSTEM"] = "REST"
    #: REST: where messages are posted. Default: the sim's MyCareNet stand-in at the public URL.
    mycarenet_url: str | None = None
    #: REST: a call without an answer for this long is a time-out (the message goes ERROR).
    mycarenet_timeout_seconds: float = 30.0
    #: FILE_SYSTEM: the gateway's folder, with ``out/`` (messages) and ``in/`` (TACKs).
    #: Default ``<HDHUB_DATA_DIR>/mycarenet``, which the sim's stand-in gateway also reads.
    folder: Path | None = None
    #: FILE_SYSTEM: a message collected but unanswered for this long goes ERROR and is sent
    #: again (same id: the receiving side drops the duplicate).
    answer_timeout_seconds: float = 6 * 3600.0
    #: A message refused this many times by a TACK error is ARCHIVED (never processed again).
    #: Unreachable or timed-out sends never archive: they are retried until MyCareNet is back.
    max_refusals: int = 5
    #: Back-off between sends of a message in ERROR: first, doubling up to the maximum.
    retry_first_seconds: float = 60.0
    retry_max_seconds: float = 3600.0
    #: The nightly report runs once per UTC day from this hour on.
    report_hour: int = 1
    #: Days a message keeps its XML (with the SSIN) after it reached a final status (SENT
    #: with its TACK, INVALID, ARCHIVED); then the XML is deleted, the row and statuses stay.
    message_retention_days: float = 180.0
    #: Object store for exports; default the platform's.
    object_store_url: str | None = None
    worker_poll_seconds: float = 30.0

    def resolved_folder(self) -> Path:
        return self.folder or platform().data_dir / "mycarenet"

    def resolved_mycarenet_url(self) -> str:
        return self.mycarenet_url or f"{platform().public_url.rstrip('/')}/sim/mycarenet/messages"
