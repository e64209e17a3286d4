"""When the Explorer draws the views after the gallery: at once outside a kernel, once requests pause inside one."""

from __future__ import annotations

import asyncio
import threading

from inv_widgets.widgets.explorer import pacing


def _run(loop, coro) -> None:
    """Run ``coro`` to its end on ``loop`` in a thread of its own (as a kernel's loop runs), whatever loop an earlier
    test left running in this thread."""
    failed = []

    def target():
        try:
            loop.run_until_complete(coro)
        except BaseException as e:  # re-raised in the test's thread
            failed.append(e)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


def test_outside_a_kernel_everything_is_drawn_at_once():
    drawn = []
    later = pacing.Later(lambda: [lambda: drawn.append("dendrogram"), lambda: drawn.append("detail")], lambda s: s())
    later.due(soon=True)  # no kernel's event loop here: at once all the same
    assert drawn == ["dendrogram", "detail"] and not later.pending
    assert pacing.kernel_loop() is None


def test_in_a_kernel_the_rest_waits_for_a_pause_and_is_drawn_once_for_the_last_request(monkeypatch):
    loop = asyncio.new_event_loop()
    monkeypatch.setattr(pacing, "kernel_loop", lambda: loop)
    monkeypatch.setattr(pacing, "REST_DELAY_S", 0.05)
    drawn = []
    view = {"n": 0}
    later = pacing.Later(
        lambda: [lambda: drawn.append(("dendrogram", view["n"])), lambda: drawn.append(("detail", view["n"]))],
        lambda s: s(),
    )

    async def requests():
        for n in range(1, 4):  # three keys 20 ms apart: each restarts the wait
            view["n"] = n
            later.due(soon=True)
            assert drawn == [] and later.pending
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.12)

    try:
        _run(loop, requests())
    finally:
        loop.close()
    assert drawn == [("dendrogram", 3), ("detail", 3)] and not later.pending


def test_a_request_from_code_draws_at_once_and_drops_the_scheduled_drawing(monkeypatch):
    loop = asyncio.new_event_loop()
    monkeypatch.setattr(pacing, "kernel_loop", lambda: loop)
    drawn = []
    later = pacing.Later(lambda: [lambda: drawn.append("dendrogram")], lambda s: s())

    async def requests():
        later.due(soon=True)
        later.due(soon=False)  # explorer.set_layer(...) in a cell: its next line may read the dendrogram
        assert drawn == ["dendrogram"]
        await asyncio.sleep(pacing.REST_DELAY_S + 0.1)

    try:
        _run(loop, requests())
    finally:
        loop.close()
    assert drawn == ["dendrogram"]  # not drawn a second time
