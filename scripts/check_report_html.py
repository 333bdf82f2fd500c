"""Open a report's index.html in headless Chromium and check that it renders.

    python scripts/check_report_html.py reports

Checks, in order:
1. Chromium parses the page (--dump-dom) and finds as many <img> and <table> as the file has.
2. Every image loaded: a copy of the page, with a <base> pointing at the report folder and a
   tiny load handler that writes each image's natural size into the DOM, is dumped after the
   load event; every <img> must report a non-zero size.
3. The layout in a 1280 px wide window (the same dump; the handler also writes what it
   measured): the page does not scroll sideways, every table fits its box or scrolls inside
   it, the main table fits, and no figure is shown below 80% of its own width.
4. A full-page screenshot is not blank (more than one grey level, a share of non-white pixels).

Exit 0 when all pass, 1 with the failures listed, 2 when no Chromium binary is found (set
CHROMIUM to its path). The report folder is only read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = "--window-size=1280,2400"
MIN_SHOWN = 0.8  # smallest share of its own width a figure may be shown at
LOAD_PROBE = """<script>window.addEventListener("load", () => {
  for (const img of document.images) {
    img.setAttribute("data-natural", img.naturalWidth + "x" + img.naturalHeight);
    img.setAttribute("data-shown", Math.round(img.getBoundingClientRect().width));
  }
  for (const t of document.querySelectorAll("table")) {
    t.setAttribute("data-fits", t.offsetWidth <= t.parentElement.clientWidth);
    t.setAttribute("data-box", getComputedStyle(t.parentElement).overflowX);
  }
  const page = document.documentElement;
  document.body.setAttribute("data-sideways", page.scrollWidth - page.clientWidth);
});</script>"""


def find_chromium() -> str | None:
    candidates = [os.environ.get("CHROMIUM")] + [shutil.which(b) for b in BINARIES]
    return next((c for c in candidates if c and Path(c).exists()), None)


def chromium(binary: str, profile: str, *args: str) -> str:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--allow-file-access-from-files", f"--user-data-dir={profile}",
           "--virtual-time-budget=10000", *args]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"chromium exited {res.returncode}: {res.stderr.strip()[-500:]}")
    return res.stdout


def check(report: Path, binary: str) -> list[str]:
    index = (report / "index.html").resolve()
    if not index.is_file():
        return [f"{index} does not exist"]
    source = index.read_text(encoding="utf-8")
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        profile = str(Path(tmp) / "profile")
        dom = chromium(binary, profile, "--dump-dom", index.as_uri())
        for tag in ("img", "table"):
            want, got = len(re.findall(rf"<{tag}\b", source)), len(re.findall(rf"<{tag}\b", dom))
            if want != got:
                problems.append(f"{tag}: {want} in the file, {got} in Chromium's DOM")

        probe = Path(tmp) / "probe.html"
        base = f'<base href="{index.parent.as_uri()}/">'
        probe.write_text(source.replace("<head>", f"<head>{base}", 1)
                         .replace("</body>", LOAD_PROBE + "</body>", 1), encoding="utf-8")
        dom = chromium(binary, profile, WINDOW, "--dump-dom", probe.as_uri())
        for img in re.findall(r"<img\b[^>]*>", dom):
            src = re.search(r'src="([^"]*)"', img)
            size = re.search(r'data-natural="(\d+)x(\d+)"', img)
            if not size or int(size.group(1)) == 0:
                problems.append(f"image did not load: {src.group(1) if src else img}")
                continue
            shown = int(_attr(img, "data-shown") or 0)
            if shown < MIN_SHOWN * int(size.group(1)):
                problems.append(f"image squeezed: {src.group(1) if src else img} shown "
                                f"{shown} px wide, {size.group(1)} px drawn")
        problems += _layout(dom)

        shot = Path(tmp) / "shot.png"
        chromium(binary, profile, f"--screenshot={shot}", WINDOW, index.as_uri())
        problems += _blank(shot)
    return problems


def _attr(tag: str, name: str) -> str | None:
    m = re.search(rf'{name}="([^"]*)"', tag)
    return m.group(1) if m else None


def _layout(dom: str) -> list[str]:
    """What the load handler measured: sideways scrolling, tables wider than their box."""
    problems = []
    body = re.search(r"<body\b[^>]*>", dom)
    sideways = int((_attr(body.group(0), "data-sideways") if body else None) or 0)
    if sideways > 0:
        problems.append(f"the page scrolls sideways by {sideways} px in a 1280 px window")
    for name, table in re.findall(r'data-table="([^"]*)"[^>]*>\s*(<table\b[^>]*>)', dom):
        fits, box = _attr(table, "data-fits"), _attr(table, "data-box")
        if fits != "true" and (name == "main" or box not in ("auto", "scroll")):
            problems.append(f"table {name} is wider than its box (overflow-x: {box}) in a "
                            "1280 px window")
    return problems


def _blank(shot: Path) -> list[str]:
    from PIL import Image

    if not shot.exists():
        return ["no screenshot written"]
    grey = Image.open(shot).convert("L")
    lo, hi = grey.getextrema()
    dark = sum(grey.histogram()[:200]) / (grey.width * grey.height)
    if lo == hi or dark < 0.005:
        return [f"screenshot looks blank (grey levels {lo}..{hi}, {dark:.2%} non-white)"]
    return []


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    binary = find_chromium()
    if binary is None:
        print(f"no Chromium found (tried {', '.join(BINARIES)}; set CHROMIUM)", file=sys.stderr)
        return 2
    report = Path(argv[0])
    problems = check(report, binary)
    images = len(re.findall(r"<img\b", (report / "index.html").read_text(encoding="utf-8"))) \
        if (report / "index.html").is_file() else 0
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        return 1
    print(f"ok: {report / 'index.html'} renders in {Path(binary).name}; {images} images loaded, "
          "screenshot not blank")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
