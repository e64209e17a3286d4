"""The Deep Reveal game in a real browser (Playwright driving the system Chromium), on 127.0.0.1.

(a) JupyterLab: one player plays with the keyboard and with the mouse, types a hostile label, fixes
    refused labels, undoes an answer and gives up; the store holds exactly what was played.
(b) Voila: two players in two browser contexts against one server and one store (a SQLite file, and once
    a PostgreSQL database through INV_LABEL_STORE=postgresql://...); both answers reach the store and both
    players' leaderboards.

The kernels run the project's notebook 03_label_session.ipynb with an untrained (seeded) network on a
few images. An :class:`~tests.browser.game_support.Oracle` rebuilds the same game in the test process to
know the right answer of the map on screen.
"""

from __future__ import annotations

import pytest

from inv_widgets.labels import MAX_LABEL_CHARS, LabelStore

from .game_support import LONG, STEP, GamePage, Oracle, env_for_game, page_image, same_picture, screenshot
from .pages import NotebookPage

NB = "03_label_session.ipynb"
HOSTILE = "<img src=x onerror=alert(1)>"
KEYS = "1234567890"
N_IMAGES = 4


def _no_html_injection(page, game: GamePage) -> None:
    assert game.dialogs == [], f"a dialog fired: {game.dialogs}"
    assert page.locator("img[src='x']").count() == 0
    assert page.evaluate("() => document.querySelectorAll('.inv-game img[src]:not([src^=\"blob:\"])').length") == 0


def _class_names_not_cut(page, game: GamePage) -> None:
    """Every class button shows its whole name ("Mushroom", not "Mushr...") at laptop and narrow widths, where the
    leaderboard sits beside the game or below it (issue 22)."""
    for width in (1400, 1180, 1000, 820):
        page.set_viewport_size({"width": width, "height": 1100})
        page.wait_for_timeout(300)
        cut = game.root.locator(".ig-class-name").evaluate_all(
            "els => els.filter(e => { const r = e.getBoundingClientRect(), b = e.closest('.ig-class')"
            ".getBoundingClientRect(); return e.scrollWidth > e.clientWidth + 1 || r.right > b.right + 0.5; })"
            ".map(e => e.textContent)"
        )
        assert cut == [], (width, cut)
    page.set_viewport_size({"width": 1400, "height": 1100})


def _synced(game: GamePage, oracle_game) -> None:
    assert same_picture(page_image(game), oracle_game.masked), (
        "the test's oracle does not show the page's map: the kernel and the test disagree on the game"
    )


