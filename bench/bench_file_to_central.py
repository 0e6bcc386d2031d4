"""A VCF from the SFTP drop to the central platform's acknowledgement, against copying the
same file through the object store alone, in the same run.

    .venv/bin/python bench/bench_file_to_central.py [--size-mb 1024] [--small-mb 64] [--processes]

Needs OpenSSH's `sftp` client (`make openssh`).

- **hdhub**: `hdhub run all` as a process of its own (embedded defaults: SQLite, folder
  store, the sim as the central platform). The demo laboratory's LIMS registers and
  submits an NGS registration naming the VCF; once it is delivered, OpenSSH's `sftp -b`
  puts the VCF and moves it to Finished. Timed from the `put` to the file's
  `acknowledged` state over REST: received (encrypted at rest, checked, SHA-256), linked,
  then sent (read back and decrypted from the store, sealed in 1 MiB chunks, streamed over
  gRPC) and at the sim verified, decrypted, written, its SHA-256 computed from disk and
  acknowledged. The sim shares the process (and the two cores) with the platform.
  ``--processes``: the deployed shape instead, a process per service on PostgreSQL and
  Redis (``bench_submissions.per_service``), intake's API (the SFTP edge) and its worker
  (the send) apart, the sim apart; CPU and RSS are then every process's sum.
- **baseline**: the same file put into a folder object store and streamed back out to a
  file (`hdhub.common.objectstore.FolderStore`), in this process: what moving the bytes
  through storage costs with no SSH, checks, encryption or gRPC. The file out is written
  as the sim writes the central copy and the store its objects (`hdhub.common.writebehind`:
  through a window of the page cache), so neither side's time depends on how much fresh
  memory the machine hands out.
- **the SSH transport alone**, for reference: the same `sftp -b` put into asyncssh's SFTP
  server (hdhub's ciphers and MACs, uvloop) in this process, with a sink that keeps nothing: what
  receiving the file over SSH in Python costs before anything is done with it.

Printed: seconds and MB/s each, the ratio baseline time / hdhub time (1.0: as fast as the
plain copy; the aim is at least 0.5), and the platform's RSS over the transfer for a
small and the large file: it must not grow with the file.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sftp import RssSampler, make_vcf, proc_kb  # noqa: E402
from bench_submissions import free_port, grpc_ports  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: The settings both shapes run with: quiet logs, a cut retried at once, the worker polled often.
TRANSFER_ENV = {
    "HDHUB_LOG_LEVEL": "WARNING",
    "HDHUB_INTAKE_SEND_RETRY_SECONDS": "1",
    "HDHUB_INTAKE_WORKER_POLL_SECONDS": "0.5",
}


def start(data: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HDHUB_", "OTEL_"))}
    env.update(TRANSFER_ENV, HDHUB_DATA_DIR=str(data / "var"))
    grpc_ports(env)  # and the SFTP port
    sftp = int(env["HDHUB_INTAKE_SFTP_PORT"])
    log = (data / "hdhub.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hdhub.cli.main", "run", "all", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base, sftp
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("hdhub did not start:\n" + (data / "hdhub.log").read_text()[-3000:])
        time.sleep(0.3)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def token(issuer: str) -> str:
    r = httpx.post(
        f"{issuer}/realms/hdhub/protocol/openid-connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "lab-demo-lims",
            "client_secret": "demo-lims-secret",
        },
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def register(base: str, issuer: str, name: str) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.samples import record

    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token(issuer)}"}, timeout=30) as c:
        r = c.post(
            "/api/v1/registrations",
            json={
                "organisation_id": "lab-demo",
                "dcd": "NGS",
                "values": record("NGS", TX_VCF_FILE_NAME=name),
                "submit": True,
            },
        )
        r.raise_for_status()
        rid = r.json()["id"]
        deadline = time.monotonic() + 60
        while c.get(f"/api/v1/registrations/{rid}").json()["status"] != "submitted":
            if time.monotonic() > deadline:
                raise SystemExit("the registration was not delivered")
            time.sleep(0.2)


def sftp_put(port: int, source: Path, workdir: Path) -> None:
    askpass = workdir / "askpass.sh"
    askpass.write_text("#!/bin/sh\necho 'demo-sftp-lab-secret'\n")
    askpass.chmod(0o700)
    batch = workdir / "batch"
    name = source.name
    batch.write_text(f"cd /NGS\nput {name}\nrename {name} Finished/{name}\n")
    command = [
        "sftp", "-F", "/dev/null", "-o", "BatchMode=no", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "PreferredAuthentications=password",
        "-o", "LogLevel=ERROR", "-P", str(port), "-b", str(batch), "lab-demo-sftp@127.0.0.1",
    ]  # fmt: skip
    env = {
        "PATH": "/usr/bin:/bin",
        "SSH_ASKPASS": str(askpass),
        "SSH_ASKPASS_REQUIRE": "force",
        "DISPLAY": ":0",
    }
    done = subprocess.run(
        command, cwd=source.parent, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"sftp failed: {done.stdout}{done.stderr}")


def acknowledged(base: str, name: str, bearer: str, timeout: float) -> dict[str, object]:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {bearer}"}, timeout=30) as c:
        deadline = time.monotonic() + timeout
        while True:
            items = c.get("/api/v1/files/lab-demo", params={"limit": 1000}).json()["items"]
            found = [f for f in items if f["filename"] == name]
            if found and found[0]["state"] in ("acknowledged", "rejected", "aborted"):
                return dict(found[0])
            if time.monotonic() > deadline:
                raise SystemExit(f"not acknowledged in time: {found}")
            # Seldom: each listing is work for the platform, on the cores the transfer uses;
            # the time comes from the row's acknowledged_at, not from when the poll saw it.
            time.sleep(0.5)


def profiler(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling every thread of ``pid`` while it runs Python or native code (not
    idle), collapsed stacks with the thread in ``output``; stopped with SIGINT."""
    spy = Path(sys.executable).parent / "py-spy"
    argv = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--threads"]
    # HDHUB_BENCH_PYSPY replaces --nonblocking: "--native" (C frames; pauses the process per sample)
    argv += os.environ.get("HDHUB_BENCH_PYSPY", "--nonblocking").split() + ["--output", str(output)]
    if output.suffix == ".perf":  # Linux perf instead: where native code (gRPC, crypto, copies) spends
        argv = ["perf", "record", "-F", "300", "-g", "-p", str(pid), "-o", str(output)]
    log = output.with_suffix(".py-spy.log").open("wb")
    recorder = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    return recorder


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process so far, every thread."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def since(start: datetime, stamp: object) -> float:
    return (datetime.fromisoformat(str(stamp).replace("Z", "+00:00")) - start).total_seconds()


