"""Object storage behind one interface: S3 (MinIO or any S3, through the minio SDK) in
production, a folder on a laptop. Objects stream in and out in chunks; nothing is held
whole in memory, and no object becomes visible before it is complete.

Configure with ``HDHUB_OBJECT_STORE_URL``:

- ``file:///var/lib/hdhub/objects`` (default: ``<HDHUB_DATA_DIR>/objects``)
- ``s3://ACCESS:SECRET@host:9000/bucket`` (``s3s://`` for TLS; ``?region=eu-west-1``)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import queue
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from opentelemetry import trace

from hdhub.common.writebehind import WriteBehind, read_behind

CHUNK = 1024 * 1024
PART_SIZE = 16 * 1024 * 1024  # multipart part size for S3 (minimum 5 MiB)
SHA256_META = "sha256"


class ObjectNotFound(KeyError):
    """No object under that key."""


class BadObjectKey(ValueError):
    """A key that could escape its prefix or is not a plain relative path."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str | None
    content_type: str = "application/octet-stream"
    metadata: Mapping[str, str] = field(default_factory=dict)
    modified: datetime | None = None


def check_key(key: str) -> str:
    """Keys are relative POSIX paths without ``..``, empty parts or control characters."""
    if not key or key.startswith("/") or "\\" in key or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise BadObjectKey(key)
    if any(p in ("..", ".", "") for p in key.split("/")):
        raise BadObjectKey(key)
    return key


Body = bytes | AsyncIterable[bytes]


async def _chunks(body: Body) -> AsyncIterator[bytes]:
    if isinstance(body, bytes | bytearray | memoryview):
        view = memoryview(body)
        for start in range(0, len(view), CHUNK):
            yield bytes(view[start : start + CHUNK])
        return
    async for chunk in body:
        if chunk:
            yield chunk


async def exact_pieces(body: AsyncIterable[bytes], size: int) -> AsyncIterator[tuple[bytes, bool]]:
    """``body`` cut into pieces of ``size`` bytes (the last one shorter, or empty when
    ``body`` is), each with whether it is the last: one piece is held back to know.
    A piece of the body that is already ``size`` bytes passes through without a copy."""
    full: bytes | None = None  # a whole piece, out once more data follows
    pending = bytearray()
    async for chunk in body:
        if not chunk:
            continue
        if full is not None:
            yield full, False
            full = None
        if not pending and len(chunk) == size:
            full = bytes(chunk)
            continue
        pending += chunk
        while len(pending) > size:
            with memoryview(pending) as view:
                piece = bytes(view[:size])
            del pending[:size]
            yield piece, False
        if len(pending) == size:
            full = bytes(pending)
            pending.clear()
    yield (full if full is not None else bytes(pending)), True


