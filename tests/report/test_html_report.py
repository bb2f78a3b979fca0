"""`ran-edge report`: one offline HTML page per build, checked in a real headless Chromium.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: fds 3
and 4, NUL-separated JSON), so the test sees console messages with their level, every
network request and whether each image decoded, using only the standard library.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import BUILD_TARGETS

from ran_edge.cli.report import report as report_command
from ran_edge.report.html import (
    ExtraSection,
    Table,
    load_reports,
    render_html,
    render_html_report,
    write_report_for,
)
from ran_edge.report.model import Report
from ran_edge.report.plots import Chart

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
SECTIONS = (
    "summary",
    "comparison",
    "memory",
    "layers",
    "modules",
    "fidelity",
    "fallbacks",
    "details",
)
HEADINGS = (
    "Summary",
    "Targets compared",
    "Memory traffic",
    "Per layer",
    "Per PyTorch module",
    "int8 fidelity",
    "CPU fallbacks",
    "Details",
)
REMOTE_REF = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)

WIRE_FDS = """
import fcntl, os, sys
a, b = (fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3])
os.dup2(a, 3)
os.dup2(b, 4)
os.execv(sys.argv[3], sys.argv[3:])
"""

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium is not installed at /usr/bin/chromium "
    "(`apt-get install -y chromium`, as `make setup` does)",
)


def invoke(*args) -> Result:
    return CliRunner().invoke(report_command, [str(a) for a in args], catch_exceptions=False)


# ---------------------------------------------------------------- Chromium over a pipe


class Chromium:
    """Headless Chromium driven by DevTools protocol messages on fds 3 (in) and 4 (out)."""

    FLAGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,4000",
        "--remote-debugging-pipe",
    )

    def __init__(self, profile: Path, log: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        self.log = log
        with log.open("wb") as err:
            # A tiny Python trampoline puts the pipe on fds 3 and 4 and execs Chromium: no
            # preexec_fn, so no fork of this (multithreaded) test process runs Python code.
            self.proc = subprocess.Popen(
                [sys.executable, "-c", WIRE_FDS, str(to_chrome_r), str(from_chrome_w)]
                + [str(CHROMIUM), *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                pass_fds=(to_chrome_r, from_chrome_w),
            )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def _next(self, timeout: float) -> dict:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._from_chrome], [], [], timeout)
            if not ready:
                raise TimeoutError(f"no DevTools message in {timeout} s; log: {self._log_tail()}")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise EOFError(f"Chromium exited; log: {self._log_tail()}")
            self._buf += chunk
        message, self._buf = self._buf.split(b"\0", 1)
        return json.loads(message)

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._next(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, event: str, timeout: float = 60) -> dict:
        for seen in self.events:
            if seen.get("method") == event:
                return seen
        while True:
            message = self._next(timeout)
            self.events.append(message)
            if message.get("method") == event:
                return message

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=4000,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def problems(self) -> list[str]:
        """Console errors/warnings, uncaught exceptions and failed loads seen so far."""
        found = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                found.append(f"log {p['entry']['level']}: {p['entry']['text']}")
            elif method == "Runtime.consoleAPICalled" and p["type"] in (
                "error",
                "warning",
                "assert",
            ):
                found.append(f"console.{p['type']}: {p['args']}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {p['exceptionDetails'].get('text')}")
            elif method == "Network.loadingFailed":
                found.append(f"failed load: {p.get('errorText')} {p.get('blockedReason', '')}")
        return found

    def requests(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError, TimeoutError, RuntimeError):
            self.call("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def load_in_chromium(html: Path, tmp: Path) -> Chromium:
    browser = Chromium(tmp / "chromium-profile", tmp / "chromium.log")
    try:
        browser.open(html.resolve().as_uri())
    except BaseException:
        browser.close()
        raise
    return browser


# ---------------------------------------------------------------- fixtures


def copy_reports(model_dir: Path, dest: Path) -> Path:
    """Only the report.json files: the shared build folder stays untouched."""
    for report in sorted(model_dir.glob("*/report.json")):
        (dest / report.parent.name).mkdir(parents=True)
        shutil.copy2(report, dest / report.parent.name / "report.json")
    return dest


@pytest.fixture(scope="module")
def digits_page(digits_build, tmp_path_factory) -> tuple[Path, dict]:
    """The page for the real two-target digits build, written through the CLI."""
    folder = copy_reports(digits_build.model_dir, tmp_path_factory.mktemp("html") / "digits")
    result = invoke(folder, "--json")
    assert result.exit_code == 0, result.output
    return folder, json.loads(result.stdout)


def synthetic_report(base: dict, layers: int, *, target: str, cpu_ops: int = 0) -> Report:
    """A big model: `layers` layers in blocks of 6, modules at depths 1-3, some CPU ops
    (checked against the schema like any report read from disk)."""
    report = copy.deepcopy(base)
    report["target"]["name"] = target
    rows, modules = [], {}
    for i in range(layers):
        block = i // 6
        path = f"backbone.stage{block // 8}.block{block}.conv{i % 3}"
        macs = 0 if i % 6 == 5 else 20_000 + 997 * (i % 37)
        npu_cycles = 0 if macs == 0 else 400 + 53 * (i % 41)
        cycles = npu_cycles * (3 if i % 7 == 0 else 1)
        on_cpu = i % max(1, layers // max(cpu_ops, 1)) == 3 and cpu_ops > 0
        rows.append(
            {
                "index": i,
                "op": "Conv2D",
                "npu_op": "Conv2D",
                "placement": "CPU" if on_cpu else "NPU",
                "cycles": 0 if on_cpu else cycles,
                "npu_cycles": 0 if on_cpu else npu_cycles,
                "macs": macs,
                "mac_utilisation_pct": 100.0 * macs / max(1, npu_cycles * 128) if macs else 100.0,
                "memory_bound": cycles > npu_cycles,
                "sram_bytes": 4096 + i,
                "module": path,
                "name": f"synthetic/layer_{i};" * 4,
            }
        )
        parts = path.split(".")
        for depth in range(1, len(parts) + 1):
            m = modules.setdefault(
                ".".join(parts[:depth]), {"depth": depth, "ops": 0, "cycles": 0, "macs": 0}
            )
            m["ops"] += 1
            m["cycles"] += rows[-1]["cycles"]
            m["macs"] += macs
    total = max(1, sum(r["cycles"] for r in rows))
    report["layers"] = rows
    report["modules"] = {
        "depth": 3,
        "rows": [
            {
                "path": path,
                **m,
                "mac_utilisation_pct": 100.0 * m["macs"] / max(1, m["cycles"] * 128),
                "cycle_share_pct": 100.0 * m["cycles"] / total,
            }
            for path, m in sorted(modules.items())
        ],
    }
    report["cpu_fallbacks"] = [
        {"op_type": "SQRT", "name": f"layer_{r['index']}", "reason": "Op is not supported"}
        for r in rows
        if r["placement"] == "CPU"
    ]
    for m in report["metrics"]:
        if m["name"] == "cpu_ops":
            m["value"] = len(report["cpu_fallbacks"])
    if report["cpu_fallbacks"]:
        report["metrics"] = [m for m in report["metrics"] if m["name"] != "cpu_fallback_time"]
        report["metrics"].append(
            {
                "name": "cpu_fallback_time",
                "unit": "ms",
                "availability": "unavailable",
                "reason": "Vela does not estimate CPU-fallback ops",
            }
        )
    return Report.from_dict(report)


# ---------------------------------------------------------------- the real build


def test_cli_writes_one_self_contained_page(digits_page):
    folder, summary = digits_page
    page = folder / "report.html"
    assert summary == {
        "html": str(page),
        "targets": list(BUILD_TARGETS),
        "bytes": page.stat().st_size,
    }
    html = page.read_text(encoding="utf-8")
    assert not REMOTE_REF.search(html), "the page references something over the network"
    assert "<script" not in html
    assert "Content-Security-Policy" in html
    for section in SECTIONS:
        assert f'<section id="{section}"' in html
    for target in BUILD_TARGETS:
        assert f'id="card-{target}"' in html
    # every figure says where it came from
    assert 'class="src src-vela"' in html and 'class="src src-ran-edge"' in html
    assert 'class="src src-litert"' in html  # fidelity, measured by running LiteRT
    if any(
        r.get("tflm") for r in map(json.loads, map(Path.read_text, folder.glob("*/report.json")))
    ):
        assert "TFLM vs LiteRT reference kernels" in html
    # where the int8 error comes from: the plot along the network and the worst layers
    assert 'id="sensitivity"' in html and "SQNR of each op" in html
    assert "down.0" in html.split('id="sensitivity"')[1].split("</section>")[0]
    assert sorted(p.name for p in folder.iterdir()) == [*BUILD_TARGETS, "report.html"]


@needs_chromium
def test_page_renders_in_chromium_offline_without_errors(digits_page, tmp_path):
    folder, _ = digits_page
    page = folder / "report.html"
    browser = load_in_chromium(page, tmp_path)
    try:
        state = browser.evaluate(
            """JSON.stringify({
              sections: [...document.querySelectorAll('main > section')].map(s => s.id),
              headings: [...document.querySelectorAll('main > section > h2')].map(h => h.textContent),
              cards: [...document.querySelectorAll('.card h3')].map(h => h.textContent),
              images: [...document.images].map(i => ({
                data: i.src.startsWith('data:image/'), ok: i.complete && i.naturalWidth > 0,
                shown: i.getBoundingClientRect().width})),
              height: document.documentElement.scrollHeight,
              width: document.documentElement.scrollWidth,
            })"""
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.screenshot(ARTIFACTS / "report.png")
        shutil.copy2(page, ARTIFACTS / "report.html")
        problems, requests = browser.problems(), browser.requests()
    finally:
        browser.close()

    state = json.loads(state)
    assert problems == [], problems
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert state["sections"] == list(SECTIONS)
    assert state["headings"] == list(HEADINGS)
    assert state["cards"] == list(BUILD_TARGETS)
    # comparison, int8 sensitivity along the network, and per target: layer and module charts
    assert len(state["images"]) == 2 + 2 * len(BUILD_TARGETS)
    for image in state["images"]:
        assert image["data"] and image["ok"], image
        assert image["shown"] > 500  # laid out at a readable size
    assert state["width"] <= 1280, "the page scrolls sideways"
    assert (ARTIFACTS / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_chromium
def test_chromium_check_catches_errors_and_network(tmp_path):
    """The harness itself: a page with a script error and a remote image must fail it."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!doctype html><img src="http://127.0.0.1:9/x.png"><script>console.error("boom")</script>'
    )
    browser = load_in_chromium(page, tmp_path)
    try:
        problems, requests = browser.problems(), browser.requests()
    finally:
        browser.close()
    assert any("boom" in p for p in problems), problems
    assert "http://127.0.0.1:9/x.png" in requests


