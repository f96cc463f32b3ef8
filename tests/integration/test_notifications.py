"""Notifications: in the application, and by e-mail to a real SMTP server on loopback.

Every test runs on SQLite and on PostgreSQL, against an aiosmtpd server it
starts on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from jisr.topology.processes import free_port
from shared import tasks
from shared.identity.models import Role, User
from shared.notifications import email
from shared.notifications.models import Notification
from shared.notifications.service import notify
from shared.notifications.tasks import MAX_RETRIES, backoff_s, send_email_task
from shared.platform import Platform
from shared.registry.models import Institution
from shared.settings import Settings
from tests.conftest import make_settings
from tests.factories import Factory

ACCEPTED = {"referral": 42, "provider": "CHU Oran"}


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage


@dataclass
class Inbox:
    """The handler of the test SMTP server: it keeps every message it accepts."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    """Recipients answered with a permanent 550."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content)
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), raw, message))
        return "250 2.0.0 accepted"


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    handler = Inbox(port=free_port())
    server = Controller(
        handler, hostname="127.0.0.1", port=handler.port, server_hostname="smtp.jisr.test"
    )
    server.start()
    try:
        yield handler
    finally:
        server.stop()


@pytest.fixture
def settings(tmp_path: Path, signing_key: Path, database_url: str, inbox: Inbox) -> Settings:
    return make_settings(
        tmp_path,
        signing_key,
        database_url,
        smtp_host="127.0.0.1",
        smtp_port=inbox.port,
        smtp_from="Jisr <notifications@jisr.test>",
        smtp_timeout_s=10,
    )


def variant(platform: Platform, **changes: Any) -> Platform:
    """The same database and keys under other settings (another SMTP server, none...)."""
    return Platform(
        platform.settings.model_copy(update=changes), platform.database, platform.keyring, None
    )


async def person(
    factory: Factory,
    institution: Institution,
    *,
    languages: tuple[str, ...],
    email_address: str | None,
    name: str = "Test user",
) -> User:
    user = await factory.user(institution, Role.REFERRING_PHYSICIAN, languages=languages)
    async with factory.platform.database.transaction() as session:
        row = await session.get(User, user.id)
        assert row is not None
        row.email, row.display_name = email_address, name
    user.email, user.display_name = email_address, name
    return user


async def notify_now(
    platform: Platform, users: list[User], kind: str = "referral_accepted", **params: Any
) -> list[int]:
    async with platform.database.transaction() as session:
        rows = await notify(session, users, kind, params={**ACCEPTED, **params})
    return [row.id for row in rows]


async def row_of(platform: Platform, notification_id: int) -> Notification:
    async with platform.database.transaction() as session:
        row = await session.get(Notification, notification_id)
        assert row is not None
        return row


def header(received: Received, name: str) -> str:
    return str(received.message[name])


def text_of(received: Received) -> str:
    """The decoded text, with the wire's CRLF line ends read as newlines."""
    content = received.message.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


@dataclass
class Pair:
    french: User
    arabic: User


@pytest.fixture
async def pair(factory: Factory) -> Pair:
    oran = await factory.institution()
    return Pair(
        french=await person(
            factory,
            oran,
            languages=("fr", "en"),
            email_address="amelie.durand@chu.test",
            name="Amélie Durand",
        ),
        arabic=await person(
            factory,
            oran,
            languages=("ar", "fr"),
            email_address="leila.benali@chu.test",
            name="ليلى بن علي",
        ),
    )


# E-mail ----------------------------------------------------------------------------------


async def test_each_recipient_gets_an_email_in_their_own_language(
    platform: Platform, pair: Pair, inbox: Inbox
) -> None:
    french_id, arabic_id = await notify_now(platform, [pair.french, pair.arabic])

    assert await email.deliver(platform, french_id) == "sent"
    assert await email.deliver(platform, arabic_id) == "sent"

    french, arabic = inbox.received
    assert french.rcpt_tos == ["amelie.durand@chu.test"]
    assert french.message["To"].addresses[0].addr_spec == "amelie.durand@chu.test"
    assert french.message["To"].addresses[0].display_name == "Amélie Durand"
    assert french.mail_from == "notifications@jisr.test"
    assert header(french, "Subject") == "Demande n° 42 acceptée"
    assert header(french, "Content-Language") == "fr"
    assert text_of(french).startswith("CHU Oran a accepté votre demande.\n")
    assert "Vous recevez ce courriel" in text_of(french)

    assert arabic.rcpt_tos == ["leila.benali@chu.test"]
    assert arabic.message["To"].addresses[0].display_name == "ليلى بن علي"
    assert header(arabic, "Subject") == "تم قبول الإحالة رقم 42"
    assert header(arabic, "Content-Language") == "ar"
    assert text_of(arabic).startswith("قبلت CHU Oran إحالتك.\n")
    assert "تتلقى هذه الرسالة" in text_of(arabic)

    for received in (french, arabic):
        assert received.raw.isascii(), "7-bit on the wire: any relay carries it"
        assert received.message.get_content_charset() == "utf-8"
        assert header(received, "Auto-Submitted") == "auto-generated"
        assert header(received, "Message-ID").endswith("@jisr.test>")
    assert header(french, "Message-ID") != header(arabic, "Message-ID")

    row = await row_of(platform, arabic_id)
    assert (row.email_state, row.email_attempts) == ("sent", 1)
    assert row.emailed_at is not None


