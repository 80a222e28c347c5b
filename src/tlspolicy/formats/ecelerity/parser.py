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

from ..._raw import RawOption, RawScope
from ...errors import (
    ConfigError,
    ConfigErrors,
    ConfigSyntaxError,
    FileReadError,
    Location,
    TooManyFilesError,
    UnknownOptionError,
)
from ...options import OPTION_SPECS, ScopeKind
from ...scopes import (
    Config,
    build_config,
)
from ..files import ReadBudget
from ..momentum_names import MOMENTUM_OPTIONS, MOMENTUM_SCOPES, SCOPE_KEYWORDS, near_miss
from .document import (
    MAX_INCLUDE_DEPTH,
    MAX_NESTING_DEPTH,
    EcelerityDocument,
    EcelerityIncludeError,
    EcelerityStructureError,
    EcelerityUnknownStanzaError,
    EcelerityWarning,
)
from .lexer import _T, _ex, _Lexer, _Token

Loader = Callable[[str], str]
"""Reads an include file by its resolved path; raises :class:`OSError` when it cannot."""

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
