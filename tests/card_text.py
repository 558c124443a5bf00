"""The Review card's escaped HTML (clusterqc/ui/card_html.py) read back as a person reads it.

AppTest hands over an `st.html` element as its markup; tests compare what it says, piece by
piece (each caption, tag and line), with the text that went in.
"""

from __future__ import annotations

from html.parser import HTMLParser


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.flush()

    def handle_endtag(self, tag: str) -> None:
        self.flush()

    def handle_data(self, data: str) -> None:
        self._text.append(data)

    def flush(self) -> None:
        if self._text:
            self.pieces.append("".join(self._text))
            self._text = []


def plain_text(markup: str) -> list[str]:
    """The text of each element in `markup`, unescaped: `&lt;img&gt;` reads as `<img>`."""
    reader = _Reader()
    reader.feed(markup)
    reader.close()
    reader.flush()
    return reader.pieces