@pytest.mark.timeout(1200)
def test_play_with_keyboard_and_mouse_in_jupyterlab(browser, jupyter_server, tmp_path, screenshots_dir):
    store_path = tmp_path / "labels.sqlite"
    server = jupyter_server("lab", notebooks=[NB], env=env_for_game(store_path, N_IMAGES))
    ctx = browser.new_context(viewport={"width": 1400, "height": 1100}, device_scale_factor=1)
    page = ctx.new_page()
    try:
        nb = NotebookPage(page, server, NB).open()
        game = GamePage(page)
        nb.run_all()
        assert nb.error_outputs() == []
        game.wait_rendered()
        game.wait_phase("name", LONG)
        screenshot(game.root, screenshots_dir / "game-name.png")
        cells = page.locator(".jp-Notebook .jp-Cell").count()
        markdown = page.locator(".jp-Notebook .jp-MarkdownCell").count()

        # --- sign in with the keyboard -----------------------------------------------------------
        box = game.root.locator(".ig-name-input")
        box.click()
        page.keyboard.type("  ")
        page.keyboard.press("Enter")
        game.wait_message("empty")
        box.fill("")
        page.keyboard.type("Ada Lovelace")
        page.keyboard.press("Enter")
        game.wait_phase("play", LONG)
        assert "Ada Lovelace" in game.root.locator(".ig-who").inner_text()
        oracle = Oracle(store_path, N_IMAGES)
        o = oracle.current("Ada Lovelace")
        _synced(game, o)
        answer = o.current.target
        classes = game.class_names()
        assert [c.lower() for c in classes] == [c.lower() for c in o.classes]
        _class_names_not_cut(page, game)

        # --- a round with the keyboard: space, space, the digit of the right class, type, Enter ------
        game.focus()
        first = game.masked_src()
        page.keyboard.press(" ")
        game.wait_step("4.5%")
        assert game.masked_src() != first
        page.keyboard.press(" ")
        game.wait_step("8%")
        assert game.root.locator(".ig-worth").inner_text() == "right now: 4 pts"
        screenshot(game.root, screenshots_dir / "game-play.png")
        page.keyboard.press(KEYS[answer])
        game.wait_phase("answer")
        assert "ig-win" in game.root.locator(".ig-banner").get_attribute("class")
        assert game.root.locator(".ig-banner-points").inner_text() == "+4"
        assert game.root.locator(".ig-truth").inner_text().lower() == o.classes[answer].lower()
        # keys the game does not use stay in the game too: no notebook command runs (b: new cell,
        # m: to markdown, 1: to heading, d d: delete the cell, x: cut it)
        game.focus()
        for key in ("b", "m", "1", "d", "d", "x", "a"):
            page.keyboard.press(key)
            page.wait_for_timeout(150)
            now = (page.locator(".jp-Notebook .jp-Cell").count(), page.locator(".jp-Notebook .jp-MarkdownCell").count())
            assert now == (cells, markdown), f"key {key!r} reached JupyterLab: (cells, markdown cells) {now}"
        assert game.phase() == "answer"
        # the label box has the keyboard: digits and spaces are typed, not played; Enter saves
        game.root.locator(".ig-label-input").first.click()
        page.keyboard.type(HOSTILE)
        screenshot(game.root, screenshots_dir / "game-win.png")
        round_before = game.round_id()
        page.keyboard.press("Enter")
        game.wait_phase("play")
        assert game.round_id() != round_before
        game.wait_message("Saved: \\+4 points")
        assert game.points() == 4
        # the label is shown as text (found by its text), nothing ran, no element was made from it
        chip = page.get_by_text(HOSTILE, exact=True)
        chip.wait_for(timeout=STEP)
        assert chip.evaluate("e => e.className") == "ig-label-chip" and chip.evaluate("e => e.children.length") == 0
        _no_html_injection(page, game)
        # JupyterLab did not take any of those keys (no new cell, no cell turned into a heading)
        assert page.locator(".jp-Notebook .jp-Cell").count() == cells
        assert page.locator(".jp-Notebook .jp-MarkdownCell").count() == markdown

        # --- a round with the mouse: show more, a wrong class, refused labels, then good ones --------
        o = oracle.current("Ada Lovelace")
        _synced(game, o)
        wrong = (o.current.target + 1) % len(classes)
        game.root.locator(".ig-more").click()
        game.wait_step("4.5%")
        button = game.root.locator(f".ig-class[data-index='{wrong}']")
        assert button.locator(".ig-class-name").inner_text() == classes[wrong]
        button.click()
        game.wait_phase("answer")
        assert "ig-lose" in game.root.locator(".ig-banner").get_attribute("class")
        game.type_label(0, "   ")
        game.root.locator(".ig-submit").click()
        game.wait_message("Label 1 is blank")
        assert "ig-msg-error" in game.root.locator(".ig-msg").get_attribute("class")
        game.type_label(0, "x" * (MAX_LABEL_CHARS + 1))
        counter = game.root.locator(".ig-counter").first
        assert counter.inner_text() == f"{MAX_LABEL_CHARS + 1}/{MAX_LABEL_CHARS}"
        game.root.locator(".ig-submit").click()
        game.wait_message(f"the limit is {MAX_LABEL_CHARS} characters")
        assert game.phase() == "answer"
        assert game.root.locator(".ig-label-input").first.input_value() == "x" * (MAX_LABEL_CHARS + 1)
        game.type_label(0, "orange cap · chapeau orangé")
        game.type_label(1, "white dots")
        screenshot(game.root, screenshots_dir / "game-labels.png")
        game.type_label(2, "🍄 帽子")
        assert game.root.locator(".ig-counter").nth(2).inner_text() == f"4/{MAX_LABEL_CHARS}"  # code points
        game.root.locator(".ig-submit").click()
        game.wait_phase("play")
        game.wait_message("Saved")
        store = LabelStore(store_path)
        games = store.games("Ada Lovelace")
        assert list(games.outcome) == ["win", "lose"]
        assert list(games.reveal_step) == [2, 1]
        assert list(games.class_guessed)[1].lower() == classes[wrong].lower()
        assert store.labels("Ada Lovelace").text.tolist() == [
            HOSTILE,
            "orange cap · chapeau orangé",
            "white dots",
            "🍄 帽子",
        ]

        # --- undo the last answer with the mouse: it comes back with its labels; fix one, Enter -------
        game.root.locator(".ig-undo").click()
        game.wait_phase("answer")
        game.wait_message("Your last answer is back")
        assert len(store.games("Ada Lovelace")) == 2  # the answer stays (its class was shown); its labels come back
        inputs = game.root.locator(".ig-label-input")
        assert [inputs.nth(i).input_value() for i in range(3)] == [
            "orange cap · chapeau orangé",
            "white dots",
            "🍄 帽子",
        ]
        inputs.nth(1).fill("white spots")
        inputs.nth(1).press("Enter")
        game.wait_phase("play")
        assert store.labels("Ada Lovelace").text.tolist() == [
            HOSTILE,
            "orange cap · chapeau orangé",
            "white spots",
            "🍄 帽子",
        ]

        # --- give up and skip ---------------------------------------------------------------------
        game.root.locator(".ig-giveup").click()
        game.wait_phase("answer")
        assert "ig-resign" in game.root.locator(".ig-banner").get_attribute("class")
        game.root.locator(".ig-skip").click()
        game.wait_phase("play")
        games = store.games("Ada Lovelace")
        assert list(games.outcome) == ["win", "lose", "resign"] and list(games.n_labels) == [1, 3, 0]
        assert store.integrity_check() == []
        store.close()
        assert game.points() == 4
        assert game.leaderboard() == ["Ada Lovelace"]
        _no_html_injection(page, game)
        assert page.locator(".jp-Notebook .jp-Cell").count() == cells
    finally:
        ctx.close()


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_players_share_one_voila_server_and_store(
    browser, jupyter_server, tmp_path, screenshots_dir, backend, request
):
    if backend == "postgresql":
        store_path = request.getfixturevalue("postgres_server").create_database("voila_game")
    else:
        store_path = tmp_path / "shared.sqlite"
    server = jupyter_server("voila", notebooks=[NB], notebook=NB, env=env_for_game(store_path, N_IMAGES))
    contexts = []
    try:
        players = {}
        for name in ("Ada", "Bob <b>the</b> builder"):
            ctx = browser.new_context(viewport={"width": 1300, "height": 1000}, device_scale_factor=1)
            contexts.append(ctx)
            page = ctx.new_page()
            game = GamePage(page)
            page.goto(server.url(""), wait_until="domcontentloaded", timeout=LONG)  # Voila runs the notebook first
            players[name] = (page, game)
        for name, (_, game) in players.items():
            try:
                game.wait_phase("name", LONG)
            except Exception as e:
                raise AssertionError(f"{name}'s page did not show the game:\n{server.log_tail()}") from e
        # both sign in (Voila gives the name box the keyboard at once) and answer one map each
        ada_page, ada = players["Ada"]
        bob_page, bob = players["Bob <b>the</b> builder"]
        ada_page.keyboard.type("Ada")
        ada_page.keyboard.press("Enter")
        bob.enter_name("Bob <b>the</b> builder", press_enter=False)
        ada.wait_phase("play", LONG)
        bob.wait_phase("play", LONG)
        ada.focus()
        ada_page.keyboard.press(" ")
        ada.wait_step("4.5%")
        ada_page.keyboard.press("1")
        ada.wait_phase("answer")
        ada_page.keyboard.type("Ada's label")
        ada_page.keyboard.press("Enter")
        bob.root.locator(".ig-giveup").click()
        bob.wait_phase("answer")
        bob.type_label(0, "tall mast")
        bob.root.locator(".ig-submit").click()
        ada.wait_phase("play")
        bob.wait_phase("play")
        ada.wait_message("Saved")
        bob.wait_message("Saved")

        store = LabelStore(store_path)
        games = store.games()
        assert sorted(games.participant) == ["Ada", "Bob <b>the</b> builder"]
        assert set(store.labels().text) == {"Ada's label", "tall mast"}
        assert games.loc[games.participant == "Ada", "reveal_step"].tolist() == [1]
        assert games.loc[games.participant != "Ada", "outcome"].tolist() == ["resign"]
        store.close()

        # each page sees both players after a refresh; the name is shown as typed, not as markup
        for page, game in (players["Ada"], players["Bob <b>the</b> builder"]):
            game.root.locator(".ig-refresh").click()
            rows = game.wait_leaderboard_has(["Ada", "Bob <b>the</b> builder"])
            assert len(rows) == 2
            assert game.root.locator(".ig-player b").count() == 0
            _no_html_injection(page, game)
        if backend == "sqlite":
            screenshot(ada.root, screenshots_dir / "game-voila-ada.png")
            screenshot(bob.root, screenshots_dir / "game-voila-bob.png")
    finally:
        for ctx in contexts:
            ctx.close()
