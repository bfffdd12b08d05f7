"""Browser tests: Playwright drives Debian's headless Chromium against the real app on 127.0.0.1.
Review two parts (one with the keyboard after moving a box on the canvas), label a folder image
with a model pre-label, export, look at the quality charts, and log in when a login is required.
Screenshots of each main screen go to docs/img/qa/ (the README shows them)."""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from pathlib import Path

import pytest

from qa_fixtures import CLASS_NAMES, make_archive, make_bundle

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The README's screenshots are refreshed only on request (DEFECTGATE_SCREENSHOTS=1), so that a plain
# test run does not rewrite tracked files; otherwise they go to a temp folder.
SHOTS = (Path(__file__).resolve().parents[2] / "docs" / "img" / "qa" if os.environ.get("DEFECTGATE_SCREENSHOTS")
         else Path(tempfile.gettempdir()) / "defectgate-qa-shots")
TIMEOUT_MS = 30_000  # generous: 2 shared CPU cores; not a speed assertion

if not Path(CHROMIUM).is_file():
    pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium (.ci/run does)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package ([dev] extra)")
pytest.importorskip("gradio", reason="the QA app needs the [qa] extra")
from defectgate_training.qa.app import launch  # noqa: E402
from defectgate_training.qa.archive_reader import Filters  # noqa: E402
from defectgate_training.qa.auth import Users  # noqa: E402
from defectgate_training.qa.decisions import Decision  # noqa: E402
from defectgate_training.qa.service import QAConfig, QAService  # noqa: E402

sync_api.expect.set_options(timeout=TIMEOUT_MS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import cv2

    from defectgate.synthparts import render_scene

    root = tmp_path_factory.mktemp("qa_browser")
    bundle = make_bundle(root / "bundle")
    archive = make_archive(root / "station" / "archive", n=16, hw=(240, 320), seed0=3)
    labels = root / "incoming"
    (labels / "batch1" / "images").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(labels / "batch1" / "images" / f"new_{i}.png"), render_scene(200 + i, (240, 320)).image)
    (root / "secret").mkdir()
    return {"root": root, "bundle": bundle, "archive": archive, "labels": labels}


@pytest.fixture(scope="module")
def outbound():
    """Every non-loopback address the app process tries to connect to (it must be none: no
    analytics, no update checks, no fonts or CDN)."""
    import ipaddress

    seen: list[str] = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        try:
            if not ipaddress.ip_address(host).is_loopback:
                seen.append(host)
        except ValueError:
            if host != "localhost" and sock.family != socket.AF_UNIX:
                seen.append(host)
        return real_connect(sock, address)

    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", connect)
    yield seen
    mp.undo()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _serve(env, users=None, reviews_name="reviews.sqlite"):
    svc = QAService(QAConfig(archive=env["archive"], bundle=env["bundle"], label_dirs=[env["labels"]],
                             reviews=env["root"] / reviews_name, exports=env["root"] / "exports"))
    demo, url = launch(svc, "127.0.0.1", _free_port(), users, reviewer="tester", block=False)
    return svc, demo, url


def _page(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []
    base = url.rstrip("/")
    page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else outside.append(r.url))
    return page, outside


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    tmp = SHOTS / f".{name}.tmp.png"
    page.screenshot(path=str(tmp), full_page=True)
    tmp.replace(SHOTS / name)


def _box_center_on_page(page, annotator_id: str, box: dict, image_hw: tuple[int, int]) -> tuple[float, float, float]:
    """Page coordinates of a box centre: the annotator draws the image centred in its canvas,
    scaled to the canvas height."""
    c = page.locator(f"#{annotator_id} canvas").bounding_box()
    h, w = image_hw
    scale = c["height"] / h
    left = c["x"] + (c["width"] - w * scale) / 2
    cx = left + (box["xmin"] + box["xmax"]) / 2 * scale
    cy = c["y"] + (box["ymin"] + box["ymax"]) / 2 * scale
    return cx, cy, scale


