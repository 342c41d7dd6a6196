"""html_to_text on HTML fragments as feeds carry them."""

from __future__ import annotations

from pipeline.ingest.text import html_to_text


def test_html_to_text_drops_scripts_and_styles_and_decodes_entities() -> None:
    html = (
        "<div><script>var x = '<p>evil</p>';</script><style>p{color:red}</style>"
        "<p>Caf&eacute; &amp; bar&nbsp;&#8212; <a href='/x'>link</a></p>"
        "<p>Line<br>break</p><ul><li>one</li><li>two</li></ul></div>"
    )
    assert html_to_text(html) == "Café & bar — link\n\nLine\nbreak\n\none\n\ntwo"


def test_html_to_text_survives_broken_markup() -> None:
    assert html_to_text("<p>unclosed <b>bold <i>text") == "unclosed bold text"
    assert html_to_text("a < b and c > d") == "a < b and c > d"
    assert html_to_text("") == ""
    assert html_to_text("  plain\n\n\n  text  ") == "plain\n\ntext"
