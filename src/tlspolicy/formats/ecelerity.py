"""Reading Momentum's ``ecelerity.conf`` into the neutral raw tree.

Only the outbound TLS policy is taken from the file: options named in
:data:`~tlspolicy.options.OPTION_SPECS` (any case) at top level and in
``binding_group``, ``binding`` and ``domain`` stanzas become
:class:`~tlspolicy._raw.RawOption` leaves with their exact
``file:line:column``.  What else an MTA configuration holds is skipped and
listed in :attr:`EcelerityDocument.warnings` when Momentum documents it
(the option and scope names of its configuration summary, shipped as
``tlspolicy/data/momentum-config-options.tsv``) or when it is a module
stanza at top level.  Any other name is an error, located, all of them
reported together: an unknown option
(:class:`~tlspolicy.errors.UnknownOptionError`), an unknown stanza inside a
scope, or a top-level stanza that is a near miss of a scope keyword or TLS
option (``domian``, ``tsl``; :class:`EcelerityUnknownStanzaError`).  A typo
must never turn TLS off silently (SEMANTICS section 3).  Option *values* are not
checked here; :func:`tlspolicy.scopes.build_config` does that for every
format alike.

Syntax accepted (Momentum's configuration grammar, as far as a policy needs):

* ``name = value``: a value is a quoted string (``"..."`` or ``'...'`` with
  the escapes ``\\\\ \\" \\' \\n \\t \\r``; any other backslash is an error,
  except in a regex domain ``"/.../"`` whose text is kept exactly as written),
  a bare word (an integer word without a leading zero becomes an ``int``;
  ``[ ] ( ) { } = # " '`` end a bare word and must be quoted), or a
  parenthesised list ``( a "b" 3 )`` (a ``tuple``).  The value may sit on the
  next line.
* stanzas ``name { ... }`` and ``name arg { ... }`` (``arg`` quoted or bare),
  nested; stanza and option names are case-insensitive.
* ``#`` comments to the end of the line and ``/* ... */`` comments.
* ``include "file"`` / ``readonly_include "file"``: the file's items are read
  in place (inside the stanza holding the directive), relative to the
  including file's directory; cycles and chains deeper than
  :data:`MAX_INCLUDE_DEPTH` are errors naming the chain.
* where scope stanzas may sit: ``binding_group`` at top level; ``binding`` at
  top level or in a ``binding_group``; ``domain`` at top level, in a
  ``binding_group`` or in a ``binding``.  A repeated ``binding_group`` name
  (case-sensitive) is merged into the first stanza of that name, as Momentum
  does; other repeated scopes are kept in order for the validator to report.
  Stanzas nested in a skipped stanza are not interpreted.

Lines and columns are 1-based; a column counts characters, a tab counts as
one.  Every problem raises a subclass of
:class:`~tlspolicy.errors.ConfigSyntaxError` located at the offending token.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from typing import Final

import attrs

from .._raw import RawOption, RawScope
from ..errors import (
    ConfigError,
    ConfigErrors,
    ConfigSyntaxError,
    FileReadError,
    Location,
    TlsPolicyError,
    TooManyFilesError,
    UnknownOptionError,
    excerpt,
)
from ..options import NEWEST_VERSION, OPTION_SPECS, Options, ScopeKind
from ..scopes import (
    DEFAULT_MATCH_CACHE_SIZE,
    BindingScope,
    Config,
    DomainScope,
    build_config,
)
from .files import ReadBudget
from .momentum_names import MOMENTUM_OPTIONS, MOMENTUM_SCOPES, SCOPE_KEYWORDS, near_miss

__all__ = [
    "MAX_INCLUDE_DEPTH",
    "MAX_NESTING_DEPTH",
    "EcelerityDocument",
    "EcelerityExportError",
    "EcelerityIncludeError",
    "EcelerityStructureError",
    "EcelerityUnknownStanzaError",
    "EcelerityWarning",
    "Loader",
    "dumps_ecelerity",
    "ecelerity_export_losses",
    "load_ecelerity_config",
    "loads_ecelerity_config",
    "parse_ecelerity",
    "read_ecelerity",
]

MAX_NESTING_DEPTH: Final = 64
"""Deepest stanza nesting accepted (a guard against runaway input, not a Momentum limit)."""

MAX_INCLUDE_DEPTH: Final = 32
"""Deepest chain of ``include`` directives accepted."""

Loader = Callable[[str], str]
"""Reads an include file by its resolved path; raises :class:`OSError` when it cannot."""


class EcelerityStructureError(ConfigSyntaxError):
    """A stanza nested where Momentum does not allow it, or a scope stanza without a name."""


class EcelerityUnknownStanzaError(EcelerityStructureError):
    """A stanza that is no policy scope, no documented Momentum scope and no module.

    Inside a ``binding_group``, ``binding`` or ``domain`` only documented
    scopes may sit; at top level an unknown stanza is taken for a module
    unless it is a near miss of a scope keyword or a TLS option (``domian``).
    """


class EcelerityIncludeError(ConfigSyntaxError):
    """An ``include`` that cannot be followed: missing or unreadable file, cycle, too deep."""


@attrs.frozen(slots=True)
class EcelerityWarning:
    """One item of the file that the reader skipped because it is not a TLS policy option.

    ``kind`` is ``"option"`` or ``"stanza"``; ``name`` is written as in the
    file, ``argument`` is the stanza's argument if any.  ``suggestion`` names
    a TLS option the skipped option name closely resembles (a likely typo).
    """

    location: Location
    kind: str
    name: str
    argument: str | None = None
    suggestion: str | None = None

    def describe(self) -> str:
        """A one-line message: ``file:line:col: scope: skipped option 'x' (...)``."""
        what = f"{self.kind} {excerpt(self.name, _TOKEN_EXCERPT)}"
        if self.argument is not None:
            what += f" {excerpt(self.argument, _TOKEN_EXCERPT)}"
        text = f"{self.location.describe()}: skipped {what}: not an outbound TLS policy item"
        if self.suggestion is not None:
            text += f" (did you mean {self.suggestion!r}?)"
        return text


@attrs.frozen(slots=True)
class EcelerityDocument:
    """The result of reading an ``ecelerity.conf``.

    ``tree`` is the raw scope tree for :func:`tlspolicy.scopes.build_config`
    (repeated ``binding_group`` stanzas already merged into the first);
    ``warnings`` lists every skipped option and stanza in file order;
    ``has_dane_module`` tells whether a top-level ``dane`` module stanza is
    present (Momentum ignores ``use_dane`` without it); ``files`` lists every
    file read, the main one first.
    """

    tree: RawScope
    warnings: tuple[EcelerityWarning, ...]
    has_dane_module: bool
    files: tuple[str, ...]


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


_TOKEN_EXCERPT: Final = 20


def _ex(text: str) -> str:
    """A short excerpt of a token for messages (see errors.excerpt)."""
    return excerpt(text, _TOKEN_EXCERPT)


_PUNCT: Final = {"{": _T.LBRACE, "}": _T.RBRACE, "(": _T.LPAREN, ")": _T.RPAREN, "=": _T.EQUALS}
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


# -------------------------------------------------------------------------- parser


class _Ctx(enum.Enum):
    ROOT = "top level"
    BINDING_GROUP = "binding_group"
    BINDING = "binding"
    DOMAIN = "domain"
    SKIPPED = "skipped stanza"


_SCOPE_KINDS: Final = {
    "binding_group": ScopeKind.BINDING_GROUP,
    "binding": ScopeKind.BINDING,
    "domain": ScopeKind.DOMAIN,
}
_CTX_OF: Final = {
    ScopeKind.BINDING_GROUP: _Ctx.BINDING_GROUP,
    ScopeKind.BINDING: _Ctx.BINDING,
    ScopeKind.DOMAIN: _Ctx.DOMAIN,
}
_ALLOWED: Final = {
    _Ctx.ROOT: frozenset({ScopeKind.BINDING_GROUP, ScopeKind.BINDING, ScopeKind.DOMAIN}),
    _Ctx.BINDING_GROUP: frozenset({ScopeKind.BINDING, ScopeKind.DOMAIN}),
    _Ctx.BINDING: frozenset({ScopeKind.DOMAIN}),
    _Ctx.DOMAIN: frozenset[ScopeKind](),
}
_WHERE_ALLOWED: Final = {
    ScopeKind.BINDING_GROUP: "a binding_group sits at top level only",
    ScopeKind.BINDING: "a binding sits at top level or in a binding_group",
    ScopeKind.DOMAIN: "a domain sits at top level, in a binding_group or in a binding",
}
_INCLUDE_WORDS: Final = frozenset({"include", "readonly_include"})


class _Scope:
    """A mutable scope while reading; frozen into a :class:`RawScope` at the end."""

    def __init__(self, kind: ScopeKind, name: str | None, location: Location,
                 path: tuple[tuple[ScopeKind, str], ...]) -> None:
        self.kind = kind
        self.name = name
        self.location = location
        self.path = path
        self.options: list[RawOption] = []
        self.children: list[_Scope] = []
        self.groups: dict[str, _Scope] = {}

    def path_text(self) -> str:
        if not self.path:
            return "global"
        return " > ".join(f'{kind.value} "{name}"' for kind, name in self.path)

    def freeze(self) -> RawScope:
        return RawScope(self.kind, self.name, self.location, tuple(self.options),
                        tuple(c.freeze() for c in self.children))


_TLS_OPTIONS: Final = frozenset(OPTION_SPECS)
_TLS_AND_SCOPES: Final = _TLS_OPTIONS | SCOPE_KEYWORDS
_DOCUMENTED: Final = MOMENTUM_OPTIONS | MOMENTUM_SCOPES


def _suggest(name: str) -> str | None:
    return near_miss(name, _TLS_OPTIONS)


class _Reader:
    def __init__(self, loader: Loader | None, budget: ReadBudget) -> None:
        self.loader = loader
        self.budget = budget
        self.warnings: list[EcelerityWarning] = []
        self.files: list[str] = []
        self.has_dane = False
        # Unknown names do not stop the reader: every one of them is reported.
        self.errors: list[ConfigError] = []

    def read_text(self, text: str, filename: str, target: _Scope, ctx: _Ctx,
                  chain: tuple[str, ...], depth: int) -> None:
        if filename not in self.files:
            self.files.append(filename)
        tokens = _Lexer(text, filename).tokens()
        _FileParser(self, tokens, filename, chain).block(target, ctx, None, depth)

    def include(self, token: _Token, name: str, parser: _FileParser, target: _Scope,
                ctx: _Ctx, depth: int) -> None:
        where = Location(parser.filename, token.line, token.column)
        if not name.strip():
            raise EcelerityIncludeError("include needs a file name", where)
        base = os.path.dirname(parser.filename)
        path = os.path.normpath(os.path.join(base, name))
        if path in parser.chain:
            cycle = " -> ".join([*parser.chain[parser.chain.index(path):], path])
            raise EcelerityIncludeError(f"include cycle: {cycle}", where, value=name,
                                        has_value=True)
        if len(parser.chain) >= MAX_INCLUDE_DEPTH:
            raise EcelerityIncludeError(
                f"includes nested deeper than {MAX_INCLUDE_DEPTH} files", where, value=name,
                has_value=True)
        try:
            if self.loader is None:
                text = self.budget.read_text(path)
            else:
                self.budget.count_file(path)
                text = self.loader(path)
                self.budget.count_bytes(path, len(text))
        except TooManyFilesError as exc:
            raise TooManyFilesError(f"{exc.message} (include fan-out)", where, value=name,
                                    has_value=True) from None
        except FileReadError as exc:
            # Typed and located at the include directive; the file's own name is in the text.
            raise EcelerityIncludeError(f"cannot read included file {path!r}: {exc.message}", where,
                                        value=name, has_value=True) from None
        except UnicodeDecodeError as exc:
            raise EcelerityIncludeError(f"included file {path!r} is not UTF-8 text ({exc.reason})",
                                        where, value=name, has_value=True) from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise EcelerityIncludeError(f"cannot read included file {path!r}: {reason}", where,
                                        value=name, has_value=True) from None
        self.read_text(text, path, target, ctx, (*parser.chain, path), depth)


class _FileParser:
    def __init__(self, reader: _Reader, tokens: list[_Token], filename: str,
                 chain: tuple[str, ...]) -> None:
        self.reader = reader
        self.tokens = tokens
        self.filename = filename
        self.chain = chain
        self.i = 0

    def loc(self, token: _Token, scope: str | None = None, option: str | None = None
            ) -> Location:
        return Location(self.filename, token.line, token.column, scope, option)

    def error(self, message: str, token: _Token) -> ConfigSyntaxError:
        return ConfigSyntaxError(message, self.loc(token))

    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def take(self) -> _Token:
        tok = self.peek()
        if self.i < len(self.tokens) - 1:
            self.i += 1
        return tok

    def block(self, target: _Scope, ctx: _Ctx, opener: tuple[_Token, _Token] | None,
              depth: int) -> None:
        """Read items until the ``}`` closing ``opener``, or end of file when ``None``."""
        while True:
            tok = self.peek()
            if tok.type is _T.EOF:
                if opener is not None:
                    name_tok, brace = opener
                    raise self.error(
                        f"stanza {_ex(name_tok.text)} opened here is never closed "
                        "(missing '}' before end of file)", brace)
                return
            if tok.type is _T.RBRACE:
                if opener is None:
                    raise self.error("unexpected '}' with no open stanza", tok)
                self.take()
                return
            if tok.type is not _T.WORD:
                raise self.error(f"expected an option or stanza name, found {tok.shown()}", tok)
            self.item(target, ctx, depth)

    def item(self, target: _Scope, ctx: _Ctx, depth: int) -> None:
        name_tok = self.take()
        nxt = self.peek()
        if nxt.type is _T.EQUALS:
            self.take()
            value = self.value(name_tok, nxt)
            self.option(name_tok, value, target, ctx)
            return
        if nxt.type is _T.LBRACE:
            self.take()
            self.stanza(name_tok, None, nxt, target, ctx, depth)
            return
        if nxt.type in (_T.WORD, _T.STRING):
            after = self.peek(1)
            if after.type is _T.LBRACE:
                self.take()
                self.take()
                self.stanza(name_tok, nxt, after, target, ctx, depth)
                return
            if name_tok.text.lower() in _INCLUDE_WORDS and after.type is not _T.EQUALS:
                self.take()
                self.reader.include(name_tok, nxt.text, self, target, ctx, depth)
                return
            if after.type in (_T.WORD, _T.STRING) and after.line == nxt.line:
                raise self.error(
                    f"expected '{{' after {_ex(name_tok.text)} {_ex(nxt.text)}, found "
                    f"{after.shown()} (a stanza takes at most one argument)", after)
        raise self.error(f"expected '=' or '{{' after {_ex(name_tok.text)}, found {nxt.shown()}",
                         nxt)

    def value(self, name_tok: _Token, equals: _Token) -> object:
        tok = self.peek()
        if tok.type is _T.STRING:
            self.take()
            return tok.text
        if tok.type is _T.WORD:
            if self.peek(1).type is _T.EQUALS and tok.line > equals.line:
                # ``a =`` then ``b = c`` on the next line: the value of ``a`` is missing.
                raise self.error(f"missing value after '=' for {_ex(name_tok.text)}", equals)
            self.take()
            return self.word(tok)
        if tok.type is _T.LPAREN:
            opener = self.take()
            items: list[object] = []
            while True:
                tok = self.peek()
                if tok.type is _T.RPAREN:
                    self.take()
                    return tuple(items)
                if tok.type is _T.STRING:
                    items.append(self.take().text)
                elif tok.type is _T.WORD:
                    items.append(self.word(self.take()))
                elif tok.type is _T.EOF:
                    raise self.error("list opened here is never closed (missing ')')",
                                     opener)
                else:
                    raise self.error(f"expected a list item or ')', found {tok.shown()}", tok)
        raise self.error(
            f"missing value after '=' for {_ex(name_tok.text)} (found {tok.shown()})", tok)

    def word(self, tok: _Token) -> object:
        try:
            return _word_value(tok.text)
        except ValueError:
            raise self.error(f"integer of more than {_MAX_INT_DIGITS} digits: quote it if it "
                             "is meant as text", tok) from None

    def option(self, name_tok: _Token, value: object, target: _Scope, ctx: _Ctx) -> None:
        if ctx is _Ctx.SKIPPED:
            return
        name = name_tok.text
        lower = name.lower()
        if lower in OPTION_SPECS:
            target.options.append(
                RawOption(name, value, self.loc(name_tok, target.path_text(), name)))
        elif lower in _DOCUMENTED:
            self.reader.warnings.append(EcelerityWarning(
                self.loc(name_tok, target.path_text()), "option", name, None, _suggest(name)))
        else:
            close = near_miss(name, _TLS_AND_SCOPES)
            hint = f"; did you mean {close!r}?" if close is not None else ""
            self.reader.errors.append(UnknownOptionError(
                f"unknown option {_ex(name)}: neither an outbound TLS option nor a documented "
                f"Momentum option{hint}", self.loc(name_tok, target.path_text(), name)))

    def stanza(self, name_tok: _Token, arg_tok: _Token | None, brace: _Token, target: _Scope,
               ctx: _Ctx, depth: int) -> None:
        if depth >= MAX_NESTING_DEPTH:
            raise self.error(f"stanzas nested deeper than {MAX_NESTING_DEPTH} levels", name_tok)
        keyword = name_tok.text.lower()
        arg = arg_tok.text if arg_tok is not None else None
        kind = _SCOPE_KINDS.get(keyword)
        if ctx is _Ctx.SKIPPED or kind is None:
            if ctx is not _Ctx.SKIPPED:
                self.unknown_stanza(name_tok, arg, keyword, target, ctx)
            self.block(target, _Ctx.SKIPPED, (name_tok, brace), depth + 1)
            return
        if kind not in _ALLOWED[ctx]:
            raise EcelerityStructureError(
                f"a {kind.value} cannot be nested in a {ctx.value} ({_WHERE_ALLOWED[kind]})",
                self.loc(name_tok, target.path_text()))
        if arg is None:
            raise EcelerityStructureError(
                f"a {kind.value} stanza needs a name: {kind.value} \"name\" {{ ... }}",
                self.loc(brace, target.path_text()))
        path = (*target.path, (kind, arg))
        merged = target.groups.get(arg) if kind is ScopeKind.BINDING_GROUP else None
        if merged is not None:
            # Momentum merges repeated binding_group stanzas (its include-file idiom).
            scope = merged
        else:
            scope = _Scope(kind, arg, Location(self.filename, name_tok.line, name_tok.column,
                                               _path_text(path)), path)
            target.children.append(scope)
            if kind is ScopeKind.BINDING_GROUP:
                target.groups[arg] = scope
        self.block(scope, _CTX_OF[kind], (name_tok, brace), depth + 1)


    def unknown_stanza(self, name_tok: _Token, arg: str | None, keyword: str, target: _Scope,
                       ctx: _Ctx) -> None:
        """Note a documented scope or a module stanza; refuse anything else."""
        where = self.loc(name_tok, target.path_text())
        close = None if keyword in _DOCUMENTED else near_miss(keyword, _TLS_AND_SCOPES)
        if keyword in _DOCUMENTED or (ctx is _Ctx.ROOT and close is None):
            # A documented scope, or (at top level) a module stanza: not policy.
            if ctx is _Ctx.ROOT and keyword == "dane":
                self.reader.has_dane = True
            self.reader.warnings.append(EcelerityWarning(where, "stanza", name_tok.text, arg))
            return
        hint = f"; did you mean {close!r}?" if close is not None else ""
        if ctx is _Ctx.ROOT:
            what = "a near miss of a policy keyword, so not taken for a module stanza"
        else:
            what = "not a documented Momentum scope, and modules sit at top level only"
        self.reader.errors.append(EcelerityUnknownStanzaError(
            f"unknown stanza {_ex(name_tok.text)}: {what}{hint}", where))


def _path_text(path: tuple[tuple[ScopeKind, str], ...]) -> str:
    return " > ".join(f'{kind.value} "{name}"' for kind, name in path)


_MAX_INT_DIGITS: Final = 4300
"""Python's int() limit for decimal text; a longer bare integer word is an error."""


