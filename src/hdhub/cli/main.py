"""`hdhub`: one command for every shape (DESIGN.md, "one binary, many targets")."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from hdhub.cli.services import Platform
from hdhub.common.config import SERVICES
from hdhub.common.heap import settle

app = typer.Typer(
    help="hdhub: deliver hospital and laboratory data to health registries.", no_args_is_help=True
)

Host = Annotated[str, typer.Option(help="Address to serve HTTP on")]
Port = Annotated[int, typer.Option(help="Port to serve HTTP on")]


def _configure(
    port: int | None = None, host: str = "127.0.0.1", *, service: str = "all", worker: bool = False
) -> None:
    if port is not None:
        base = f"http://{host if host != '0.0.0.0' else '127.0.0.1'}:{port}"
        os.environ.setdefault("HDHUB_PUBLIC_URL", base)
        os.environ.setdefault("HDHUB_OIDC_ISSUER", f"{base}/realms/hdhub")
    from hdhub.common import local_secrets
    from hdhub.common.config import platform

    platform.cache_clear()
    try:
        settings = platform()
    except ValidationError as exc:
        raise _refusal(exc) from exc
    if settings.environment != "production":
        # A laptop has no secret store: random secrets on first start, kept under var/.
        local_secrets.ensure(settings.data_dir)
        platform.cache_clear()
        settings = platform()
    from hdhub.common.logging import setup_logging
    from hdhub.common.telemetry import setup_telemetry

    setup_logging(settings.log_level, settings.log_format)
    # One resource per process: `hdhub` for all services in one (each span then exported
    # under its own service), else the service's own; a worker is not its API.
    name = "hdhub" if service == "all" else f"hdhub-{service}"
    setup_telemetry(f"{name}-worker" if worker and service != "all" else name)


def _refusal(exc: ValidationError) -> typer.BadParameter:
    """A settings refusal (a secret unset in production) as a usage error naming the
    setting, never a value."""
    return typer.BadParameter("; ".join(str(e["msg"]) for e in exc.errors()))


def _platform(names: list[str], *, migrate: bool, seed: bool, workers: bool, serving: bool) -> Platform:
    """The services of this process, their settings checked; when ``serving`` (`run`,
    `worker`), their gRPC transport too: plaintext is refused in production unless a mesh
    provides mutual TLS, and certificate files that cannot be used anywhere
    (hdhub.common.grpc_tls)."""
    from hdhub.common.config import SettingRefused
    from hdhub.common.grpc_tls import check_transport

    try:
        platform = Platform(names, migrate=migrate, seed=seed, workers=workers, settle=serving)
        if serving:
            check_transport()
    except ValidationError as exc:
        raise _refusal(exc) from exc
    except SettingRefused as exc:
        raise typer.BadParameter(str(exc)) from exc
    return platform


def _listens(platform: Platform, host: str, port: int) -> list[tuple[str, str, int, str]]:
    """What `run` is about to listen on: (what, host, port, how to move it)."""
    wanted = [("HTTP", host, port, "--port (make run PORT=...)")]
    for s in platform.services:
        bind = s.settings.resolved_grpc_bind()
        at, _, number = bind.rpartition(":")
        env = s.name.upper()
        how = f"HDHUB_{env}_GRPC_BIND and HDHUB_GRPC_{env} (host:port)"
        wanted.append((f"{s.name} gRPC", at.strip("[]") or "0.0.0.0", int(number), how))
        if s.name == "intake":
            sftp_host = getattr(s.settings, "sftp_host", "127.0.0.1")
            wanted.append(("SFTP", sftp_host, _sftp_port(), "HDHUB_INTAKE_SFTP_PORT"))
    return wanted


def _refuse_busy_ports(platform: Platform, host: str, port: int) -> None:
    """Refuse at once, naming each port in use and the setting that moves it: otherwise a
    second `make run`, or anything on 8000, 2222 or 5006x, fails half a minute later with
    a gRPC or uvicorn stack trace."""
    import socket

    busy = []
    for what, at, number, how in _listens(platform, host, port):
        if number == 0:
            continue
        family = socket.AF_INET6 if ":" in at else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            try:
                probe.bind((at, number))
            except OSError as exc:
                busy.append(f"{what} port {at}:{number} is not free ({exc.strerror}): set {how}")
    if busy:
        raise typer.BadParameter(
            "; ".join(busy) + ". Is another `make run` or `hdhub run` still running? (README: Two commands)"
        )


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on the event loop uvicorn gives `hdhub run` (its ``loop="auto"``):
    uvloop where it is installed (it comes with uvicorn[standard]; not on Windows), else
    asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def _check(name: str) -> list[str]:
    if name == "all":
        return list(SERVICES)
    if name not in SERVICES:
        raise typer.BadParameter(f"unknown service {name!r}; one of: all, {', '.join(SERVICES)}")
    return [name]


def _roles(roles: dict[str, tuple[str, ...]]) -> str:
    return ", ".join(f"{org}: {'/'.join(r)}" for org, r in roles.items())


def _banner(host: str, port: int) -> None:
    from hdhub.identity.seed import ACCOUNTS, CLIENTS, SFTP_LOGINS

    base = f"http://{host}:{port}"
    lines = [
        "",
        f"hdhub is running at {base}  (API docs: {base}/docs, readiness: {base}/readyz)",
        f"The portal: open {base}/ and sign in with a demo login below",
        f"OIDC issuer: {base}/realms/hdhub   token endpoint: {base}/realms/hdhub/protocol/openid-connect/token",
        "Demo logins (password grant, client_id=hdhub-portal):",
        *[f"  {a.username:28} {a.password:16} {_roles(a.roles) or 'operator'}" for a in ACCOUNTS],
        "Demo hospital systems (client_credentials):",
        *[f"  {c.client_id:28} {c.secret:16} organisation {c.organisation_id}" for c in CLIENTS],
        f"SFTP (port {_sftp_port()}, move files into Finished/ when complete):",
        *[f"  {lg.username:28} {lg.password:16} organisation {lg.organisation_id}" for lg in SFTP_LOGINS],
        f"Drop folder (HD_DCD_submcsv_HDBPnnnn_ABBREV_version_date.csv): {_dropfolder()}/<organisation>/",
        *([f"Mails sent (no SMTP host in development): {base}/dev/mail"] if _outbox() else []),
        "",
    ]
    print("\n".join(lines), flush=True)


def platform_settings() -> Any:
    from hdhub.common.config import platform

    return platform()


def _sftp_port() -> int:
    from hdhub.intake.settings import IntakeSettings

    return IntakeSettings().resolved_sftp_port()


def _outbox() -> bool:
    from hdhub.identity.settings import IdentitySettings

    return IdentitySettings().mail_outbox


def _dropfolder() -> str:
    from hdhub.common.config import platform

    settings = platform()
    if settings.object_store_url:
        return "the object store, prefix dropfolder"
    return str((settings.data_dir / "dropfolder").resolve())


@app.command()
def run(
    service: Annotated[str, typer.Argument(help="`all`, or one service")] = "all",
    host: Host = "127.0.0.1",
    port: Port = 8000,
    migrate: Annotated[bool | None, typer.Option(help="Migrate first (default: only with `all`)")] = None,
    demo: Annotated[bool | None, typer.Option(help="Seed demo data (default: only with `all`)")] = None,
) -> None:
    """Serve REST and gRPC for one service, or every service in one process with its workers."""
    import uvicorn

    from hdhub.cli.http import server_config

    names = _check(service)
    _configure(port, host, service=service)
    everything = service == "all"
    production = platform_settings().environment == "production"
    if demo and production:
        raise typer.BadParameter("demo data (known passwords and secrets) is never loaded in production")
    seed = (everything and not production) if demo is None else demo
    platform = _platform(
        names, migrate=everything if migrate is None else migrate, seed=seed, workers=everything, serving=True
    )
    _refuse_busy_ports(platform, host, port)
    # proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1; identity
    # reads it itself, from HDHUB_IDENTITY_TRUSTED_PROXIES only (docs/identity.md).
    config = server_config(
        platform.app(),
        host=host,
        port=port,
        log_config=None,
        access_log=True,
        lifespan="on",
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    if seed:
        original = server.startup

        async def startup(sockets: object = None) -> None:
            await original(sockets)  # type: ignore[arg-type]
            _banner(host, port)

        server.startup = startup  # type: ignore[method-assign]
    server.run()


@app.command()
def worker(service: Annotated[str, typer.Argument(help="The service whose background jobs to run")]) -> None:
    """Run a service's background worker (claims durable jobs; safe to run several)."""
    names = _check(service)
    _configure(service=service, worker=True)

    async def main() -> None:
        platform = _platform(names, migrate=False, seed=False, workers=True, serving=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, platform._stop.set)
        # A worker on a schema older than its code would fail every step: it waits, saying why.
        if not await platform.wait_for_schemas():
            return
        for s in platform.services:
            await s.prepare()
        platform.register_metrics()
        tasks = [asyncio.create_task(s.work(platform._stop)) for s in platform.services]
        settle()
        settings = platform_settings()
        if (
            settings.metrics_port
        ):  # a worker has no HTTP edge: /metrics, /healthz and /readyz on a port of its own
            from hdhub.common.metrics import serve_metrics

            tasks.append(
                asyncio.create_task(
                    serve_metrics(
                        settings.metrics_host,
                        settings.metrics_port,
                        platform._stop,
                        services=[s.name for s in platform.services if s.has_worker()],
                        stale_after=settings.worker_stale_seconds,
                        readiness=platform.readiness,
                    )
                )
            )
        await asyncio.gather(*tasks)
        await platform.stop()

    # The event loop `run` has: uvicorn picks uvloop when it is installed (it comes with
    # uvicorn[standard]); the worker sends files to the central platform, where the loop's
    # own cost per chunk shows.
    _run_loop(main())


