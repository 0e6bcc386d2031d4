"""`hdhub`: one command for every shape (DESIGN.md, "one binary, many targets")."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from hdhub.cli.services import SERVICES, Platform

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


def _platform(names: list[str], *, migrate: bool, seed: bool, workers: bool) -> Platform:
    try:
        return Platform(names, migrate=migrate, seed=seed, workers=workers)
    except ValidationError as exc:
        raise _refusal(exc) from exc


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
        names, migrate=everything if migrate is None else migrate, seed=seed, workers=everything
    )
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
        platform = _platform(names, migrate=False, seed=False, workers=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, platform._stop.set)
        for s in platform.services:
            await s.prepare()
        platform.register_metrics()
        tasks = [asyncio.create_task(s.work(platform._stop)) for s in platform.services]
        settings = platform_settings()
        if settings.metrics_port:  # a worker has no HTTP edge: /metrics and /healthz on a port of its own
            from hdhub.common.metrics import serve_metrics

            tasks.append(
                asyncio.create_task(
                    serve_metrics(
                        settings.metrics_host,
                        settings.metrics_port,
                        platform._stop,
                        services=[s.name for s in platform.services if s.has_worker()],
                        stale_after=settings.worker_stale_seconds,
                    )
                )
            )
        await asyncio.gather(*tasks)
        await platform.stop()

    asyncio.run(main())


@app.command("migrate")
def migrate_command(service: Annotated[str, typer.Argument(help="`all`, or one service")] = "all") -> None:
    """Bring a service's database schema to the newest revision."""
    names = _check(service)
    _configure()

    async def main() -> None:
        platform = _platform(names, migrate=True, seed=False, workers=False)
        for s in platform.services:
            await s.db.migrate()
            await s.db.dispose()
            typer.echo(f"{s.name}: migrated")

    asyncio.run(main())


@app.command()
def seed() -> None:
    """Migrate, then load the demo organisations, accounts, clients and shipped registries."""
    _configure()
    if platform_settings().environment == "production":
        raise typer.BadParameter("demo data (known passwords and secrets) is never loaded in production")

    async def main() -> None:
        platform = _platform(list(SERVICES), migrate=True, seed=True, workers=False)
        for s in platform.services:
            await s.db.migrate()
            await s.prepare()
        await platform.seed_demo()
        for s in platform.services:
            await s.db.dispose()
        typer.echo("demo data loaded")

    asyncio.run(main())


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
