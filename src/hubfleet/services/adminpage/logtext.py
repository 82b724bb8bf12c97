"""Log text from Kubernetes, bounded and UTF-8-safe: bytes that are not UTF-8 become U+FFFD, a line longer than
``max_line`` characters is cut, at most ``max_bytes`` are read."""

from __future__ import annotations

import codecs

MAX_LINE = 4000


def lines_of(data: bytes, *, max_lines: int, max_line: int = MAX_LINE) -> list[str]:
    """The last ``max_lines`` lines of ``data`` (already bounded by the reader), decoded with replacement."""
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")  # only newlines end a line, as in a follow (a carriage return is dropped)
    if lines and lines[-1] == "":
        lines.pop()
    return [cut(line, max_line) for line in lines[-max_lines:]]


def cut(line: str, max_line: int = MAX_LINE) -> str:
    """The line without carriage returns (each would end a line of an event stream), at most ``max_line``
    characters."""
    line = line.replace("\r", "")
    return line if len(line) <= max_line else line[:max_line] + " …[cut]"


class LineSplitter:
    """Feeds chunks of a followed log, yields whole decoded lines; a partial line longer than ``max_line`` is
    emitted cut rather than buffered without bound."""

    def __init__(self, max_line: int = MAX_LINE):
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.buf = ""
        self.max_line = max_line

    def feed(self, chunk: bytes) -> list[str]:
        self.buf += self.decoder.decode(chunk)
        *done, self.buf = self.buf.split("\n")
        if len(self.buf) > self.max_line:
            done.append(self.buf)
            self.buf = ""
        return [cut(line, self.max_line) for line in done]

    def flush(self) -> list[str]:
        rest = self.buf + self.decoder.decode(b"", final=True)
        self.buf = ""
        return [cut(rest, self.max_line)] if rest else []