@app.command("migrate")
def migrate_command(service: Annotated[str, typer.Argument(help="`all`, or one service")] = "all") -> None:
    """Bring a service's database schema to this code's revision (what every pod's init
    container runs first; pods starting together take turns on a PostgreSQL advisory lock)."""
    names = _check(service)
    _configure(service=service)

    async def main() -> None:
        platform = _platform(names, migrate=True, seed=False, workers=False, serving=False)
        for s in platform.services:
            before = await s.db.migrate()
            await s.db.dispose()
            typer.echo(f"{s.name}: {_migrated(before)}")

    asyncio.run(main())


@app.command("reuse")
def reuse_command(
    organisation: Annotated[str, typer.Argument(help="The organisation's id")],
    password_file: Annotated[Path, typer.Option(help="A file holding the role's password (16+ characters)")],
) -> None:
    """Give an organisation its read-only data-reuse schema and login role on the
    registrations database (PostgreSQL; docs/reuse.md): create or update them, print
    the schema, the role and the views."""
    _configure(service="registrations")

    async def main() -> None:
        platform = _platform(["registrations"], migrate=True, seed=False, workers=False, serving=False)
        service: Any = platform.services[0]  # the registrations service
        await service.db.migrate()
        if not service.db.is_postgres:
            raise typer.BadParameter("data reuse needs the registrations database on PostgreSQL")
        try:
            granted = await service.reuse.grant(organisation, password_file.read_text().strip())
        finally:
            await service.db.dispose()
        typer.echo(f"schema {granted.schema}")
        typer.echo(f"role {granted.role}")
        for view in granted.views:
            typer.echo(f"view {view}")

    asyncio.run(main())


