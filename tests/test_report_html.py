"""report.html checked in a real browser (headless Chromium through Playwright): its numbers are report.json's,
every video loads and plays, the gallery's filters work, nothing is fetched from the network and the console
stays clean. Also: the disagreement section lists the flipped pairs, and text from the run is escaped."""

from __future__ import annotations

import html
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from evaluation import (
    ExecutionOptions,
    ResultStore,
    graded_stand_ins,
    run_evaluation,
    tiny_config,
    write_report,
)
from evaluation.claim import ClaimLink
from evaluation.config import cnn_policies
from evaluation.disagreement import NO_REAL_DOMAIN, sim_real_disagreements
from evaluation.report_html import report_html
from policies.cnn import CNNPolicy, CNNPolicyConfig

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT_ENV_VAR = "SIM2REAL_SCREENSHOT_DIR"


@pytest.fixture(scope="module", autouse=True)
def isolated_home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path_factory.getbasetemp() / "report-html-home"))
        yield


@pytest.fixture(scope="module")
def html_run(tmp_path_factory) -> Path:
    """A small real run of the harness with videos: a scripted expert and a random-weight CNN x 2 trials in the
    plain sim, the colour transfer and the miniature real world (12 episodes), and its report."""
    cnn = tmp_path_factory.mktemp("cnn") / "cnn-random"
    CNNPolicy.initialise(CNNPolicyConfig(seed=3), name="cnn-random").save_pretrained(cnn)
    config = tiny_config(policies=graded_stand_ins(["scripted-expert"]) + cnn_policies([cnn]),
                         trials=("OpenTopDrawer/b1", "CloseMiddleDrawer/a1"), seeds=1,
                         domains=("unedited", "colour-transfer", "real"), max_episode_steps=30,
                         standin_camera=(80, 64))
    run_dir = tmp_path_factory.mktemp("html-run")
    run_evaluation(config, run_dir, ExecutionOptions(num_envs=4, vectorization_mode="sync", progress=False,
                                                     videos=True))
    # The real world's episodes as the paired real trials of a lab: the report estimates real success from them.
    real = [e for e in ResultStore.open(run_dir).episodes() if e.domain == "real"]
    csv = tmp_path_factory.mktemp("real") / "real_episodes.csv"
    csv.write_text("policy,task,trial,outcome\n" + "".join(f"{e.policy},{e.task},{e.pose},{int(e.success)}\n"
                                                           for e in real))
    write_report(run_dir, real_episodes=csv)
    return run_dir


def resolve(document: dict, pointer: str):
    """The value at an RFC 6901 JSON pointer."""
    value = document
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: install the distribution's package (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[dev]' (it drives the system Chromium; no "
                    "browser download is needed)")
    return sync_playwright()