def test_review_label_export_quality(env, browser, outbound):
    expect = sync_api.expect
    svc, demo, url = _serve(env)
    try:
        page, outside = _page(browser, url)
        page.goto(url)
        expect(page.locator("#qa-queue-note")).to_contain_text("parts in the queue")
        expect(page.locator("#qa-item-info")).to_contain_text("item 1 of")
        page.locator("#qa-review-annotator canvas").wait_for()
        page.wait_for_timeout(500)  # let the canvas paint the image for the screenshot
        _shot(page, "review.png")

        queue, _ = svc.queue(Filters(verdict="NG"), "unreviewed")
        first, second = queue[0], queue[1]

        # 1) mark the first part as a false reject with the button
        page.click("#qa-false-reject")
        expect(page.locator("#qa-review-status")).to_contain_text(f"Saved: row {first.id} False reject")
        review = svc.store.latest()[first.id]
        assert review.decision is Decision.FALSE_REJECT and review.reviewer == "tester" and review.boxes == []

        # 2) move the second part's first box on the canvas, then confirm with the keyboard ('1')
        expect(page.locator("#qa-item-info")).to_contain_text(f"row {second.id},")
        original = svc.item(second.id).boxes[0]
        cx, cy, scale = _box_center_on_page(page, "qa-review-annotator", original, (240, 320))
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + 15 * scale, cy + 10 * scale, steps=4)
        page.mouse.move(cx + 30 * scale, cy + 20 * scale, steps=4)
        page.mouse.up()
        page.wait_for_timeout(300)
        page.keyboard.press("1")
        expect(page.locator("#qa-review-status")).to_contain_text(f"Saved: row {second.id} Confirm defect")
        review = svc.store.latest()[second.id]
        assert review.decision is Decision.CONFIRM_DEFECT
        moved = next(b for b in review.boxes if abs(b["xyxy"][0] - (original["xmin"] + 30)) <= 2)
        assert moved["xyxy"][1] == pytest.approx(original["ymin"] + 20, abs=2)
        assert moved["class"] == original["label"]
        expect(page.locator("#qa-queue")).to_contain_text("False reject")

        # 3) a passed part: switch the queue to OK, draw a box around a missed defect, press '3'
        page.locator("#f-verdict input").click()
        page.get_by_role("option", name="OK", exact=True).click()
        page.click("#qa-apply")
        expect(page.locator("#qa-item-info")).to_contain_text("line verdict OK")
        ok_first = svc.queue(Filters(verdict="OK"), "unreviewed")[0][0]
        expect(page.locator("#qa-item-info")).to_contain_text(f"row {ok_first.id},")
        page.locator("#qa-review-annotator button[aria-label='Create box']").click()
        x0, y0, scale = _box_center_on_page(page, "qa-review-annotator",
                                            {"xmin": 60, "xmax": 60, "ymin": 50, "ymax": 50}, (240, 320))
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x0 + 20 * scale, y0 + 15 * scale, steps=4)
        page.mouse.move(x0 + 40 * scale, y0 + 30 * scale, steps=4)
        page.mouse.up()
        page.wait_for_timeout(300)
        page.keyboard.press("3")
        expect(page.locator("#qa-review-status")).to_contain_text(f"Saved: row {ok_first.id} Missed defect")
        drawn = svc.store.latest()[ok_first.id]
        assert drawn.decision is Decision.MISSED_DEFECT and len(drawn.boxes) == 1
        assert drawn.boxes[0]["xyxy"] == pytest.approx([60, 50, 100, 80], abs=2)
        assert drawn.boxes[0]["class"] == CLASS_NAMES[0]  # the default label; 'Edit label' changes it

        # 4) label a folder image: a '../' escape is refused, then model pre-labels are saved
        page.get_by_role("tab", name="Label images").click()
        folder_input = page.locator("#qa-folder input, #qa-folder textarea")
        # the tab renders on first view and sets the box to its initial "."; a fill before that is overwritten
        # and "Open folder" opens "." (seen once in CI on a loaded 2-core machine)
        expect(folder_input).to_have_value(".")
        folder_input.fill("../secret")
        expect(folder_input).to_have_value("../secret")
        page.click("#qa-open-folder")
        expect(page.locator("#qa-label-status")).to_contain_text("outside the allowed folders")
        page.fill("#qa-folder input, #qa-folder textarea", "batch1")
        page.click("#qa-open-folder")
        expect(page.locator("#qa-label-status")).to_contain_text("2 images")
        expect(page.locator("#qa-label-status")).to_contain_text("1 model suggestions")
        page.locator("#qa-label-annotator canvas").wait_for()
        page.wait_for_timeout(500)
        _shot(page, "label.png")
        page.click("#qa-save-labels")
        expect(page.locator("#qa-label-status")).to_contain_text("Saved 1 boxes")
        label_file = env["labels"] / "batch1" / "labels" / "new_0.txt"
        assert label_file.read_text().split()[0] == "1"  # the constant model's 'dent'
        page.click("#qa-next-image")
        expect(page.locator("#qa-label-status")).to_contain_text("new_1.png: no labels yet")

        # 5) export and check what was written
        page.get_by_role("tab", name="Export").click()
        page.click("#qa-export")
        expect(page.locator("#qa-export-status")).to_contain_text("Exported")
        inc = env["root"] / "exports" / "qa-v0001"
        manifest = json.loads((inc / "manifest.json").read_text())
        by_decision = {i["decision"]: i for i in manifest["items"]}
        assert set(by_decision) == {"false_reject", "confirm_defect", "missed_defect", "labeled"}
        assert len((inc / by_decision["missed_defect"]["label"]).read_text().splitlines()) == 1
        assert (inc / by_decision["false_reject"]["label"]).read_text() == ""
        assert len((inc / by_decision["confirm_defect"]["label"]).read_text().splitlines()) == len(review.boxes)
        assert (inc / by_decision["labeled"]["label"]).read_text() == label_file.read_text()
        assert "names" in (inc / "data.yaml").read_text() and all(n in (inc / "data.yaml").read_text()
                                                                  for n in CLASS_NAMES)
        expect(page.locator("#qa-export-files")).to_contain_text("confirm_defect")
        _shot(page, "export.png")

        # 6) quality charts reflect the reviews
        page.get_by_role("tab", name="Quality").click()
        page.click("#qa-refresh")
        expect(page.locator("#qa-summary")).to_contain_text("false rejects")
        expect(page.locator("#qa-summary")).to_contain_text("50.0 %")  # 1 of 2 reviewed rejects
        expect(page.locator("#qa-summary")).to_contain_text("100.0 %")  # 1 of 1 reviewed passes escaped
        for chart in ("qa-chart-day", "qa-chart-shift", "qa-chart-reasons", "qa-chart-confusion"):
            page.locator(f"#{chart} img").wait_for()
        page.wait_for_timeout(500)
        _shot(page, "quality.png")
        assert outside == [], f"the page fetched from outside 127.0.0.1: {outside[:5]}"
        assert outbound == [], f"the app connected to {outbound[:5]}"
        page.close()
    finally:
        demo.close()


