"""The preview page: every source's latest annotated frame, refreshed live."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from urllib.parse import quote

REFRESH_MS = 1000

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ margin: 0; padding: 12px; background: #111; color: #ddd; font: 14px sans-serif; }}
h1 {{ font-size: 18px; margin: 0 0 12px; }}
#health {{ margin-left: 12px; font-weight: normal; }}
.grid {{ display: grid; gap: 12px; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); }}
figure {{ margin: 0; background: #222; padding: 6px; border-radius: 4px; }}
figure img {{ width: 100%; display: block; }}
figcaption {{ padding: 4px 2px 0; }}
.down {{ color: #f66; }}
.raised {{ color: #fb3; }}
figure.raised {{ outline: 3px solid #fb3; }}
</style>
</head>
<body>
<h1>{title}<span id="health"></span></h1>
<div class="grid">
{figures}
</div>
<script>
const sources = {sources};
function refresh() {{
  for (const id of sources) {{
    const img = document.getElementById("img-" + id);
    const next = new Image();
    next.onload = () => {{ img.src = next.src; }};
    next.src = "snapshot/" + encodeURIComponent(id) + ".jpg?t=" + Date.now();
  }}
  fetch("healthz").then(r => r.json()).then(h => {{
    const problems = h.problems.join("; ");
    document.getElementById("health").textContent = h.status === "ok" ? "ok" : problems;
    for (const [id, s] of Object.entries(h.sources)) {{
      const caption = document.getElementById("cap-" + id);
      if (!caption) continue;
      const fps = s.state === "connected" ? ", " + s.fps.toFixed(1) + " fps" : "";
      const why = s.detail && s.state !== "connected" ? " (" + s.detail + ")" : "";
      const raised = s.raised.length ? ": " + s.raised.join(", ") : "";
      caption.textContent = id + ": " + s.state + fps + why + raised;
      caption.className = !s.healthy ? "down" : s.raised.length ? "raised" : "";
      caption.parentElement.className = s.raised.length ? "raised" : "";
    }}
  }}).catch(() => {{ document.getElementById("health").textContent = "(no answer)"; }});
}}
setInterval(refresh, {refresh_ms});
refresh();
</script>
</body>
</html>
"""

_FIGURE = """<figure><img id="img-{id}" src="snapshot/{path}.jpg" alt="{id}">
<figcaption id="cap-{id}">{id}</figcaption></figure>"""


def page_html(title: str, source_ids: Sequence[str]) -> str:
    figures = "\n".join(_FIGURE.format(id=html.escape(sid), path=quote(sid)) for sid in source_ids)
    return _PAGE.format(
        title=html.escape(title),
        figures=figures,
        sources=json.dumps(list(source_ids)),
        refresh_ms=REFRESH_MS,
    )
