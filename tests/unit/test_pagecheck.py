"""What `serve` fetches from an app's page to know that it can load: the first script and
the first stylesheet, made absolute against the page's URL (pure parsing, no network)."""

from dockyard.cli import pagecheck

PAGE = "http://nb--demo.apps.localhost:8765/"


def test_the_first_script_and_stylesheet_are_checked_absolute() -> None:
    html = """<html><head>
      <link rel="icon" href="./favicon.ico">
      <script type="module" crossorigin src="./assets/index-abc.js"></script>
      <script src="https://other.example/x.js"></script>
      <link rel="stylesheet" crossorigin href="https://cdn.jsdelivr.net/npm/f@1/dist/assets/i.css">
    </head><body><div id="root"></div></body></html>"""

    assert pagecheck.assets(html, PAGE) == [
        ("script", PAGE + "assets/index-abc.js"),
        ("stylesheet", "https://cdn.jsdelivr.net/npm/f@1/dist/assets/i.css"),
    ]


def test_a_page_without_scripts_or_styles_has_nothing_to_check() -> None:
    assert pagecheck.assets("<p>tiny api ok <script>inline()</script></p>", PAGE) == []


def test_public_link_pages_resolve_below_their_mount() -> None:
    page = PAGE + "p/dyp_x/"
    html = '<link rel="preload stylesheet" href="assets/a.css">'
    assert pagecheck.assets(html, page) == [("stylesheet", page + "assets/a.css")]
