"""Render a configuration's scope tree, so a reviewer sees a large configuration at a glance.

One line per scope, in the order the resolver looks them up within a
container (exact domain stanzas win over regex stanzas; regex stanzas are
tried in declaration order, which the tree keeps), then the floors
(SEMANTICS 7), which raise what the scopes give for the domains they match;
a value a floor raises is marked on its scope's line::

    global  tls=ifavailable tls_verify=optional ...
    ├── domain "payroll-partner.example"  tls=required tls_verify=host
    ├── binding_group "transactional"  tls_verify=ca
    │   ├── domain "health-insurer.example"  tls=required tls_verify=host
    │   └── binding "tx-eu-1"
    └── binding_group "default" (implicit)
        └── binding "relay-internal"  tls=no  (raised: by floor "payroll.example" tls to required)
    floors (minimums no binding can weaken: ...)
    └── floor "payroll.example"  tls=required tls_verify=host
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs

from ..floors import below
from ..names import DomainKind, DomainName
from ..options import Options
from ..scopes import DEFAULT_NAME, BindingScope, Config, DomainScope, FloorScope

__all__ = ["TreeNode", "build_floors", "build_tree", "render_tree"]

FLOORS_LABEL = ("floors (minimums no binding can weaken: every floor matching the domain "
                "raises the values above to its own)")


@attrs.frozen(slots=True)
class TreeNode:
    """One scope: its label, the options it sets (as written in TOML) and its children;
    ``raised`` says which floors raise which of those values, and to what."""

    label: str
    options: tuple[tuple[str, object], ...] = ()
    children: tuple[TreeNode, ...] = ()
    raised: str = ""


def _opts(options: Options) -> tuple[tuple[str, object], ...]:
    return tuple(options.to_mapping().items())


def _applies(floor: DomainName, stanza: DomainName | None) -> bool:
    """Whether a floor can raise what a scope gives: every floor for a binding, group or
    global value (``stanza`` None); for a domain stanza, a floor of the same name, or one
    of the two a regex matching the other's name.  Two different regexes may or may not
    meet: not marked."""
    if stanza is None or floor == stanza:
        return True
    if floor.kind is DomainKind.REGEX and stanza.kind is not DomainKind.REGEX:
        return floor.matches(stanza.key)
    if stanza.kind is DomainKind.REGEX and floor.kind is not DomainKind.REGEX:
        return stanza.matches(floor.key)
    return False


def _raised(options: Options, floors: Sequence[FloorScope], stanza: DomainName | None) -> str:
    """``(raised: by floor "x" tls to required; ...)`` for the values of ``options`` the
    floors that apply raise; empty when none does."""
    parts: list[str] = []
    own = dict(options.items())
    for floor in floors:
        if not _applies(floor.name, stanza):
            continue
        shown = floor.options.to_mapping()
        raises = [f"{option} to {_value(shown[option])}"
                  for option, wanted in floor.options.items()
                  if option in own and below(option, own[option], wanted)]
        if raises:
            parts.append(f'by floor "{floor.name.text}" {", ".join(raises)}')
    return f"(raised: {'; '.join(parts)})" if parts else ""


def _domain(d: DomainScope | FloorScope, floors: Sequence[FloorScope],
            what: str = "domain") -> TreeNode:
    kind = {DomainKind.REGEX: " [regex]", DomainKind.IP: " [IP literal]",
            DomainKind.EXACT: ""}[d.name.kind]
    expires = f" (expires {d.expires.isoformat()})" if d.expires is not None else ""
    return TreeNode(f'{what} "{d.name.text}"{kind}{expires}', _opts(d.options),
                    raised=_raised(d.options, floors, d.name))


def _domains(domains: tuple[DomainScope, ...], floors: Sequence[FloorScope]
             ) -> tuple[TreeNode, ...]:
    # Exact and IP stanzas first: they win over regex stanzas in the same container.
    exact = [d for d in domains if d.name.kind is not DomainKind.REGEX]
    regex = [d for d in domains if d.name.kind is DomainKind.REGEX]
    return tuple(_domain(d, floors) for d in (*exact, *regex))


def _binding(b: BindingScope, floors: Sequence[FloorScope]) -> TreeNode:
    return TreeNode(f'binding "{b.name}"', _opts(b.options), _domains(b.domains, floors),
                    _raised(b.options, floors, None))


def build_tree(config: Config) -> TreeNode:
    """The scope tree of ``config``; the implicit default group and binding are shown
    (marked implicit) when mail could reach them without their being declared.  Values
    the configuration's floors raise are marked (``raised``); the floors themselves are
    :func:`build_floors`'s."""
    floors = config.floors
    settings = []
    if config.compatibility is not None:
        settings.append(f"compatibility {config.compatibility}")
    if config.match_cache_size is not None:
        settings.append(f"match_cache_size {config.match_cache_size}")
    label = "global" + (f" ({', '.join(settings)})" if settings else "")
    children: list[TreeNode] = list(_domains(config.domains, floors))
    declared_default_group = False
    for group in config.binding_groups:
        kids = (*_domains(group.domains, floors), *(_binding(b, floors) for b in group.bindings))
        children.append(TreeNode(f'binding_group "{group.name}"', _opts(group.options), kids,
                                 _raised(group.options, floors, None)))
        declared_default_group |= group.name == DEFAULT_NAME
    names = {b.name for _g, b in config.iter_bindings()}
    ungrouped = [_binding(b, floors) for b in config.bindings]
    if DEFAULT_NAME not in names:
        ungrouped.append(TreeNode(f'binding "{DEFAULT_NAME}" (implicit)'))
    if ungrouped and not declared_default_group:
        children.append(TreeNode(f'binding_group "{DEFAULT_NAME}" (implicit)', (),
                                 tuple(ungrouped)))
    elif ungrouped:
        # Ungrouped bindings belong to a declared "default" group: show them there.
        children = [
            attrs.evolve(c, children=(*c.children, *ungrouped))
            if c.label == f'binding_group "{DEFAULT_NAME}"' else c for c in children]
    return TreeNode(label, _opts(config.options), tuple(children),
                    _raised(config.options, floors, None))


def build_floors(config: Config) -> TreeNode | None:
    """The floors of ``config`` (SEMANTICS 7) in declaration order, under one node; None
    without floors.  All the floors matching a domain apply, after the scopes' chain."""
    if not config.floors:
        return None
    return TreeNode(FLOORS_LABEL, (), tuple(_domain(f, (), "floor") for f in config.floors))


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text and all(ch.isalnum() or ch in "._/-+:" for ch in text):
        return text
    return json.dumps(text)


def _line(node: TreeNode, values: bool) -> str:
    if not values or not node.options:
        return node.label
    line = node.label + "  " + " ".join(f"{k}={_value(v)}" for k, v in node.options)
    return f"{line}  {node.raised}" if node.raised else line


def render_tree(config: Config, *, values: bool = True) -> str:
    """The scope tree as text, one scope per line (options inline unless ``values`` false),
    then the floors, if any."""
    lines: list[str] = []

    def walk(node: TreeNode, prefix: str) -> None:
        for i, child in enumerate(node.children):
            last = i == len(node.children) - 1
            lines.append(prefix + ("└── " if last else "├── ") + _line(child, values))
            walk(child, prefix + ("    " if last else "│   "))

    for root in (build_tree(config), build_floors(config)):
        if root is not None:
            lines.append(_line(root, values))
            walk(root, "")
    return "\n".join(lines) + "\n"
