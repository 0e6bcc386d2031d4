"""A large file over our SFTP server into the object store, against OpenSSH's own
sftp-server writing to local disk, in the same run, with the same client.

    .venv/bin/python bench/bench_sftp.py [--size-mb 1024] [--small-mb 128] [--store-url s3://...]

Needs OpenSSH's `sftp` client and `sftp-server` (`make openssh`).

Both servers run in their own process, each behind asyncssh's SSH transport, so the
comparison is of what lies behind it:

- **hdhub**: the intake SFTP server (hdhub.intake.sftp) streaming into the object store
  (a folder store in a temporary directory, or ``--store-url``), checking the VCF on the
  way and computing its SHA-256, then the move to ``Finished``. The password check
  against identity is replaced by a constant (it costs one gRPC call per connection).
- **baseline**: OpenSSH's ``sftp-server`` as the SSH ``sftp`` subsystem, writing the file
  to local disk.

The client is OpenSSH's ``sftp -b`` (``put``) for both. Printed: seconds and MB/s each,
the ratio, and the peak RSS (VmHWM) of our server process for a small and the large
file: it must not grow with the file.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOGIN, PASSWORD, ORG = "bench-sftp", "bench-password", "lab-demo"
SFTP_SERVERS = (
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/libexec/sftp-server",
)


def make_vcf(path: Path, size: int) -> str:
    """A VCF of about ``size`` bytes (header, then data lines); returns its SHA-256."""
    header = (
        b"##fileformat=VCFv4.2\n##source=bench\n##reference=GRCh38\n"
        b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tTUMOR\n"
    )
    lines = b"".join(
        f"7\t{55_000_000 + i}\t.\tT\tG\t50\tPASS\tDP=1500;AF=0.{i % 97:02d}\tGT:AD\t0/1:700,{i % 800}\n".encode()
        for i in range(20_000)
    )
    digest = hashlib.sha256()
    with path.open("wb") as out:
        out.write(header)
        digest.update(header)
        written = len(header)
        while written < size:
            block = lines[: size - written]
            out.write(block)
            digest.update(block)
            written += len(block)
    return digest.hexdigest()


def proc_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """The server's resident memory every 0.1 s while a transfer runs (a thread); of
    several processes, their sum."""

    def __init__(self, pid: int | tuple[int, ...]) -> None:
        import threading

        self.pids = (pid,) if isinstance(pid, int) else pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(sum(proc_kb(pid, "VmRSS") for pid in self.pids))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def quartiles(self) -> list[int]:
        """RSS (MiB) at 25, 50, 75 and 100 % of the transfer's duration."""
        if not self.samples:
            return []
        n = len(self.samples)
        return [self.samples[min(n - 1, max(0, n * q // 4 - 1))] // 1024 for q in (1, 2, 3, 4)]


# --- the two servers, each run as `bench_sftp.py --serve hdhub|baseline DIR` ---------------


async def serve_hdhub(workdir: Path, store_url: str | None) -> None:
    os.environ.setdefault("HDHUB_ENVIRONMENT", "development")
    os.environ["HDHUB_DATA_DIR"] = str(workdir)
    sys.path.insert(0, str(ROOT))
    from hdhub.common.db import Database
    from hdhub.common.objectstore import open_store
    from hdhub.intake import sftp
    from hdhub.intake.files import Files
    from hdhub.intake.runtime import MIGRATIONS
    from hdhub.intake.settings import IntakeSettings

    async def verify(username: str, password: str, address: str) -> str | None:  # noqa: ARG001
        return ORG if (username, password) == (LOGIN, PASSWORD) else None

    sftp.verify_password = verify  # type: ignore[assignment]
    db = Database(f"sqlite+aiosqlite:///{workdir / 'intake.db'}", migrations=MIGRATIONS)
    await db.migrate()
    store = open_store(store_url or f"file://{workdir / 'objects'}")
    files = Files(db, store, IntakeSettings(max_file_bytes=64 * 1024**3))
    server = await sftp.start_sftp(files, host="127.0.0.1", port=0, key=sftp.host_key(workdir / "host_key"))
    print(f"PORT {server.get_port()}", flush=True)
    await asyncio.Event().wait()


async def serve_baseline(workdir: Path) -> None:
    import asyncssh

    program = next(p for p in SFTP_SERVERS if Path(p).exists())

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:  # noqa: ARG002
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            return (username, password) == (LOGIN, PASSWORD)

    async def handle(process: asyncssh.SSHServerProcess) -> None:  # type: ignore[type-arg]
        local = await asyncio.create_subprocess_exec(
            program, cwd=workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        await process.redirect(stdin=local.stdin, stdout=local.stdout)
        process.exit(await local.wait())

    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(
        Server, "127.0.0.1", 0, server_host_keys=[key], process_factory=handle, encoding=None
    )
    print(f"PORT {server.get_port()}", flush=True)
    await asyncio.Event().wait()


# --- the client -------------------------------------------------------------------------------


def start(kind: str, workdir: Path, store_url: str | None) -> tuple[subprocess.Popen[str], int]:
    args = [sys.executable, __file__, "--serve", kind, str(workdir)] + (
        ["--store-url", store_url] if store_url else []
    )
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"{kind} server did not start")
    return proc, int(line.split()[1])


def put(port: int, source: Path, batch_lines: list[str], workdir: Path, subsystem: str = "sftp") -> float:
    askpass = workdir / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho '{PASSWORD}'\n")
    askpass.chmod(0o700)
    batch = workdir / "batch"
    batch.write_text("\n".join(batch_lines) + "\n")
    command = [
        "sftp", "-F", "/dev/null", "-o", "BatchMode=no", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "PreferredAuthentications=password",
        "-o", "LogLevel=ERROR", "-P", str(port), "-s", subsystem, "-b", str(batch), f"{LOGIN}@127.0.0.1",
    ]  # fmt: skip
    env = {
        "PATH": "/usr/bin:/bin",
        "SSH_ASKPASS": str(askpass),
        "SSH_ASKPASS_REQUIRE": "force",
        "DISPLAY": ":0",
    }
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=source.parent, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sftp failed: {done.stdout}{done.stderr}")
    return elapsed


def run_hdhub(source: Path, sha256: str, store_url: str | None) -> tuple[float, int, list[int]]:
    with tempfile.TemporaryDirectory(prefix="bench-sftp-hdhub-") as tmp:
        workdir = Path(tmp)
        proc, port = start("hdhub", workdir, store_url)
        try:
            name = source.name
            with RssSampler(proc.pid) as sampler:
                seconds = put(
                    port, source, ["cd /NGS", f"put {name}", f"rename {name} Finished/{name}"], workdir
                )
            peak = proc_kb(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            proc.wait()
        if store_url is None:
            stored = list((workdir / "objects" / "intake" / "drop" / ORG / "NGS").iterdir())
            assert len(stored) == 1 and stored[0].stat().st_size == source.stat().st_size
            digest = hashlib.sha256()
            with stored[0].open("rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
            assert digest.hexdigest() == sha256, "stored object differs from the file sent"
        return seconds, peak, sampler.quartiles()


def run_baseline(source: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-sftp-openssh-") as tmp:
        workdir = Path(tmp)
        proc, port = start("baseline", workdir, None)
        try:
            # asyncssh keeps the name "sftp" for its own SFTP server: the baseline's is another name.
            seconds = put(port, source, [f"put {source.name}"], workdir, subsystem="openssh-sftp")
        finally:
            proc.terminate()
            proc.wait()
        assert (workdir / source.name).stat().st_size == source.stat().st_size
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024, help="the large file (default 1 GiB)")
    parser.add_argument("--small-mb", type=int, default=128, help="the small file, for the memory comparison")
    parser.add_argument("--store-url", default=None, help="object store for hdhub (default: a folder store)")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="bench-check's short run: 64 MiB, small 16 MiB")
    args = parser.parse_args()
    if args.quick:
        args.size_mb, args.small_mb = 64, 16
    if args.serve:
        kind, workdir = args.serve[0], Path(args.serve[1])
        asyncio.run(serve_hdhub(workdir, args.store_url) if kind == "hdhub" else serve_baseline(workdir))
        return
    if shutil.which("sftp") is None or not any(Path(p).exists() for p in SFTP_SERVERS):
        raise SystemExit("needs OpenSSH's sftp and sftp-server: make openssh")
    with tempfile.TemporaryDirectory(prefix="bench-sftp-files-") as tmp:
        small, large = Path(tmp) / "NGS_BENCH_SMALL.vcf", Path(tmp) / "NGS_BENCH_LARGE.vcf"
        small_sha = make_vcf(small, args.small_mb * 1024 * 1024)
        large_sha = make_vcf(large, args.size_mb * 1024 * 1024)
        mb = args.size_mb * 1024 * 1024 / 1e6
        from _result import load_average, result

        print(f"load average at the start: {load_average()}")
        small_seconds, small_peak, _ = run_hdhub(small, small_sha, args.store_url)
        baseline = run_baseline(large)
        seconds, peak, quartiles = run_hdhub(large, large_sha, args.store_url)
        store = args.store_url.split("@")[-1] if args.store_url else "folder store"
        print(
            f"file: {args.size_mb} MiB VCF (small: {args.small_mb} MiB); client: OpenSSH sftp -b; hdhub store: {store}"
        )
        print(f"baseline  OpenSSH sftp-server -> local disk : {baseline:7.2f} s  {mb / baseline:7.1f} MB/s")
        print(f"hdhub     intake SFTP -> object store + checks: {seconds:7.2f} s  {mb / seconds:7.1f} MB/s")
        print(f"ratio hdhub/baseline time: {seconds / baseline:.2f}x")
        print(
            f"hdhub server peak RSS: {small_peak / 1024:.0f} MiB for {args.small_mb} MiB "
            f"({small_seconds:.2f} s), {peak / 1024:.0f} MiB for {args.size_mb} MiB"
        )
        print(
            f"hdhub server RSS at 25/50/75/100 % of the large transfer: {' / '.join(map(str, quartiles))} MiB"
        )
        result({"hdhub_over_sftp_server": seconds / baseline})


if __name__ == "__main__":
    main()