@dataclass
class Run:
    seconds: float  # from the SFTP put to the acknowledgement
    cpu: float  # CPU seconds of the hdhub process meanwhile
    receive: float  # the put to the file's received_at
    send: float  # linked_at to acknowledged_at
    peak: int  # kB
    quartiles: list[int]  # MiB


@dataclass
class Platform:
    """A running hdhub, either shape: where to ask, which processes to watch."""

    registrations: str  # the registrations REST edge
    issuer: str  # identity's (tokens)
    files: str  # intake's (the files' states)
    sftp_port: int
    pids: tuple[int, ...]  # every process of the platform (the sim's included)
    sim_folder: Path  # where the sim keeps the files it acknowledged
    names: tuple[str, ...] = ("hdhub run all",)  # the processes' roles, as pids


def run_hdhub(source: Path, sha256: str, profile: Path | None = None, processes: bool = False) -> Run:
    """One transfer through hdhub, timed and its memory sampled: ``hdhub run all``, or
    with ``processes`` a process per service (PostgreSQL and Redis). With ``profile``,
    the platform's process (intake's API process) is sampled with py-spy meanwhile."""
    with tempfile.TemporaryDirectory(prefix="bench-central-") as tmp:
        workdir = Path(tmp)
        if processes:
            return asyncio.run(_per_service(workdir, source, sha256, profile))
        proc, base, sftp = start(workdir)
        try:
            platform = Platform(base, base, base, sftp, (proc.pid,), workdir / "var" / "sim-central-files")
            return measure(platform, workdir, source, sha256, profile)
        finally:
            stop(proc)


async def _per_service(workdir: Path, source: Path, sha256: str, profile: Path | None) -> Run:
    import argparse

    from bench_submissions import Databases, per_service

    args = argparse.Namespace(
        extra_services=("intake",),
        extra_workers=("intake",),
        extra_env={**TRANSFER_ENV, "HDHUB_INTAKE_SFTP_PORT": str(free_port())},
    )
    databases = Databases()
    try:
        async with per_service(args, workdir, databases) as shape:
            assert shape.data_dir is not None
            platform = Platform(
                shape.base,
                shape.issuer,
                shape.edges["intake"],
                int(args.extra_env["HDHUB_INTAKE_SFTP_PORT"]),
                tuple(shape.pids.values()),
                shape.data_dir / "sim-central-files",
                tuple(shape.pids),
            )
            return await asyncio.to_thread(measure, platform, workdir, source, sha256, profile)
    finally:
        databases.drop_all()


