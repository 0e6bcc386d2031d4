"""Schemathesis against every service's REST app, in-process, as each kind of caller.

Run by ``test_openapi_fuzz.py`` in a Python process of its own (``python -m
tests.fuzz.openapi_fuzz``): the platform it starts is process-wide state (settings, the
token verifier, metrics) that must not meet the session's shared stack, and the fuzz
changes what it finds (it deletes accounts, rotates secrets, drives the sim).

Each service's app is built as ``hdhub run <service>`` builds it (``create_app`` over the
service's routers) on one platform started on SQLite (PostgreSQL is covered by the other
tests), so every request a deployed service could get is made here. Phases: examples,
coverage, fuzzing and (short) stateful sequences; checks: every built-in one, as the
CLI's ``--checks all``. A failure is any 5xx, and any answer the service's OpenAPI
document does not describe (status, content type, body schema, headers, ``Allow`` on
405), or a schema-violating request accepted.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from schemathesis.engine import Status, events, from_schema
from schemathesis.python import asgi as schemathesis_asgi

from hdhub.common.web import create_app
from tests.support.stack import Stack, running_stack

# Identity last: fuzzing it deletes accounts and rotates client secrets.
SERVICES = ("registrations", "uploads", "intake", "portal", "sim", "identity")
CALLERS = {
    "hospital system": "az-demo-his",
    "User Manager": "manager@az-demo.test",
    "operator": "operator@hdhub.test",
}
#: Examples per operation and phase (5 stateful sequences of up to 6 calls): the whole run
#: takes 1 to 1.5 minutes on 2 cores shared with other work. For a longer hunt, run
#: ``HDHUB_FUZZ_EXAMPLES=100 .venv/bin/python -m tests.fuzz.openapi_fuzz``.
EXAMPLES = int(os.environ.get("HDHUB_FUZZ_EXAMPLES", "10"))
#: A request that follows the schema may still break a rule of the domain (an unknown id,
#: another organisation's data, a stale ETag): those are the documented refusals.
RULE_REFUSALS = ["2xx", 400, 401, 403, 404, 409, 412, 422, 428, 429]
#: The sim's MyCareNet REST interface plays the outside world, not the platform: switched to
#: `down` (as the fuzz may switch it) it answers 503 on purpose, as the real one would.
OUTSIDE_WORLD = ["/sim/mycarenet/messages"]


def config(token: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": 12,
            "cache": {"enabled": False},  # every run the same, and nothing left in the tree
            "headers": {"Authorization": f"Bearer {token}"},
            "generation": {"max-examples": EXAMPLES, "deterministic": True},
            "phases": {"stateful": {"enabled": True, "max-steps": 6, "generation": {"max-examples": 5}}},
            "checks": {
                "enabled": True,
                "positive_data_acceptance": {"expected-statuses": RULE_REFUSALS},
            },
        }
    )


@dataclass
class Report:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def scenario(self, where: str, recorder: Any) -> None:
        for interaction in recorder.interactions.values():
            self.requests += 1
            if interaction.response is not None:
                self.statuses[interaction.response.status_code] += 1
        for case_id, checks in recorder.checks.items():
            for check in checks:
                if check.status != Status.FAILURE:
                    continue
                sent = recorder.interactions.get(case_id)
                title = check.failure_info.failure.title if check.failure_info else ""
                line = f"{where} {recorder.label}: {check.name}: {title}"
                if sent is not None:
                    line += f"\n    {sent.request.method} {sent.request.uri[:300]}"
                    line += f"\n    body: {(sent.request.body or b'')[:300]!r}"
                    if sent.response is not None:
                        line += f"\n    -> {sent.response.status_code} {sent.response.content[:300]!r}"
                self.failures.append(line)


def fuzz(stack: Stack, portal: Any, report: Report) -> None:
    # Every token first: the fuzz may delete the accounts they belong to.
    tokens = {caller: portal.call(stack.token, who) for caller, who in CALLERS.items()}
    for name in SERVICES:
        app = create_app(title=f"hdhub {name}", routers=stack.service(name).routers())
        for caller, token in tokens.items():
            where = f"[{name} as {caller}]"
            schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config(token))
            schema = schema.exclude(path=OUTSIDE_WORLD)
            for event in from_schema(schema).execute():
                if isinstance(event, events.ScenarioFinished):
                    report.scenario(where, event.recorder)
                elif isinstance(event, events.NonFatalError | events.FatalError):
                    error = getattr(event, "value", None) or getattr(event, "exception", None)
                    report.errors.append(f"{where} {getattr(event, 'label', '')}: {error!r}"[:1000])


def main() -> int:
    started = time.monotonic()
    report = Report()
    # The platform lives in schemathesis' event-loop thread, where it calls ASGI apps: the
    # platform's database engines and gRPC channels belong to the loop that made them.
    portal = schemathesis_asgi._get_portal()
    with (
        tempfile.TemporaryDirectory() as data,
        portal.wrap_async_context_manager(running_stack("sqlite", Path(data), workers=False)) as stack,
    ):
        fuzz(stack, portal, report)
    print(
        f"{report.requests} requests in {time.monotonic() - started:.0f} s; statuses {dict(sorted(report.statuses.items()))}"
    )
    for line in report.errors + report.failures:
        print(line)
    return 1 if report.failures or report.errors or report.requests == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