def _word_value(text: str) -> object:
    digits = text[1:] if text[:1] in "+-" else text
    if digits.isascii() and digits.isdigit() and (digits == "0" or not digits.startswith("0")):
        if len(digits) > _MAX_INT_DIGITS:
            raise ValueError(f"integer of {len(digits)} digits")
        return int(text)
    return text


def parse_ecelerity(text: str, *, filename: str = "<string>",
                    loader: Loader | None = None,
                    budget: ReadBudget | None = None) -> EcelerityDocument:
    """Read ``ecelerity.conf`` text into an :class:`EcelerityDocument`.

    ``filename`` names the text in locations and is the base that relative
    ``include`` paths are joined to.  ``loader`` reads an include file given
    its joined, normalised path and raises :class:`OSError` (e.g.
    :class:`FileNotFoundError`) when it cannot; the default reads UTF-8 from
    disk through ``budget`` (:class:`~tlspolicy.formats.files.ReadBudget`:
    regular files only, size caps, at most
    :data:`~tlspolicy.formats.files.MAX_FILES_PER_LOAD` files, which every
    include, read by either, is counted against).  Raises
    :class:`~tlspolicy.errors.ConfigSyntaxError` (or its
    subclasses :class:`EcelerityStructureError`, :class:`EcelerityIncludeError`)
    located at ``file:line:column``; never anything else for bad input.
    """
    reader = _Reader(loader, budget if budget is not None else ReadBudget())
    root = _Scope(ScopeKind.GLOBAL, None, Location(filename, 1, 1, "global"), ())
    main = os.path.normpath(filename) if filename != "<string>" else filename
    reader.read_text(text, filename, root, _Ctx.ROOT, (main,), 0)
    ConfigErrors.raise_if_any(reader.errors)
    return EcelerityDocument(root.freeze(), tuple(reader.warnings), reader.has_dane,
                             tuple(reader.files))


