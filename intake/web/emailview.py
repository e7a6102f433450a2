"""Showing an applicant's email safely: plain text by default, sanitised HTML on request.

The HTML part goes through nh3 (ammonia) with a short allow-list: no scripts, styles,
frames, forms or images (so nothing remote loads), only http/https/mailto links, each
marked noopener/noreferrer/nofollow. The page's CSP is the second wall behind this one.
"""

from __future__ import annotations

import re

import nh3
from markupsafe import Markup

TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "dd", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5",
        "h6", "hr", "i", "li", "ol", "p", "pre", "s", "small", "span", "strong", "sub", "sup", "table", "tbody",
        "td", "tfoot", "th", "thead", "tr", "u", "ul"}
ATTRIBUTES = {"a": {"href", "title"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan", "scope"}}
# Dropped with everything inside them, not just unwrapped (their text is code, not prose).
DROP_WITH_CONTENT = {"script", "style", "iframe", "object", "embed", "noscript", "template", "svg", "math",
                     "head", "title", "select", "textarea", "button"}
_REMOTE = re.compile(r"<(img|iframe|object|embed|video|audio|source|link|image)\b|url\s*\(|\bsrc\s*=", re.IGNORECASE)


def sanitise(html: str) -> Markup:
    """HTML that is safe to place inside our page."""
    cleaned = nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, clean_content_tags=DROP_WITH_CONTENT,
                        url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow",
                        strip_comments=True)
    return Markup(cleaned)


def blocked_resources(html: str) -> int:
    """Roughly how many images, frames or other external resources were removed."""
    return len(_REMOTE.findall(html))
