"""Forwarding loops: chains of forwards, aliases and catch-alls that come back where they began.

VMailMgr's ``vdeliver`` hands every forward to qmail as a new message ([compat: fields]): a
bare name gets ``@<domain>`` appended, so ``a -> b -> a`` delivers (and stores) the same mail
again and again until qmail-local sees its own ``Delivered-To`` line and bounces it. Every
such loop is an error at validate time.

The graph's nodes are table entries, ``(domain, key)``; an edge is a forward whose target the
YAML itself defines (a bare name of the same domain, or ``name@<domain>`` of a managed domain
or one of its aliases), a user's ``aliases:`` entry pointing at the user, or the catch-all
entry pointing at its target. Entries the YAML does not describe are not followed (the live
table may hold anything), so every loop found is a loop that apply would really make.

Pure and iterative: a chain of 100,000 aliases costs linear time and no recursion.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

#: An entry: (domain, table key).
Node = tuple[str, str]
#: An edge as the caller knows it: (target, edge id); the id says where it was written, and the
#: lowest id of a loop is where the loop is reported.
Edges = Mapping[Node, Sequence[tuple[Node, int]]]
Edge = tuple[Node, Node, int]

#: A loop longer than this is shown as its first and last names with a count between.
SHOWN = 8


def find_loops(edges: Edges) -> list[list[Edge]]:
    """One loop per strongly connected component that has one, as its edges ``(source, target,
    id)`` in order, starting with the component's edge of the lowest id (the report is stable)."""
    # An edge into an entry that forwards nowhere the YAML defines cannot be part of a loop:
    # dropping those first leaves the component search little to do on a typical config.
    edges = {node: kept for node, targets in edges.items() if (kept := [t for t in targets if t[0] in edges])}
    loops = []
    for component in _components(edges):
        members = set(component)
        inner = [(src, dst, tag) for src in component for dst, tag in edges.get(src, ()) if dst in members]
        if not inner:
            continue  # a single node without a self-edge
        first = min(inner, key=lambda edge: edge[2])
        loops.append([first, *_path_back(edges, members, first[1], first[0])])
    return loops


def describe(loop: list[Edge], home: str) -> str:
    """``a -> b -> a``: names of ``home`` bare, others as ``name@domain``; long loops shortened."""
    names = [_name(loop[0][0], home)] + [_name(dst, home) for _, dst, _ in loop]
    if len(names) > SHOWN + 1:
        hidden = len(names) - SHOWN
        names = names[: SHOWN // 2] + [f"({hidden} more)"] + names[-SHOWN // 2 :]
    return " -> ".join(names)


def _name(node: Node, home: str) -> str:
    domain, key = node
    return key if domain == home else f"{key}@{domain}"


def _path_back(edges: Edges, members: set[Node], start: Node, goal: Node) -> list[Edge]:
    """The shortest chain of edges from ``start`` to ``goal`` inside one component (BFS)."""
    if start == goal:
        return []
    came: dict[Node, tuple[Node, int]] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        node = queue.popleft()
        for dst, tag in edges.get(node, ()):
            if dst not in members or dst in seen:
                continue
            came[dst] = (node, tag)
            if dst == goal:
                path = []
                while dst != start:
                    src, tag = came[dst]
                    path.append((src, dst, tag))
                    dst = src
                return path[::-1]
            seen.add(dst)
            queue.append(dst)
    raise AssertionError("no path inside a strongly connected component")  # pragma: no cover


def _components(edges: Edges) -> list[list[Node]]:
    """Tarjan's strongly connected components, with an explicit stack instead of recursion."""
    index: dict[Node, int] = {}
    low: dict[Node, int] = {}
    on_stack: set[Node] = set()
    stack: list[Node] = []
    out: list[list[Node]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = edges.get(node, ())
            descended = False
            while position < len(targets):
                target = targets[position][0]
                position += 1
                if target not in index:
                    work.append((node, position))
                    work.append((target, 0))
                    descended = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if descended:
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out