def test_report_html_in_chromium_matches_report_json_and_plays_every_video(html_run, tmp_path):
    document = json.loads((html_run / "report.json").read_text())
    videos = document["videos"]["episodes"]
    assert len(videos) == document["run"]["episodes_stored"] == 12
    with browser() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = chromium.new_page(viewport={"width": 1300, "height": 900})
            errors: list[str] = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            remote: list[str] = []

            def only_local(route):
                if route.request.url.startswith("file://") or route.request.url.startswith("data:"):
                    route.continue_()
                else:
                    remote.append(route.request.url)
                    route.abort()

            page.route("**/*", only_local)
            page.goto((html_run / "report.html").as_uri())

            assert page.locator("h2").first.inner_text() == "Where sim and real disagree"

            # Every number on the page is report.json's, shown at its stated precision.
            cells = page.eval_on_selector_all("[data-json-path]", """els => els.map(e => ({
                path: e.dataset.jsonPath, text: e.textContent.trim(), digits: e.dataset.digits,
                scale: e.dataset.scale, kind: e.dataset.kind || "number"}))""")
            assert len(cells) > 100
            for cell in cells:
                value = resolve(document, cell["path"])
                if cell["kind"] == "outcome":
                    assert cell["text"] == ("success" if value else "failure"), cell
                    continue
                if cell["kind"] == "verdict":
                    assert cell["text"] == ("holds" if value else "fails"), cell
                    continue
                scale = float(cell["scale"] or 1)
                assert float(cell["text"]) == pytest.approx(value / scale, abs=0.51 * 10 ** -int(cell["digits"])), cell
            shown_paths = {cell["path"] for cell in cells}
            for d, domain in enumerate(document["domains"]):  # and every rate of report.json is on the page
                for r, rates in enumerate(domain["rates"]):
                    for column in ("open", "close", "average"):
                        if rates[column] is not None:
                            assert f"/domains/{d}/rates/{r}/{column}/rate" in shown_paths
            for index in range(len(videos)):
                assert f"/videos/episodes/{index}/bytes" in shown_paths
            assert document["real_success"], "the real episodes give real-success estimates"
            for index in range(len(document["real_success"])):  # every estimate and its interval is on the page
                assert {f"/real_success/{index}/estimate", f"/real_success/{index}/interval/1"} <= shown_paths

            # The plots are embedded and decode.
            plots = page.eval_on_selector_all("#plots img", "els => els.map(e => [e.src.slice(0, 22), e.naturalWidth])")
            assert len(plots) == len(document["domains"]) + 2  # a scatter per domain, agreement, policy rates
            assert all(src == "data:image/png;base64," and width > 100 for src, width in plots)

            # Every video loads (readyState >= 2) and plays a frame.
            played = page.evaluate("""async () => {
                const videos = Array.from(document.querySelectorAll("video"));
                const one = v => new Promise((resolve) => {
                    const timer = setTimeout(() => resolve({src: v.src, ok: false, state: v.readyState,
                                                            error: v.error && v.error.message}), 20000);
                    const played = () => { clearTimeout(timer);
                                           resolve({src: v.src, ok: true, state: v.readyState, t: v.currentTime}); };
                    const start = () => {
                        if (v.requestVideoFrameCallback) { v.requestVideoFrameCallback(played); }
                        v.addEventListener("timeupdate", () => { if (v.currentTime > 0) played(); });
                        v.play().catch(e => resolve({src: v.src, ok: false, error: String(e)}));
                    };
                    v.muted = true;
                    if (v.readyState >= 2) { start(); } else { v.addEventListener("loadeddata", start, {once: true});
                                                               v.load(); }
                });
                return Promise.all(videos.map(one));
            }""")
            assert len(played) == len(videos)
            assert all(result["ok"] and result["state"] >= 2 for result in played), played
            assert {result["src"].split("/videos/", 1)[1] for result in played} == {
                v["path"].split("videos/", 1)[1] for v in videos}

            # The filters change what is shown.
            def visible() -> list[dict]:
                return page.eval_on_selector_all(".clip", "els => els.filter(e => !e.hidden).map(e => ({...e.dataset}))")

            assert len(visible()) == len(videos)
            page.select_option("#filter-policy", "scripted-expert")
            shown = visible()
            assert len(shown) == sum(v["policy"] == "scripted-expert" for v in videos) < len(videos)
            assert all(clip["policy"] == "scripted-expert" for clip in shown)
            assert page.inner_text("#clips-shown") == str(len(shown))
            page.select_option("#filter-outcome", "success")
            assert len(visible()) == sum(v["policy"] == "scripted-expert" and v["success"] for v in videos)
            page.select_option("#filter-policy", "")
            page.select_option("#filter-outcome", "")
            page.select_option("#filter-domain", "colour-transfer/wood")
            page.select_option("#filter-task", "OpenTopDrawer")
            assert len(visible()) == sum(v["domain"] == "colour-transfer" and v["task"] == "OpenTopDrawer"
                                         for v in videos) == 2
            page.select_option("#filter-domain", "")
            page.select_option("#filter-task", "")
            assert len(visible()) == len(videos)

            screenshot = tmp_path / "report.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
            if os.environ.get(SCREENSHOT_ENV_VAR):
                folder = Path(os.environ[SCREENSHOT_ENV_VAR])
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy(screenshot, folder / "report_html.png")
            assert remote == [], f"the page fetched from the network: {remote}"
            assert errors == [], f"console errors: {errors}"
        finally:
            chromium.close()


