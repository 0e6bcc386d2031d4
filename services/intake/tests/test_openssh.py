"""OpenSSH's own client (`sftp -b`, batch mode) against our SFTP server: what laboratory
scripts run. The password comes from SSH_ASKPASS (batch mode has no prompt)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from services.intake.tests.support import LAB_LOGIN, LAB_PASSWORD, file_named, unique, vcf
from tests.support.stack import Stack

pytestmark = pytest.mark.skipif(
    shutil.which("sftp") is None, reason="OpenSSH's sftp client is missing: make openssh"
)


async def run_sftp(
    stack: Stack, tmp_path: Path, batch: str, *, password: str = LAB_PASSWORD
) -> tuple[int, str]:
    askpass = tmp_path / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho '{password}'\n")
    askpass.chmod(0o700)
    (tmp_path / "batch").write_text(batch)
    port = stack.service("intake").sftp_port
    process = await asyncio.create_subprocess_exec(
        "sftp",
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=no",  # before -b: the first value wins, so the password can be asked
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-o",
        "LogLevel=ERROR",
        "-P",
        str(port),
        "-b",
        str(tmp_path / "batch"),
        f"{LAB_LOGIN}@127.0.0.1",
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            "PATH": "/usr/bin:/bin",
            "SSH_ASKPASS": str(askpass),
            "SSH_ASKPASS_REQUIRE": "force",
            "DISPLAY": ":0",
        },
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(errors="replace")


async def test_a_batch_sends_a_vcf_and_moves_it_to_finished(stack: Stack, tmp_path: Path) -> None:
    name = unique() + ".vcf"
    (tmp_path / name).write_bytes(vcf())
    code, out = await run_sftp(
        stack, tmp_path, f"cd /NGS\nput {name}\nls\nrename {name} Finished/{name}\nls Finished\n"
    )
    assert code == 0, out
    row = await file_named(stack, name)
    assert row["state"] == "accepted" and row["size"] == len(vcf()) and row["source"] == "sftp"


async def test_a_batch_meets_every_refusal_and_loses_nothing(stack: Stack, tmp_path: Path) -> None:
    name, empty = unique() + ".vcf", unique() + ".vcf"
    (tmp_path / name).write_bytes(vcf())
    (tmp_path / empty).write_bytes(b"")
    notes = unique() + ".txt"
    (tmp_path / notes).write_bytes(b"hello")
    batch = "\n".join(
        [
            "cd /NGS",
            f"put {name}",
            f"-get {name} copy.vcf",  # '-': carry on after a failure
            "-mkdir private",
            f"-symlink {name} link.vcf",
            f"-put {empty}",
            f"-put {notes}",
            f"-put {name} /../../etc/{name}",
            f"-rename {name} /HIV_SEQUENCE/Finished/{name}",
            f"rename {name} Finished/{name}",
            "",
        ]
    )
    code, out = await run_sftp(stack, tmp_path, batch)
    assert code == 0, out
    assert not (tmp_path / "copy.vcf").exists()
    # The client names the failures (OpenSSH prints the status, not our text; REST has the reasons).
    assert out.count("Permission denied") == 5, out  # get, mkdir, symlink, ../../etc, other registry
    assert "close remote: Failure" in out and f'dest open "/NGS/{notes}": Failure' in out
    assert (await file_named(stack, name))["state"] == "accepted"
    refused = await file_named(stack, empty)
    assert refused["state"] == "aborted" and refused["rule"] == "empty-file"
    # OpenSSH showed only "Failure" for the wrong extension: the listing says why.
    wrong_name = await file_named(stack, notes)
    assert wrong_name is not None and wrong_name["state"] == "aborted" and wrong_name["rule"] == "file-name"
    assert ".vcf" in wrong_name["reason"], wrong_name["reason"]


async def test_a_file_failing_its_checks_stops_the_batch_and_says_so(stack: Stack, tmp_path: Path) -> None:
    """A laboratory's script learns at once: `put` of a file whose content fails the
    checks fails (the batch stops before its move into Finished), and a move made anyway
    (`-rename`) fails too, the file then rejected with its reason."""
    bad = unique() + ".vcf"
    (tmp_path / bad).write_bytes(b"not a VCF\n")
    code, out = await run_sftp(stack, tmp_path, f"cd /NGS\nput {bad}\nrename {bad} Finished/{bad}\n")
    assert code != 0 and "close remote: Failure" in out, out
    waiting = await file_named(stack, bad)
    assert (waiting["state"], waiting["rule"]) == ("received", "vcf-format")
    code, out = await run_sftp(stack, tmp_path, f"cd /NGS\n-rename {bad} Finished/{bad}\n")
    assert code == 0 and "Failure" in out, out
    rejected = await file_named(stack, bad)
    assert (rejected["state"], rejected["rule"]) == ("rejected", "vcf-format")
    assert rejected["reason"] == "line 1 must be ##fileformat=VCFv4.x"


async def test_a_wrong_password_fails_the_batch(stack: Stack, tmp_path: Path) -> None:
    code, out = await run_sftp(stack, tmp_path, "ls\n", password="not-the-password")
    assert code != 0 and "Permission denied" in out