def test_single_target_folder_and_report_file(digits_build, tmp_path):
    folder = copy_reports(digits_build.model_dir, tmp_path / "m")
    one = folder / BUILD_TARGETS[0]
    result = invoke(one)
    assert result.exit_code == 0, result.output
    assert (one / "report.html").is_file()
    assert str(one / "report.html") in result.output
    result = invoke(one / "report.json", "--out", tmp_path / "out" / "page.html", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["targets"] == [BUILD_TARGETS[0]]
    html = (tmp_path / "out" / "page.html").read_text()
    assert 'id="comparison"' not in html  # one target: nothing to compare


def test_python_api_and_extras(digits_build, tmp_path):
    """`render_html_report` for build/profile --html, with a later feature's own section."""
    reports = [Report.from_dict(digits_build.reports[t]) for t in BUILD_TARGETS]
    chart = Chart("image/png", b"\x89PNG-not-really", "pareto", 0, 0)
    extra = ExtraSection(
        id="search",
        title="Architecture search <top 3>",
        paragraphs=("Pareto front of latency vs accuracy.",),
        charts=(chart,),
        captions=("pareto.png",),
        table=Table(("candidate", "ms"), (("a<b>", "1.0"),), (False, True)),
    )
    out = render_html_report(reports, tmp_path / "r.html", title="digits & co", extras=[extra])
    html = out.read_text()
    assert '<section id="search" class="extra">' in html
    assert "Architecture search &lt;top 3&gt;" in html and "a&lt;b&gt;" in html  # autoescaped
    assert "<title>digits &amp; co</title>" in html
    assert chart.uri in html
    assert '<a href="#search">' in html


def test_images_beside_the_reports_are_embedded(digits_build, tmp_path):
    folder = copy_reports(digits_build.model_dir, tmp_path / "m")
    pareto = b"\x89PNG\r\n\x1a\n" + b"pareto" * 10
    (folder / "pareto.png").write_bytes(pareto)
    written = write_report_for(folder)
    html = written.path.read_text()
    assert 'id="extra-figures"' in html
    assert base64.b64encode(pareto).decode() in html
    assert "<figcaption>pareto.png</figcaption>" in html


def test_unavailable_figures_and_cpu_fallbacks_are_explained(digits_build, tmp_path):
    base = digits_build.reports[BUILD_TARGETS[0]]
    report = synthetic_report(base, 40, target="ethos-u55-128", cpu_ops=2)
    html = render_html([report])
    assert "Vela does not estimate CPU-fallback ops" in html  # the reason, not a 0
    assert "Op is not supported" in html
    assert "op(s) left on the CPU" in html
    assert html.count('class="src src-na"') >= 1


# ---------------------------------------------------------------- size and determinism


def test_hundreds_of_layers_stay_small(digits_build, tmp_path):
    base = digits_build.reports[BUILD_TARGETS[0]]
    reports = [
        synthetic_report(base, 300, target=name, cpu_ops=3)
        for name in ("ethos-u55-128", "ethos-u65-256", "ethos-u85-256")
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib layout or font warnings are bugs here
        out = render_html_report(reports, tmp_path / "big.html")
    size = out.stat().st_size
    assert size < 3_000_000, f"{size:,} bytes for 3 targets x 300 layers"
    html = out.read_text()
    assert html.count("<tr>") > 3 * 300  # every layer is in the tables


def test_same_reports_same_bytes(digits_page, tmp_path):
    folder, _ = digits_page
    _, reports = load_reports(folder)
    first = render_html(reports)
    assert render_html(reports) == first
    # another process, another hash seed: nothing may depend on set or dict iteration order
    script = (
        "import sys; from pathlib import Path; from ran_edge.report.html import write_report_for;"
        "write_report_for(Path(sys.argv[1]), Path(sys.argv[2]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run(
        [sys.executable, "-c", script, str(folder), str(tmp_path / "again.html")],
        check=True,
        env=env,
    )
    digest = hashlib.sha256((tmp_path / "again.html").read_bytes()).hexdigest()
    assert digest == hashlib.sha256((folder / "report.html").read_bytes()).hexdigest()


# ---------------------------------------------------------------- errors


def assert_usage_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert message.startswith("error: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_folder(tmp_path):
    result = invoke(tmp_path / "nope")
    assert_usage_error(result, "does not exist", "build/<model>")


def test_folder_without_reports(tmp_path):
    (tmp_path / "ethos-u55-128").mkdir()
    result = invoke(tmp_path)
    assert_usage_error(result, "no report.json", "ran-edge build")
    assert not (tmp_path / "report.html").exists()


def test_wrong_schema_and_major_version(digits_build, tmp_path):
    report = copy.deepcopy(digits_build.reports[BUILD_TARGETS[0]])
    target = tmp_path / "t"
    target.mkdir()
    (target / "report.json").write_text(json.dumps({**report, "schema": "mlia/report"}))
    assert_usage_error(invoke(target), "not a ran-edge report", "'mlia/report'")
    (target / "report.json").write_text(json.dumps({**report, "schema_version": "2.0"}))
    assert_usage_error(invoke(target), "schema_version '2.0'", "reads 1.x", "rebuild")
    (target / "report.json").write_text("{not json")
    assert_usage_error(invoke(target), "not valid JSON", "rebuild")
    assert sorted(p.name for p in target.iterdir()) == ["report.json"]  # nothing written
