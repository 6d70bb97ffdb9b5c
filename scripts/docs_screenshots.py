"""Screenshots of a finished study's report and dashboard for the docs (docs/img/).

    lrsearch run --study digits --storage sqlite:///digits.db       # about a minute on 2 cores
    .venv/bin/python scripts/docs_screenshots.py --study digits --storage sqlite:///digits.db

Writes the study's ``lrsearch report`` page to a scratch folder, opens it in headless Chromium
through Playwright (the browser the tests use: ``$LRSEARCH_CHROMIUM``, else ``chromium`` on
PATH; Playwright downloads none) and saves PNGs of its summary and range test, its schedules,
and its final comparison; then starts ``lrsearch dashboard`` on the same storage and saves its
study page and its note. Every PNG is a viewport of 1280 pixels' width.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from lrsearch import load_stored, report_html

WIDTH, HEIGHT = 1280, 860

#: (file name, heading the shot starts at, or None for the top of the page).
REPORT_SHOTS: list[tuple[str, str | None]] = [
    ("report-summary.png", None),
    ("report-schedules.png", "2. LR schedules of the top trials"),
    ("report-comparison.png", "4. Final comparison on the held-out test set"),
]


def chromium() -> str:
    path = os.environ.get("LRSEARCH_CHROMIUM") or shutil.which("chromium")
    if not path:
        raise SystemExit("needs Chromium: apt-get install chromium, or set LRSEARCH_CHROMIUM")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shoot_report(browser: Any, html: Path, out: Path) -> None:
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    page.goto(html.as_uri())
    page.wait_for_function("document.querySelectorAll('.plot-container').length > 3")
    page.wait_for_timeout(1500)  # plotly's last layout pass
    for name, heading in REPORT_SHOTS:
        if heading is None:
            page.evaluate("window.scrollTo(0, 0)")
        else:
            page.evaluate(
                "h => [...document.querySelectorAll('h2')].find(e => e.textContent.trim() === h)"
                ".scrollIntoView()",
                heading,
            )
        page.wait_for_timeout(300)
        page.screenshot(path=str(out / name))
        print(f"wrote {out / name}")
    page.close()


def shoot_dashboard(browser: Any, storage: str, study: str, out: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "lrsearch", "dashboard", "--storage", storage, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/dashboard/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        study_id = load_stored(study, storage=storage).search._study_id
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        page.goto(f"{base}/dashboard/studies/{study_id}")
        page.locator(".js-plotly-plot").filter(has_text="LR range test").first.wait_for(
            timeout=30_000
        )
        page.wait_for_timeout(2500)
        page.screenshot(path=str(out / "dashboard-study.png"))
        print(f"wrote {out / 'dashboard-study.png'}")
        page.goto(f"{base}/dashboard/studies/{study_id}/note")
        page.get_by_text("Winning schedule:").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / "dashboard-note.png"))
        print(f"wrote {out / 'dashboard-note.png'}")
        page.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="digits")
    parser.add_argument("--storage", default="sqlite:///studies/lrsearch.db")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / f"{args.study}-report.html"
        html.write_text(report_html(load_stored(args.study, storage=args.storage)))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium(), headless=True, args=["--no-sandbox"]
            )
            try:
                shoot_report(browser, html, args.out)
                shoot_dashboard(browser, args.storage, args.study, args.out)
            finally:
                browser.close()
    print(f"command: python {' '.join(sys.argv)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
