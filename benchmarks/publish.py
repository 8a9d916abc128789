#!/usr/bin/env python3
"""Publish a benchmark run into the docs: redraw its charts into
docs/img/bench/ and write docs/BENCHMARKS.md (machine, versions, how to
reproduce, tables, charts), which the README links to.

    shmkit bench --out bench-results          # or --quick
    python benchmarks/publish.py bench-results [--note "measured at ..."]

The section "Scaling with processes" comes from bench-results/scale.json
(`make scale`) when there is one, its chart going to docs/img/scale/;
otherwise the section already in docs/BENCHMARKS.md is kept.  With only a
scale.json in the directory, only that section is rewritten.
"""
import argparse
import json
import os
import sys

from shmkit.bench.harness import (collect_targets, draw_charts, evaluate_targets,
                                   format_markdown)
from shmkit.bench import scale

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", default=os.path.join(ROOT, "bench-results"),
                    help="directory holding results.json (default: bench-results)")
    ap.add_argument("--note", default="", help="a line added under the header")
    ap.add_argument("--scale-note", default="", help="a line added under the scaling header")
    args = ap.parse_args(argv)
    out = os.path.join(ROOT, "docs", "BENCHMARKS.md")
    try:
        with open(out) as f:
            old = f.read()
    except OSError:
        old = ""
    section = publish_scale(args.results, args.scale_note)
    if section is None:   # keep the published one
        i = old.find(scale.SECTION)
        section = old[i:] if i >= 0 else ""
        j = section.find("\n## ", len(scale.SECTION))
        section = section[:j + 1] if j >= 0 else section
    if not os.path.exists(os.path.join(args.results, "results.json")):
        if not section:
            ap.error(f"no results.json or scale.json in {args.results}")
        with open(out, "w") as f:
            f.write(scale.replace_section(old, section))
        print(f"wrote the scaling section of {out}")
        return 0
    with open(os.path.join(args.results, "results.json")) as f:
        report = json.load(f)
    if "targets" not in report and report.get("mode") != "tiny":
        report["targets"] = evaluate_targets(report["results"],
                                             collect_targets(report.get("suites", [])))
    img = os.path.join(ROOT, "docs", "img", "bench")
    os.makedirs(img, exist_ok=True)
    for old in os.listdir(img):
        if old.endswith(".png"):
            os.unlink(os.path.join(img, old))
    report["charts"] = draw_charts(report["results"], img)
    text = format_markdown(report, chart_dir="img/bench", note=args.note)
    with open(out, "w") as f:
        f.write(scale.replace_section(text, section) if section else text)
    print(f"wrote {out} and {len(report['charts'])} chart(s) in {img}")
    return 0


def publish_scale(results, note):
    """The scaling section from results/scale.json (chart redrawn into
    docs/img/scale/), or None if there is no scale.json."""
    path = os.path.join(results, "scale.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        report = json.load(f)
    img = os.path.join(ROOT, "docs", "img", "scale")
    os.makedirs(img, exist_ok=True)
    m = report.get("machine", {})
    png = scale.draw_chart(report["results"], os.path.join(img, "scale.png"),
                           f"shmkit: aggregate ops/s against processes "
                           f"({m.get('cpus_usable', '?')} usable cores, {m.get('cpu', '?')})")
    return scale.format_section(report, "img/scale/scale.png" if png else None, note)


if __name__ == "__main__":
    sys.exit(main())
