"""report.html: one self-contained page per run, rendered from the report's JSON document alone.

The page opens from disk (``file://``) with no network: its style and script are inline, the plots are
embedded as base64 PNG data URIs, and the episode videos are ``<video>`` elements pointing at their relative
paths under ``videos/``. Its first section lists the paired trials where sim and real disagree; then the
agreement and success-rate tables (the numbers of report.json: every number sits in an element whose
``data-json-path`` is its JSON pointer in report.json, ``data-digits`` the decimals shown, ``data-scale`` a
divisor applied for display), the plots, and the videos as a gallery filtered by policy, domain, task and
outcome. Every text from the run (policy names, styles, notes) is escaped.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

REPORT_HTML = "report.html"
#: Beyond this many videos the gallery loads a video only when it is played.
PRELOAD_LIMIT = 200
#: Disagreeing trials whose videos are also shown side by side under their table.
SIDE_BY_SIDE_LIMIT = 12
COLUMNS = ("average", "open", "close")


def _pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON pointer (``~`` and ``/`` in keys escaped)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _num(value: float | None, path: tuple[str | int, ...], digits: int = 3, scale: float = 1.0,
         signed: bool = False) -> str:
    """A number of report.json, shown with ``digits`` decimals after dividing by ``scale``; "-" if None."""
    if value is None:
        return "-"
    shown = value / scale
    text = f"{shown:+.{digits}f}" if signed else f"{shown:.{digits}f}"
    scale_attr = f' data-scale="{scale:g}"' if scale != 1.0 else ""
    return (f'<span class="num" data-json-path="{escape(_pointer(*path))}" data-digits="{digits}"{scale_attr}>'
            f"{text}</span>")


def _interval(value: float | None, interval: list[float] | None, path: tuple[str | int, ...], key: str,
              interval_key: str) -> str:
    """``value [low, high]``, each number bound to its JSON pointer (``path`` + ``key`` or ``interval_key``)."""
    if value is None:
        return "-"
    cell = _num(value, (*path, key))
    if interval:
        cell += (f" [{_num(interval[0], (*path, interval_key, 0))}, "
                 f"{_num(interval[1], (*path, interval_key, 1))}]")
    return cell


def _outcome(success: bool, path: tuple[str | int, ...]) -> str:
    word = "success" if success else "failure"
    return (f'<span class="outcome {word}" data-json-path="{escape(_pointer(*path))}" data-kind="outcome">'
            f"{word}</span>")


def report_html(document: dict[str, Any], run_dir: str | Path) -> str:
    """The page of a run from its report.json ``document``; the plots are read from ``run_dir``."""
    run_dir = Path(run_dir)
    sections = [
        _disagreement_section(document),
        _claim_section(document),
        _run_section(document),
        _agreement_section(document),
        _differences_section(document),
        _rates_section(document),
        _real_success_section(document),
        _plots_section(document, run_dir),
        _videos_section(document),
    ]
    notice = document.get("notice")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Policy evaluation report {escape(document['run']['config_hash'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Policy evaluation report</h1>",
        f'<p class="notice">{escape(notice.replace("**", ""))}</p>' if notice else "",  # Markdown emphasis
        *sections,
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
        "",
    ])


def _videos_by_episode(document: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
    return {(v["policy"], v["domain"], v["style"], v["urdf_version"], v["seed"], v["task"], v["pose"]): v
            for v in document["videos"]["episodes"]}


def _video_link(videos: dict[tuple, dict[str, Any]], key: tuple, label: str) -> str:
    video = videos.get(key)
    return f'<a href="{escape(video["path"])}">{escape(label)}</a>' if video else ""


def _view_domain_style(view: str) -> tuple[str, str]:
    domain, _, style = view.partition("/")
    return domain, style


def _disagreement_section(document: dict[str, Any]) -> str:
    data = document.get("sim_real_disagreements") or {}
    lines = ['<section id="disagreements"><h2>Where sim and real disagree</h2>']
    if not data.get("real_domain"):
        note = data.get("note") or "this run has no real domain"
        lines.append(f'<p class="note">No paired real episodes: {escape(note)}.</p></section>')
        return "\n".join(lines)
    lines.append("<p>Paired trials: the same policy, task, start pose, robot URDF and seed in a simulated view and "
                 "in the real world. A trial is listed below where at least one view's outcome differs from the "
                 "real one (highlighted).</p>")
    lines.append("<table><thead><tr><th>view</th><th>paired trials</th><th>disagree</th>"
                 "<th>sim success, real failure</th><th>sim failure, real success</th></tr></thead><tbody>")
    for index, count in enumerate(data["counts"]):
        path = ("sim_real_disagreements", "counts", index)
        lines.append(f"<tr><td>{escape(count['view'])}</td>" + "".join(
            f"<td>{_num(count[key], (*path, key), digits=0)}</td>"
            for key in ("paired", "disagree", "sim_success_real_failure", "sim_failure_real_success")) + "</tr>")
    lines.append("</tbody></table>")
    trials = data["trials"]
    if not trials:
        lines.append('<p class="note">No paired trial disagrees: every view matched the real outcome.</p>')
        return "\n".join([*lines, "</section>"])
    views = data["views"]
    videos = _videos_by_episode(document)
    lines.append('<table class="trials"><thead><tr><th>policy</th><th>task</th><th>pose</th><th>URDF</th>'
                 "<th>seed</th><th>real</th>" + "".join(f"<th>{escape(view)}</th>" for view in views)
                 + "<th>videos</th></tr></thead><tbody>")
    for index, trial in enumerate(trials):
        path = ("sim_real_disagreements", "trials", index)
        pair = (trial["urdf_version"], trial["seed"], trial["task"], trial["pose"])
        links = [_video_link(videos, (trial["policy"], "real", "", *pair), "real")]
        cells = [f"<td>{escape(trial['policy'])}</td>", f"<td>{escape(trial['task'])}</td>",
                 f"<td>{escape(trial['pose'])}</td>", f"<td>{escape(trial['urdf_version'])}</td>",
                 f"<td>{_num(trial['seed'], (*path, 'seed'), digits=0)}</td>",
                 f"<td>{_outcome(trial['real']['success'], (*path, 'real', 'success'))}</td>"]
        for view in views:
            outcome = trial["sim"].get(view)
            if outcome is None:
                cells.append("<td>-</td>")
                continue
            differs = ' class="differs"' if view in trial["disagree"] else ""
            cells.append(f"<td{differs}>{_outcome(outcome['success'], (*path, 'sim', view, 'success'))}</td>")
            if view in trial["disagree"]:
                links.append(_video_link(videos, (trial["policy"], *_view_domain_style(view), *pair), view))
        cells.append("<td>" + " ".join(link for link in links if link) + "</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    lines += _side_by_side(trials[:SIDE_BY_SIDE_LIMIT], videos)
    return "\n".join([*lines, "</section>"])


def _side_by_side(trials: list[dict[str, Any]], videos: dict[tuple, dict[str, Any]]) -> list[str]:
    """The listed trials' videos in rows, the real episode first, then every view that disagrees with it, each
    row with a button that plays them together from the start."""
    rows = []
    for trial in trials:
        pair = (trial["urdf_version"], trial["seed"], trial["task"], trial["pose"])
        panels = [("real", videos.get((trial["policy"], "real", "", *pair)))]
        panels += [(view, videos.get((trial["policy"], *_view_domain_style(view), *pair))) for view in trial["disagree"]]
        panels = [(label, video) for label, video in panels if video]
        if len(panels) < 2:
            continue
        title = f"{trial['policy']}, {trial['task']}/{trial['pose']}, seed {trial['seed']}"
        rows.append('<div class="side-by-side"><p><button type="button" class="play-together">play together</button> '
                    f"{escape(title)}</p><div class=\"panels\">" + "".join(
                        f'<figure><video src="{escape(video["path"])}" muted playsinline preload="metadata"></video>'
                        f"<figcaption>{escape(label)}: {'success' if _success(trial, label) else 'failure'}"
                        "</figcaption></figure>" for label, video in panels) + "</div></div>")
    if not rows:
        return []
    note = ("<p>The real episode and the disagreeing views of the same trial "
            f"(the first {SIDE_BY_SIDE_LIMIT} trials listed above).</p>")
    return ["<h3>Side by side</h3>", note, *rows]


def _success(trial: dict[str, Any], view: str) -> bool:
    return bool(trial["real"]["success"] if view == "real" else trial["sim"][view]["success"])


def _claim_section(document: dict[str, Any]) -> str:
    """The goal's conditions, each with its verdict computed from the numbers (report.json ``claim``)."""
    links = document.get("claim") or []
    if not links:
        return ""
    rows = "".join(
        f'<tr><td>{escape(link["name"])}</td><td class="verdict {_verdict(link["holds"])}"'
        + (f' data-json-path="{escape(_pointer("claim", index, "holds"))}" data-kind="verdict"'
           if link["holds"] is not None else "")
        + f'>{_verdict(link["holds"])}</td><td>{escape(link["evidence"])}</td></tr>'
        for index, link in enumerate(links))
    return ('<section id="claim"><h2>The claim, link by link</h2><p>Each condition of the goal with its verdict, '
            "computed from this run's numbers.</p><table><thead><tr><th>condition</th><th>verdict</th>"
            f"<th>evidence</th></tr></thead><tbody>{rows}</tbody></table></section>")