def measure(platform: Platform, workdir: Path, source: Path, sha256: str, profile: Path | None) -> Run:
    register(platform.registrations, platform.issuer, source.name)
    bearer = token(platform.issuer)  # before the clock starts: a login is no part of the transfer
    before = sum(proc_kb(pid, "VmRSS") for pid in platform.pids)
    recorder = profiler(_profiled_pid(platform), profile) if profile is not None else None
    with RssSampler(platform.pids) as sampler:
        wall = datetime.now(UTC)
        at_start = [cpu_seconds(pid) for pid in platform.pids]
        sftp_put(platform.sftp_port, source, workdir)
        at_put = [cpu_seconds(pid) for pid in platform.pids]
        row = acknowledged(platform.files, source.name, bearer, timeout=3600)
        at_end = [cpu_seconds(pid) for pid in platform.pids]
    put_cpu, cpu = sum(at_put) - sum(at_start), sum(at_end) - sum(at_start)
    if len(platform.pids) > 1:
        print(
            "  CPU by process (until the sftp client was done / after): "
            + ", ".join(
                f"{name} {b - a:.2f} / {c - b:.2f} s"
                for name, a, b, c in zip(platform.names, at_start, at_put, at_end, strict=True)
                if c - a >= 0.05
            ),
            file=sys.stderr,
        )
    if recorder is not None:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
    peak = max([before, *sampler.samples])
    phases = {k: row[k] for k in ("received_at", "delivered_at", "linked_at", "sent_at", "acknowledged_at")}
    seconds = since(wall, row["acknowledged_at"])
    receive = since(wall, row["received_at"])
    send = since(wall, row["acknowledged_at"]) - since(wall, row["linked_at"])
    print(
        f"  {source.stat().st_size >> 20} MiB: {seconds:.2f} s (received in {receive:.2f} s, "
        f"linked to acknowledged {send:.2f} s), CPU {cpu:.2f} s ({put_cpu:.2f} s until the "
        f"sftp client was done); {phases}",
        file=sys.stderr,
    )
    held = platform.sim_folder / str(row["id"])
    if (
        row["state"] != "acknowledged"
        or row["sha256"] != sha256
        or held.stat().st_size != source.stat().st_size
    ):
        raise SystemExit(f"the file did not arrive whole: {row}")
    return Run(seconds, cpu, receive, send, peak, sampler.quartiles())


def _profiled_pid(platform: Platform) -> int:
    """The one process, or intake's API process (the SFTP edge) of several."""
    for pid in platform.pids:
        if "run intake" in " ".join(Path(f"/proc/{pid}/cmdline").read_text().split("\0")):
            return pid
    return platform.pids[0]


def run_baseline(source: Path) -> tuple[float, float]:
    """Seconds, and CPU seconds of this process, to put ``source`` into a folder store and
    stream it back out to a file."""
    from hdhub.common.objectstore import FolderStore
    from hdhub.common.writebehind import WriteBehind

    async def copy() -> tuple[float, float]:
        with tempfile.TemporaryDirectory(prefix="bench-central-store-") as tmp:
            store = FolderStore(Path(tmp) / "objects")

            async def body():  # type: ignore[no-untyped-def]
                with source.open("rb") as f:
                    while block := f.read(1 << 20):
                        yield block

            started, cpu = time.perf_counter(), time.process_time()
            await store.put("bench/file", body())
            with WriteBehind((Path(tmp) / "out").open("wb")) as out:
                async for chunk in store.stream("bench/file"):
                    out.write(chunk)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            assert (Path(tmp) / "out").stat().st_size == source.stat().st_size
            return seconds, cpu

    return asyncio.run(copy())


