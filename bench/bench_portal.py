"""The portal's pages against the same data's REST answers: the members page with 5,000
members and the audit log with 100,000 entries, rendered by the portal (session, token,
gRPC to identity, Jinja2) versus identity's JSON page of the same size (50). Prints p50/p95
and the ratio of p95s.

    .venv/bin/python bench/bench_portal.py [--members 5000] [--audit 100000] [--requests 40]
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.conftest import run_all  # noqa: E402

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"  # no one signs in


def seed(identity_db: Path, members: int, audit: int) -> None:
    """Members and audit entries of az-demo, written straight into identity's SQLite."""
    now = "2026-12-01 10:00:00.000000"
    with sqlite3.connect(identity_db) as db:
        accounts = [(str(uuid.uuid4()), f"bench-{i:05d}@example.test") for i in range(members)]
        db.executemany(
            "INSERT INTO accounts (id, username, email, first_name, last_name, password_hash, must_change_password,"
            " enabled, realm_roles, created_at) VALUES (?, ?, ?, 'Bench', 'Member', ?, 0, 1, '[]', ?)",
            [(a, e, e, HASH, now) for a, e in accounts],
        )
        db.executemany(
            "INSERT INTO memberships (account_id, organisation_id, roles) VALUES (?, 'az-demo', '[\"registrant\"]')",
            [(a,) for a, _ in accounts],
        )
        db.executemany(
            "INSERT INTO audit_entries (organisation_id, at, actor, actor_id, action, target, details)"
            " VALUES ('az-demo', ?, ?, '', ?, ?, '{}')",
            [
                (
                    f"2026-{1 + i % 11:02d}-{1 + i % 28:02d} 10:00:00.000000",
                    f"bench-{i % 500:05d}@example.test",
                    ("member.add", "member.roles", "client.rotate", "login.throttled")[i % 4],
                    f"target-{i}",
                )
                for i in range(audit)
            ],
        )


def password_token(issuer: str, username: str, password: str) -> str:
    """An access token for a person, by the password grant the portal's client allows."""
    return str(
        httpx.post(
            f"{issuer}/realms/hdhub/protocol/openid-connect/token",
            data={
                "grant_type": "password",
                "client_id": "hdhub-portal",
                "username": username,
                "password": password,
            },
        ).json()["access_token"]
    )


def portal_session(base: str, username: str, password: str) -> httpx.Client:
    """A browser's session: the code flow through the login page, cookies kept."""
    client = httpx.Client(base_url=base, timeout=60)
    r = client.get("/portal/login?next=/portal/")
    page = client.get(r.headers["location"])
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    r = client.post(  # identity's edge: the portal's own in one process, its own elsewhere
        page.url.copy_with(path="/realms/hdhub/protocol/openid-connect/auth", query=None),
        data={**fields, "username": username, "password": password},
    )
    if "location" not in r.headers:
        raise RuntimeError(f"sign-in refused: {r.status_code} {r.url} {r.text[-1500:]}")
    client.get(r.headers["location"])
    assert client.get("/portal/").status_code == 200
    return client


def timed(client: httpx.Client, path: str, n: int, **headers: str) -> list[float]:
    for _ in range(3):
        client.get(path, headers=headers).raise_for_status()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        client.get(path, headers=headers).raise_for_status()
        out.append(time.perf_counter() - start)
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--audit", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="bench-check's short run: 1,000 members, 10,000 entries, 15 requests",
    )
    args = parser.parse_args()
    if args.quick:
        args.members, args.audit, args.requests = 1000, 10_000, 15
    from _result import load_average, result

    print(f"load average at the start: {load_average()}")
    ratios: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, run_all(Path(tmp)) as platform:
        seed(platform.data_dir / "identity.db", args.members, args.audit)
        token = password_token(platform.base_url, "manager@az-demo.test", "demo-manager")
        rest = httpx.Client(
            base_url=platform.base_url, timeout=60, headers={"Authorization": f"Bearer {token}"}
        )
        browser = portal_session(platform.base_url, "manager@az-demo.test", "demo-manager")
        size = json.loads(rest.get("/api/v1/organisations/az-demo/members?limit=1").text)["total"]
        cases = [
            (
                f"members ({size})",
                "/api/v1/organisations/az-demo/members?limit=50",
                "/portal/o/az-demo/members",
            ),
            (
                f"members search ({size})",
                "/api/v1/organisations/az-demo/members?limit=50",
                "/portal/o/az-demo/members?q=bench-04",
            ),
            (
                f"audit ({args.audit:,} entries, 50 a page)",
                "/api/v1/audit?organisation_id=az-demo&limit=50",
                "/portal/o/az-demo/audit",
            ),
            (
                "audit filtered by action",
                "/api/v1/audit?organisation_id=az-demo&limit=50",
                "/portal/o/az-demo/audit?action=member.&from_date=2026-03-01&to_date=2026-06-30",
            ),
        ]
        print(f"{'case':42} {'REST p50':>9} {'REST p95':>9} {'page p50':>9} {'page p95':>9} {'ratio p95':>9}")
        for (name, api, page), key in zip(
            cases, ("members", "members_search", "audit", "audit_filtered"), strict=True
        ):
            a = timed(rest, api, args.requests)
            b = timed(browser, page, args.requests)
            print(
                f"{name:42} {statistics.median(a) * 1000:8.1f}ms {p95(a) * 1000:8.1f}ms "
                f"{statistics.median(b) * 1000:8.1f}ms {p95(b) * 1000:8.1f}ms {p95(b) / p95(a):8.2f}x"
            )
            # bench-check compares medians: a p95 of a few requests is one outlier on a shared machine
            ratios[f"{key}_page_over_rest"] = statistics.median(b) / statistics.median(a)
    result(ratios)


if __name__ == "__main__":
    main()