def read_ecelerity(path: str | os.PathLike[str], *,
                   budget: ReadBudget | None = None) -> EcelerityDocument:
    """Read an ``ecelerity.conf`` file (and the files it includes) from disk.

    Raises :class:`~tlspolicy.errors.FileReadError` (a
    :class:`~tlspolicy.errors.ConfigSyntaxError`) when the file cannot be
    read safely or is not UTF-8, and the syntax errors of
    :func:`parse_ecelerity`.
    """
    name = os.fspath(path)
    budget = budget if budget is not None else ReadBudget()
    text = budget.read_text(name)
    return parse_ecelerity(text, filename=name, budget=budget)


def _validated(document: EcelerityDocument, filename: str) -> Config:
    try:
        return build_config(document.tree)
    except ConfigErrors as many:
        raise ConfigErrors(e.located(Location(file=filename)) for e in many.errors) from None
    except ConfigError as one:
        raise one.located(Location(file=filename)) from None


def loads_ecelerity_config(text: str, filename: str = "<string>", *,
                           loader: Loader | None = None) -> Config:
    """Read ``ecelerity.conf`` text and validate it into a :class:`~tlspolicy.scopes.Config`.

    Skipped items (see :attr:`EcelerityDocument.warnings`) are dropped; use
    :func:`parse_ecelerity` to see them.  Raises the reader's syntax errors or
    the validator's :class:`~tlspolicy.errors.ConfigError` /
    :class:`~tlspolicy.errors.ConfigErrors`.
    """
    return _validated(parse_ecelerity(text, filename=filename, loader=loader), filename)