async def test_a_notification_is_emailed_once_however_often_delivery_runs(
    platform: Platform, pair: Pair, inbox: Inbox
) -> None:
    [notification_id] = await notify_now(platform, [pair.french])

    assert await email.deliver(platform, notification_id) == "sent"
    assert await email.deliver(platform, notification_id) == "sent"

    assert len(inbox.received) == 1
    assert (await row_of(platform, notification_id)).email_attempts == 1


async def test_an_unreachable_server_counts_the_attempt_and_raises_for_a_retry(
    platform: Platform, pair: Pair, inbox: Inbox
) -> None:
    [notification_id] = await notify_now(platform, [pair.arabic])
    unreachable = variant(platform, smtp_port=free_port())

    with pytest.raises(email.DeliveryError) as raised:
        await email.deliver(unreachable, notification_id)
    assert not isinstance(raised.value, email.DeliveryRefused)
    with pytest.raises(email.DeliveryError):
        await email.deliver(unreachable, notification_id)

    row = await row_of(platform, notification_id)
    assert (row.email_state, row.email_attempts, row.emailed_at) == ("pending", 2, None)

    # The server is back: the retry sends it, once, with the message it always had.
    assert await email.deliver(platform, notification_id) == "sent"
    assert len(inbox.received) == 1
    row = await row_of(platform, notification_id)
    assert (row.email_state, row.email_attempts) == ("sent", 3)
    assert header(inbox.received[0], "Message-ID") == str(
        email.build_message(row, pair.arabic, platform.settings)["Message-ID"]
    )


async def test_a_refused_recipient_is_marked_failed_without_retrying(
    platform: Platform, pair: Pair, inbox: Inbox
) -> None:
    inbox.refuse.add("amelie.durand@chu.test")
    [notification_id] = await notify_now(platform, [pair.french])

    with pytest.raises(email.DeliveryRefused):
        await email.deliver(platform, notification_id)

    row = await row_of(platform, notification_id)
    assert (row.email_state, row.email_attempts) == ("failed", 1)
    assert inbox.received == []


async def test_without_smtp_nothing_is_sent_and_the_email_is_dropped(
    platform: Platform, pair: Pair, inbox: Inbox
) -> None:
    [notification_id] = await notify_now(platform, [pair.french])

    assert await email.deliver(variant(platform, smtp_host=None), notification_id) == "disabled"

    row = await row_of(platform, notification_id)
    assert (row.email_state, row.email_attempts) == ("none", 0)
    assert await email.deliver(platform, notification_id) == "no_address"
    assert inbox.received == []


async def test_a_user_without_an_address_is_notified_in_the_application_only(
    platform: Platform, factory: Factory, inbox: Inbox
) -> None:
    user = await person(factory, await factory.institution(), languages=("fr",), email_address=None)
    [notification_id] = await notify_now(platform, [user])

    assert (await row_of(platform, notification_id)).email_state == "none"
    assert await email.deliver(platform, notification_id) == "no_address"
    assert inbox.received == []


async def test_the_task_retries_then_marks_the_email_failed(
    platform: Platform, pair: Pair, inbox: Inbox
) -> None:
    [notification_id] = await notify_now(platform, [pair.french])
    tasks.use_platform(variant(platform, smtp_port=free_port()))
    try:
        # apply() runs the task here, and each retry at once, in this worker thread.
        result = await asyncio.to_thread(send_email_task.apply, args=(notification_id,))
        outcome = result.get()
    finally:
        tasks.close_worker_loops()
        tasks.configure(Settings())
    assert outcome == "failed"
    row = await row_of(platform, notification_id)
    assert (row.email_state, row.email_attempts) == ("failed", MAX_RETRIES + 1)
    assert inbox.received == []


def test_retries_back_off_exponentially_up_to_an_hour() -> None:
    assert [backoff_s(n) for n in range(5)] == [30, 60, 120, 240, 480]
    assert backoff_s(12) == 3600


