"""Make ``docs/screenshot.png``: the app served by Voila on SmolLM2, beam and diverse search side by side.

Usage: ``make screenshot`` (or ``python docs/make_screenshot.py`` with the Makefile's environment). It drives the
app in headless Chromium like the browser tests do (``tests/browser/browser_harness.py``): types the prompt,
chooses the panels, runs, waits for both trees, and writes the full page to ``docs/screenshot.png``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from browser_harness import RUN_READY, AppPage, VoilaServer, chromium, new_context, watch  # noqa: E402

PROMPT = "The secret of good bread is"
#: JS: both panels' trees are drawn (two subplot titles and markers).
TREES = """() => {
  const root = document.querySelector('.explorer-tree');
  const gd = root && (root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot'));
  return !!gd && gd.querySelectorAll('.infolayer .annotation-text').length >= 2
    && gd.querySelectorAll('.scatterlayer .trace path.point').length > 0;
}"""


def main() -> None:
    target = ROOT / "docs" / "screenshot.png"
    with tempfile.TemporaryDirectory(prefix="screenshot-") as tmp, chromium() as browser:
        server = VoilaServer(Path(tmp), model=None)  # the app's default model, SmolLM2
        server.start()
        try:
            server.wait_listening(timeout=120)
            page = new_context(browser, width=1300).new_page()
            app = AppPage(page, watch(page), server, "docs-screenshot")
            page.goto(server.url, timeout=300_000, wait_until="domcontentloaded")
            app.wait("the Run button", RUN_READY, 300)
            app.type_prompt(PROMPT)
            app.fill(".explorer-max-new-tokens input", "12", 12, "max new tokens")
            app.ensure_panels(2)
            app.set_strategy(0, "beam")
            app.set_strategy(1, "diverse")
            status = app.click_run(timeout=300)
            if not status.startswith("done"):
                raise SystemExit(f"the run did not end well: {status}")
            app.wait("both trees", TREES, 60)
            page.wait_for_timeout(500)  # the last frame of plotly's drawing
            shutil.copyfile(app.shot("page"), target)
        finally:
            server.stop()
    print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