def _verdict(holds: bool | None) -> str:
    return "finding" if holds is None else "holds" if holds else "fails"


def _real_success_section(document: dict[str, Any]) -> str:
    """Prediction-powered estimates of real success (report.json ``real_success``), where the run has real
    episodes."""
    entries = document.get("real_success") or []
    if not entries:
        return ""
    head = ("<tr><th>view</th><th>policy</th><th>estimate [interval]</th><th>real only [interval]</th>"
            "<th>sim trials</th><th>real trials</th><th>real trials saved</th></tr>")
    rows = []
    for index, entry in enumerate(entries):
        path = ("real_success", index)
        saved = entry["trials_saved"]
        cells = [escape(entry["domain"]), escape(entry["policy"]),
                 _interval(entry["estimate"], entry["interval"], path, "estimate", "interval"),
                 _interval(entry["real_rate"], entry["real_only_interval"], path, "real_rate", "real_only_interval"),
                 _num(entry["sim_trials"], (*path, "sim_trials"), digits=0),
                 _num(entry["real_trials"], (*path, "real_trials"), digits=0),
                 "not claimed" if saved is None else _num(saved, (*path, "trials_saved"), digits=0)]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return ('<section id="real-success"><h2>Real success from sim plus paired real trials</h2><p>Prediction-'
            "powered estimates: every sim trial's outcome, corrected by the paired real trials' mean difference; "
            "beside them the real trials alone. Savings are claimed only where the paired trials show that the "
            f"simulator narrows the interval.</p><table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
            "</section>")


