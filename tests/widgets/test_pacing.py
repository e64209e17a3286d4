"""When the Explorer draws the views after the gallery: at once outside a kernel, once requests pause inside one."""

from __future__ import annotations

import asyncio
import logging
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


def test_work_ahead_follows_the_views_in_the_paced_path_only_and_a_new_request_drops_it(monkeypatch, caplog):
    loop = asyncio.new_event_loop()
    monkeypatch.setattr(pacing, "kernel_loop", lambda: loop)
    monkeypatch.setattr(pacing, "REST_DELAY_S", 0.02)
    caplog.set_level(logging.DEBUG, logger="inv_widgets.explorer")
    done = []
    key = {"pressed": False}

    def broken():
        raise ValueError("no such layer")

    def left():
        done.append("left")
        if key["pressed"]:  # the next key arrives while the first guess is worked out
            key["pressed"] = False
            later.due(soon=True)

    def ahead():
        return [left, broken, lambda: done.append("k+1"), lambda: done.append("k-1")]

    later = pacing.Later(lambda: [lambda: done.append("dendrogram")], lambda s: s(), ahead)
    later.due(soon=False)  # a request from code: the views at once, nothing worked out ahead
    assert done == ["dendrogram"]
    done.clear()

    async def pause():
        later.due(soon=True)
        await asyncio.sleep(0.15)

    try:
        _run(loop, pause())
        # after the views, each guess in a turn of its own; a failed guess is logged, never raised
        assert done == ["dendrogram", "left", "k+1", "k-1"]
        assert "working ahead failed" in caplog.text and "no such layer" in caplog.text
        done.clear()
        key["pressed"] = True
        _run(loop, pause())
    finally:
        loop.close()
    # the key dropped the guesses left; its own views and guesses followed once requests paused
    assert done == ["dendrogram", "left", "dendrogram", "left", "k+1", "k-1"]
