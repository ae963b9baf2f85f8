"""``segkit report RUN`` and ``segkit evaluate --report``: one self-contained HTML page, checked as HTML
(every picture inlined, nothing to fetch, no script) and opened in a real headless Chromium (no
console error, every picture shown, a non-blank screenshot)."""

from __future__ import annotations

import html
import json
import math
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from fixtures import error_line, invoke, run_cli
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from segkit.reporting.report import Case, ReportContent, render_html, worst_and_best


class PageParts(HTMLParser):
    """What a page is made of: its pictures' sources, and every tag that could fetch or run something."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.fetching: list[str] = []
        self.scripts = 0
        self.csp: str | None = None
        self.case_cards = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes.get("src") or "")
        if tag == "script":
            self.scripts += 1
        if tag in ("link", "iframe", "object", "embed", "video", "audio", "source"):
            self.fetching.append(tag)
        for name in ("href", "src"):
            value = attributes.get(name) or ""
            if re.match(r"^[a-z]+://", value) or value.startswith("//"):
                self.fetching.append(f"{tag} {name}={value[:40]}")
        if tag == "meta" and attributes.get("http-equiv") == "Content-Security-Policy":
            self.csp = attributes.get("content")
        if tag == "div" and attributes.get("class") == "case":
            self.case_cards += 1


def parts_of(page: Path) -> PageParts:
    parser = PageParts()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def assert_self_contained(parts: PageParts) -> None:
    assert parts.images and all(src.startswith("data:image/png;base64,") for src in parts.images)
    assert parts.scripts == 0 and parts.fetching == []
    assert parts.csp is not None and "default-src 'none'" in parts.csp and "img-src data:" in parts.csp


# -- the run's page ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_page(trained_run, tmp_path_factory) -> Path:
    page = tmp_path_factory.mktemp("report") / "run.html"
    result = invoke(
        "report", trained_run, "--device", "cpu", "--quiet", "--worst", 1, "--best", 1, "-o", page
    )
    assert result.exit_code == 0, result.output
    assert str(page) in result.output
    return page


def test_the_page_is_one_self_contained_file(report_page):
    assert_self_contained(parts_of(report_page))


def test_the_page_shows_settings_with_their_sources_curves_histogram_and_cases(report_page, trained_run):
    text = report_page.read_text(encoding="utf-8")
    recorded = json.loads((trained_run / "config.json").read_text())
    for section in ("Scores", "Distribution of per-image scores", "The 1 worst images", "The 1 best images"):
        assert f">{section}</h2>" in text
    assert ">Training curves</h2>" in text and ">Settings, and where each came from</h2>" in text
    settings = re.search(r'id="settings".*?</table>', text, re.S).group(0)
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", settings)
    assert {name for name, _, _ in rows} == set(recorded["config"])
    assert ("image_size", "32", recorded["sources"]["image_size"]) in rows
    assert parts_of(report_page).case_cards == 2
    # The curves (loss, Dice), the histogram and 2 cases of 4 pictures (image, truth, prediction, errors).
    assert len(parts_of(report_page).images) == 2 + 1 + 2 * 4


def test_evaluate_writes_the_worst_cases_page_on_its_own(tiny_checkpoint, tmp_path):
    page = tmp_path / "worst.html"
    result = invoke(
        "evaluate", tiny_checkpoint, "--split", "valid", "--worst", 2, "--report", page, "-o", tmp_path / "e"
    )
    assert result.exit_code == 0, result.output
    assert str(page) in result.output
    parts = parts_of(page)
    assert_self_contained(parts)
    assert parts.case_cards == 2 and "The 2 worst images" in page.read_text()
    # The gallery's worst two are the two lowest Dice of per_image.csv.
    rows = (tmp_path / "e" / "per_image.csv").read_text().splitlines()[1:]
    names = [row.split(",")[0] for row in sorted(rows, key=lambda row: float(row.split(",")[1]))[:2]]
    assert re.findall(r'<div class="name">(.*?)</div>', page.read_text()) == names


def test_a_multiclass_page_has_the_per_class_table_and_the_confusion_matrix(tmp_path):
    from fixtures import only_run_dir, tiny_run

    args = tiny_run(train_size=4, valid_size=3, batch_size=4, epochs=1, loss="ce_dice", callbacks=("csv",))
    result = invoke("run", *args, "--dataset-option", "task=multiclass", "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    page = tmp_path / "page.html"
    result = invoke(
        "report", only_run_dir(tmp_path / "runs"), "--device", "cpu", "-q", "--best", 0, "-o", page
    )
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert ">Per class</h2>" in text and ">Confusion matrix</h2>" in text
    for name in ("background", "ellipse", "polygon", "star"):
        assert f"<td>{name}</td>" in text
    parts = parts_of(page)
    assert_self_contained(parts)
    assert parts.case_cards == 3  # --worst 6 of 3 images: all of them, and no best left to show


def test_bad_input_is_one_line(tmp_path, trained_run):
    result = run_cli("report", tmp_path / "nothing-here")
    assert result.exit_code == 2 and "is not a run folder" in error_line(result)
    (tmp_path / "empty").mkdir()
    result = run_cli("report", tmp_path / "empty")
    assert result.exit_code == 2 and "config.json is missing" in error_line(result)
    result = run_cli("report", trained_run, "-o", tmp_path / "missing" / "page.html", "--device", "cpu")
    assert result.exit_code == 2 and "does not exist" in error_line(result)


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        (None, 2, "is not a segkit run folder"),
        ("{not json", 1, "is not valid JSON"),
        ("[]", 1, "JSON object"),
    ],
)
def test_a_missing_or_broken_config_json_is_one_line_naming_the_file(tmp_path, content, code, words):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "config.json").write_text(content)
    result = invoke("report", run)
    assert result.exit_code == code and words in error_line(result), result.output
    assert str(run / "config.json") in error_line(result)


# -- which images are shown ------------------------------------------------------------------------------


@given(
    scores=st.lists(st.one_of(st.floats(0, 1), st.just(math.nan)), max_size=30),
    worst=st.integers(0, 10),
    best=st.integers(0, 10),
)
def test_worst_and_best_are_the_lowest_and_highest_scores_and_never_the_same_image(scores, worst, best):
    rows = [{"name": f"image-{index:02d}", "dice": score} for index, score in enumerate(scores)]
    low, high = worst_and_best(rows, "dice", worst, best)
    assert len(low) == min(worst, len(rows)) and len(high) == min(best, len(rows) - len(low))
    assert not set(low) & set(high)

    def value(index):  # nothing to show (NaN) ranks below everything
        return -1.0 if math.isnan(scores[index]) else scores[index]

    ranked = sorted(value(index) for index in range(len(rows)))
    assert sorted(value(index) for index in low) == ranked[: len(low)]
    if high:
        assert sorted(value(index) for index in high) == ranked[len(ranked) - len(high) :]
    assert [value(index) for index in low] == sorted(value(index) for index in low)  # worst first


def test_text_is_escaped():
    picture = Image.new("RGB", (4, 4), (10, 20, 30))
    content = ReportContent(
        title="<script>alert(1)</script>",
        worst=[Case('<img src="x">', {"Dice": 0.5}, [("image", picture)])],
        settings=[("data_path", "</td><script>", "flag")],
    )
    page = render_html(content)
    assert "<script>" not in page and '<img src="x">' not in page
    assert html.escape("<script>alert(1)</script>") in page


# -- in a real browser -----------------------------------------------------------------------------------

#: Put at the top of a test copy of the page: records errors (script errors, pictures that failed to
#: load, anything the page's Content-Security-Policy refused, console.error) and, once the page has
#: loaded, writes how many pictures there are and which did not load into the DOM, read back with
#: --dump-dom. The copy's policy allows this one inline script; the page itself has none.
PROBE = """<script>
window.probeErrors = [];
window.addEventListener("error", function (event) {
  var target = event.target;
  window.probeErrors.push("error: " + (event.message || (target && (target.src || target.href)) || "?"));
}, true);
document.addEventListener("securitypolicyviolation", function (event) {
  window.probeErrors.push(
    "refused by the page's policy: " + event.violatedDirective + " " + event.blockedURI);
});
var consoleError = console.error;
console.error = function () {
  window.probeErrors.push("console: " + Array.prototype.join.call(arguments, " "));
  consoleError.apply(console, arguments);
};
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (image) { return !(image.complete && image.naturalWidth > 0); });
  var result = document.createElement("pre");
  result.id = "probe-result";
  result.textContent = JSON.stringify({
    images: images.length,
    broken: broken.map(function (image) { return image.alt; }),
    errors: window.probeErrors
  });
  document.body.appendChild(result);
});
</script>"""


def browser(chromium: str, profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    command = [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run"]
    command += ["--hide-scrollbars", f"--user-data-dir={profile}", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def loaded_in_browser(chromium: str, page: Path, tmp_path: Path) -> dict:
    """Open a probed copy of ``page`` in headless Chromium; what the probe found."""
    text = page.read_text(encoding="utf-8")
    policy = "style-src 'unsafe-inline'"
    assert policy in text
    text = text.replace(policy, policy + "; script-src 'unsafe-inline'", 1).replace(
        "<head>", "<head>" + PROBE, 1
    )
    copy = tmp_path / "probed.html"
    copy.write_text(text, encoding="utf-8")
    result = browser(
        chromium, tmp_path / "profile", "--virtual-time-budget=15000", "--dump-dom", copy.as_uri()
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the page never finished loading: {result.stdout[-500:]} {result.stderr[-1500:]}"
    return json.loads(html.unescape(found.group(1)))


def test_the_page_opens_in_chromium_with_every_picture_and_no_error(report_page, chromium, tmp_path):
    probe = loaded_in_browser(chromium, report_page, tmp_path)
    assert probe["errors"] == []
    assert probe["broken"] == []
    assert probe["images"] == len(parts_of(report_page).images)

    screenshot = tmp_path / "report.png"
    result = browser(
        chromium, tmp_path / "profile", "--window-size=1280,1600", f"--screenshot={screenshot}",
        report_page.as_uri(),
    )  # fmt: skip
    assert result.returncode == 0 and screenshot.is_file(), result.stderr[-2000:]
    with Image.open(screenshot) as picture:
        assert picture.format == "PNG" and picture.size == (1280, 1600)
        pixels = np.asarray(picture.convert("RGB"))
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 100 and pixels.std() > 10  # text, tables and pictures: not a blank page


def test_the_probe_sees_a_broken_picture_and_a_fetch_the_page_refuses(report_page, chromium, tmp_path):
    """The browser check itself: a picture that is no PNG, and one from the network, are both caught."""
    text = report_page.read_text(encoding="utf-8")
    bad = '<img src="data:image/png;base64,AAAA" alt="broken"><img src="http://192.0.2.1/x.png" alt="remote">'
    spoiled = tmp_path / "spoiled.html"
    spoiled.write_text(text.replace("<h1>", bad + "<h1>", 1), encoding="utf-8")
    probe = loaded_in_browser(chromium, spoiled, tmp_path)
    assert set(probe["broken"]) == {"broken", "remote"}
    assert any("refused by the page's policy" in error and "192.0.2.1" in error for error in probe["errors"])