def _migrated(before: Any) -> str:
    if not before.expected:
        return "keeps nothing, nothing to migrate"
    if before.ahead:
        return f"left as it is: {before.describe()} (a newer release migrated it; this code works on it)"
    if before.current:
        return f"already at {', '.join(sorted(before.expected))}"
    return f"migrated from {', '.join(sorted(before.found)) or 'an empty database'} to {', '.join(sorted(before.expected))}"


@app.command()
def seed() -> None:
    """Migrate, then load the demo organisations, accounts, clients and shipped registries."""
    _configure()
    if platform_settings().environment == "production":
        raise typer.BadParameter("demo data (known passwords and secrets) is never loaded in production")

    async def main() -> None:
        platform = _platform(list(SERVICES), migrate=True, seed=True, workers=False, serving=False)
        for s in platform.services:
            await s.db.migrate()
            await s.prepare()
        await platform.seed_demo()
        for s in platform.services:
            await s.db.dispose()
        typer.echo("demo data loaded")

    asyncio.run(main())


@app.command("appoint-user-manager")
def appoint_user_manager_command(
    title: Annotated[str, typer.Option(help="The organisation's title")],
    nihdi: Annotated[str, typer.Option(help="The organisation's NIHDI number (8 digits)")],
    email: Annotated[str, typer.Option(help="The first User Manager's e-mail")],
    first_name: Annotated[str, typer.Option(help="Their first name")] = "",
    last_name: Annotated[str, typer.Option(help="Their last name")] = "",
    username: Annotated[str | None, typer.Option(help="Their username (default: the e-mail)")] = None,
) -> None:
    """Start an installation as the central operator: a new organisation and its first User
    Manager (SSP seed). Prints the organisation id and, for a new account, the initial
    password, once: hand it over; it is changed at first login. Audited in the new
    organisation under `hdhub-cli:<os user>`. Acts on identity's own store (its database,
    or Keycloak with the service's admin client), so it runs where identity runs."""
    _configure(service="identity")

    async def main() -> None:
        from hdhub.common.errors import Problem

        platform = _platform(["identity"], migrate=False, seed=False, workers=False, serving=False)
        service: Any = platform.service("identity")
        try:
            if not await platform.schemas_usable():
                _fail("identity's database is not migrated: run `hdhub migrate identity` first")
            org, added = await service.directory.appoint_first_user_manager(
                _cli_operator(),
                title=title,
                nihdi_number=nihdi,
                email=email,
                first_name=first_name,
                last_name=last_name,
                username=username,
            )
        except Problem as exc:
            _fail(_problem_text(exc))
        finally:
            await service.db.dispose()
        typer.echo(f"organisation: {org.id} ({org.title}, NIHDI {org.nihdi_number})")
        typer.echo(f"user manager: {added.member.account.username}")
        if added.initial_password:
            typer.echo(f"initial password: {added.initial_password}  (shown once; changed at first login)")
        else:
            typer.echo("initial password: none (an existing account keeps its own)")

    asyncio.run(main())