def load_ecelerity_config(path: str | os.PathLike[str], *,
                          budget: ReadBudget | None = None) -> Config:
    """Read an ``ecelerity.conf`` file from disk and validate it into a ``Config``."""
    name = os.fspath(path)
    return _validated(read_ecelerity(name, budget=budget), name)


# ------------------------------------------------------------------------- writer


class EcelerityExportError(TlsPolicyError):
    """A name or value that no ``ecelerity.conf`` string can carry so that it reads back."""


def _quote(text: str, what: str) -> str:
    """A quoted string that :func:`parse_ecelerity` reads back as exactly ``text``."""
    if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
        # The reader keeps "/.../" strings as written (regex domains), so no
        # escapes are possible: pick a quote the text does not contain.
        if "\n" in text:
            raise EcelerityExportError(f"{what} {text!r} contains a line break")
        for quote in ('"', "'"):
            if quote not in text:
                return f"{quote}{text}{quote}"
        raise EcelerityExportError(
            f"{what} {text!r} contains both quote characters; a \"/.../\" string cannot "
            "escape them")
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _option_lines(options: Options, indent: str) -> list[str]:
    lines = []
    for name, value in options.items():
        raw = OPTION_SPECS[name].dump(value)
        if isinstance(raw, bool):
            shown = "true" if raw else "false"
        elif isinstance(value, enum.Enum):
            shown = str(raw)
        elif isinstance(raw, str):
            shown = _quote(raw, f"option {name!r} value")
        else:  # pragma: no cover - every option dumps to a bool or a string
            raise EcelerityExportError(f"option {name!r}: cannot write value {raw!r}")
        lines.append(f"{indent}{name} = {shown}")
    return lines


