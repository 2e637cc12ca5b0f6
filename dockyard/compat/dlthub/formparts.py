"""The client's uploads, `multipart/form-data`, read in memory.

A configuration package holds secrets in clear until they are sealed, so no part is ever
spooled to a temporary file (Starlette's form parser writes parts over 1 MB to disk). The
body is already capped by the `BodyLimit` middleware (uploads count as pushes:
`DOCKYARD_MAX_PUSH_BYTES`), and the parts are few and named.
"""

from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from dockyard.errors import InvalidInput

MAX_PARTS = 4
MAX_HEADER_BYTES = 4096


def parts(content_type: str, body: bytes) -> dict[str, bytes]:
    """Each part's content by its form name; the first of a repeated name is kept."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidInput(
            "an upload is multipart/form-data with a boundary, as the dlthub client sends it"
        )
    collected = _Parts()
    parser = MultipartParser(boundary, collected.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise InvalidInput(f"the upload is not valid multipart/form-data ({exc})") from None
    return collected.found


class _Parts:
    """The parser's callbacks, collecting each part in memory."""

    def __init__(self) -> None:
        self.found: dict[str, bytes] = {}
        self.headers: dict[bytes, bytes] = {}
        self.field, self.value = b"", b""
        self.data = bytearray()

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self.begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_part_data": self.part_data,
            "on_part_end": self.end,
        }

    def begin(self) -> None:
        self.headers.clear()
        self.data.clear()
        if len(self.found) >= MAX_PARTS:
            raise InvalidInput(f"an upload has at most {MAX_PARTS} parts")

    def header_field(self, chunk: bytes, start: int, end: int) -> None:
        self.field += chunk[start:end]

    def header_value(self, chunk: bytes, start: int, end: int) -> None:
        self.value += chunk[start:end]
        if len(self.value) > MAX_HEADER_BYTES:
            raise InvalidInput("an upload's part header is too long")

    def header_end(self) -> None:
        self.headers[self.field.strip().lower()] = self.value.strip()
        self.field, self.value = b"", b""

    def part_data(self, chunk: bytes, start: int, end: int) -> None:
        self.data.extend(chunk[start:end])

    def end(self) -> None:
        _disposition, fields = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = fields.get(b"name", b"").decode("utf-8", "replace")
        if name and name not in self.found:
            self.found[name] = bytes(self.data)