def _cli_operator() -> Any:
    """Who the audit log names for a command typed where identity runs: the OS user, as the
    central operator (whoever can run it there holds identity's secrets already)."""
    import getpass

    from hdhub.common.auth import OPERATOR_ROLE, Principal

    who = getpass.getuser()
    return Principal(
        subject=f"cli:{who}",
        username=f"hdhub-cli:{who}",
        client_id=None,
        is_system=False,
        memberships={},
        realm_roles=frozenset({OPERATOR_ROLE}),
    )


def _fail(message: str) -> NoReturn:
    """A refusal on one line of stderr (no box to wrap it), exit code 1."""
    typer.echo(f"hdhub: {message}", err=True)
    raise typer.Exit(1)


def _problem_text(exc: Any) -> str:
    fields = "; ".join(f"{f.field}: {f.message}" for f in exc.errors)
    return f"{exc.title}" + (f" ({fields})" if fields else "") + (f": {exc.detail}" if exc.detail else "")


demo = typer.Typer(
    help="Demo material for trying hdhub out (never for a real registry).", no_args_is_help=True
)
app.add_typer(demo, name="demo")


@demo.command("p12")
def demo_p12_command(
    out: Annotated[Path, typer.Option(help="Where to write the p12")] = Path("ehealth.p12"),
    organisation: Annotated[str, typer.Option(help="A demo organisation: az-demo or lab-demo")] = "az-demo",
    password: Annotated[str | None, typer.Option(help="Its password (default: the demo one)")] = None,
) -> None:
    """Write an eHealth-like p12 for a demo organisation: two keys (authentication and
    encryption) under a made-up CA, valid now. Prints its password."""
    from hdhub.portal.demo import DEMO_ORGANISATIONS, DEMO_PASSWORD, demo_p12

    found = {org: (title, nihdi) for org, title, nihdi in DEMO_ORGANISATIONS}
    if organisation not in found:
        raise typer.BadParameter(f"unknown demo organisation {organisation!r}; one of: {', '.join(found)}")
    secret = password or DEMO_PASSWORD
    out.write_bytes(demo_p12(*found[organisation], secret))
    typer.echo(secret)


if __name__ == "__main__":
    app()