class ObjectStore(Protocol):
    async def put(
        self,
        key: str,
        body: Body,
        *,
        content_type: str = ...,
        metadata: Mapping[str, str] | None = None,
        digest: bool = ...,
    ) -> StoredObject:
        """Store ``body`` under ``key`` (replacing any object there); the SHA-256 is recorded
        unless ``digest`` is false (a store wrapping this one that keeps its own digest)."""
        ...

    def stream(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; raises :class:`ObjectNotFound`."""
        ...

    async def read(self, key: str) -> bytes: ...

    async def stat(self, key: str) -> StoredObject | None: ...

    async def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> AsyncIterator[StoredObject]: ...

    async def move(self, source: str, target: str) -> StoredObject: ...

    async def close(self) -> None: ...


# --- tracing ----------------------------------------------------------------------------

_tracer = trace.get_tracer("hdhub.objectstore")
_CALLS = ("put", "read", "stat", "delete", "move")
_STREAMS = ("stream", "list")


def traced(system: str) -> Any:
    """Class decorator: a client span per store operation (``objectstore.put`` ...), with
    the backend and the key's first segment (``uploads``, ``certificates``): never the
    whole key, which may carry a sender's file name."""

    def attributes(op: str, key: str) -> dict[str, str]:
        return {
            "objectstore.system": system,
            "objectstore.operation": op,
            "objectstore.prefix": key.split("/", 1)[0],
        }

    def wrap_call(op: str, fn: Any) -> Any:
        async def call(self: Any, key: str = "", *args: Any, **kwargs: Any) -> Any:
            with _tracer.start_as_current_span(
                f"objectstore.{op}", kind=trace.SpanKind.CLIENT, attributes=attributes(op, key)
            ) as span:
                result = await fn(self, key, *args, **kwargs)
                if isinstance(result, StoredObject):
                    span.set_attribute("objectstore.size", result.size)
                return result

        call.__name__, call.__doc__ = fn.__name__, fn.__doc__
        return call

    def wrap_stream(op: str, fn: Any) -> Any:
        async def stream(self: Any, key: str = "", *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            # Not made current: a generator may be resumed in another task's context.
            span = _tracer.start_span(
                f"objectstore.{op}", kind=trace.SpanKind.CLIENT, attributes=attributes(op, key)
            )
            try:
                async for item in fn(self, key, *args, **kwargs):
                    yield item
            except BaseException as exc:
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR)
                raise
            finally:
                span.end()

        stream.__name__, stream.__doc__ = fn.__name__, fn.__doc__
        return stream

    def decorate(cls: Any) -> Any:
        for op in _CALLS:
            setattr(cls, op, wrap_call(op, getattr(cls, op)))
        for op in _STREAMS:
            setattr(cls, op, wrap_stream(op, getattr(cls, op)))
        return cls

    return decorate


# --- a folder ---------------------------------------------------------------------------


@traced("folder")
class FolderStore:
    """Objects as files under ``root``; metadata in a sidecar ``.meta/`` tree. Writes go to
    a temporary file renamed into place, so a reader never sees a partial object. A large
    object is written and read through a window of the page cache, not all of it
    (:mod:`hdhub.common.writebehind`)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        (self.root / ".meta").mkdir(parents=True, exist_ok=True)
        (self.root / ".tmp").mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents or path.parts[len(self.root.parts)] in (".meta", ".tmp"):
            raise BadObjectKey(key)
        return path

    def _meta_path(self, key: str) -> Path:
        return self.root / ".meta" / (check_key(key) + ".json")

    async def put(
        self,
        key: str,
        body: Body,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        digest: bool = True,
    ) -> StoredObject:
        path = self._path(key)
        tmp = self.root / ".tmp" / uuid.uuid4().hex
        hashed, size = hashlib.sha256() if digest else None, 0
        try:
            with WriteBehind(tmp.open("wb")) as out:

                def write(chunk: bytes) -> None:
                    # One thread step: hashing releases the GIL, as the write does.
                    if hashed is not None:
                        hashed.update(chunk)
                    out.write(chunk)

                async for chunk in _chunks(body):
                    size += len(chunk)
                    await asyncio.to_thread(write, chunk)
            sha256 = hashed.hexdigest() if hashed is not None else None
            meta: dict[str, Any] = {"content_type": content_type, "metadata": dict(metadata or {})}
            if sha256 is not None:
                meta[SHA256_META] = sha256
            meta_path = self._meta_path(key)
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            meta_path.write_text(json.dumps(meta))
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return StoredObject(key, size, sha256, content_type, dict(metadata or {}), datetime.now(UTC))

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        with handle:
            reads = read_behind(handle, CHUNK)
            while chunk := await asyncio.to_thread(next, reads, b""):
                yield chunk

    async def read(self, key: str) -> bytes:
        return b"".join([c async for c in self.stream(key)])

    async def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            meta = json.loads(self._meta_path(key).read_text())
        except FileNotFoundError:
            meta = {}
        st = path.stat()
        return StoredObject(
            key,
            st.st_size,
            meta.get(SHA256_META),
            meta.get("content_type", "application/octet-stream"),
            meta.get("metadata", {}),
            datetime.fromtimestamp(st.st_mtime, UTC),
        )

    async def delete(self, key: str) -> None:
        for path in (self._path(key), self._meta_path(key)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if path.is_file() and not rel.startswith((".meta/", ".tmp/")) and rel.startswith(prefix):
                try:
                    found = await self.stat(rel)
                except BadObjectKey:
                    # Someone else wrote it (a drop folder) with a name no key may carry:
                    # listed as it is, so the caller can say so, never a failed listing.
                    info = path.stat()
                    found = StoredObject(
                        rel, info.st_size, None, modified=datetime.fromtimestamp(info.st_mtime, UTC)
                    )
                if found is not None:
                    yield found

    async def move(self, source: str, target: str) -> StoredObject:
        src, dst = self._path(source), self._path(target)
        if not src.is_file():
            raise ObjectNotFound(source)
        dst.parent.mkdir(parents=True, exist_ok=True)
        self._meta_path(target).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(self._meta_path(source), self._meta_path(target))
        os.replace(src, dst)
        moved = await self.stat(target)
        assert moved is not None
        return moved

    async def close(self) -> None:
        return None


# --- S3 through the minio SDK -----------------------------------------------------------


class _QueueReader:
    """A file-like object the (synchronous) minio SDK reads from, fed by the event loop."""

    def __init__(self) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self.buffer = bytearray()
        self.done = False

    def read(self, size: int = -1) -> bytes:
        while not self.done and (size < 0 or len(self.buffer) < size):
            item = self.queue.get()
            if item is None:
                self.done = True
            else:
                self.buffer.extend(item)
        if size < 0:
            size = len(self.buffer)
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out


@traced("s3")
class S3Store:
    """An S3 bucket through the minio SDK. Uploads are multipart into a temporary key and
    composed into place with their SHA-256 as metadata, so readers never see partial objects;
    an upload cut midway leaves only an aborted multipart upload and no object."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        region: str | None = None,
    ) -> None:
        from minio import Minio

        self.bucket = bucket
        self.client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region
        )
        self._bucket_checked = False

    async def _ensure_bucket(self) -> None:
        if not self._bucket_checked:
            if not await asyncio.to_thread(self.client.bucket_exists, self.bucket):
                with contextlib.suppress(Exception):  # created meanwhile by another replica
                    await asyncio.to_thread(self.client.make_bucket, self.bucket)
            self._bucket_checked = True

    async def put(
        self,
        key: str,
        body: Body,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        digest: bool = True,
    ) -> StoredObject:
        from minio.commonconfig import ComposeSource

        check_key(key)
        await self._ensure_bucket()
        tmp_key = f".tmp/{uuid.uuid4().hex}"
        reader = _QueueReader()
        hashed, size = hashlib.sha256() if digest else None, 0
        upload = asyncio.create_task(
            asyncio.to_thread(
                self.client.put_object,
                self.bucket,
                tmp_key,
                reader,  # type: ignore[arg-type]
                length=-1,
                part_size=PART_SIZE,
                content_type=content_type,
            )
        )
        try:
            async for chunk in _chunks(body):
                if hashed is not None:
                    hashed.update(chunk)
                size += len(chunk)
                while True:
                    try:
                        reader.queue.put_nowait(chunk)
                        break
                    except queue.Full:
                        if upload.done():
                            await upload  # surfaces the SDK's error
                        await asyncio.sleep(0.005)
            await asyncio.to_thread(reader.queue.put, None)
            await upload
        except BaseException:
            # Unblock the SDK's reader so the thread ends; the multipart upload is aborted.
            with contextlib.suppress(Exception):
                reader.queue.put_nowait(None)
            with contextlib.suppress(BaseException):
                await upload
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.client.remove_object, self.bucket, tmp_key)
            raise
        sha256 = hashed.hexdigest() if hashed is not None else None
        meta: dict[str, Any] = {**(metadata or {})}
        if sha256 is not None:
            meta[SHA256_META] = sha256
        try:
            await asyncio.to_thread(
                self.client.compose_object,
                self.bucket,
                key,
                [ComposeSource(self.bucket, tmp_key)],
                metadata=meta,
            )
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.client.remove_object, self.bucket, tmp_key)
        return StoredObject(key, size, sha256, content_type, dict(metadata or {}), datetime.now(UTC))

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        from minio.error import S3Error

        check_key(key)
        try:
            response = await asyncio.to_thread(self.client.get_object, self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise ObjectNotFound(key) from None
            raise
        try:
            while chunk := await asyncio.to_thread(response.read, CHUNK):
                yield chunk
        finally:
            response.close()
            response.release_conn()

    async def read(self, key: str) -> bytes:
        return b"".join([c async for c in self.stream(key)])

    async def stat(self, key: str) -> StoredObject | None:
        from minio.error import S3Error

        check_key(key)
        try:
            st = await asyncio.to_thread(self.client.stat_object, self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                return None
            raise
        meta = {
            k.lower().removeprefix("x-amz-meta-"): v
            for k, v in (st.metadata or {}).items()
            if k.lower().startswith("x-amz-meta-")
        }
        sha = meta.pop(SHA256_META, None)
        return StoredObject(
            key, st.size or 0, sha, st.content_type or "application/octet-stream", meta, st.last_modified
        )

    async def delete(self, key: str) -> None:
        check_key(key)
        await asyncio.to_thread(self.client.remove_object, self.bucket, key)

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        await self._ensure_bucket()
        items: Iterable[Any] = await asyncio.to_thread(
            lambda: list(self.client.list_objects(self.bucket, prefix=prefix, recursive=True))
        )
        for item in items:
            if not item.object_name.startswith(".tmp/"):
                yield StoredObject(item.object_name, item.size or 0, None, modified=item.last_modified)

    async def move(self, source: str, target: str) -> StoredObject:
        from minio.commonconfig import ComposeSource

        check_key(source), check_key(target)
        if await self.stat(source) is None:
            raise ObjectNotFound(source)
        await asyncio.to_thread(
            self.client.compose_object, self.bucket, target, [ComposeSource(self.bucket, source)]
        )
        await self.delete(source)
        moved = await self.stat(target)
        assert moved is not None
        return moved

    async def close(self) -> None:
        return None


# --- encryption at rest ---------------------------------------------------------------


class SealedStore:
    """Any store, with every object encrypted at rest (``envelope.seal_stream``: a data
    key per object, wrapped by the service's master key, in the object's own header).
    What is put is encrypted as it streams and decrypted as it is read back; an object
    written before encryption was on is read as it is. ``put`` reports the plaintext's
    size and SHA-256 (what a sender checks); ``stat`` and ``list`` report the stored
    object, so their size is the ciphertext's and they carry no SHA-256. Every object is
    bound to ``purpose`` (one service's objects do not open as another's)."""

    def __init__(self, inner: ObjectStore, envelope: Any, *, purpose: str) -> None:
        self.inner, self.envelope = inner, envelope
        self._aad = f"hdhub-object:{purpose}".encode()

    async def put(
        self,
        key: str,
        body: Body,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        digest: bool = True,
    ) -> StoredObject:
        from hdhub.common.envelope import seal_stream

        hashed, size = hashlib.sha256() if digest else None, 0

        async def plain() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in _chunks(body):
                size += len(chunk)
                yield chunk

        # The plaintext's SHA-256 is taken where each segment is sealed (a worker thread);
        # the ciphertext's, which nothing reads, is not computed.
        sealed = seal_stream(self.envelope, plain(), aad=self._aad, digest=hashed)
        stored = await self.inner.put(key, sealed, content_type=content_type, metadata=metadata, digest=False)
        sha256 = hashed.hexdigest() if hashed is not None else None
        return StoredObject(key, size, sha256, content_type, dict(metadata or {}), stored.modified)

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        from hdhub.common.envelope import open_stream

        async for chunk in open_stream(
            self.envelope, self.inner.stream(key), aad=self._aad, plaintext_ok=True
        ):
            yield chunk

    async def read(self, key: str) -> bytes:
        return b"".join([c async for c in self.stream(key)])

    async def stat(self, key: str) -> StoredObject | None:
        found = await self.inner.stat(key)
        return (
            None
            if found is None
            else StoredObject(key, found.size, None, found.content_type, found.metadata, found.modified)
        )

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        async for found in self.inner.list(prefix):
            yield StoredObject(
                found.key, found.size, None, found.content_type, found.metadata, found.modified
            )

    async def move(self, source: str, target: str) -> StoredObject:
        return await self.inner.move(source, target)

    async def close(self) -> None:
        await self.inner.close()


def open_store(url: str | None = None) -> ObjectStore:
    """The store named by ``url`` (default ``HDHUB_OBJECT_STORE_URL``, else a folder under
    ``HDHUB_DATA_DIR``). Production has no default: a pod's folder is gone with the pod and
    seen by no other replica, so it refuses (:class:`~hdhub.common.config.SettingRefused`)."""
    from hdhub.common.config import SettingRefused, platform

    settings = platform()
    url = url or settings.object_store_url
    if not url:
        if settings.environment == "production":
            raise SettingRefused("HDHUB_OBJECT_STORE_URL is unset; set it from a Secret (an S3 bucket)")
        url = f"file://{(settings.data_dir / 'objects').resolve()}"
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FolderStore(Path(unquote(parts.path)))
    if parts.scheme in ("s3", "s3s"):
        bucket = parts.path.strip("/")
        if not bucket or not parts.hostname:
            raise ValueError("an S3 store URL is s3://ACCESS:SECRET@host:port/bucket")
        query = parse_qs(parts.query)
        endpoint = parts.hostname + (f":{parts.port}" if parts.port else "")
        return S3Store(
            endpoint,
            unquote(parts.username or ""),
            unquote(parts.password or ""),
            bucket,
            secure=parts.scheme == "s3s",
            region=query["region"][0] if "region" in query else None,
        )
    raise ValueError(f"unknown object store scheme {parts.scheme!r}")


__all__ = [
    "BadObjectKey",
    "FolderStore",
    "ObjectNotFound",
    "ObjectStore",
    "S3Store",
    "SealedStore",
    "StoredObject",
    "check_key",
    "open_store",
]
