"""Browser: the Disagreements queue in headless Chromium. Choosing it lists only the parts where the
live model and the shadow candidate disagree (both directions), and a decision there is an ordinary
review, which the evidence for promotion reads."""

from __future__ import annotations

import pytest

from qa_fixtures import make_shadow_archive

pytestmark = pytest.mark.browser

from test_browser import CHROMIUM, TIMEOUT_MS, _free_port, _page, browser, sync_api  # noqa: E402,F401
from defectgate_training.qa.app import launch  # noqa: E402
from defectgate_training.qa.archive_reader import Filters  # noqa: E402
from defectgate_training.qa.decisions import Decision  # noqa: E402
from defectgate_training.qa.service import QAConfig, QAService  # noqa: E402


def test_disagreements_queue_reviews_a_candidate_only_reject(browser, tmp_path):  # noqa: F811
    expect = sync_api.expect
    archive = tmp_path / "station" / "archive"
    truth = make_shadow_archive(archive, n=12, hw=(240, 320))
    svc = QAService(QAConfig(archive=archive, reviews=tmp_path / "reviews.sqlite"))
    demo, url = launch(svc, "127.0.0.1", _free_port(), None, reviewer="tester", block=False)
    try:
        page, outside = _page(browser, url)
        page.goto(url)
        expect(page.locator("#qa-queue-note")).to_contain_text("parts in the queue")
        page.locator("#f-queue input").click()
        page.get_by_role("option", name="Disagreements (live vs candidate)").click()
        page.click("#qa-apply")
        n = sum(live != cand for _, live, cand in truth.values())
        expect(page.locator("#qa-queue-note")).to_contain_text(f"{n} parts in the queue")
        expect(page.locator("#qa-queue")).to_contain_text("OK≠NG")
        expect(page.locator("#qa-queue")).to_contain_text("NG≠OK")
        # walk to the first part the line passed and the candidate rejects, and call it a correct pass ('4')
        rows = svc.archive.query(Filters(queue="disagreements", verdict="all"))
        target = next(i for i, r in enumerate(rows) if r.verdict == "OK")
        for _ in range(target):
            page.keyboard.press("n")
        part = rows[target]
        expect(page.locator("#qa-item-info")).to_contain_text(f"row {part.id},")
        expect(page.locator("#qa-item-info")).to_contain_text("candidate vcand (shadow) says NG")
        page.keyboard.press("4")
        expect(page.locator("#qa-review-status")).to_contain_text(f"Saved: row {part.id} Correct pass")
        assert svc.store.latest()[part.id].decision is Decision.CORRECT_PASS
        assert outside == []
    finally:
        demo.close()