def _run_section(document: dict[str, Any]) -> str:
    run = document["run"]
    config = run["config"]
    policies = "; ".join(
        escape(p["name"]) + (f" (real-world row {escape(p['real_world_name'])})" if p["real_world_name"] else "")
        for p in document["policies"])
    return "\n".join([
        '<section id="run"><h2>Run</h2><ul>',
        (f"<li>Config <code>{escape(run['config_hash'])}</code>, preset <code>{escape(config['preset'])}</code>: "
        f"{_num(run['episodes_stored'], ('run', 'episodes_stored'), digits=0)} of "
        f"{_num(run['episodes_expected'], ('run', 'episodes_expected'), digits=0)} episodes stored.</li>"),
        (f"<li>Domains: {escape(', '.join(config['domains']))}; styles: {escape(', '.join(config['styles']))}; "
        f"robot URDF versions: {escape(', '.join(run['urdf_versions']))}.</li>"),
        f"<li>Policies: {policies}.</li>",
        f"<li>Episodes: {escape(run['success_rule'])}.</li>",
        f"<li>Intervals: {escape(document['bootstrap']['method'])}.</li>",
        "</ul></section>",
    ])


def _agreement_section(document: dict[str, Any]) -> str:
    paired = document["bootstrap"]["real_rates"] == "paired episodes"
    head = "".join(f"<th>MMRV {column}</th><th>r {column}</th>" for column in COLUMNS)
    extra = "<th>MAE avg</th><th>agreement avg</th>" if paired else ""
    lines = ['<section id="agreement"><h2>Agreement with the real world</h2>',
             "<p>MMRV: lower is better; Pearson r: higher is better; brackets: 95% intervals"
             + (" (paired with the run's real-world domain)." if paired else " (against the real-world table).")
             + "</p>",
             f"<table><thead><tr><th>view</th><th>episodes</th>{extra}{head}</tr></thead><tbody>"]
    for index, domain in enumerate(document["domains"]):
        path = ("domains", index, "agreement")
        cells = [f"<td>{escape(domain['name'])}</td>",
                 f"<td>{_num(domain['episodes'], ('domains', index, 'episodes'), digits=0)}</td>"]
        if paired:
            average = domain["agreement"].get("average")
            for key in ("mae", "episode_agreement"):
                cells.append("<td>" + (_interval(average[key], average[f"{key}_interval"], (*path, "average"), key,
                                                 f"{key}_interval") if average else "-") + "</td>")
        for column in COLUMNS:
            value = domain["agreement"].get(column)
            if value is None:
                cells += ["<td>-</td>", "<td>-</td>"]
                continue
            cells.append("<td>" + _interval(value["mmrv"], value["mmrv_interval"], (*path, column), "mmrv",
                                            "mmrv_interval") + "</td>")
            r = (_interval(value["pearson_r"], value["pearson_r_interval"], (*path, column), "pearson_r",
                           "pearson_r_interval") if value["pearson_r"] is not None else "undefined")
            cells.append(f"<td>{r}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table></section>")
    return "\n".join(lines)


