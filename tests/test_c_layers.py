"""The C core is layered: no two csrc/ files call each other, and the file-level
call graph has no cycle. A -> B when A's object leaves a function undefined (nm: U)
that B's object defines (T for a function, D, B, R... for data: a table of
operations referred to by name counts). Calls through a ring kind's table of operations
(kind.h) are not calls of a name, so they do not count; taking a function's
address in such a table does (it shows as U too)."""
import shutil
import subprocess

import pytest

from conftest import source_tree
from test_c_core import CC, CSRC, WARNINGS

pytestmark = [pytest.mark.timeout(120), source_tree("csrc/shmring.h")]


def call_graph(objects):
    defined, undefined = {}, {}
    for src, obj in objects.items():
        undefined[src] = set()
        out = subprocess.run(["nm", str(obj)], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[1] in "TDBRGSVC":  # functions and data
                defined[fields[2]] = src
            elif len(fields) == 2 and fields[0] == "U":
                undefined[src].add(fields[1])
    return {src: {defined[s] for s in syms if s in defined and defined[s] != src}
            for src, syms in undefined.items()}


def find_cycle(graph):
    """A cycle as a list of files [a, b, ..., a], or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path)
                if found:
                    return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    if shutil.which(CC) is None or shutil.which("nm") is None:
        pytest.skip(f"no C compiler ({CC}) or nm")
    out = tmp_path_factory.mktemp("layers")
    objects = {}
    for src in CSRC:
        obj = out / (src.stem + ".o")
        done = subprocess.run([CC, *WARNINGS, "-O2", "-c", str(src), "-o", str(obj)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        objects[src.name] = obj
    return call_graph(objects)


def test_no_two_c_files_call_each_other(graph):
    pairs = sorted((a, b) for a in graph for b in graph[a] if a < b and a in graph[b])
    assert not pairs, f"files that call each other: {pairs}"


def test_the_c_call_graph_has_no_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "call cycle: " + " -> ".join(cycle or [])
    print("\n".join(f"{a} -> {', '.join(sorted(bs)) or '-'}" for a, bs in sorted(graph.items())))


def test_find_cycle_reports_one():
    assert find_cycle({"a.c": {"b.c"}, "b.c": {"c.c"}, "c.c": {"a.c"}}) == ["a.c", "b.c", "c.c", "a.c"]
    assert find_cycle({"a.c": {"b.c"}, "b.c": set()}) is None
