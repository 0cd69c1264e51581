"""A browser form with one file, read as it arrives: the small fields first, then the file's bytes.

Why not Starlette's ``request.form()``: it reads the whole body before the handler runs and spools
each file to a temporary file, in memory up to 1 MiB and then on disk, in plaintext. A file that
enters a project is written once, encrypted, into the blob store (``transfer.store_blob``), as the
REST upload does. So this reader stops where the file part begins; the page checks the fields (the
CSRF token, the role, the dataset name, the justification) and only then pulls the file's bytes,
chunk by chunk, straight into the encrypting store.

This needs the file to be the form's last field, which it is on our pages: browsers send fields in
document order. Everything is bounded: the text fields together (``fields_limit``), the number of
parts, and the file by the caller (``transfer.counted``). A body that ends before the closing
boundary is an interrupted upload, never a shorter file.

``application/x-www-form-urlencoded`` bodies (a form without a file, or a forged post) are read
as fields, within the same limit; other bodies are left unread and give no fields.

A form of many files (the ingest page: a browser's multi-file or folder picker sends one part per
file) is read the same way, fields first, then ``read_files`` collects every file part into memory
(``max_files`` of them at most), the whole body bounded by ``body_limit`` as it arrives. Nothing
touches the disk: the ingest pipeline needs the files whole (it opens archives and de-identifies
in memory) and stores only what it de-identified, encrypted.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from sanctum.datasets.transfer import TooLarge
from sanctum.errors import InvalidInput

MAX_PARTS = 32
#: The body-size middleware's cap on a page whose handler bounds its own body (``handler_bounded``).
MIDDLEWARE_CEILING = 1 << 40
BAD_FORM = "the form could not be read; reload the page and try again"
INTERRUPTED = "the upload was interrupted; nothing was stored"
TOO_MANY_FILES = "send at most {:,} files at a time; put more in a .zip or .tar archive, or use the CLI"


def handler_bounded(path: re.Pattern[str]) -> Callable[[str, str], int | None]:
    """For the app's body-size middleware: a POST to ``path`` is bounded by its handler.

    The handler refuses a body whose Content-Length is over its limit before reading any file, and
    counts the bytes as they stream, answering with the page and the typed values where the
    middleware could only answer JSON; the middleware keeps a far ceiling only.
    """

    def larger(method: str, request_path: str) -> int | None:
        return MIDDLEWARE_CEILING if method == "POST" and path.match(request_path) else None

    return larger


@dataclass(frozen=True)
class FilePart:
    field: str
    filename: str  # as the browser sent it ('' when no file was chosen)


@dataclass(frozen=True)
class _Field:
    name: str
    value: str


@dataclass(frozen=True)
class _Data:
    data: bytes


class _FileEnd:
    pass


class _End:
    pass


_Event = _Field | FilePart | _Data | _FileEnd | _End


def _decode(raw: bytes | bytearray, what: str) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"the {what} is not valid UTF-8", code="bad_form") from None


class StreamedForm:
    """One request's form. ``read_fields`` first; then ``read_file_head`` and ``file_chunks``."""

    def __init__(
        self, request: Request, *, fields_limit: int, max_files: int = 1, body_limit: int | None = None
    ) -> None:
        self._request = request
        self._stream: AsyncIterator[bytes] = request.stream()
        self.fields_limit = fields_limit
        self.max_files = max_files  # file parts whose bytes are handed out (1: a second is refused)
        self.body_limit = body_limit  # the whole body, counted as it arrives (None: the caller counts)
        self.fields: dict[str, str] = {}
        self.file: FilePart | None = None
        self.received = 0  # body bytes read so far
        self._events: deque[_Event] = deque()
        self._parser: MultipartParser | None = None
        self._ended = False  # the closing boundary was parsed
        self._exhausted = False  # the body has no more bytes
        self._text = 0  # bytes of text fields so far
        self._parts = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._name, self._value = bytearray(), bytearray()
        self._current: bytearray | None = None  # a text part's value; None inside a file part
        self._field = ""
        self._file_parts = 0
        self._in_file = False  # inside a file part whose bytes are handed out
        self._file_done = False  # the file's last byte was handed out
        self._boundary = b""
        self._chunk, self._chunk_offset = b"", 0  # the chunk being parsed, and where it starts
        self.file_offset: int | None = None  # where the file's first byte is in the body

    # ----------------------------------------------------------------------- reading

    async def read_fields(self) -> dict[str, str]:
        """The fields before the file (all of them when there is none)."""
        kind, options = parse_options_header(self._request.headers.get("content-type", ""))
        if kind == b"application/x-www-form-urlencoded":
            await self._read_urlencoded()
            return self.fields
        if kind != b"multipart/form-data":
            return self.fields
        boundary = options.get(b"boundary")
        if not boundary:
            raise InvalidInput(BAD_FORM, code="bad_form")
        self._boundary = boundary
        try:
            self._parser = MultipartParser(boundary, self._callbacks())
        except FormParserError:
            raise InvalidInput(BAD_FORM, code="bad_form") from None
        while True:
            event = await self._next()
            if event is None or isinstance(event, _End):
                return self.fields
            if isinstance(event, FilePart):
                self.file = event
                return self.fields

    async def read_file_head(self, size: int) -> bytes:
        """At least ``size`` bytes of the file (fewer only when the file is shorter)."""
        head = bytearray()
        while len(head) < size:
            chunk = await self.next_file_chunk()
            if chunk is None:
                break
            head += chunk
        return bytes(head)

    def declared_file_size(self) -> int | None:
        """The file's size as the body's Content-Length tells it, once its first byte was read.

        Exact for a browser's form, where the file is the last part: what follows the file is
        the closing boundary (``CRLF--boundary--CRLF``). Lets a page refuse a file that is too
        large before storing any of it; the bytes are still counted as they arrive.
        """
        declared = self._request.headers.get("content-length", "")
        if self.file_offset is None or not declared.isdigit():
            return None
        return int(declared) - self.file_offset - len(b"\r\n--" + self._boundary + b"--\r\n")

    async def file_chunks(self) -> AsyncIterator[bytes]:
        """The rest of the file; it ends only once the whole form has arrived intact."""
        while (chunk := await self.next_file_chunk()) is not None:
            yield chunk

    async def next_file_chunk(self) -> bytes | None:
        """The next bytes of the file; None after its last byte, once the body ended cleanly."""
        if self.file is None:
            return None
        while True:
            if self._file_done:
                await self._finish()
                return None
            event = await self._next()
            if event is None:
                raise InvalidInput(INTERRUPTED, code="interrupted")
            if isinstance(event, _Data):
                return event.data
            if isinstance(event, _FileEnd):
                self._file_done = True

    async def discard(self, limit: int) -> None:
        """Read and drop what is left of the body, up to ``limit`` bytes in all: a browser shows
        the answer to a refused upload reliably only once it could send its whole body. A body
        that declares more than ``limit`` is left unread: the connection closes instead."""
        declared = self._request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return
        while not self._exhausted and self.received <= limit:
            if await self._read_chunk() is None:
                return

    async def read_files(self) -> list[tuple[str, bytes]]:
        """Every file part as (file name as sent, bytes), in memory, to the closing boundary.

        Call after ``read_fields`` (and the checks on its fields). A part without a file (an
        input left empty) comes with an empty name. The body is bounded by ``body_limit``.
        """
        files: list[tuple[str, bytes]] = []
        if self.file is None:
            return files
        name, chunks = self.file.filename, list[bytes]()
        while True:
            event = await self._next()
            if event is None:
                raise InvalidInput(INTERRUPTED, code="interrupted")
            if isinstance(event, _Data):
                chunks.append(event.data)
            elif isinstance(event, FilePart):
                name, chunks = event.filename, []
            elif isinstance(event, _FileEnd):
                files.append((name, b"".join(chunks)))
                chunks = []
            elif isinstance(event, _End):
                self._events.appendleft(event)
                return files

    # ----------------------------------------------------------------------- internals

    async def _finish(self) -> None:
        """After the file: only small fields, no second file, and the closing boundary."""
        while True:
            event = await self._next()
            if event is None:
                raise InvalidInput(INTERRUPTED, code="interrupted")
            if isinstance(event, _End):
                self._events.appendleft(event)  # the form is complete: asking again says so again
                return
            if isinstance(event, FilePart) and event.filename:
                raise InvalidInput("send one file at a time", code="bad_form")

    async def _read_chunk(self) -> bytes | None:
        # Past ``body_limit``, nothing more is read: what is held is at most the limit and the one
        # chunk the server handed over (a few KiB from a socket).
        if self.body_limit is not None and self.received > self.body_limit:
            raise TooLarge(f"the form is larger than its limit of {self.body_limit} bytes")
        while not self._exhausted:
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                self._exhausted = True
                return None
            except ClientDisconnect:
                self._exhausted = True
                raise InvalidInput(INTERRUPTED, code="interrupted") from None
            if chunk:
                self.received += len(chunk)
                return chunk
        return None

    async def _next(self) -> _Event | None:
        """The next parsed event, reading more of the body as needed; None at the body's end."""
        assert self._parser is not None
        while not self._events:
            if self._ended:
                return None
            chunk = await self._read_chunk()
            if chunk is None:
                return None
            self._chunk, self._chunk_offset = chunk, self.received - len(chunk)
            try:
                self._parser.write(chunk)
            except FormParserError:
                raise InvalidInput(BAD_FORM, code="bad_form") from None
        return self._events.popleft()

    async def _read_urlencoded(self) -> None:
        body = bytearray()
        while (chunk := await self._read_chunk()) is not None:
            body += chunk
            if len(body) > self.fields_limit:
                raise TooLarge("the form's fields are too long", code="fields_too_large")
        for name, value in parse_qsl(_decode(body, "form"), keep_blank_values=True):
            self.fields.setdefault(name, value)

    def _callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS + self.max_files - 1:
            raise InvalidInput("the form has too many fields", code="bad_form")
        self._headers = []

    def _header_end(self) -> None:
        self._headers.append((bytes(self._name).lower(), bytes(self._value)))
        self._name, self._value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        disposition = next((v for k, v in self._headers if k == b"content-disposition"), b"")
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise InvalidInput(BAD_FORM, code="bad_form")
        self._field = _decode(options[b"name"], "field name")
        if b"filename" in options:
            self._file_parts += 1
            if self.max_files > 1 and self._file_parts > self.max_files:
                raise InvalidInput(TOO_MANY_FILES.format(self.max_files), code="too_many_files")
            self._in_file, self._current = self._file_parts <= self.max_files, None
            self._events.append(FilePart(self._field, _decode(options[b"filename"], "file name")))
        else:
            self._in_file, self._current = False, bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            if self._file_parts == 1 and self.file_offset is None:
                # Where the file's first byte is in the body: in the chunk being parsed, or, when
                # the parser held back bytes that might have begun a boundary, just before it.
                held = data is not self._chunk
                self.file_offset = self._chunk_offset - (end - start) if held else self._chunk_offset + start
            self._events.append(_Data(data[start:end]))
            return
        # A text field, or a second file part: counted, and only a text field is kept.
        self._text += end - start
        if self._text > self.fields_limit:
            raise TooLarge("the form's fields are too long", code="fields_too_large")
        if self._current is not None:
            self._current.extend(data[start:end])

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self._events.append(_FileEnd())
        elif self._current is not None:
            value = _decode(self._current, f"field {self._field}")
            if self._file_parts == 0:  # fields after the file were not checked with the others
                self.fields.setdefault(self._field, value)
            self._events.append(_Field(self._field, value))
        self._current = None

    def _end(self) -> None:
        self._ended = True
        self._events.append(_End())