def _differences_section(document: dict[str, Any]) -> str:
    differences = document.get("differences") or []
    if not differences:
        return ""
    lines = ['<section id="differences"><h2>Differences between views</h2>',
             ("<p>metric(view) - metric(versus), with the interval over the joint bootstrap's draws; an interval "
             "that excludes 0 is a difference the data can tell.</p>"),
             ("<table><thead><tr><th>view</th><th>versus</th><th>metric</th><th>column</th><th>difference</th>"
             "</tr></thead><tbody>")]
    for index, d in enumerate(differences):
        path = ("differences", index)
        value = "-" if d["value"] is None else _num(d["value"], (*path, "value"), signed=True)
        if d["value"] is not None and d["interval"]:
            value += (f" [{_num(d['interval'][0], (*path, 'interval', 0), signed=True)}, "
                      f"{_num(d['interval'][1], (*path, 'interval', 1), signed=True)}]")
        lines.append(f"<tr><td>{escape(d['domain'])}</td><td>{escape(d['versus'])}</td><td>{escape(d['metric'])}"
                     f"</td><td>{escape(d['column'])}</td><td>{value}</td></tr>")
    lines.append("</tbody></table></section>")
    return "\n".join(lines)


def _rate_cell(estimate: dict[str, Any] | None, path: tuple[str | int, ...]) -> str:
    if estimate is None:
        return "-"
    marker = "" if estimate["method"] == "cluster bootstrap" else "*"
    return (f"{_num(estimate['rate'], (*path, 'rate'))} [{_num(estimate['low'], (*path, 'low'))}, "
            f"{_num(estimate['high'], (*path, 'high'))}]{marker} "
            f"(n={_num(estimate['episodes'], (*path, 'episodes'), digits=0)})")


