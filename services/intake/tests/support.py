"""Helpers for the intake tests: demo SFTP logins, sample files, real clients."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager

import paramiko

LAB, LAB_LOGIN, LAB_PASSWORD = "lab-demo", "lab-demo-sftp", "demo-sftp-lab-secret"
AZ, AZ_LOGIN, AZ_PASSWORD = "az-demo", "az-demo-sftp", "demo-sftp-az-secret"
_serial = itertools.count(int(time.time() * 1000) % 10**9)


def unique(prefix: str = "NGS_T") -> str:
    return f"{prefix}_{next(_serial)}"


def stamp() -> str:
    """A fresh ARL_yyyymmddHHMMSS file name of laboratory HSP."""
    n = next(_serial) % 10**6
    return f"HSP_2024{(n // 10000) % 12 + 1:02d}{n % 28 + 1:02d}{(n // 100) % 24:02d}{n % 60:02d}{(n // 7) % 60:02d}"


def vcf(*, meta: tuple[str, ...] = (), samples: tuple[str, ...] = ("SAMPLE_1",), rows: int = 3) -> bytes:
    lines = ["##fileformat=VCFv4.2", "##source=hdhub-tests", "##reference=GRCh38", *meta]
    header = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]
    if samples:
        header += ["FORMAT", *samples]
    lines.append("\t".join(header))
    for i in range(rows):
        row = ["7", str(55_191_822 + i), ".", "T", "G", "50", "PASS", "DP=1500"]
        if samples:
            row += ["GT", *(["0/1"] * len(samples))]
        lines.append("\t".join(row))
    return ("\n".join(lines) + "\n").encode()


def sequences(filename: str, records: int = 2, *, rows: list[str] | None = None) -> bytes:
    body = (
        rows
        if rows is not None
        else [f"{filename};{filename}_{i:05d};ACGTNRYKM" for i in range(1, records + 1)]
    )
    return ("filename;recordname;genetic_sequence\n" + "\n".join(body) + "\n").encode()


@contextmanager
def sftp(port: int, username: str = LAB_LOGIN, password: str = LAB_PASSWORD) -> Iterator[paramiko.SFTPClient]:
    """A paramiko SFTP session (blocking: call from a thread)."""
    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.connect(username=username, password=password)
        client = paramiko.SFTPClient.from_transport(transport)
        assert client is not None
        yield client
    finally:
        transport.close()


async def eventually(check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """Wait until ``check()`` (async) returns something truthy: the server finishes a
    cut connection on its own time. Polls; fails after ``timeout`` seconds."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result or loop.time() > deadline:
            assert result, "condition not met in time"
            return result
        await asyncio.sleep(0.05)


async def files_of(stack, organisation: str = LAB, user: str = "biologist@lab-demo.test", **params: str):  # type: ignore[no-untyped-def]
    r = await stack.client.get(
        f"/api/v1/files/{organisation}", params=params, headers=await stack.headers(user)
    )
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def file_named(stack, name: str, organisation: str = LAB, user: str = "biologist@lab-demo.test"):  # type: ignore[no-untyped-def]
    return next(
        (f for f in await files_of(stack, organisation, user, limit="1000") if f["filename"] == name), None
    )