def test_flipped_real_outcomes_are_listed_first_with_their_videos(html_run):
    store = ResultStore.open(html_run)
    episodes = store.episodes()
    document = json.loads((html_run / "report.json").read_text())
    assert document["sim_real_disagreements"]["trials"] == []  # this run's policies do not see the difference
    real = next(e for e in episodes if e.domain == "real" and e.policy == "scripted-expert" and e.success)
    flipped = [replace(e, success=False) if e is real else e for e in episodes]
    found = sim_real_disagreements(store.config, flipped)
    assert [c["disagree"] for c in found["counts"]] == [1, 1]
    assert [c["sim_success_real_failure"] for c in found["counts"]] == [1, 1]
    (trial,) = found["trials"]
    assert (trial["policy"], trial["task"], trial["pose"]) == (real.policy, real.task, real.pose)
    assert trial["disagree"] == ["unedited", "colour-transfer/wood"] and not trial["real"]["success"]

    page = report_html({**document, "sim_real_disagreements": found}, html_run)
    assert page.index("Where sim and real disagree") < page.index("Agreement with the real world")
    assert page.count('class="differs"') == 2
    for domain in ("real", "unedited", "colour-transfer-wood"):
        assert f'href="videos/scripted-expert/{domain}/{real.task}_{real.pose}_' in page
        # ... and the same three videos side by side, the real one first, with a button playing them together.
        assert f'<video src="videos/scripted-expert/{domain}/{real.task}_{real.pose}_' in page
    start = page.index('<div class="side-by-side">')
    row = page[start:page.index("</div></div>", start)]
    assert row.count("<video") == 3 and row.index("real: failure") < row.index("unedited: success")
    assert page.count('class="play-together"') == 1

    no_real = sim_real_disagreements(replace(store.config, domains=("unedited", "colour-transfer")), episodes)
    assert not no_real["real_domain"] and no_real["trials"] == []
    assert html.escape(NO_REAL_DOMAIN) in report_html({**document, "sim_real_disagreements": no_real}, html_run)


def test_text_from_the_run_is_escaped(html_run):
    document = json.loads((html_run / "report.json").read_text())
    hostile = "<img src=x onerror=alert(1)>"
    document["videos"]["episodes"][0]["policy"] = hostile
    document["domains"][0]["name"] = hostile
    page = report_html(document, html_run)
    assert hostile not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_disagreeing_videos_play_together_in_chromium(html_run):
    store = ResultStore.open(html_run)
    episodes = store.episodes()
    real = next(e for e in episodes if e.domain == "real" and e.policy == "scripted-expert" and e.success)
    found = sim_real_disagreements(store.config, [replace(e, success=False) if e is real else e for e in episodes])
    document = json.loads((html_run / "report.json").read_text())
    page_file = html_run / "report_flipped.html"  # beside report.html: the same relative video paths
    page_file.write_text(report_html({**document, "sim_real_disagreements": found}, html_run))
    with browser() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = chromium.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_file.as_uri())
            row = page.locator(".side-by-side")
            assert row.count() == 1 and row.locator("video").count() == 3
            assert page.evaluate("() => Array.from(document.querySelectorAll('.side-by-side video'))"
                                 ".every(v => v.paused)")
            row.locator("button.play-together").click()
            page.wait_for_function("() => Array.from(document.querySelectorAll('.side-by-side video'))"
                                   ".every(v => !v.paused && v.currentTime > 0)", timeout=20000)
            assert errors == []
        finally:
            chromium.close()


def test_the_claim_is_shown_with_each_verdict(html_run):
    document = json.loads((html_run / "report.json").read_text())
    assert "The claim" not in report_html(document, html_run)  # this run measures no claim
    links = [ClaimLink("edited+crop closes half the gap <fast>", True, "MAE 0.069 of 0.174").to_json(),
             ClaimLink("beats the colour transfer", False, "difference +0.006 [-0.017, 0.032]").to_json(),
             ClaimLink("the control in the crop domain", None, "51% of the gap").to_json()]
    page = report_html({**document, "claim": links}, html_run)
    section = page[page.index('<section id="claim">'):]
    section = section[:section.index("</section>")]
    assert [section.count(f'class="verdict {verdict}"') for verdict in ("holds", "fails", "finding")] == [1, 1, 1]
    assert "closes half the gap &lt;fast&gt;" in section and "+0.006 [-0.017, 0.032]" in section
    assert page.index('<section id="claim">') < page.index('<section id="run">')
