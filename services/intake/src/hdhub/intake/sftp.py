# ruff: noqa: ARG002  (asyncssh calls these methods with the signatures it defines)
"""The SFTP edge (asyncssh), port 2222 by default.

Each organisation logs in with its own SFTP credentials (kept by identity, checked over
gRPC) and sees one tree, chrooted to it:

    /NGS/              VCFs (.vcf, .vcf.gz), one per NGS registration
    /NGS/Finished/     move a file here once it is complete: only then does it count
    /HIV_SEQUENCE/     nucleotide-sequence CSVs (filename;recordname;genetic_sequence)
    /HIV_SEQUENCE/Finished/

Nothing here touches a local disk: the tree is virtual, the bytes stream into the object
store (see :class:`hdhub.intake.files.Transfer`). Files are write-only; once moved to
Finished a file belongs to the platform and is neither listed nor readable (its checks
and links are at ``/api/v1/files``). Everything else (reading, links, folders, paths out
of the tree, control characters) is refused with a message saying why.

Traces: a session is a span (``sftp session``, the root of its trace), each file sent a
span under it (``sftp file``, open to close, the object store's put inside), and each move
into Finished another (``sftp deliver``), in which the link job is enqueued: the link
continues this trace. No file name goes into a span (they name patients).

Shutdown drains (:meth:`SftpEdge.drain`): new sessions are refused, running transfers may
finish within the grace period, then the sessions left are closed with a message saying to
reconnect (a file still open then was not stored, and says so in /api/v1/files).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import stat
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh.constants import DEFAULT_LANG, FXF_APPEND, FXF_READ, FXF_WRITE, MSG_DISCONNECT
from asyncssh.packet import String, UInt32
from opentelemetry import trace
from opentelemetry.context.context import Context

from hdhub.common.errors import Problem
from hdhub.common.grpc import channel
from hdhub.common.service_auth import acting_as_service
from hdhub.intake.domain.names import FINISHED, REGISTRIES, TEMPORARY_SUFFIX, check_name, final_name
from hdhub.intake.files import Files, Transfer, TransferRefused
from hdhub.intake.store import REJECTED
from hdhub.proto.identity.v1 import identity_pb2 as identity_pb
from hdhub.proto.identity.v1 import identity_pb2_grpc as identity_grpc

log = logging.getLogger("hdhub.intake.sftp")
_tracer = trace.get_tracer("hdhub.intake.sftp")

#: Sent to the sessions closed by a shutdown (the client shows it).
SHUTDOWN_MESSAGE = "the server is restarting: reconnect in a moment (a file that was still open was not stored; send it again)"
#: How long a client told to go may take to hang up before its connection is cut.
HANG_UP_SECONDS = 1.0
#: During a drain, a session is closed once it has had no open file for this long: time for
#: the move into Finished that usually follows a transfer.
SETTLE_SECONDS = 2.0

#: The ciphers offered, AES only: AES-GCM, and AES-CTR (with a MAC) for clients without
#: GCM (paramiko, older JSch and WinSCP). The client's preference decides among what both
#: sides offer. OpenSSH's puts chacha20-poly1305 first, which asyncssh computes with four
#: Python-level cipher calls per 32 KiB packet: a large share of a transfer's CPU
#: (bench/README.md, bench_file_to_central); AES is as strong, and the CPUs this runs on
#: have AES-NI. It then takes AES-CTR (its order puts CTR before GCM); asking it for GCM
#: (`-c aes128-gcm@openssh.com`) needs no MAC and cuts both sides' CPU by a third or more.
CIPHERS = ("aes256-gcm@openssh.com", "aes128-gcm@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-ctr")
#: The MACs offered (for AES-CTR; GCM needs none): HMAC-SHA2 first, SHA-1 for old clients.
#: OpenSSH's client would otherwise pick UMAC, which costs it about 1 s more CPU per GiB
#: sent here (1.8-1.9 s against 2.8-3.3 s); the server pays a little more for HMAC-SHA256
#: (a SHA-256 over every byte: 24 µs a 32 KiB packet against UMAC's 11 µs), but on the two
#: cores they share in the bench the put is faster (5.2-5.5 s against 5.9-8.1 s).
#: Every client with UMAC has HMAC-SHA2 (RFC 6668).
MACS = (
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
    "hmac-sha1-etm@openssh.com",
    "hmac-sha1",
)

DIR_MODE = stat.S_IFDIR | 0o750
# Write-only: the sender may put a file but never read it back.
FILE_MODE = stat.S_IFREG | 0o200


def _dir() -> asyncssh.SFTPAttrs:
    return asyncssh.SFTPAttrs(type=asyncssh.FILEXFER_TYPE_DIRECTORY, permissions=DIR_MODE, size=0)


def _file(size: int, mtime: int) -> asyncssh.SFTPAttrs:
    return asyncssh.SFTPAttrs(
        type=asyncssh.FILEXFER_TYPE_REGULAR, permissions=FILE_MODE, size=size, mtime=mtime, atime=mtime
    )


def denied(message: str) -> asyncssh.SFTPError:
    return asyncssh.SFTPPermissionDenied(message)


async def verify_password(username: str, password: str, address: str) -> str | None:
    """The organisation of an SFTP login, asked of identity as the intake service."""
    stub = identity_grpc.IdentityServiceStub(channel("identity"))
    try:
        async with acting_as_service("intake"):
            answer = await stub.VerifySftpPassword(
                identity_pb.VerifySftpPasswordRequest(
                    username=username, password=password, client_address=address
                )
            )
    except Problem as exc:
        log.info("sftp login refused", extra={"reason": exc.slug, "address": address})
        return None
    except Exception:
        log.warning("sftp login could not be checked", extra={"address": address}, exc_info=True)
        return None
    return answer.organisation_id or None


class IntakeSSHServer(asyncssh.SSHServer):
    """One SSH connection: password logins only, no shells, no forwarding."""

    def __init__(self, edge: SftpEdge) -> None:
        self.edge = edge
        self.organisation_id: str | None = None
        self.username = ""
        self.address = ""
        self.conn: asyncssh.SSHServerConnection | None = None
        self.sessions: set[IntakeSFTPServer] = set()
        self.closing = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername")
        self.address = str(peer[0]) if peer else ""
        self.conn = conn
        self.edge.connections.add(self)
        if self.edge.draining:  # accepted just as the listener closed
            self.edge.close_session(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.edge.connections.discard(self)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        organisation_id = await verify_password(username, password, self.address)
        if organisation_id is None:
            return False
        self.organisation_id, self.username = organisation_id, username
        log.info("sftp login", extra={"organisation_id": organisation_id, "address": self.address})
        return True

    def settled(self, now: float) -> bool:
        """No file open, and none closed within :data:`SETTLE_SECONDS`."""
        return all(
            not s.open_transfers and now - s.last_transfer_end >= SETTLE_SECONDS for s in self.sessions
        )

    async def close_for_shutdown(self) -> None:
        """Tell the client why (:data:`SHUTDOWN_MESSAGE`), give it a second to hang up, as
        clients do on a disconnect message, then close. (asyncssh's ``disconnect()`` closes
        the channels first and resets the socket at once: clients often meet the reset
        before the message and never show it.)"""
        if self.conn is None or self.closing:
            return
        self.closing = True
        self.conn.send_packet(
            MSG_DISCONNECT,
            UInt32(asyncssh.DISC_BY_APPLICATION),
            String(SHUTDOWN_MESSAGE),
            String(DEFAULT_LANG),
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HANG_UP_SECONDS):
                await self.conn.wait_closed()
        self.conn.abort()


class IntakeSFTPServer(asyncssh.SFTPServer):
    """The virtual tree of one organisation (see the module docstring)."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], files: Files) -> None:
        super().__init__(chan)
        owner = chan.get_connection().get_owner()
        assert isinstance(owner, IntakeSSHServer) and owner.organisation_id
        self.organisation_id, self.username = owner.organisation_id, owner.username
        self.owner = owner
        owner.sessions.add(self)
        self.files = files
        self.open_transfers: set[Transfer] = set()
        self.last_transfer_end = 0.0
        # A session span of its own (asyncssh runs the requests outside any trace); ended
        # in exit(). Each file's span is a child, ended when the file is closed or aborted.
        self._session = _tracer.start_span(
            "sftp session",
            context=Context(),
            kind=trace.SpanKind.SERVER,
            attributes={
                "network.protocol.name": "sftp",
                "hdhub.service": "intake",
                "hdhub.organisation_id": self.organisation_id,
            },
        )
        self._file_spans: dict[Transfer, trace.Span] = {}

    def _span(self, name: str, registry: str) -> trace.Span:
        return _tracer.start_span(
            name,
            context=trace.set_span_in_context(self._session, Context()),
            attributes={"hdhub.intake.registry": registry},
        )

    def _end_file(self, transfer: Transfer, error: str | None = None) -> None:
        span = self._file_spans.pop(transfer, None)
        if span is not None:
            if error is not None:
                span.set_status(trace.StatusCode.ERROR)
                span.set_attribute("error.type", error)
            span.end()

    # --- paths ----------------------------------------------------------------------------

    def _parts(self, path: bytes) -> tuple[str, ...]:
        try:
            text = path.decode("utf-8")
        except UnicodeDecodeError:
            raise asyncssh.SFTPFailure("paths are UTF-8") from None
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise asyncssh.SFTPFailure("names may not contain control characters")
        parts: list[str] = []
        for part in text.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    raise denied("that path leaves your organisation's folder")
                parts.pop()
            else:
                parts.append(part)
        return tuple(parts)

    def _registry(self, name: str) -> str:
        if name not in REGISTRIES:
            raise asyncssh.SFTPNoSuchFile(f"no folder {name}: the folders are {', '.join(REGISTRIES)}")
        return name

    def map_path(self, path: bytes) -> bytes:
        # Every default method that would touch a local path ends here: nothing local exists.
        raise denied("not supported")

    async def realpath(self, path: bytes) -> bytes:
        return ("/" + "/".join(self._parts(path))).encode()

    async def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        parts = self._parts(path)
        if not parts:
            return _dir()
        self._registry(parts[0])
        if len(parts) == 1 or parts[1:] == (FINISHED,):
            return _dir()
        if len(parts) == 2:
            f = await self.files.waiting_file(self.organisation_id, parts[0], parts[1])
            if f is not None:
                mtime = int((f.received_at or f.started_at).timestamp())
                return _file(f.size or 0, mtime)
        raise asyncssh.SFTPNoSuchFile(
            "no such file (delivered, refused and aborted files are not listed: see /api/v1/files)"
        )

    lstat = stat

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        parts = self._parts(path)
        if len(parts) > 1 and parts[1:] != (FINISHED,):
            raise asyncssh.SFTPNoSuchFile("no such folder")
        if parts:
            self._registry(parts[0])
        yield asyncssh.SFTPName(b".", attrs=_dir())
        yield asyncssh.SFTPName(b"..", attrs=_dir())
        if not parts:
            for name in REGISTRIES:
                yield asyncssh.SFTPName(name.encode(), attrs=_dir())
        elif len(parts) == 1:
            yield asyncssh.SFTPName(FINISHED.encode(), attrs=_dir())
            for f in await self.files.waiting(self.organisation_id, parts[0]):
                mtime = int((f.received_at or f.started_at).timestamp())
                yield asyncssh.SFTPName(f.filename.encode(), attrs=_file(f.size or 0, mtime))
        # Finished lists nothing: what was delivered belongs to the platform.

    # --- files ----------------------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> Transfer:
        if self.owner.edge.draining:
            raise asyncssh.SFTPFailure("the server is restarting: reconnect in a moment to send more files")
        try:
            parts = self._parts(path)
        except asyncssh.SFTPFailure:  # control characters, or not UTF-8
            await self._refused_name(path)
            raise
        if pflags & FXF_READ:
            raise denied("files are write-only: once sent, a file belongs to the platform")
        if not pflags & FXF_WRITE:
            raise denied("open a file for writing to send it")
        if pflags & FXF_APPEND:
            raise asyncssh.SFTPOpUnsupported("appending is not supported: send the whole file")
        if len(parts) < 2 and (not parts or parts[0] not in REGISTRIES):
            raise denied("send files into a registry folder: " + ", ".join(REGISTRIES))
        registry = self._registry(parts[0])
        if len(parts) == 1:
            raise asyncssh.SFTPFailure(f"{registry} is a folder")
        if parts[1] == FINISHED:
            raise denied(f"send the file into /{registry}, then move it into /{registry}/{FINISHED}")
        if len(parts) > 2:
            raise denied(f"/{registry} has no subfolders but {FINISHED}")
        span = self._span("sftp file", registry)
        try:
            with trace.use_span(span, end_on_exit=False):  # the object store's put inside
                transfer = await self.files.begin(
                    organisation_id=self.organisation_id,
                    registry=registry,
                    filename=parts[1],
                    source="sftp",
                    sender=self.username,
                )
        except TransferRefused as exc:
            span.set_status(trace.StatusCode.ERROR)
            span.set_attribute("error.type", exc.rule)
            span.end()
            raise asyncssh.SFTPFailure(exc.message) from None
        span.set_attribute("hdhub.intake.file_id", transfer.id)
        self._file_spans[transfer] = span
        self.open_transfers.add(transfer)
        return transfer

    async def _refused_name(self, path: bytes) -> None:
        """A file name refused before it could be read as a path (a control character, bytes
        that are not UTF-8) is listed as aborted all the same, with the file-name rule's
        reason, when it names a file in a registry folder: as every route lists such names."""
        parts = [p for p in path.decode("utf-8", errors="replace").split("/") if p not in ("", ".")]
        if len(parts) != 2 or parts[0] not in REGISTRIES:
            return
        registry = REGISTRIES[parts[0]]
        try:
            check_name(registry, parts[1])
            reason = "names may not contain control characters"
        except ValueError as exc:
            reason = str(exc)
        await self.files.refused_name(
            organisation_id=self.organisation_id,
            registry=registry.folder,
            filename=parts[1],
            source="sftp",
            sender=self.username,
            reason=reason,
        )

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        assert isinstance(file_obj, Transfer)
        try:
            await file_obj.write(offset, data)
        except TransferRefused as exc:
            if not file_obj.finished:
                await file_obj.abort(exc.rule, exc.message)
            self.open_transfers.discard(file_obj)
            self._end_file(file_obj, exc.rule)
            raise asyncssh.SFTPFailure(exc.message) from None
        return len(data)

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        raise denied("files are write-only: once sent, a file belongs to the platform")

    def close(self, file_obj: object) -> Awaitable[None]:
        # asyncssh closes the files still open when a session ends (connection cut, client
        # gone) through this same method, from its session cleanup; only a client's close
        # request completes a file. Which one calls is told by the caller's frame, read
        # synchronously here (hence no ``async def``); the intake tests pin both paths.
        by_client = sys._getframe(1).f_code.co_name != "_cleanup"
        return self._close(file_obj, by_client=by_client)

    async def _close(self, file_obj: object, *, by_client: bool) -> None:
        if not isinstance(file_obj, Transfer):
            return
        self.open_transfers.discard(file_obj)
        self.last_transfer_end = time.monotonic()
        if file_obj.finished:
            self._end_file(file_obj)
            return
        if not by_client:
            await file_obj.abort(
                "connection-lost", "the connection ended before the file was closed; nothing was stored"
            )
            self._end_file(file_obj, "connection-lost")
            return
        span = self._file_spans.get(file_obj)
        try:
            with trace.use_span(span or trace.INVALID_SPAN, end_on_exit=False):
                row = await file_obj.commit()
        except TransferRefused as exc:
            self._end_file(file_obj, exc.rule)
            raise asyncssh.SFTPFailure(exc.message) from None
        if not row.content_ok:
            # Stored, and waiting in the folder with its reason (it can be sent again or
            # removed); but the client's `put` must not report success for a file that
            # moving into Finished would reject: a batch stops here, a person reads why.
            self._end_file(file_obj, row.rule)
            raise asyncssh.SFTPFailure(
                f"refused: {row.reason}. The file waits in the folder: send a corrected one under"
                " the same name, or remove it"
            )
        self._end_file(file_obj)

    async def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        assert isinstance(file_obj, Transfer)
        return _file(file_obj.size, 0)

    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._parts(path)  # times and modes are not kept; accepted so clients do not fail

    lsetstat = setstat

    async def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        return None

    async def fsync(self, file_obj: object) -> None:
        return None

    # --- names ----------------------------------------------------------------------------

    async def remove(self, path: bytes) -> None:
        parts = self._parts(path)
        if len(parts) == 2 and parts[1] != FINISHED:
            registry = self._registry(parts[0])
            f = await self.files.waiting_file(self.organisation_id, registry, parts[1])
            if f is not None:
                await self.files.withdraw(self.organisation_id, f.id)
                return
            raise asyncssh.SFTPNoSuchFile("no such file")
        raise denied("delivered files belong to the platform and cannot be removed")

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        old, new = self._parts(oldpath), self._parts(newpath)
        if len(old) != 2 or old[1] == FINISHED:
            raise denied("only a file waiting in a registry folder can be moved, into its Finished folder")
        registry = self._registry(old[0])
        if new == (registry, final_name(old[1])) and new[1] != old[1]:  # WinSCP's last step
            waiting = await self.files.waiting_file(self.organisation_id, registry, old[1])
            if waiting is None:
                raise asyncssh.SFTPNoSuchFile("no such file waiting in the folder")
            try:
                await self.files.rename_waiting(self.organisation_id, waiting.id, new[1])
            except TransferRefused as exc:
                raise asyncssh.SFTPFailure(exc.message) from None
            return
        if len(new) != 3 or new[0] != registry or new[1] != FINISHED:
            raise denied(
                f"a file in /{registry} can only be moved into /{registry}/{FINISHED}"
                f" (or, sent as <name>{TEMPORARY_SUFFIX}, renamed to <name> beside it)"
            )
        f = await self.files.waiting_file(self.organisation_id, registry, old[1])
        if f is None:
            raise asyncssh.SFTPNoSuchFile("no such file waiting in the folder")
        try:
            check_name(REGISTRIES[registry], new[2])
        except ValueError as exc:
            # OpenSSH's sftp prints only "Failure": the file, still waiting under its name,
            # says why in the files listing.
            reason = f"moving it into {FINISHED} under another name was refused: {exc}"
            await self.files.mark(f, reason=reason[:1000])
            raise asyncssh.SFTPFailure(str(exc)) from None
        # The link job is enqueued in here: the link continues this trace.
        with trace.use_span(self._span("sftp deliver", registry), end_on_exit=True) as span:
            span.set_attribute("hdhub.intake.file_id", f.id)
            try:
                delivered = await self.files.deliver(self.organisation_id, f.id, new[2])
            except TransferRefused as exc:
                span.set_status(trace.StatusCode.ERROR)
                span.set_attribute("error.type", exc.rule)
                raise asyncssh.SFTPFailure(exc.message) from None
            if delivered.state == REJECTED:  # recorded as rejected, with its reason; the move fails
                span.set_status(trace.StatusCode.ERROR)
                span.set_attribute("error.type", delivered.rule or "rejected")
                raise asyncssh.SFTPFailure(f"rejected: {delivered.reason}")

    posix_rename = rename

    async def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        raise denied("the folders are fixed: one per registry, each with Finished")

    async def rmdir(self, path: bytes) -> None:
        raise denied("the folders are fixed: one per registry, each with Finished")

    async def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise denied("links are refused: send the file itself")

    async def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise denied("links are refused: send the file itself")

    async def readlink(self, path: bytes) -> bytes:
        raise asyncssh.SFTPNoSuchFile("there are no links")

    async def statvfs(self, path: bytes) -> asyncssh.SFTPVFSAttrs:
        raise asyncssh.SFTPOpUnsupported("not supported")

    async def fstatvfs(self, file_obj: object) -> asyncssh.SFTPVFSAttrs:
        raise asyncssh.SFTPOpUnsupported("not supported")

    async def exit(self) -> None:
        for transfer in list(self.open_transfers):
            await transfer.abort(
                "connection-lost", "the connection ended before the file was closed; nothing was stored"
            )
            self._end_file(transfer, "connection-lost")
        self.open_transfers.clear()
        for transfer in list(self._file_spans):
            self._end_file(transfer)
        self._session.end()
        self.owner.sessions.discard(self)


