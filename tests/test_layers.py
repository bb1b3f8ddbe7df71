"""The library's imports point one way: down, from what faces a person to the equations at the bottom.

Every module of `ivlib/` sits in one layer of `LAYERS`, from the equations at the bottom to what faces
a person at the top. The test reads each module's source with `ast` and checks three things:

* every import inside `ivlib/` goes to the same layer or one below it;
* the import graph has no cycle;
* no module imports another module's `_private` name (`from m import _x`, or `m._x` on an imported module).

Imports inside functions count exactly like imports at the top of a module (our choice). A lazy import
only moves a dependency from import time to call time; a cycle through one is still a cycle a reader has
to untangle, and the layers are meant to be read from the bottom up. Imports under
`if TYPE_CHECKING:` count too: ivlib has none, and annotations name what they need as strings.
"""

import ast
import importlib
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "ivlib"

# Bottom to top. A module belongs to the first entry that equals its name or is a package above it.
LAYERS = (
    ("equations", ("ivlib", "ivlib.compat", "ivlib.schedules", "ivlib.diffusion", "ivlib.guidance",
                   "ivlib.analytic", "ivlib.conditioning")),
    ("data and video files", ("ivlib.media", "ivlib.data")),
    ("networks and weight files", ("ivlib.nn", "ivlib.text", "ivlib.weights")),
    ("stages as data", ("ivlib.stage", "ivlib.configs")),
    ("training and sharding", ("ivlib.loop", "ivlib.train", "ivlib.sharding", "ivlib.memory", "ivlib.trainer",
                               "ivlib.distill")),
    ("cascades, evaluation, pretrained loading", ("ivlib.pretrained", "ivlib.cascade", "ivlib.metrics",
                                                  "ivlib.attributes", "ivlib.evaluation", "ivlib.listening",
                                                  "ivlib.appearance", "ivlib.distiller")),
    ("what faces a person", ("ivlib.cli", "ivlib.viz", "ivlib.widgets")),
)


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer_of(name: str) -> int | None:
    for index, (_, members) in enumerate(LAYERS):
        if any(name == m or (m != "ivlib" and name.startswith(m + ".")) for m in members):
            return index
    return None


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module name of `from <module> import ...` inside module `importer`."""
    if not node.level:
        return node.module or ""
    is_package = importer in MODULES and MODULES[importer].name == "__init__.py"
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str, source: str | None = None):
    """(imported ivlib module, private names taken from it, line) for every import in module `name`
    (or in `source`, read as that module), at any depth; `from pkg import submodule` imports the submodule."""
    tree = ast.parse(MODULES[name].read_text() if source is None else source)
    bound = {}  # local name -> ivlib module it refers to (to catch `module._private`)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ivlib":
                    found.append((alias.name, [], node.lineno))
                    bound[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else "ivlib"
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, node)
            if source.split(".")[0] != "ivlib":
                continue
            private = []
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in MODULES:
                    found.append((full, [], node.lineno))
                    bound[alias.asname or alias.name] = full
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    private.append(alias.name)
            if any(f"{source}.{a.name}" not in MODULES for a in node.names):
                found.append((source, private, node.lineno))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append((bound[node.value.id], [node.attr], node.lineno))
    return found


def edges() -> dict:
    return {name: sorted({m for m, _, _ in imports(name) if m != name and m in MODULES}) for name in MODULES}


def find_cycle(graph: dict):
    """One cycle of `graph` as a list of nodes (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in graph:
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_module_has_a_layer_and_imports():
    unplaced = [name for name in MODULES if layer_of(name) is None]
    assert not unplaced, f"place these modules in a layer of LAYERS: {unplaced}"
    for name in MODULES:
        importlib.import_module(name)


def test_imports_only_point_down():
    upward = []
    for name in MODULES:
        for target, _, line in imports(name):
            if target in MODULES and (layer_of(target) or 0) > (layer_of(name) or 0):
                upward.append(f"{MODULES[name].relative_to(ROOT.parent)}:{line} imports {target} "
                              f"({LAYERS[layer_of(name)][0]} -> {LAYERS[layer_of(target)][0]})")
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_no_import_cycle():
    cycle = find_cycle(edges())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_another_modules_private_names():
    found = [f"{MODULES[name].relative_to(ROOT.parent)}:{line} takes {private} from {source}"
             for name in MODULES for source, private, line in imports(name) if private and source != name]
    assert not found, "\n".join(found)


def test_the_checker_sees_cycles_lazy_imports_and_private_names():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None
    source = ("from . import diffusion\n"
              "def f():\n    from ivlib.train import _hidden\n    import ivlib.memory as m\n    return m._x\n")
    found = imports("ivlib.probe", source)
    assert ("ivlib.diffusion", [], 1) in found  # a relative import of a sibling module
    assert ("ivlib.train", ["_hidden"], 3) in found and ("ivlib.memory", ["_x"], 5) in found