def run_ssh_alone(source: Path) -> tuple[float, float]:
    """Seconds, and CPU seconds of this process (the SSH server's), to receive ``source``
    with the same client and batch as hdhub's run, into an SFTP server that keeps nothing."""
    import asyncssh
    import uvloop

    from hdhub.intake.sftp import CIPHERS, MACS

    received = 0

    class Sink(asyncssh.SFTPServer):  # type: ignore[misc]
        """Every folder exists; a file takes the bytes and forgets them."""

        def stat(self, _path: bytes) -> asyncssh.SFTPAttrs:
            return asyncssh.SFTPAttrs(type=asyncssh.FILEXFER_TYPE_DIRECTORY, permissions=0o40750)

        lstat = stat

        def open(self, _path: bytes, _pflags: int, _attrs: asyncssh.SFTPAttrs) -> object:
            return object()

        def write(self, _file: object, _offset: int, data: bytes) -> int:
            nonlocal received
            received += len(data)
            return len(data)

        def close(self, file_obj: object) -> None:
            pass

        def rename(self, oldpath: bytes, newpath: bytes) -> None:
            pass

        posix_rename = rename

    class Server(asyncssh.SSHServer):  # type: ignore[misc]
        def begin_auth(self, _username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, _username: str, _password: str) -> bool:
            return True

    async def receive() -> tuple[float, float]:
        server = await asyncssh.create_server(
            Server,
            "127.0.0.1",
            0,
            server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
            encryption_algs=list(CIPHERS),
            mac_algs=list(MACS),
            sftp_factory=Sink,
        )
        try:
            port = server.sockets[0].getsockname()[1]
            with tempfile.TemporaryDirectory(prefix="bench-central-ssh-") as tmp:
                started, cpu = time.perf_counter(), time.process_time()
                await asyncio.to_thread(sftp_put, port, source, Path(tmp))
                seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            server.close()
        assert received == source.stat().st_size, (received, source.stat().st_size)
        return seconds, cpu

    return uvloop.run(receive())


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024, help="the large file (default 1 GiB)")
    parser.add_argument("--small-mb", type=int, default=64, help="the small file, for the memory comparison")
    parser.add_argument("--quick", action="store_true", help="bench-check's short run: 64 MiB, small 16 MiB")
    parser.add_argument(
        "--processes",
        action="store_true",
        help="the deployed shape: a process per service (intake's API and worker apart, the sim "
        "apart) on PostgreSQL and Redis, instead of `hdhub run all`",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="sample the hdhub process with py-spy during the large transfer (collapsed stacks in "
        "FILE; FILE.perf: Linux perf's samples instead)",
    )
    args = parser.parse_args()
    if args.quick:
        args.size_mb, args.small_mb = 64, 16
    from _result import load_average, result

    print(f"load average at the start: {load_average()}")
    if shutil.which("sftp") is None:
        raise SystemExit("needs OpenSSH's sftp: make openssh")
    with tempfile.TemporaryDirectory(prefix="bench-central-files-") as tmp:
        stamp = int(time.time())
        small = Path(tmp) / f"NGS_BENCH_SMALL_{stamp}.vcf"
        large = Path(tmp) / f"NGS_BENCH_LARGE_{stamp}.vcf"
        small_sha = make_vcf(small, args.small_mb * 1024 * 1024)
        large_sha = make_vcf(large, args.size_mb * 1024 * 1024)
        mb = args.size_mb * 1024 * 1024 / 1e6
        small_run = run_hdhub(small, small_sha, processes=args.processes)
        # The baseline before and after: the machine is shared, the faster of the two counts.
        before, before_cpu = run_baseline(large)
        large_run = run_hdhub(large, large_sha, args.profile, processes=args.processes)
        after, after_cpu = run_baseline(large)
        ssh, ssh_cpu = run_ssh_alone(large)
        baseline, baseline_cpu = min(before, after), min(before_cpu, after_cpu)
        seconds = large_run.seconds
        shape = "a process per service (PostgreSQL, Redis)" if args.processes else "hdhub run all"
        print(
            f"file: {args.size_mb} MiB VCF (small: {args.small_mb} MiB); client: OpenSSH sftp -b; folder store;"
            f" {shape}"
        )
        print(
            f"baseline  object store put + read back          : {baseline:7.2f} s  {mb / baseline:7.1f} MB/s"
            f"  (before {before:.2f} s, after {after:.2f} s); CPU {baseline_cpu:.2f} s"
        )
        print(
            f"hdhub     SFTP drop -> central acknowledgement   : {seconds:7.2f} s  {mb / seconds:7.1f} MB/s"
            f"  (received {large_run.receive:.2f} s, linked -> acknowledged {large_run.send:.2f} s);"
            f" CPU {large_run.cpu:.2f} s ({large_run.cpu * 1000 / args.size_mb:.1f} ms/MiB)"
        )
        print(
            f"the SSH transport alone (sftp put into a sink): {ssh:7.2f} s  {mb / ssh:7.1f} MB/s"
            f"  (CPU {ssh_cpu:.2f} s in the server; {baseline / ssh:.2f}x the baseline's throughput)"
        )
        print(f"ratio baseline/hdhub time (throughput): {baseline / seconds:.2f}x (aim >= 0.5x)")
        print(f"ratio baseline/hdhub CPU seconds: {baseline_cpu / large_run.cpu:.2f}x")
        print(
            f"hdhub peak RSS (every process of the platform) during the transfer: {small_run.peak / 1024:.0f} MiB for {args.small_mb} MiB "
            f"({small_run.seconds:.2f} s), {large_run.peak / 1024:.0f} MiB for {args.size_mb} MiB"
        )
        print(
            f"hdhub RSS at 25/50/75/100 % of the large transfer: "
            f"{' / '.join(map(str, large_run.quartiles))} MiB"
        )
        result({"store_copy_over_hdhub": baseline / seconds, "store_copy_over_ssh_alone": baseline / ssh})


if __name__ == "__main__":
    main()