def _domain_lines(domains: tuple[DomainScope, ...], indent: str) -> list[str]:
    lines = []
    for d in domains:
        head = f"{indent}domain {_quote(d.name.text.strip(), 'domain name')} {{"
        body = _option_lines(d.options, indent + "  ")
        lines += [head, *body, f"{indent}}}"] if body else [head + " }"]
    return lines


def _binding_lines(bindings: tuple[BindingScope, ...], indent: str) -> list[str]:
    lines = []
    for b in bindings:
        body = _option_lines(b.options, indent + "  ") + _domain_lines(b.domains, indent + "  ")
        head = f"{indent}binding {_quote(b.name, 'binding name')} {{"
        lines += [head, *body, f"{indent}}}"] if body else [head + " }"]
    return lines


def ecelerity_export_losses(config: Config) -> tuple[str, ...]:
    """What :func:`dumps_ecelerity` cannot carry: ``compatibility``, ``match_cache_size``,
    and each stanza's ``expires``.

    The first two are tlspolicy settings, not Momentum options; the written
    file reads back with the defaults (the newest version, the default cache
    size), so a setting equal to its default loses nothing and is not listed.
    An expiring stanza is written without its expiry (one note each).
    """
    losses = []
    if config.compatibility is not None and config.compatibility != NEWEST_VERSION:
        losses.append(f"compatibility = {config.compatibility}: not an ecelerity.conf option; "
                      "the file reads back as the newest version")
    if config.match_cache_size not in (None, DEFAULT_MATCH_CACHE_SIZE):
        losses.append(f"match_cache_size = {config.match_cache_size}: not written; the file "
                      "reads back with the default cache size")
    from ..scopes import iter_stanzas

    for path, stanza in iter_stanzas(config):
        if stanza.expires is not None:
            losses.append(f"{path}: expires {stanza.expires.isoformat()}: ecelerity.conf "
                          "cannot carry expiry; the entry stays in force until removed by hand")
    return tuple(losses)