def test_login_is_required_and_names_the_reviewer(env, browser, outbound):
    expect = sync_api.expect
    svc, demo, url = _serve(env, users=Users({"alice": "correct horse"}, "test"), reviews_name="reviews-login.sqlite")
    try:
        page, outside = _page(browser, url)
        page.goto(url)
        user = page.get_by_label(re.compile("username", re.I))
        user.wait_for()
        _shot(page, "login.png")
        user.fill("alice")
        page.get_by_label(re.compile("password", re.I)).fill("wrong")
        page.keyboard.press("Enter")
        expect(page.get_by_text(re.compile("incorrect", re.I))).to_be_visible()
        user.fill("alice")  # the login form clears the user name after a failure
        page.get_by_label(re.compile("password", re.I)).fill("correct horse")
        page.keyboard.press("Enter")
        expect(page.locator("#qa-item-info")).to_contain_text("item 1 of")
        expect(page.locator("#qa-reviewer")).to_be_hidden()  # the login names the reviewer
        page.keyboard.press("2")
        expect(page.locator("#qa-review-status")).to_contain_text("by alice")
        assert {r.reviewer for r in svc.store.latest().values()} == {"alice"}
        assert outside == [] and outbound == []
        page.close()
    finally:
        demo.close()



def test_empty_archive_shows_a_message(tmp_path, browser):
    from defectgate.archive import Archive

    Archive(tmp_path / "archive", run_id="r", station="s", classes=CLASS_NAMES).close()
    svc = QAService(QAConfig(archive=tmp_path / "archive"))
    demo, url = launch(svc, "127.0.0.1", _free_port(), None, reviewer="tester", block=False)
    try:
        page, outside = _page(browser, url)
        page.goto(url)
        expect = sync_api.expect
        expect(page.locator("#qa-queue-note")).to_contain_text("has no parts yet")
        page.click("#qa-false-reject")
        expect(page.locator("#qa-review-status")).to_contain_text("queue is empty")
        page.close()
    finally:
        demo.close()


def test_a_missing_image_does_not_block_the_queue(env, browser, tmp_path):
    import shutil as _shutil

    archive = tmp_path / "archive"
    _shutil.copytree(env["archive"], archive)
    svc = QAService(QAConfig(archive=archive, reviews=tmp_path / "r.sqlite"))
    first, second = svc.queue(Filters(verdict="NG"), "unreviewed")[0][:2]
    (archive / first.image_path).unlink()  # e.g. deleted by a clean-up job
    demo, url = launch(svc, "127.0.0.1", _free_port(), None, reviewer="tester", block=False)
    try:
        page, _ = _page(browser, url)
        page.goto(url)
        expect = sync_api.expect
        expect(page.locator("#qa-item-info")).to_contain_text("is missing from the archive")
        expect(page.locator("#qa-queue-note")).to_contain_text("parts in the queue")
        page.keyboard.press("n")
        expect(page.locator("#qa-item-info")).to_contain_text(f"row {second.id},")
        page.close()
    finally:
        demo.close()