def _rates_section(document: dict[str, Any]) -> str:
    real = {p["name"]: (index, p["real_world"]) for index, p in enumerate(document["policies"])}
    lines = ['<section id="rates"><h2>Success rates</h2>',
             ("<p>Rates with 95% cluster-bootstrap intervals over trials (<code>*</code>: Clopper-Pearson, where the "
             "bootstrap cannot vary) and episode counts; the last column is the policy's row of the real-world "
             "table.</p>")]
    for index, domain in enumerate(document["domains"]):
        lines += [f"<h3>{escape(domain['name'])}</h3>",
                  ("<table><thead><tr><th>policy</th><th>open</th><th>close</th><th>average</th>"
                  "<th>real-world table avg</th></tr></thead><tbody>")]
        for row, rates in enumerate(domain["rates"]):
            path = ("domains", index, "rates", row)
            policy_index, table = real.get(rates["policy"], (None, None))
            table_cell = (_num(table["average"], ("policies", policy_index, "real_world", "average"))
                          if table else "-")
            lines.append(f"<tr><td>{escape(rates['policy'])}</td>"
                         + "".join(f"<td>{_rate_cell(rates[c], (*path, c))}</td>" for c in ("open", "close", "average"))
                         + f"<td>{table_cell}</td></tr>")
        lines.append("</tbody></table>")
    lines.append("</section>")
    return "\n".join(lines)