def dumps_ecelerity(config: Config) -> str:
    """Write a configuration as an ``ecelerity.conf`` snippet.

    Global options at top level, then global ``domain`` stanzas, ``binding_group``
    stanzas (with their domains and bindings) and ungrouped ``binding`` stanzas,
    in declaration order (which decides between regex domains).  Stanza
    arguments and string values are quoted; enumerations and booleans are
    bare words.  Read back with :func:`loads_ecelerity_config` it gives an
    equal configuration, except for the settings listed by
    :func:`ecelerity_export_losses`, which are written as comments.  Raises
    :class:`EcelerityExportError` for a name no quoted string can carry.
    """
    lines = ["# Outbound TLS policy written by tlspolicy."]
    lines += [f"# not written: {loss}" for loss in ecelerity_export_losses(config)]
    if config.floors:
        # ecelerity.conf has no floors: their raised values go into the bindings.
        from ..floors import floor_comments, plan_floor_writes, written_config

        writes = plan_floor_writes(config, what="ecelerity.conf")
        lines += floor_comments(config, writes)
        config = written_config(config, writes)
    lines += _option_lines(config.options, "")
    lines += _domain_lines(config.domains, "")
    for g in config.binding_groups:
        body = (_option_lines(g.options, "  ") + _domain_lines(g.domains, "  ")
                + _binding_lines(g.bindings, "  "))
        head = f"binding_group {_quote(g.name, 'binding_group name')} {{"
        lines += [head, *body, "}"] if body else [head + " }"]
    lines += _binding_lines(config.bindings, "")
    return "\n".join(lines) + "\n"
