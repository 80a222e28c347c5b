"""The ``ecelerity.conf`` lexer: tokens with their exact locations."""

from __future__ import annotations

import enum
from typing import Final

import attrs

from ...errors import (
    ConfigSyntaxError,
    Location,
    excerpt,
)
from .document import _TOKEN_EXCERPT

# --------------------------------------------------------------------------- lexer


class _T(enum.Enum):
    WORD = "word"
    STRING = "quoted string"
    LBRACE = "'{'"
    RBRACE = "'}'"
    LPAREN = "'('"
    RPAREN = "')'"
    EQUALS = "'='"
    EOF = "end of file"


#: The punctuation tokens by their character (their value is how a message shows them).
_PUNCT: Final = {t.value.strip("'"): t for t in (_T.LBRACE, _T.RBRACE, _T.LPAREN, _T.RPAREN,
                                                 _T.EQUALS)}


@attrs.frozen(slots=True)
class _Token:
    type: _T
    text: str
    line: int
    column: int

    def shown(self) -> str:
        # An excerpt only: a file included by mistake (/etc/passwd) is not echoed back.
        if self.type is _T.WORD:
            return f"word {excerpt(self.text, _TOKEN_EXCERPT)}"
        if self.type is _T.STRING:
            return f"quoted string {excerpt(self.text, _TOKEN_EXCERPT)}"
        shown: str = self.type.value
        return shown




def _ex(text: str) -> str:
    """A short excerpt of a token for messages (see errors.excerpt)."""
    return excerpt(text, _TOKEN_EXCERPT)


_ESCAPES: Final = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r"}
# Momentum requires these to be quoted inside a value; they end a bare word.
_WORD_STOP: Final = frozenset(" \t\r\n\f\v#\"'={}[]()")


def _is_control(ch: str) -> bool:
    return (ord(ch) < 32 and ch not in "\t\r\n\f\v") or ord(ch) == 127


class _Lexer:
    def __init__(self, text: str, filename: str) -> None:
        self.text = text[1:] if text.startswith("\ufeff") else text
        self.filename = filename
        self.pos = 0
        self.line = 1
        self.column = 1

    def error(self, message: str, line: int, column: int) -> ConfigSyntaxError:
        return ConfigSyntaxError(message, Location(self.filename, line, column))

    def advance(self) -> str:
        ch = self.text[self.pos]
        self.pos += 1
        if ch == "\n":
            self.line += 1
            self.column = 1
        else:
            self.column += 1
        return ch

    def peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.text[i] if i < len(self.text) else ""

    def tokens(self) -> list[_Token]:
        out: list[_Token] = []
        while True:
            tok = self.next_token()
            out.append(tok)
            if tok.type is _T.EOF:
                return out

    def skip_blank(self) -> None:
        while self.pos < len(self.text):
            ch = self.peek()
            if ch in " \t\r\n\f\v":
                self.advance()
            elif ch == "#":
                while self.pos < len(self.text) and self.peek() != "\n":
                    self.advance()
            elif ch == "/" and self.peek(1) == "*":
                line, column = self.line, self.column
                self.advance()
                self.advance()
                while not (self.peek() == "*" and self.peek(1) == "/"):
                    if self.pos >= len(self.text):
                        raise self.error("unterminated '/*' comment", line, column)
                    self.advance()
                self.advance()
                self.advance()
            else:
                return

    def next_token(self) -> _Token:
        self.skip_blank()
        line, column = self.line, self.column
        if self.pos >= len(self.text):
            return _Token(_T.EOF, "", line, column)
        ch = self.peek()
        if ch in _PUNCT:
            self.advance()
            return _Token(_PUNCT[ch], ch, line, column)
        if ch in "\"'":
            return self.string(line, column)
        if ch in "[]":
            raise self.error(f"unexpected {ch!r}: a value containing '[' or ']' must be quoted",
                             line, column)
        if _is_control(ch):
            raise self.error(f"unexpected control character U+{ord(ch):04X}", line, column)
        chars: list[str] = []
        while self.pos < len(self.text):
            ch = self.peek()
            if ch in _WORD_STOP or (ch == "/" and self.peek(1) == "*"):
                break
            if _is_control(ch):
                raise self.error(f"unexpected control character U+{ord(ch):04X}",
                                 self.line, self.column)
            chars.append(self.advance())
        return _Token(_T.WORD, "".join(chars), line, column)

    def string(self, line: int, column: int) -> _Token:
        quote = self.advance()
        raw: list[str] = []
        cooked: list[str] = []
        bad: tuple[str, int, int] | None = None
        while True:
            if self.pos >= len(self.text) or self.peek() == "\n":
                raise self.error(f"unterminated string (missing closing {quote})", line, column)
            ch = self.advance()
            if ch == quote:
                break
            raw.append(ch)
            if ch != "\\":
                cooked.append(ch)
                continue
            esc_line, esc_column = self.line, self.column - 1
            nxt = self.peek()
            if nxt in ("", "\n"):
                continue
            raw.append(self.advance())
            if nxt in _ESCAPES:
                cooked.append(_ESCAPES[nxt])
            elif bad is None:
                bad = ("\\" + nxt, esc_line, esc_column)
        text = "".join(raw)
        if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
            # A regex domain: backslashes belong to the pattern (``\.``, ``\d``), so the
            # text between the quotes is kept as written.
            return _Token(_T.STRING, text, line, column)
        if bad is not None:
            sequence, esc_line, esc_column = bad
            raise self.error(
                f"bad escape sequence {sequence!r} in string (known: \\\\ \\\" \\' \\n \\t \\r; "
                "only a regex domain \"/.../\" keeps backslashes as written)",
                esc_line, esc_column)
        return _Token(_T.STRING, "".join(cooked), line, column)
