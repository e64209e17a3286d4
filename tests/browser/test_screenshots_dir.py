"""A test run leaves the tracked screenshots alone unless asked to update them."""

import os

from .conftest import SCREENSHOTS


def test_screenshots_go_to_a_temporary_folder_unless_asked(screenshots_dir):
    if os.environ.get("INV_UPDATE_SCREENSHOTS", "") in ("", "0"):
        assert screenshots_dir.resolve() != SCREENSHOTS.resolve()
        assert SCREENSHOTS.resolve() not in screenshots_dir.resolve().parents
    else:
        assert screenshots_dir.resolve() == SCREENSHOTS.resolve()