def _plots_section(document: dict[str, Any], run_dir: Path) -> str:
    """Every PNG of the run's plots folder as a data URI: the views' scatter plots in report order, then the
    others (summaries) by name."""
    ordered = [domain["plot"] for domain in document["domains"]]
    plot_folders = {Path(plot).parent for plot in ordered} or {Path("plots")}
    others = sorted(path.relative_to(run_dir).as_posix() for folder in plot_folders
                    for path in (run_dir / folder).glob("*.png"))
    figures = []
    for relative in dict.fromkeys([*ordered, *others]):
        file = run_dir / relative
        if not file.is_file():
            continue
        data = base64.b64encode(file.read_bytes()).decode("ascii")
        figures.append(f'<figure><img alt="{escape(relative)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{escape(relative)}</figcaption></figure>")
    body = "".join(figures) or '<p class="note">No plots were written.</p>'
    return f'<section id="plots"><h2>Plots</h2><div class="plots">{body}</div></section>'


def _videos_section(document: dict[str, Any]) -> str:
    summary = document["videos"]
    episodes = summary["episodes"]
    lines = ['<section id="videos"><h2>Episode videos</h2>']
    if not episodes:
        lines.append('<p class="note">No episode videos: this run was recorded without them (scripts/eval_policies.py '
                     "--videos records one MP4 per episode).</p></section>")
        return "\n".join(lines)
    lines.append(
        f"<p>{_num(summary['videos'], ('videos', 'videos'), digits=0)} videos "
        f"(<code>{escape(summary['index'])}</code>), "
        f"{_num(summary['total_bytes'], ('videos', 'total_bytes'), digits=2, scale=1e6)} MB in all, "
        f"{_num(summary['mean_bytes'], ('videos', 'mean_bytes'), digits=1, scale=1e3)} kB and "
        f"{_num(summary['mean_encode_s'], ('videos', 'mean_encode_s'))} s of encoding per episode on average"
        + (f"; {_num(summary['episodes_without_video'], ('videos', 'episodes_without_video'), digits=0)} stored "
           "episodes have none" if summary["episodes_without_video"] else "")
        + ". Each video shows the policy's input and, where the domain edits the frame, the unedited render.</p>")
    filters = {"policy": sorted({v["policy"] for v in episodes}),
               "domain": sorted({_view(v) for v in episodes}),
               "task": sorted({v["task"] for v in episodes}),
               "outcome": ["failure", "success"]}
    lines.append('<div class="filters">')
    for name, values in filters.items():
        options = "".join(f'<option value="{escape(value)}">{escape(value)}</option>' for value in values)
        lines.append(f'<label>{name} <select id="filter-{name}" data-filter="{name}">'
                     f'<option value="">all</option>{options}</select></label>')
    lines.append(f'<span><span id="clips-shown">{len(episodes)}</span> of {len(episodes)} shown</span></div>')
    preload = "metadata" if len(episodes) <= PRELOAD_LIMIT else "none"
    lines.append('<div class="gallery">')
    for index, video in enumerate(episodes):
        path = ("videos", "episodes", index)
        outcome = "success" if video["success"] else "failure"
        lines.append(
            f'<figure class="clip" data-policy="{escape(video["policy"])}" data-domain="{escape(_view(video))}" '
            f'data-task="{escape(video["task"])}" data-outcome="{outcome}">'
            f'<video src="{escape(video["path"])}" width="{video["width"]}" height="{video["height"]}" muted loop '
            f'playsinline controls preload="{preload}"></video>'
            f"<figcaption><b>{escape(video['policy'])}</b> &middot; {escape(_view(video))} &middot; "
            f"{escape(video['task'])} {escape(video['pose'])} &middot; seed "
            f"{_num(video['seed'], (*path, 'seed'), digits=0)} &middot; {_outcome(video['success'], (*path, 'success'))}"
            f" in {_num(video['steps'], (*path, 'steps'), digits=0)} steps<br>"
            f"{escape(video['urdf_version'])} &middot; {_num(video['frames'], (*path, 'frames'), digits=0)} frames, "
            f"{_num(video['bytes'], (*path, 'bytes'), digits=1, scale=1e3)} kB, encoded in "
            f"{_num(video['encode_s'], (*path, 'encode_s'), digits=2)} s</figcaption></figure>")
    lines.append("</div></section>")
    return "\n".join(lines)


def _view(video: dict[str, Any]) -> str:
    return f"{video['domain']}/{video['style']}" if video["style"] else video["domain"]


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
.num { font-variant-numeric: tabular-nums; }
.verdict.holds { color: #1a7f37; font-weight: 600; }
.verdict.fails { color: #b42318; font-weight: 600; }
.side-by-side .panels { display: flex; gap: 0.5em; flex-wrap: wrap; }
.side-by-side figure { margin: 0; }
.side-by-side video { max-width: 420px; }
.notice { background: #fff4e5; border-left: 4px solid #e69500; padding: 0.5em 0.8em; }
.note { color: #555; font-style: italic; }
.outcome.success { color: #176b2c; }
.outcome.failure { color: #a12020; }
td.differs { background: #ffe0e0; font-weight: bold; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.plots img { max-width: 100%; }
.filters { display: flex; gap: 1em; flex-wrap: wrap; margin: 0.5em 0 1em; align-items: center; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; }
.clip { margin: 0; border: 1px solid #ddd; padding: 0.4em; max-width: 100%; }
.clip video { display: block; max-width: 100%; height: auto; background: #000; }
.clip figcaption { font-size: 0.8em; margin-top: 0.3em; }
"""

# Shows the clips whose policy, domain, task and outcome match every filter (an empty filter matches all).
_SCRIPT = """
(function () {
  "use strict";
  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  var clips = Array.prototype.slice.call(document.querySelectorAll(".clip"));
  var shown = document.getElementById("clips-shown");
  function apply() {
    var count = 0;
    clips.forEach(function (clip) {
      var visible = selects.every(function (select) {
        return select.value === "" || clip.dataset[select.dataset.filter] === select.value;
      });
      clip.hidden = !visible;
      if (visible) { count += 1; } else { clip.querySelector("video").pause(); }
    });
    if (shown) { shown.textContent = String(count); }
  }
  selects.forEach(function (select) { select.addEventListener("change", apply); });
  apply();
  Array.prototype.slice.call(document.querySelectorAll("button.play-together")).forEach(function (button) {
    button.addEventListener("click", function () {
      var row = button.closest(".side-by-side");
      row.querySelectorAll("video").forEach(function (video) {
        video.currentTime = 0;
        var playing = video.play();
        if (playing && playing.catch) { playing.catch(function () {}); }
      });
    });
  });
})();
"""