def host_key(path: Path, text: str | None = None) -> asyncssh.SSHKey:
    """The SFTP host key: ``text`` (the key itself, from a Secret), else read from ``path``,
    else generated there on first start (embedded defaults only: production refuses to
    start without one, IntakeSettings)."""
    if text:
        return asyncssh.import_private_key(text)
    if path.exists():
        return asyncssh.read_private_key(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    path.chmod(0o600)
    log.info("sftp host key generated", extra={"path": str(path), "fingerprint": key.get_fingerprint()})
    return key


class SftpEdge:
    """The SFTP listener and its open connections, drained on shutdown."""

    def __init__(self, files: Files) -> None:
        self.files = files
        self.connections: set[IntakeSSHServer] = set()
        self.draining = False
        self._acceptor: Any = None
        self._closing: set[asyncio.Future[None]] = set()

    def get_port(self) -> int:
        return int(self._acceptor.get_port())

    async def start(self, *, host: str, port: int, key: asyncssh.SSHKey) -> None:
        self._acceptor = await asyncssh.create_server(
            lambda: IntakeSSHServer(self),
            host,
            port,
            server_host_keys=[key],
            encryption_algs=list(CIPHERS),
            mac_algs=list(MACS),
            sftp_factory=lambda chan: IntakeSFTPServer(chan, self.files),
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            login_timeout=60,
        )

    def close_session(self, connection: IntakeSSHServer) -> None:
        """Close one connection as :meth:`IntakeSSHServer.close_for_shutdown` does."""
        task = asyncio.ensure_future(connection.close_for_shutdown())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def drain(self, seconds: float) -> None:
        """Stop listening, so new sessions are refused; close each session once it has no
        file open (after :data:`SETTLE_SECONDS`, for the move into Finished), for up to
        ``seconds``; then close the rest, whose open files are aborted and not stored.
        Every closed session is told why (:data:`SHUTDOWN_MESSAGE`)."""
        self.draining = True
        self._acceptor.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        if self.connections:
            log.info("sftp draining", extra={"sessions": len(self.connections), "drain_seconds": seconds})
        while self.connections and loop.time() < deadline:
            now = time.monotonic()
            for connection in self.connections:
                if not connection.closing and connection.settled(now):
                    self.close_session(connection)
            await asyncio.sleep(0.1)
        left = [c for c in self.connections if not c.closing]
        if left:
            log.warning("sftp sessions closed with files still open", extra={"sessions": len(left)})
        for connection in left:
            self.close_session(connection)
        # Each ends within HANG_UP_SECONDS; its open files are aborted as it does.
        await asyncio.gather(*self._closing, return_exceptions=True)
        await self._acceptor.wait_closed()


async def start_sftp(files: Files, *, host: str, port: int, key: asyncssh.SSHKey) -> SftpEdge:
    """Listen for SFTP; the returned edge's ``get_port()`` is the bound port."""
    edge = SftpEdge(files)
    await edge.start(host=host, port=port, key=key)
    return edge
