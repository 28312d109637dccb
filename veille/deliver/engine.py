"""The deliverer's asynchronous side: one queue per destination, each retried on its own timer.

A *destination* is one body's method (``(agency, webhook)``, ``(agency, email)``,
``(agency, open311)``). Each has its own queue and a few workers; a destination that fails
backs off (``veille/deliver/retry.py``: full-jitter exponential, per destination) and only its
own dispatches wait: another body's deliveries never queue behind it. A dispatch is *done* once
every method of its body delivered it; nothing is ever dropped: a refused or disabled
destination keeps its dispatches pending (visible: receipts, ``veille_deliver_pending``, the
oldest undelivered's age), and an old one is marked *undelivered* in its receipts and still
retried. Every attempt becomes a ``DeliveryReceipt`` (``emit``).

The engine runs an asyncio loop in its own thread (aiohttp, aiosmtplib); the consumer side
(``veille/deliver/step.py``) hands it jobs with :meth:`Engine.submit` and learns what is done
through ``done``, called from the engine's thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from veille.deliver import metrics
from veille.deliver.cases import UpdateCoalescer, is_update, open311_skip
from veille.deliver.email import EmailSender
from veille.deliver.links import ResponseLinks
from veille.deliver.open311_client import Open311Client
from veille.deliver.outcome import Attempt
from veille.deliver.retry import Destinations, from_settings
from veille.deliver.settings import DeliverySettings
from veille.deliver.view import DispatchView, view, with_photos
from veille.deliver.webhook import WebhookSender
from veille.photos.links import PhotoLinks
from veille.photos.settings import PhotoSettings
from veille.schemas.models import DeliveryMethod, DeliveryOutcome, DeliveryReceipt, Dispatch
from veille.territory.model import Agency

log = logging.getLogger("veille.deliver")

Destination = tuple[str, DeliveryMethod]
CONCURRENCY = 4  # attempts in flight per destination
DISABLED_RECHECK_SECONDS = 5.0


@dataclass(eq=False)
class Job:
    """One dispatch on its way to its body by every method it is configured for."""

    dispatch: Dispatch
    agency: Agency
    key: tuple[str, int, int]  # topic, partition, offset: what the consumer commits
    waiting: set[DeliveryMethod]
    attempts: Counter[DeliveryMethod] = field(default_factory=Counter)
    references: dict[DeliveryMethod, str] = field(default_factory=dict)
    cancelled: bool = False

    @property
    def routed_at(self) -> datetime:
        return self.dispatch.routed_at


class Engine:
    def __init__(self, settings: DeliverySettings, *, emit: Callable[[DeliveryReceipt], None],
                 done: Callable[[Job], None], response_base_url: str = "",
                 on_delivered: Callable[[Job, DeliveryMethod, Attempt], Awaitable[None]] | None = None,
                 concurrency: int = CONCURRENCY, photos: PhotoSettings | None = None) -> None:
        self.settings = settings
        self.emit = emit
        self.done = done
        self.on_delivered = on_delivered
        self.response_base_url = response_base_url.rstrip("/")
        self.links = ResponseLinks.from_settings(settings)
        photos = photos or PhotoSettings()
        self.photo_links, self.photo_base_url = PhotoLinks.from_settings(photos), photos.base_url
        backoff, self.undelivered = from_settings(settings)
        self.destinations = Destinations(backoff)
        self.concurrency = concurrency
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._queues: dict[Destination, asyncio.Queue[Job]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._webhooks: WebhookSender | None = None
        self._email = EmailSender(settings)
        self._open311: dict[str, Open311Client] = {}
        # A case's updates by e-mail: one per case per window (veille/deliver/cases.py).
        self._updates = UpdateCoalescer(settings.email_update_minutes * 60,
                                        send=self._send_update, cover=self._cover)

    # -- from the consumer's thread ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.loop.run_forever, name="veille-deliver", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        self.loop.call_soon_threadsafe(self._enqueue, job)

    def call(self, coro: Awaitable[object]) -> Future[object]:
        """Run a coroutine on the engine's loop (e.g. the Open311 tracker's polls)."""
        return asyncio.run_coroutine_threadsafe(_awaitable(coro), self.loop)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        self._thread = None

    def open311(self, agency: Agency) -> Open311Client:
        client = self._open311.get(agency.id)
        if client is None:
            assert agency.delivery.open311 is not None
            client = self._open311[agency.id] = Open311Client(agency.delivery.open311, self.settings)
        return client

    # -- on the engine's loop -----------------------------------------------------------------

    def _enqueue(self, job: Job) -> None:
        for method in sorted(job.waiting):
            if method is DeliveryMethod.email and is_update(job.dispatch):
                self._updates.submit(job)
                continue
            dest = (job.agency.id, method)
            queue = self._queues.get(dest)
            if queue is None:
                queue = self._queues[dest] = asyncio.Queue()
                self._workers += [self.loop.create_task(self._worker(dest, queue))
                                  for _ in range(self.concurrency)]
            queue.put_nowait(job)

    async def _worker(self, dest: Destination, queue: asyncio.Queue[Job]) -> None:
        agency_id, method = dest
        while True:
            job = await queue.get()
            try:
                await self._deliver(job, method)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not kill the destination's worker
                log.exception("delivery of %s to %s by %s failed unexpectedly", job.dispatch.id, agency_id,
                              method.value)
                queue.put_nowait(job)  # still pending: tried again, never dropped
                await asyncio.sleep(self.settings.retry_max_seconds)
            finally:
                queue.task_done()

    async def _deliver(self, job: Job, method: DeliveryMethod) -> None:
        dest = (job.agency.id, method)
        while not job.cancelled:
            wait = self.destinations.wait(dest, time.monotonic())
            if math.isinf(wait):
                # Disabled (HTTP 410): nothing is sent until it is reconfigured; kept pending.
                await asyncio.sleep(DISABLED_RECHECK_SECONDS)
                continue
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            job.attempts[method] += 1
            attempt = await self._attempt(job, method)
            now = datetime.now(UTC)
            self.destinations.record(dest, attempt.outcome, time.monotonic())
            said = self.undelivered.receipt_outcome(attempt.outcome, job.routed_at, now)
            metrics.ATTEMPTS.labels(job.agency.id, method.value, said.value).inc()
            metrics.DISABLED.labels(job.agency.id, method.value).set(
                1 if attempt.outcome is DeliveryOutcome.disabled else 0)
            self.emit(attempt.model_copy(update={"outcome": said}).receipt(
                job.dispatch.id, job.agency.id, job.attempts[method], now))
            if attempt.delivered:
                metrics.LATENCY.labels(method.value).observe(max(0.0, (now - job.routed_at).total_seconds()))
                if attempt.reference is not None:
                    job.references[method] = attempt.reference
                if method is DeliveryMethod.email:
                    self._updates.opened(job.dispatch)  # a case's e-mail opens its window
                elif method is DeliveryMethod.webhook and is_update(job.dispatch):
                    metrics.CASE_UPDATES.labels(method.value, "sent").inc()
                if self.on_delivered is not None:
                    await self.on_delivered(job, method, attempt)
                job.waiting.discard(method)
                if not job.waiting:
                    self.done(job)
                return

    async def _send_update(self, job: Job) -> bool:
        await self._deliver(job, DeliveryMethod.email)
        return DeliveryMethod.email not in job.waiting

    def _cover(self, job: Job, by: Job) -> None:
        """``job``'s update is told by ``by``'s e-mail (a later update of its case): its receipt
        says so, and it is done."""
        if DeliveryMethod.email not in job.waiting:
            return
        case = by.dispatch.case
        reports = case.reports if case is not None else 0
        job.attempts[DeliveryMethod.email] += 1
        attempt = Attempt(method=DeliveryMethod.email, outcome=DeliveryOutcome.delivered, latency_ms=0,
                          reply=f"coalesced: told by the update e-mail of dispatch {by.dispatch.id} "
                                f"({reports} reports)")
        self.emit(attempt.receipt(job.dispatch.id, job.agency.id, job.attempts[DeliveryMethod.email]))
        job.waiting.discard(DeliveryMethod.email)
        if not job.waiting:
            self.done(job)

    def _view(self, dispatch: Dispatch) -> DispatchView:
        """The dispatch as read, with its photos' signed URLs when the intake serves them."""
        return with_photos(view(dispatch), self.photo_links, self.photo_base_url)

    async def _attempt(self, job: Job, method: DeliveryMethod) -> Attempt:
        config = job.agency.delivery
        if method is DeliveryMethod.webhook and config.webhook is not None:
            if self._webhooks is None:
                self._webhooks = WebhookSender(self.settings)
            return await self._webhooks.send(job.dispatch, config.webhook,
                                             dispatch_view=self._view(job.dispatch))
        if method is DeliveryMethod.email and config.email is not None:
            url = None
            # An update is answered through its case's dispatch: no link of its own.
            if self.response_base_url and not is_update(job.dispatch):
                url = self.links.for_dispatch(self.response_base_url, job.dispatch)
            expires = datetime.now(UTC) + timedelta(hours=self.settings.link_max_age_hours)
            return await self._email.deliver(job.dispatch, config.email, response_url=url,
                                             link_expires=expires if url else None,
                                             dispatch_view=self._view(job.dispatch))
        if method is DeliveryMethod.open311 and config.open311 is not None:
            if is_update(job.dispatch):
                return open311_skip(job.dispatch)
            client = self.open311(job.agency)
            return await client.deliver(job.dispatch, dispatch_view=self._view(job.dispatch))
        raise ValueError(f"{job.agency.id} has no {method.value} delivery configured")

    async def _shutdown(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        await self._updates.close()
        if self._webhooks is not None:
            await self._webhooks.close()
        for client in self._open311.values():
            await client.close()


async def _awaitable(coro: Awaitable[object]) -> object:
    return await coro
