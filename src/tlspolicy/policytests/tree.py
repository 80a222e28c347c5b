"""Render a configuration's scope tree, so a reviewer sees a large configuration at a glance.

One line per scope, in the order the resolver looks them up within a
container (exact domain stanzas win over regex stanzas; regex stanzas are
tried in declaration order, which the tree keeps)::

    global  tls=ifavailable tls_verify=optional ...
    ├── domain "payroll-partner.example"  tls=required tls_verify=host
    ├── binding_group "transactional"  tls_verify=ca
    │   ├── domain "health-insurer.example"  tls=required tls_verify=host
    │   └── binding "tx-eu-1"
    └── binding_group "default" (implicit)
        └── binding "relay-internal"  tls=no
"""

from __future__ import annotations

import json

import attrs

from ..names import DomainKind
from ..options import Options
from ..scopes import DEFAULT_NAME, BindingScope, Config, DomainScope

__all__ = ["TreeNode", "build_tree", "render_tree"]


@attrs.frozen(slots=True)
class TreeNode:
    """One scope: its label, the options it sets (as written in TOML) and its children."""

    label: str
    options: tuple[tuple[str, object], ...] = ()
    children: tuple[TreeNode, ...] = ()


def _opts(options: Options) -> tuple[tuple[str, object], ...]:
    return tuple(options.to_mapping().items())


def _domain(d: DomainScope, what: str = "domain") -> TreeNode:
    kind = {DomainKind.REGEX: " [regex]", DomainKind.IP: " [IP literal]",
            DomainKind.EXACT: ""}[d.name.kind]
    expires = f" (expires {d.expires.isoformat()})" if d.expires is not None else ""
    return TreeNode(f'{what} "{d.name.text}"{kind}{expires}', _opts(d.options))


def _domains(domains: tuple[DomainScope, ...]) -> tuple[TreeNode, ...]:
    # Exact and IP stanzas first: they win over regex stanzas in the same container.
    exact = [d for d in domains if d.name.kind is not DomainKind.REGEX]
    regex = [d for d in domains if d.name.kind is DomainKind.REGEX]
    return tuple(_domain(d) for d in (*exact, *regex))


def _binding(b: BindingScope) -> TreeNode:
    return TreeNode(f'binding "{b.name}"', _opts(b.options), _domains(b.domains))


def build_tree(config: Config) -> TreeNode:
    """The scope tree of ``config``; the implicit default group and binding are shown
    (marked implicit) when mail could reach them without their being declared."""
    settings = []
    if config.compatibility is not None:
        settings.append(f"compatibility {config.compatibility}")
    if config.match_cache_size is not None:
        settings.append(f"match_cache_size {config.match_cache_size}")
    label = "global" + (f" ({', '.join(settings)})" if settings else "")
    children: list[TreeNode] = list(_domains(config.domains))
    declared_default_group = False
    for group in config.binding_groups:
        kids = (*_domains(group.domains), *(_binding(b) for b in group.bindings))
        children.append(TreeNode(f'binding_group "{group.name}"', _opts(group.options), kids))
        declared_default_group |= group.name == DEFAULT_NAME
    names = {b.name for _g, b in config.iter_bindings()}
    ungrouped = [_binding(b) for b in config.bindings]
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
    return TreeNode(label, _opts(config.options), tuple(children))


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
    return node.label + "  " + " ".join(f"{k}={_value(v)}" for k, v in node.options)


def render_tree(config: Config, *, values: bool = True) -> str:
    """The scope tree as text, one scope per line (options inline unless ``values`` false)."""
    root = build_tree(config)
    lines = [_line(root, values)]

    def walk(node: TreeNode, prefix: str) -> None:
        for i, child in enumerate(node.children):
            last = i == len(node.children) - 1
            lines.append(prefix + ("└── " if last else "├── ") + _line(child, values))
            walk(child, prefix + ("    " if last else "│   "))

    walk(root, "")
    return "\n".join(lines) + "\n"
