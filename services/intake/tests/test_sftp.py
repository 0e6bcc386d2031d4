"""The SFTP edge with a real client (paramiko) against the in-process stack's server:
the Finished-folder rule, write-only files, and every kind of bad input refused with a
message and nothing lost."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import socket

import asyncssh
import paramiko
import pytest

from services.intake.tests.support import (
    AZ_LOGIN,
    AZ_PASSWORD,
    LAB,
    LAB_LOGIN,
    LAB_PASSWORD,
    eventually,
    file_named,
    files_of,
    sftp,
    unique,
    vcf,
)
from tests.support.stack import Stack


def port(stack: Stack) -> int:
    p = stack.service("intake").sftp_port
    assert p
    return int(p)


async def test_a_file_counts_only_once_moved_to_finished_and_is_then_the_platforms(stack: Stack) -> None:
    name = unique() + ".vcf"

    def send() -> tuple[list[str], list[str], list[str], paramiko.SFTPAttributes]:
        with sftp(port(stack)) as c:
            attrs = c.putfo(io.BytesIO(vcf()), f"/NGS/{name}")  # paramiko stats the file to confirm the size
            waiting = c.listdir("/NGS")
            return waiting, c.listdir("/"), c.listdir("/NGS/Finished"), attrs

    waiting, top, finished, attrs = await asyncio.to_thread(send)
    assert name in waiting and "Finished" in waiting and sorted(top) == ["HIV_SEQUENCE", "NGS"]
    assert finished == [] and attrs.st_size == len(vcf())
    received = await file_named(stack, name)
    assert received["state"] == "received" and received["sha256"] and received["size"] == len(vcf())

    def deliver() -> tuple[list[str], list[str]]:
        with sftp(port(stack)) as c:
            c.rename(f"/NGS/{name}", f"/NGS/Finished/{name}")
            return c.listdir("/NGS"), c.listdir("/NGS/Finished")

    after, finished = await asyncio.to_thread(deliver)
    assert name not in after and finished == []
    delivered = await file_named(stack, name)
    assert (
        delivered["state"] == "accepted" and delivered["id"] == received["id"] and delivered["delivered_at"]
    )
    # The object is in the store, complete (encrypted at rest), with its SHA-256.
    intake = stack.service("intake")
    listing = await intake.files.listing(LAB, file_id=delivered["id"])
    assert await intake.objects.read(listing.files[0].object_key) == vcf()
    assert delivered["sha256"] == hashlib.sha256(vcf()).hexdigest()


async def test_files_are_write_only(stack: Stack) -> None:
    name = unique() + ".vcf"

    def attempt() -> str:
        with sftp(port(stack)) as c:
            c.putfo(io.BytesIO(vcf()), f"/NGS/{name}")
            with pytest.raises(PermissionError) as denied:
                c.open(f"/NGS/{name}", "r")
            return str(denied.value)

    assert "write-only" in await asyncio.to_thread(attempt)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/../az-demo/NGS/x.vcf", "leaves your organisation's folder"),
        ("../../etc/passwd.vcf", "leaves your organisation's folder"),
        ("/etc/passwd", "no folder etc"),
        ("/NGS/x\x07y.vcf", "control characters"),
        ("/NGS/report.pdf", "end in .vcf or .vcf.gz"),
        ("/NGS/NUL.vcf", "Windows device name"),
        ("/NGS/x\u202ey.vcf", "invisible characters"),
        ("/NGS/x\x1by.vcf", "control characters"),
        ("/NGS/85040216932.vcf", "national register number"),
        ("/NGS/Finished/x.vcf", "then move it into /NGS/Finished"),
        ("/NGS/sub/x.vcf", "no subfolders"),
        ("/x.vcf", "send files into a registry folder"),
    ],
)
async def test_bad_paths_are_refused_with_a_reason(stack: Stack, path: str, message: str) -> None:
    def attempt() -> str:
        with sftp(port(stack)) as c, pytest.raises(OSError) as refused:
            c.putfo(io.BytesIO(vcf()), path)
        return str(refused.value)

    assert message in await asyncio.to_thread(attempt)


async def test_links_folders_and_removing_delivered_files_are_refused(stack: Stack) -> None:
    name = unique() + ".vcf"

    def attempt() -> list[str]:
        out = []
        with sftp(port(stack)) as c:
            c.putfo(io.BytesIO(vcf()), f"/NGS/{name}")
            for action in (
                lambda: c.symlink(f"/NGS/{name}", "/NGS/link.vcf"),
                lambda: c.mkdir("/NGS/mine"),
                lambda: c.rmdir("/NGS/Finished"),
                lambda: c.rename(f"/NGS/{name}", f"/HIV_SEQUENCE/Finished/{name}"),
                lambda: c.rename(f"/NGS/{name}", "/NGS/Finished/bad name.vcf"),
                lambda: c.remove(f"/NGS/Finished/{name}"),
            ):
                with pytest.raises(OSError) as refused:
                    action()
                out.append(str(refused.value))
            # Still waiting, untouched, and withdrawable before Finished.
            assert name in c.listdir("/NGS")
            c.remove(f"/NGS/{name}")
            assert name not in c.listdir("/NGS")
        return out

    messages = await asyncio.to_thread(attempt)
    assert "links are refused" in messages[0]
    assert "folders are fixed" in messages[1] and "folders are fixed" in messages[2]
    assert "can only be moved into /NGS/Finished" in messages[3]
    assert "only ASCII letters" in messages[4]
    assert "cannot be removed" in messages[5]
    assert await file_named(stack, name) is None


async def test_a_move_into_finished_refused_for_its_name_says_why_in_the_listing(stack: Stack) -> None:
    """OpenSSH's sftp prints only "Failure" for a refused rename: the file, still waiting,
    carries the reason in the files listing until it is moved under a good name."""
    name = unique() + ".vcf"

    def refused_then_moved() -> None:
        with sftp(port(stack)) as c:
            c.putfo(io.BytesIO(vcf()), f"/NGS/{name}")
            with pytest.raises(OSError):
                c.rename(f"/NGS/{name}", "/NGS/Finished/bad name.vcf")

    await asyncio.to_thread(refused_then_moved)
    waiting = await file_named(stack, name)
    assert waiting is not None and waiting["state"] == "received", waiting
    assert "moving it into Finished under another name was refused" in waiting["reason"]
    assert "only ASCII letters" in waiting["reason"]

    def moved() -> None:
        with sftp(port(stack)) as c:
            c.rename(f"/NGS/{name}", f"/NGS/Finished/{name}")

    await asyncio.to_thread(moved)
    delivered = await file_named(stack, name)
    assert delivered is not None and delivered["state"] != "received" and delivered["reason"] == ""


async def test_a_zero_byte_file_is_refused_and_nothing_stored(stack: Stack) -> None:
    name = unique() + ".vcf"

    def attempt() -> list[str]:
        with sftp(port(stack)) as c:
            # paramiko does not report a failed close (OpenSSH's client does: test_openssh)
            c.putfo(io.BytesIO(b""), f"/NGS/{name}", confirm=False)
            return c.listdir("/NGS")

    assert name not in await asyncio.to_thread(attempt)
    row = await file_named(stack, name)
    assert row["state"] == "aborted" and row["rule"] == "empty-file"
    assert row["reason"] == "zero-byte files are refused: nothing was stored"


async def test_a_file_failing_its_checks_fails_the_close_and_the_move_naming_the_rule(stack: Stack) -> None:
    """The client is told, in its own session: the close of a file whose content fails
    the checks fails with the reason (the file waits in the folder, so a corrected one can
    replace it), and moving it into Finished anyway rejects it and fails too."""
    name = unique() + ".vcf"
    login = {"username": LAB_LOGIN, "password": LAB_PASSWORD, "known_hosts": None}
    async with asyncssh.connect("127.0.0.1", port(stack), **login) as conn, conn.start_sftp_client() as c:
        with pytest.raises(asyncssh.SFTPFailure) as closed:
            async with c.open(f"/NGS/{name}", "wb") as f:
                await f.write(b"not a VCF\n")
        assert closed.value.reason == (
            "refused: line 1 must be ##fileformat=VCFv4.x. The file waits in the folder: send a"
            " corrected one under the same name, or remove it"
        )
        assert name in await c.listdir("/NGS")
        waiting = await file_named(stack, name)
        assert (waiting["state"], waiting["rule"]) == ("received", "vcf-format")
        with pytest.raises(asyncssh.SFTPFailure) as moved:
            await c.rename(f"/NGS/{name}", f"/NGS/Finished/{name}")
        assert moved.value.reason == "rejected: line 1 must be ##fileformat=VCFv4.x"
        assert name not in await c.listdir("/NGS")
    rejected = await file_named(stack, name)
    assert (rejected["state"], rejected["rule"]) == ("rejected", "vcf-format")
    assert rejected["reason"] == "line 1 must be ##fileformat=VCFv4.x"


async def test_a_corrected_file_sent_again_under_the_same_name_replaces_the_refused_one(stack: Stack) -> None:
    name = unique() + ".vcf"
    login = {"username": LAB_LOGIN, "password": LAB_PASSWORD, "known_hosts": None}
    async with asyncssh.connect("127.0.0.1", port(stack), **login) as conn, conn.start_sftp_client() as c:
        with pytest.raises(asyncssh.SFTPFailure):
            async with c.open(f"/NGS/{name}", "wb") as f:
                await f.write(b"not a VCF\n")
        async with c.open(f"/NGS/{name}", "wb") as f:
            await f.write(vcf())
        await c.rename(f"/NGS/{name}", f"/NGS/Finished/{name}")
    rows = [r for r in await files_of(stack) if r["filename"] == name]
    assert [r["state"] for r in rows] == ["accepted"] and not rows[0]["rule"]


async def test_winscp_sends_under_a_temporary_name_then_renames_it_and_the_lab_moves_it(stack: Stack) -> None:
    """WinSCP's default for files over 100 KB: ``<name>.filepart``, renamed to ``<name>``
    in the same folder once whole; the name rules apply to ``<name>``, and the renamed
    file replaces one already waiting under that name."""
    name = unique() + ".vcf.gz"
    body = gzip.compress(vcf(rows=50))

    def send() -> tuple[list[str], list[str]]:
        with sftp(port(stack)) as c:
            c.putfo(io.BytesIO(b"an older copy"), f"/NGS/{name}", confirm=False)
            c.putfo(io.BytesIO(body), f"/NGS/{name}.filepart")
            during = c.listdir("/NGS")
            c.rename(f"/NGS/{name}.filepart", f"/NGS/{name}")
            after = c.listdir("/NGS")
            c.rename(f"/NGS/{name}", f"/NGS/Finished/{name}")
            return during, after

    during, after = await asyncio.to_thread(send)
    assert {name, f"{name}.filepart"} <= set(during)
    assert name in after and f"{name}.filepart" not in after and after.count(name) == 1
    rows = [r for r in await files_of(stack) if r["filename"] in (name, f"{name}.filepart")]
    assert [(r["filename"], r["state"], r["size"]) for r in rows] == [(name, "accepted", len(body))]


async def test_a_temporary_name_is_held_to_the_rules_of_the_name_it_will_take(stack: Stack) -> None:
    name = unique() + ".vcf"

    def attempt() -> tuple[str, str]:
        with sftp(port(stack)) as c:
            with pytest.raises(OSError) as bad_name:
                c.putfo(io.BytesIO(vcf()), f"/NGS/{name[:-4]}.txt.filepart")
            c.putfo(io.BytesIO(vcf()), f"/NGS/{name}.filepart")
            with pytest.raises(OSError) as elsewhere:
                c.rename(f"/NGS/{name}.filepart", f"/NGS/other-{name}")
            return str(bad_name.value), str(elsewhere.value)

    bad_name, elsewhere = await asyncio.to_thread(attempt)
    assert "files in NGS end in .vcf or .vcf.gz" in bad_name
    assert "can only be moved into /NGS/Finished" in elsewhere


async def test_a_name_with_control_characters_is_refused_and_listed_as_every_route_lists_it(
    stack: Stack,
) -> None:
    name = unique()

    def attempt() -> str:
        with sftp(port(stack)) as c, pytest.raises(OSError) as refused:
            c.putfo(io.BytesIO(vcf()), f"/NGS/{name}\x07bell.vcf")
        return str(refused.value)

    assert "control characters" in await asyncio.to_thread(attempt)
    row = await file_named(stack, f"{name}?bell.vcf")
    assert row is not None and (row["state"], row["rule"], row["source"]) == ("aborted", "file-name", "sftp")
    assert "control" in row["reason"] and "\x07" not in row["reason"]


async def test_a_file_over_the_size_limit_is_refused_as_it_passes_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    intake = stack.service("intake")
    monkeypatch.setattr(intake.settings, "max_file_bytes", 64 * 1024)
    name = unique() + ".vcf"
    big = vcf(rows=4000)
    assert len(big) > 64 * 1024

    def attempt() -> str:
        with sftp(port(stack)) as c:
            handle = c.open(f"/NGS/{name}", "w")  # unpipelined: each write's answer is read
            with pytest.raises(OSError) as refused:
                for start in range(0, len(big), 16 * 1024):
                    handle.write(big[start : start + 16 * 1024])
                    handle.flush()
            handle.close()
            assert name not in c.listdir("/NGS")
            return str(refused.value)

    assert "larger than the limit of 65536 bytes" in await asyncio.to_thread(attempt)
    row = await file_named(stack, name)
    assert row["state"] == "aborted" and row["rule"] == "too-large"
    assert [o async for o in intake.objects.list(f"intake/drop/{LAB}/NGS/{row['id']}")] == []


async def test_a_connection_cut_mid_transfer_leaves_no_object(stack: Stack) -> None:
    intake = stack.service("intake")
    name = unique() + ".vcf"

    def cut() -> None:
        transport = paramiko.Transport(("127.0.0.1", port(stack)))
        transport.connect(username=LAB_LOGIN, password="demo-sftp-lab-secret")
        client = paramiko.SFTPClient.from_transport(transport)
        assert client is not None
        handle = client.open(f"/NGS/{name}", "w")
        handle.write(vcf(rows=2000))
        handle.flush()
        # Pull the plug: no close of the file, no SSH disconnect.
        sock = transport.sock
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    await asyncio.to_thread(cut)

    async def aborted() -> dict | None:
        row = await file_named(stack, name)
        return row if row and row["state"] == "aborted" else None

    row = await eventually(aborted)
    assert row["rule"] == "connection-lost" and "nothing was stored" in row["reason"]
    assert await intake.objects.stat(f"intake/drop/{LAB}/NGS/{row['id']}") is None
    assert [o async for o in intake.objects.list(f"intake/drop/{LAB}/NGS/{row['id']}")] == []


async def test_a_wrong_password_is_refused(stack: Stack) -> None:
    def attempt() -> None:
        with pytest.raises(paramiko.AuthenticationException), sftp(port(stack), password="not-the-password"):
            pass
        with pytest.raises(paramiko.AuthenticationException), sftp(port(stack), username="nobody-sftp"):
            pass

    await asyncio.to_thread(attempt)


async def test_the_ssh_transport_offers_aes_and_hmac_only_so_openssh_clients_pick_them(stack: Stack) -> None:
    login = {"username": LAB_LOGIN, "password": LAB_PASSWORD, "known_hosts": None}
    with pytest.raises(asyncssh.KeyExchangeFailed):
        await asyncssh.connect(
            "127.0.0.1", port(stack), encryption_algs=["chacha20-poly1305@openssh.com"], **login
        )
    # OpenSSH's client order: chacha20-poly1305 first, then AES-CTR, then AES-GCM.
    openssh = ["chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"]
    openssh += ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
    # And its MAC order: UMAC first, then HMAC-SHA2 (EtM), then HMAC-SHA1, then the rest.
    openssh_macs = ["umac-64-etm@openssh.com", "umac-128-etm@openssh.com", "hmac-sha2-256-etm@openssh.com"]
    openssh_macs += ["hmac-sha2-512-etm@openssh.com", "hmac-sha1-etm@openssh.com", "umac-64@openssh.com"]
    openssh_macs += ["umac-128@openssh.com", "hmac-sha2-256", "hmac-sha2-512", "hmac-sha1"]
    async with asyncssh.connect(
        "127.0.0.1", port(stack), encryption_algs=openssh, mac_algs=openssh_macs, **login
    ) as conn:
        assert conn.get_extra_info("send_cipher") == "aes128-ctr"
        assert conn.get_extra_info("send_mac") == "hmac-sha2-256-etm@openssh.com"
    with pytest.raises(asyncssh.KeyExchangeFailed):  # UMAC is not offered
        await asyncssh.connect(
            "127.0.0.1",
            port(stack),
            encryption_algs=["aes128-ctr"],
            mac_algs=["umac-64-etm@openssh.com"],
            **login,
        )
    # A client with nothing newer than HMAC-SHA1 still gets in.
    async with asyncssh.connect(
        "127.0.0.1", port(stack), encryption_algs=["aes128-ctr"], mac_algs=["hmac-sha1"], **login
    ) as conn:
        assert conn.get_extra_info("send_mac") == "hmac-sha1"
    async with asyncssh.connect("127.0.0.1", port(stack), **login) as conn:  # asyncssh's own order
        assert conn.get_extra_info("send_cipher") == "aes256-gcm@openssh.com"


async def test_organisations_never_see_each_others_files(stack: Stack) -> None:
    name = unique() + ".vcf"

    def attempt() -> tuple[list[str], str]:
        with sftp(port(stack)) as lab:
            lab.putfo(io.BytesIO(vcf()), f"/NGS/{name}")
        with sftp(port(stack), AZ_LOGIN, AZ_PASSWORD) as az:
            seen = az.listdir("/NGS")
            with pytest.raises(OSError) as refused:
                az.rename(f"/NGS/{name}", f"/NGS/Finished/{name}")
            return seen, str(refused.value)

    seen, message = await asyncio.to_thread(attempt)
    assert name not in seen and "no such file" in message
    assert await file_named(stack, name) is not None
    assert all(f["filename"] != name for f in await files_of(stack, "az-demo", "nurse@az-demo.test"))
    r = await stack.client.get(f"/api/v1/files/{LAB}", headers=await stack.headers("nurse@az-demo.test"))
    assert r.status_code == 403
