"""Every tutorial notebook, run with JupyterLab's own "Run All Cells" in headless Chromium (``pytest -m browser``).

For each ``notebooks/*.ipynb`` (in file-name order, in one JupyterLab session, so that 05/06 find 04's run):
open it, run ``notebook:run-all-cells``, wait until every cell has finished and the kernel is idle, save with
``docmanager:save``, then check the saved ``.ipynb`` and the page: no error output, every cell executed, every
widget output drawn as a widget (no "Loading widget…", no "Error displaying widget", no ``VBox(children=…)`` text).
04 must show a training progress bar while it runs; in 05 the confidence slider is moved and the picture must change.
A screenshot of each notebook goes to ``outputs/browser/`` for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

try:
    from playwright.sync_api import Error as PlaywrightError
except ImportError:  # the `page` fixture fails with the install command
    PlaywrightError = RuntimeError

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser

NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
RUN_TIMEOUT_S = float(os.environ.get("DEIMV2_BROWSER_TIMEOUT", "1800"))  # per notebook; 2 busy cores are slow
KERNEL_TIMEOUT_S = 300
SETTLE_TIMEOUT_S = 120
MAX_SCREENSHOT_HEIGHT = 16000
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# What a widget looks like when the browser did not draw it: the text/plain fallback or the manager's placeholders.
UNRENDERED = re.compile(
    r"Loading widget|Error displaying widget|\b(?:VBox|HBox|Box|interactive|Output|IntSlider|"
    r"FloatSlider|FloatLogSlider|Dropdown|FloatProgress|IntProgress)\((?:children|value|layout)="
)

OPEN_JS = """async (path) => {
  const app = window.jupyterapp;
  const panel = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await panel.context.ready;
  app.shell.activateById(panel.id);
  window.__panel = panel;
  return panel.id;
}"""
KERNEL_IDLE_JS = """() => {
  const k = window.__panel.sessionContext.session?.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""
START_RUN_JS = """() => {
  const app = window.jupyterapp, panel = window.__panel;
  app.shell.activateById(panel.id);
  window.__run = null;
  window.__progress = [];
  const seen = () => {
    for (const el of panel.content.node.querySelectorAll('.jupyter-widget-hprogress, .widget-hprogress')) {
      const box = el.closest('.jupyter-widget-hbox, .widget-hbox') || el;
      const text = box.innerText.replace(/\\s+/g, ' ').trim();
      if (window.__progress.length < 500 && !window.__progress.includes(text)) window.__progress.push(text);
    }
  };
  window.__observer = new MutationObserver(seen);
  window.__observer.observe(panel.content.node, {childList: true, subtree: true, characterData: true});
  app.commands.execute('notebook:run-all-cells').then(
    ok => { window.__run = {ok: !!ok}; }, err => { window.__run = {error: String(err)}; });
}"""
RUN_STATE_JS = """() => ({done: window.__run, progress: window.__progress.length,
                          running: window.__panel.content.node.querySelectorAll('.jp-InputArea-prompt').length ?
                            [...window.__panel.content.node.querySelectorAll('.jp-InputArea-prompt')]
                              .filter(p => p.textContent.includes('*')).length : 0})"""
SAVE_JS = """async () => {
  const app = window.jupyterapp, panel = window.__panel;
  window.__observer.disconnect();
  app.shell.activateById(panel.id);
  await app.commands.execute('docmanager:save');
  return panel.context.model.dirty;
}"""
INSPECT_JS = (
    """(pattern) => {
  const panel = window.__panel, unrendered = new RegExp(pattern);
  const res = {cells: 0, prompts: [], widgets: [], unrendered: [], errors: [], images: 0, stderr: []};
  panel.content.widgets.forEach((cell, i) => {
    if (cell.model.type !== 'code') return;
    res.cells++;
    const prompt = cell.node.querySelector('.jp-InputArea-prompt');
    res.prompts.push(prompt ? prompt.textContent.trim() : '');
    const outputs = cell.outputArea.model, children = cell.outputArea.widgets;
    for (let j = 0; j < outputs.length; j++) {
      const o = outputs.get(j).toJSON(), node = children[j] ? children[j].node : null;
      const text = node ? node.innerText || '' : '';
      if (o.output_type === 'error') res.errors.push({cell: i, text: `${o.ename}: ${o.evalue}`});
      const view = o.data && o.data['"""
    + WIDGET_MIME
    + """'];
      if (view) {
        const shown = !node ? 'missing' : node.querySelector('.jupyter-widgets') ? 'widget' : text.trim() ? 'text' : 'empty';
        res.widgets.push({cell: i, model_id: view.model_id, shown, text: text.slice(0, 300)});
      } else if (unrendered.test(text)) {
        res.unrendered.push({cell: i, text: text.slice(0, 300)});
      }
      if (o.output_type === 'stream' && o.name === 'stderr' && /Traceback/.test(text)) {
        res.stderr.push({cell: i, text: text.slice(0, 300)});
      }
      if (node) res.images += node.querySelectorAll('img').length;
    }
  });
  return res;
}"""
)
SHOT_JS = """() => {
  const app = window.jupyterapp, panel = window.__panel;
  app.shell.collapseLeft();
  app.shell.collapseRight();
  panel.content.activeCellIndex = 0;
  const nodes = [panel.content.outerNode, panel.content.node, ...panel.node.querySelectorAll('.jp-WindowedPanel-outer')];
  const scroller = nodes.filter(Boolean).reduce((a, b) => (b.scrollHeight - b.clientHeight > a.scrollHeight - a.clientHeight ? b : a));
  scroller.scrollTop = 0;
  return {hidden: scroller.scrollHeight - scroller.clientHeight, window: window.innerHeight};
}"""
CLOSE_JS = """async () => {
  const panel = window.__panel;
  if (!panel || panel.isDisposed) return;
  await panel.sessionContext.shutdown();
  panel.dispose();  // no "save changes?" dialog, even after a timeout
}"""
CJK_JS = """() => {
  const c = document.createElement('canvas');
  c.width = c.height = 64;
  const g = c.getContext('2d');
  g.font = '48px ' + getComputedStyle(document.body).fontFamily;
  const draw = ch => { g.clearRect(0, 0, 64, 64); if (ch) g.fillText(ch, 4, 52);
                       return Array.from(g.getImageData(0, 0, 64, 64).data).join(','); };
  const zhong = draw('中'), guo = draw('国'), blank = draw('');
  return {distinct: zhong !== guo, inked: zhong !== blank && guo !== blank};
}"""


def _saved_problems(path: Path) -> tuple[list[str], list[str], set[str]]:
    """Errors and unexecuted cells in the saved notebook, its widget outputs' model ids and its live widget models."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems, widget_ids = [], []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell.get("execution_count") is None and "".join(cell["source"]).strip():
            problems.append(f"cell {i}: not executed")
        for out in cell.get("outputs", []):
            if out["output_type"] == "error":
                problems.append(f"cell {i}: {out['ename']}: {out['evalue']}")
            if WIDGET_MIME in out.get("data", {}):
                widget_ids.append(out["data"][WIDGET_MIME]["model_id"])
    state = nb["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return problems, widget_ids, set(state)


def _widget_problems(shown: list[dict], saved_ids: list[str], live: set[str]) -> list[str]:
    """A widget whose model is alive (saved in the widget state) must be drawn as a widget; one the kernel closed
    (e.g. a tqdm bar with ``leave=False``) must leave an empty output, never text."""
    problems = []
    if [w["model_id"] for w in shown] != saved_ids:
        problems.append(f"widget outputs on the page {[w['model_id'] for w in shown]} != saved {saved_ids}")
    for w in shown:
        expected = "widget" if w["model_id"] in live else "empty"
        if w["shown"] != expected:
            problems.append(
                f"cell {w['cell']}: widget {w['model_id']} shown as {w['shown']!r}, expected {expected!r}"
                + (f": {w['text']}" if w["text"] else "")
            )
    return problems


def _screenshot(page, path: Path) -> None:
    extent = page.evaluate(SHOT_JS)
    size = page.viewport_size
    height = min(extent["window"] + extent["hidden"] + 50, MAX_SCREENSHOT_HEIGHT)
    page.set_viewport_size({"width": size["width"], "height": int(height)})
    page.wait_for_timeout(1500)  # relayout, images decode
    page.screenshot(path=str(path))
    page.set_viewport_size(size)


#: the image shown in the output area of the code cell that holds the 置信度 slider (05: a slider whose
#: ``observe`` callback replaces one ``display_id`` image)
SLIDER_IMAGE_JS = """
([before]) => {
  const cell = [...document.querySelectorAll('.jp-CodeCell')].find(
    c => [...c.querySelectorAll('.widget-label')].some(l => l.textContent.includes('置信度')));
  const img = cell && cell.querySelector('.jp-OutputArea-output img');
  return !!(img && img.src && img.src !== before);
}
"""


def _move_confidence_slider(page, shots: Path, stem: str) -> dict:
    """Set the 置信度 slider to 0 by typing into its readout; return what was shown before and after."""
    cell = page.locator(".jp-CodeCell").filter(has=page.locator(".widget-label", has_text="置信度")).first
    cell.wait_for(state="visible", timeout=60_000)
    cell.scroll_into_view_if_needed()
    image = cell.locator(".jp-OutputArea-output img").first
    image.wait_for(state="visible", timeout=120_000)
    before = image.get_attribute("src")
    readout = cell.locator(".widget-readout").first
    old_value = readout.inner_text().strip()
    readout.click()
    readout.fill("0")
    readout.press("Enter")
    page.wait_for_function(SLIDER_IMAGE_JS, arg=[before], timeout=SETTLE_TIMEOUT_S * 1000)
    after = cell.locator(".jp-OutputArea-output img").first.get_attribute("src")
    cell.screenshot(path=str(shots / f"{stem}.slider.png"))
    return {"old_value": old_value, "new_value": readout.inner_text().strip(), "image_changed": after != before}


@pytest.fixture(scope="session")
def report(browser_outputs):
    data = {"notebooks": {}}
    yield data
    (browser_outputs / "report.json").write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


def test_notebooks_found():
    assert len(NOTEBOOKS) >= 7, f"notebooks/ 里只有 {NOTEBOOKS}"


def test_chinese_glyphs_render(page, report):
    """Chromium draws Chinese with a real font (two characters differ), not the same missing-glyph box."""
    result = page.evaluate(CJK_JS)
    report["cjk"] = result
    assert result["inked"] and result["distinct"], (
        f"Chromium 里的中文显示成了方框（{result}）：请安装中文字体 apt-get install -y fonts-noto-cjk"
    )


def _wait(page, lab, shots: Path, stem: str, js: str, timeout_s: float, what: str) -> None:
    """Wait until ``js`` is true in the page; on timeout fail with a screenshot and the server log."""
    try:
        page.wait_for_function(js, timeout=timeout_s * 1000)
    except PlaywrightError as e:
        shot = shots / f"{stem}.timeout.png"
        page.screenshot(path=str(shot))
        pytest.fail(
            f"{stem}：{timeout_s:.0f} 秒内{what}（截图 outputs/browser/{shot.name}）：{str(e).splitlines()[0]}\n"
            f"服务器日志：\n{lab.log_tail()}"
        )


def _run_all(page, lab, shots: Path, stem: str, entry: dict) -> dict:
    """Run all cells with JupyterLab's command; screenshot the first progress bar; return the final run state."""
    page.evaluate(START_RUN_JS)
    deadline, entry["progress_screenshot"] = time.monotonic() + RUN_TIMEOUT_S, None
    while True:
        state = page.evaluate(RUN_STATE_JS)
        if state["done"] is not None:
            return state
        if state["progress"] and entry["progress_screenshot"] is None:
            try:
                page.locator(".jupyter-widget-hprogress, .widget-hprogress").last.scroll_into_view_if_needed(
                    timeout=5000
                )
                page.screenshot(path=str(shots / f"{stem}.progress.png"))
                entry["progress_screenshot"] = f"{stem}.progress.png"
            except PlaywrightError:  # the bar closed between the check and the screenshot; try again later
                pass
        if time.monotonic() > deadline:
            _screenshot(page, shots / f"{stem}.timeout.png")
            pytest.fail(
                f"{stem}：{RUN_TIMEOUT_S:.0f} 秒内没有运行完（仍在运行的单元 {state['running']} 个，"
                f"可用环境变量 DEIMV2_BROWSER_TIMEOUT 调大）；截图见 outputs/browser/{stem}.timeout.png。\n"
                f"服务器日志：\n{lab.log_tail()}"
            )
        time.sleep(2)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_run_all_in_jupyterlab(name, lab, page, browser_outputs, report):
    stem, shots = Path(name).stem, browser_outputs
    entry = report["notebooks"].setdefault(name, {})
    t0 = time.monotonic()
    try:
        page.evaluate(OPEN_JS, f"notebooks/{name}")
        _wait(page, lab, shots, stem, KERNEL_IDLE_JS, KERNEL_TIMEOUT_S, "内核没有启动（是否弹出了选择内核的对话框？）")
        state = _run_all(page, lab, shots, stem, entry)
        assert "error" not in state["done"], f"{name}：notebook:run-all-cells 失败：{state['done']['error']}"
        _wait(page, lab, shots, stem, KERNEL_IDLE_JS, KERNEL_TIMEOUT_S, "内核没有回到空闲状态")
        try:  # widget views are created asynchronously after their output arrives
            page.wait_for_function(
                "() => !/Loading widget/.test(window.__panel.content.node.innerText)", timeout=SETTLE_TIMEOUT_S * 1000
            )
        except PlaywrightError as e:  # the checks below say which widget is still loading
            entry["settle_warning"] = str(e).splitlines()[0]
        page.wait_for_timeout(1000)
        run_s = time.monotonic() - t0
        progress = page.evaluate("() => window.__progress")

        extra = {}
        if stem.startswith("05"):
            extra["slider"] = _move_confidence_slider(page, shots, stem)
            _wait(page, lab, shots, stem, KERNEL_IDLE_JS, KERNEL_TIMEOUT_S, "拖动滑块后内核没有回到空闲状态")

        dirty = page.evaluate(SAVE_JS)
        dom = page.evaluate(INSPECT_JS, UNRENDERED.pattern)
        _screenshot(page, shots / f"{stem}.png")
    finally:
        try:
            page.evaluate(CLOSE_JS)
        except PlaywrightError:
            pass  # the page is gone; the server's teardown stops the kernels
    saved_problems, saved_ids, live = _saved_problems(lab.root / "notebooks" / name)
    widget_problems = _widget_problems(dom["widgets"], saved_ids, live)
    shown = [w["shown"] for w in dom["widgets"]]
    entry.update(
        seconds=round(run_s, 1),
        run_all_ok=state["done"].get("ok"),
        code_cells=dom["cells"],
        widget_outputs=len(saved_ids),
        widgets_drawn=shown.count("widget"),
        widgets_closed=shown.count("empty"),
        images=dom["images"],
        progress_texts=progress[:5],
        progress_updates=len(progress),
        **extra,
        problems=saved_problems + widget_problems + [f"cell {u['cell']}: {u['text']}" for u in dom["unrendered"]],
    )

    assert not dirty, f"{name}：保存后仍有未保存的修改"
    assert not saved_problems, f"{name} 保存后的 .ipynb 里有问题：\n" + "\n".join(saved_problems)
    assert not dom["errors"], f"{name} 页面上有错误输出：{dom['errors']}"
    assert not dom["stderr"], f"{name}：页面上有 Traceback：{dom['stderr']}"
    assert all(p and "*" not in p and p != "[ ]:" for p in dom["prompts"]), (
        f"{name}：有单元没有运行完：{dom['prompts']}"
    )
    assert not dom["unrendered"], f"{name}：有控件没有显示成控件：{dom['unrendered']}"
    assert not widget_problems, f"{name}：控件显示有问题：\n" + "\n".join(widget_problems)
    if saved_ids:
        assert live, f"{name}：保存的文件里没有控件状态（widget state），无法确认控件被画出"
    if stem.startswith("04"):
        assert progress, f"{name}：训练时没有出现进度条"
        assert entry["progress_screenshot"], f"{name}：进度条出现了，但没能截到图"
    if stem.startswith("05"):
        assert extra["slider"]["image_changed"], f"{name}：拖动置信度滑块后图片没有变化：{extra['slider']}"
