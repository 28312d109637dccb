"""The intake's delivery reports reach the requests awaiting them (producers/acknowledgements.py).

No broker: the reports are built by hand and served from a thread, as the producer's poller
thread serves them.
"""

from __future__ import annotations

import asyncio
import threading

from veille.producers.acknowledgements import Acknowledgements, expire
from veille.producers.sdk import DeliveryReport


def _report(n: int, error: str | None = None) -> DeliveryReport:
    return DeliveryReport(f"id-{n}", "Incident", "veille.intake.35401", 0 if error is None else None,
                          n if error is None else None, error, 0.001)


def test_reports_served_on_another_thread_resolve_their_own_futures_in_one_hand_over() -> None:
    async def main() -> tuple[list[DeliveryReport | None], int]:
        loop = asyncio.get_running_loop()
        acks = Acknowledgements()
        waiters = [acks.waiter(loop) for _ in range(50)]
        drains = 0
        drain = acks._drain

        def counted() -> None:
            nonlocal drains
            drains += 1
            drain()

        acks._drain = counted
        # The poller thread serves every report while the loop is busy: one hand-over for all.
        poller = threading.Thread(target=lambda: [cb(_report(n)) for n, (_, cb) in enumerate(waiters)])
        poller.start()
        poller.join()
        got = await asyncio.gather(*(f for f, _ in waiters))
        return got, drains

    got, drains = asyncio.run(main())
    assert [r.event_id for r in got if r is not None] == [f"id-{n}" for n in range(50)]
    assert drains == 1


def test_a_report_served_on_the_loop_thread_resolves_at_once() -> None:
    async def main() -> DeliveryReport | None:
        acks = Acknowledgements()
        future, callback = acks.waiter(asyncio.get_running_loop())
        callback(_report(1, "_MSG_TIMED_OUT: Local: Message timed out"))
        assert future.done()
        return await future

    report = asyncio.run(main())
    assert report is not None and not report.ok and report.error and "timed out" in report.error


def test_a_request_that_timed_out_keeps_its_answer_when_the_report_comes_late() -> None:
    async def main() -> DeliveryReport | None:
        loop = asyncio.get_running_loop()
        acks = Acknowledgements()
        future, callback = acks.waiter(loop)
        expire(future)  # the ack timeout fired: the request answers 503, the client retries
        poller = threading.Thread(target=callback, args=(_report(2),))
        poller.start()
        poller.join()
        await asyncio.sleep(0)  # the drain runs
        return await future

    assert asyncio.run(main()) is None


def test_a_report_after_the_loop_closed_is_dropped_quietly() -> None:
    loop = asyncio.new_event_loop()
    acks = Acknowledgements()
    future, callback = acks.waiter(loop)
    loop.close()
    poller = threading.Thread(target=callback, args=(_report(3),))
    poller.start()
    poller.join()
    assert not future.done()
    # and the next report, on a new loop, is handed over again
    async def main() -> DeliveryReport | None:
        f, cb = acks.waiter(asyncio.get_running_loop())
        t = threading.Thread(target=cb, args=(_report(4),))
        t.start()
        t.join()
        return await f

    report = asyncio.run(main())
    assert report is not None and report.event_id == "id-4"
