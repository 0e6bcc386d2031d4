"""File intake in `hdhub run all` started as a process: a laboratory's LIMS registers an
NGS test over REST, its script sends the VCF with OpenSSH's `sftp -b` and moves it to
Finished, the platform's own worker links the file to the registration, and sends it to
the central platform's stand-in (the sim), which acknowledges it."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Platform
from tests.support.samples import record

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sftp") is None, reason="OpenSSH's sftp client is missing: make openssh"),
]

VCF = (
    "##fileformat=VCFv4.2\n##source=lims\n"
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tTUMOR\n"
    "7\t55191822\t.\tT\tG\t50\tPASS\tDP=1500\tGT\t0/1\n"
)


def sftp_port(platform: Platform) -> int:
    """The SFTP port the process logged ("SFTP serving", bind host:port)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in platform.log.read_text().splitlines():
            if "SFTP serving" in line and line.startswith("{"):
                return int(json.loads(line)["bind"].rsplit(":", 1)[1])
        time.sleep(0.2)
    raise AssertionError("the SFTP server did not start:\n" + platform.log.read_text()[-3000:])


def test_a_lims_script_sends_a_vcf_that_is_linked_and_reaches_the_central_platform(
    platform: Platform, tmp_path: Path
) -> None:
    name = f"NGS_E2E_{uuid.uuid4().hex[:12]}.vcf"
    token = platform.token("lab-demo-lims", "demo-lims-secret")
    with platform.client(token) as c:
        r = c.post(
            "/api/v1/registrations",
            json={
                "organisation_id": "lab-demo",
                "dcd": "NGS",
                "values": record("NGS", TX_VCF_FILE_NAME=name),
                "submit": True,
            },
        )
        assert r.status_code in (200, 201, 202), r.text
        registration = r.json()["id"]

    (tmp_path / name).write_text(VCF)
    askpass = tmp_path / "askpass.sh"
    askpass.write_text("#!/bin/sh\necho 'demo-sftp-lab-secret'\n")
    askpass.chmod(0o700)
    (tmp_path / "batch").write_text(f"cd /NGS\nput {name}\nrename {name} Finished/{name}\n")
    done = subprocess.run(
        [
            "sftp",
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=no",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "LogLevel=ERROR",
            "-P",
            str(sftp_port(platform)),
            "-b",
            "batch",
            "lab-demo-sftp@127.0.0.1",
        ],  # fmt: skip
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "SSH_ASKPASS": str(askpass),
            "SSH_ASKPASS_REQUIRE": "force",
            "DISPLAY": ":0",
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    # The host key was generated into the data folder on first start (embedded defaults).
    assert (platform.data_dir / "intake" / "ssh_host_ed25519_key").is_file()
    with platform.client(token) as c:
        deadline = time.monotonic() + 30
        while True:
            files = [f for f in c.get("/api/v1/files/lab-demo").json()["items"] if f["filename"] == name]
            if files and files[0]["links"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert files and not files[0]["unmatched"], files
        assert files[0]["links"] == [
            {"registration_id": registration, "field": "TX_VCF_FILE_NAME", "recordname": ""}
        ]
        assert files[0]["size"] == len(VCF)
        # Once the registration is delivered, the worker sends the file; the sim acknowledges.
        while files[0]["state"] != "acknowledged" and time.monotonic() < deadline + 60:
            time.sleep(0.5)
            files = [f for f in c.get("/api/v1/files/lab-demo").json()["items"] if f["filename"] == name]
        assert files[0]["state"] == "acknowledged" and files[0]["acknowledged_at"], files
        assert files[0]["central_offset"] == len(VCF)
    operator = person(platform, "operator@hdhub.test", "demo-operator")
    with platform.client(operator) as c:
        held = c.get(f"/sim/receiver/files/{files[0]['id']}").json()
    assert held["acknowledged"] and held["sha256"] == files[0]["sha256"] and held["size"] == len(VCF)


def person(platform: Platform, username: str, password: str) -> str:
    r = httpx.post(
        f"{platform.base_url}/realms/hdhub/protocol/openid-connect/token",
        data={
            "grant_type": "password",
            "client_id": "hdhub-portal",
            "username": username,
            "password": password,
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])
