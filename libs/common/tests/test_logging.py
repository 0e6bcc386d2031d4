"""JSON log lines: trace ids, service, sanitised exceptions, and no SSIN ever."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from hdhub.common.logging import current_service, redact, setup_logging

log = logging.getLogger("hdhub.test.logging")

SSINS = ["85040216932", "85.04.02-169.32", "850402-169-32", "85 04 02 169 32", "85.04.02.169.32"]


def _ensure_sdk_tracer_provider() -> None:
    """Trace ids exist only with the SDK; the provider is process-wide and set once."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())


@pytest.fixture
def lines(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Logging set up as a service does; returns the JSON lines written so far."""
    root = logging.getLogger()
    level = root.level
    setup_logging("DEBUG", "json", service="registrations")

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]

    yield read
    for handler in [h for h in root.handlers if h.get_name() == "hdhub"]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize("ssin", SSINS)
def test_ssin_is_masked_in_message_args_and_extra_fields(
    lines: Callable[[], list[dict[str, Any]]], ssin: str
) -> None:
    log.info(f"patient {ssin} registered")
    log.info("patient %s registered", ssin)
    log.warning("row rejected", extra={"row": {"ssin": ssin, "fields": [ssin]}, "patient": ssin})

    out = lines()
    text = json.dumps(out)
    assert ssin not in text and ssin.replace(".", "").replace("-", "").replace(" ", "") not in text
    assert [line["message"] for line in out[:2]] == ["patient [redacted-ssin] registered"] * 2
    assert out[2]["patient"] == "[redacted-ssin]"
    assert out[2]["row"] == {"ssin": "[redacted-ssin]", "fields": ["[redacted-ssin]"]}


def test_ssin_given_as_a_number_is_masked(lines: Callable[[], list[dict[str, Any]]]) -> None:
    log.info("patient %d registered", 85040216932, extra={"ssin": 85040216932})
    [line] = lines()
    assert line["message"] == "patient [redacted-ssin] registered"
    assert line["ssin"] == "[redacted-ssin]"


@pytest.mark.parametrize(
    "text", ["order 1234567890", "id 123456789012", "at 2026-11-21 10:30:45", "took 12.5 ms"]
)
def test_numbers_that_are_not_ssin_shaped_stay(text: str) -> None:
    assert redact(text) == text


def test_line_carries_time_level_logger_service_and_the_current_span_ids(
    lines: Callable[[], list[dict[str, Any]]],
) -> None:
    _ensure_sdk_tracer_provider()
    with trace.get_tracer("test").start_as_current_span("work") as span:
        log.info("inside")
    log.info("outside")

    inside, outside = lines()
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert (inside["level"], inside["logger"], inside["message"]) == ("INFO", "hdhub.test.logging", "inside")
    assert inside["time"].endswith("Z")
    assert inside["service"] == "registrations"
    assert outside["trace_id"] is None and outside["span_id"] is None


def test_service_of_the_call_being_handled_wins_over_the_process_default(
    lines: Callable[[], list[dict[str, Any]]],
) -> None:
    token = current_service.set("uploads")
    try:
        log.info("handled by uploads")
    finally:
        current_service.reset(token)
    assert lines()[0]["service"] == "uploads"


def test_exception_is_logged_as_type_and_frames_without_its_message(
    lines: Callable[[], list[dict[str, Any]]],
) -> None:
    patient = {"name": "Jansen", "birth_date": "1985-04-02"}

    def store() -> None:
        raise ValueError(f"duplicate key: {patient['name']}, born {patient['birth_date']}")

    try:
        try:
            store()
        except ValueError as exc:
            raise RuntimeError(f"could not save {patient['name']}") from exc
    except RuntimeError:
        log.exception("saving failed")

    [line] = lines()
    assert "Jansen" not in json.dumps(line)
    exception = line["exception"]
    assert exception["type"] == "builtins.RuntimeError"
    assert any(
        "test_exception_is_logged_as_type_and_frames_without_its_message" in f for f in exception["traceback"]
    )
    assert exception["cause"]["type"] == "builtins.ValueError"
    assert any(" in store" in f for f in exception["cause"]["traceback"])


def test_uvicorn_access_line_goes_through_without_query_string(
    lines: Callable[[], list[dict[str, Any]]],
) -> None:
    access = logging.getLogger("uvicorn.access")
    access.info(
        '%s - "%s %s HTTP/%s" %d',
        "10.0.0.7:51234",
        "GET",
        "/api/v1/registrations?ssin=85040216932&name=Jansen",
        "1.1",
        200,
    )
    [line] = lines()
    assert line["logger"] == "uvicorn.access"
    assert line["message"] == "GET /api/v1/registrations HTTP/1.1 200"
    assert (line["http_method"], line["http_path"], line["http_status"]) == (
        "GET",
        "/api/v1/registrations",
        200,
    )
    assert "Jansen" not in json.dumps(line) and "?" not in line["message"]


def test_console_format_is_readable_and_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    level = root.level
    setup_logging("INFO", "console", service="portal")
    try:
        try:
            raise KeyError("85040216932")
        except KeyError:
            log.error("lookup of %s failed", "85.04.02-169.32")
            log.exception("and again")
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "hdhub"]:
            root.removeHandler(handler)
        root.setLevel(level)
    out = capsys.readouterr().out
    assert "portal hdhub.test.logging: lookup of [redacted-ssin] failed" in out
    assert "builtins.KeyError" in out
    assert "85040216932" not in out and "85.04.02-169.32" not in out


def test_calling_setup_twice_keeps_one_handler(lines: Callable[[], list[dict[str, Any]]]) -> None:
    setup_logging("INFO", "json", service="registrations")
    log.info("once")
    assert len(lines()) == 1
    assert len([h for h in logging.getLogger().handlers if h.get_name() == "hdhub"]) == 1


def test_ids_are_not_mangled_by_ssin_masking() -> None:
    """Masking goes by the SSIN rule, not the shape: of 100,000 random UUIDs, 713 hold a
    run of digits shaped like an SSIN (all mangled before) and 1 passes the rule; an
    SSIN with a wrong check number stays too."""
    import random
    import uuid

    rng = random.Random(15)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(100_000)]
    by_shape = re.compile(r"(?<!\d)\d{2}[.\- ]?\d{2}[.\- ]?\d{2}[.\- ]?\d{3}[.\- ]?\d{2}(?!\d)")
    shaped = [i for i in ids if by_shape.search(i)]
    mangled = [i for i in ids if redact(i) != i]
    assert len(shaped) > 500 and len(mangled) <= 1
    assert redact("row 85040216933 refused") == "row 85040216933 refused"  # check number off by one
    assert redact("registration 0f3c2a10-85040216932") == "registration 0f3c2a10-[redacted-ssin]"


def test_access_line_names_the_route_template_not_the_raw_path(
    lines: Callable[[], list[dict[str, Any]]],
) -> None:
    """A file name (or an id) in the URL stays out of the access log: the line names the
    route that answered, or says none did."""
    from types import SimpleNamespace

    from hdhub.common.logging import current_request

    access = logging.getLogger("uvicorn.access")
    raw = "/api/v1/files/lab-demo/NGS/Wauters_Hilde_19700615.vcf"
    template = "/api/v1/files/{organisation_id}/{registry}/{filename}"
    token = current_request.set({"route": SimpleNamespace(path=template)})
    access.info('%s - "%s %s HTTP/%s" %d', "10.0.0.7:51234", "PUT", raw, "1.1", 201)
    current_request.reset(token)
    token = current_request.set({})  # no route matched (a 404)
    access.info('%s - "%s %s HTTP/%s" %d', "10.0.0.7:51234", "GET", raw, "1.1", 404)
    current_request.reset(token)
    matched, unmatched = lines()
    assert matched["message"] == f"PUT {template} HTTP/1.1 201" and matched["http_path"] == template
    assert unmatched["http_path"] == "(unmatched)"
    assert "Wauters" not in json.dumps([matched, unmatched])


def test_a_console_line_never_splits_or_reorders_on_a_value_a_client_sent() -> None:
    from hdhub.common.logging import ConsoleFormatter

    forged = "fake\n21:43:00.000 INFO    hdhub FORGED-LOG-LINE all good"
    record = logging.LogRecord("hdhub.portal", logging.ERROR, __file__, 1, "operator action", None, None)
    record.organisation_id = forged
    record.reason = "ok \u202egnp.exe"
    record.kind = "deliver"
    line = ConsoleFormatter().format(record)
    assert "\n" not in line and "\u202e" not in line
    assert 'organisation_id="fake\\n21:43' in line and "kind=deliver" in line
