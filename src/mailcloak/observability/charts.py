"""Small bar charts as inline SVG, drawn on the server: no script, no library, no CDN.

Only presentation attributes are used (no style attributes), so the pages' Content Security
Policy (style-src 'self') holds.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 380, 130
LEFT, BOTTOM, TOP = 34, 18, 8  # room for the scale and the hour labels


def bar_chart(title: str, values: list[int], labels: list[str]) -> SafeString:
    """A bar per value, the largest reaching the top; every bar has a tooltip with its value."""
    peak = max(values, default=0) or 1
    plot_width, plot_height = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    slot = plot_width / max(1, len(values))
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title, _QUOTE)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{LEFT}" y1="{TOP + plot_height}" x2="{WIDTH}" y2="{TOP + plot_height}" '
        'stroke="#888" stroke-width="1"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end" font-size="10" '
        f'fill="#555">{peak}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + plot_height}" text-anchor="end" font-size="10" '
        'fill="#555">0</text>',
    ]
    for index, (value, label) in enumerate(zip(values, labels, strict=True)):
        height = plot_height * value / peak
        x = LEFT + index * slot
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{TOP + plot_height - height:.1f}" '
            f'width="{max(1.0, slot - 2):.1f}" height="{height:.1f}" fill="#417690">'
            f"<title>{escape(label)}: {value}</title></rect>")
        if index % 3 == 0:
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle" '
                         f'font-size="10" fill="#555">{escape(label)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (every text above is escaped)


_QUOTE = {'"': "&quot;"}
