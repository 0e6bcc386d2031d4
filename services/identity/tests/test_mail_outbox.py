"""The development outbox: without an SMTP host, `make run` keeps the mails it sends and
shows them at /dev/mail; with a host (production) mail goes over SMTP and no outbox
exists."""

from __future__ import annotations

from hdhub.identity.mail import Mailer, Outbox
from tests.support.stack import Stack


async def test_without_a_host_mails_are_kept_newest_first_and_filtered_by_recipient() -> None:
    outbox = Outbox(size=2)
    mailer = Mailer(host=None, outbox=outbox)
    assert await mailer.send(["ada@x.test", "bob@x.test"], "first", "one")
    assert await mailer.send(["Ada@x.test"], "second", "two")
    assert await mailer.send(["carl@x.test"], "third", "three")
    assert [m.subject for m in outbox.mails()] == ["third", "second"]  # at most `size`
    assert [m.subject for m in outbox.mails("ada@x.test")] == ["second"]


async def test_with_an_smtp_host_the_outbox_is_not_used() -> None:
    outbox = Outbox()
    mailer = Mailer(host="127.0.0.1", port=1, outbox=outbox)  # nothing listens: not sent
    assert not await mailer.send(["ada@x.test"], "subject", "body")
    assert outbox.mails() == []


async def test_outside_development_there_is_no_outbox_route(stack: Stack) -> None:
    assert stack.service("identity").outbox is None  # HDHUB_ENVIRONMENT=test
    r = await stack.client.get("/dev/mail")
    assert r.status_code == 404