async def test_notify_emails_through_the_in_process_worker_after_commit(
    platform: Platform, pair: Pair, inbox: Inbox
) -> None:
    tasks.use_platform(platform)
    tasks.celery_app.control.purge()  # tasks queued by earlier tests name other databases
    worker = tasks.EmbeddedWorker(beat=False)
    worker.start()
    try:
        french_id, arabic_id = await notify_now(platform, [pair.french, pair.arabic])
        deadline = time.monotonic() + 30
        while {(await row_of(platform, i)).email_state for i in (french_id, arabic_id)} != {"sent"}:
            assert time.monotonic() < deadline, "the worker did not send the e-mail within 30 s"
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        tasks.configure(Settings())
    assert sorted(r.rcpt_tos[0] for r in inbox.received) == [
        "amelie.durand@chu.test",
        "leila.benali@chu.test",
    ]
    assert {header(r, "Content-Language") for r in inbox.received} == {"fr", "ar"}


# In the application ----------------------------------------------------------------------


async def test_a_user_lists_their_own_notifications_newest_first(
    client: httpx.AsyncClient, factory: Factory, platform: Platform, pair: Pair
) -> None:
    first = await notify_now(platform, [pair.french], referral=1)
    second = await notify_now(platform, [pair.french, pair.arabic], referral=2)

    response = await client.get("/api/notifications", headers=factory.headers(pair.french))

    assert response.status_code == 200, response.text
    page = response.json()
    assert [n["id"] for n in page["items"]] == [second[0], first[0]]
    assert [n["title"] for n in page["items"]] == ["Demande n° 2 acceptée", "Demande n° 1 acceptée"]
    assert page["items"][0]["lang"] == "fr" and page["items"][0]["read_at"] is None
    assert page["items"][0]["params"] == {"referral": 2, "provider": "CHU Oran"}
    assert page["unread_count"] == 2
    assert page["pagination"]["total_count"] == 2

    paged = await client.get(
        "/api/notifications", params={"limit": 1, "page": 2}, headers=factory.headers(pair.french)
    )
    assert [n["id"] for n in paged.json()["items"]] == [first[0]]
    assert paged.json()["pagination"]["max_page"] == 2


async def test_marking_read_and_the_unread_filter(
    client: httpx.AsyncClient, factory: Factory, platform: Platform, pair: Pair
) -> None:
    older, newer = [(await notify_now(platform, [pair.french], referral=n))[0] for n in (1, 2)]
    mine = factory.headers(pair.french)

    marked = await client.post(f"/api/notifications/{older}/read", headers=mine)
    assert marked.status_code == 200, marked.text
    read_at = marked.json()["read_at"]
    assert read_at is not None
    again = await client.post(f"/api/notifications/{older}/read", headers=mine)
    assert again.json()["read_at"] == read_at, "the first reading time is kept"

    unread = await client.get("/api/notifications", params={"unread": "true"}, headers=mine)
    assert [n["id"] for n in unread.json()["items"]] == [newer]
    assert unread.json()["unread_count"] == 1
    read = await client.get("/api/notifications", params={"unread": "false"}, headers=mine)
    assert [n["id"] for n in read.json()["items"]] == [older]


async def test_read_all_marks_only_the_callers_notifications(
    client: httpx.AsyncClient, factory: Factory, platform: Platform, pair: Pair
) -> None:
    await notify_now(platform, [pair.french, pair.arabic], referral=1)
    await notify_now(platform, [pair.french], referral=2)

    response = await client.post(
        "/api/notifications/read-all", headers=factory.headers(pair.french)
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"marked": 2, "unread_count": 0}
    again = await client.post("/api/notifications/read-all", headers=factory.headers(pair.french))
    assert again.json() == {"marked": 0, "unread_count": 0}
    theirs = await client.get("/api/notifications", headers=factory.headers(pair.arabic))
    assert theirs.json()["unread_count"] == 1
    assert theirs.json()["items"][0]["read_at"] is None


async def test_another_users_notification_is_not_found(
    client: httpx.AsyncClient, factory: Factory, platform: Platform, pair: Pair
) -> None:
    [theirs] = await notify_now(platform, [pair.arabic])
    mine = factory.headers(pair.french)

    listed = await client.get("/api/notifications", headers=mine)
    assert listed.json()["items"] == [] and listed.json()["unread_count"] == 0

    other = await client.post(f"/api/notifications/{theirs}/read", headers=mine)
    missing = await client.post(f"/api/notifications/{theirs + 1000}/read", headers=mine)
    assert other.status_code == missing.status_code == 404
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["type"] == missing.json()["type"] == "urn:jisr:problem:not-found"
    assert (await row_of(platform, theirs)).read_at is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/notifications"),
        ("POST", "/api/notifications/1/read"),
        ("POST", "/api/notifications/read-all"),
    ],
)
async def test_every_notification_route_needs_a_token(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
