"""The package's architecture, checked from its source with ``ast``: the module import
graph (imports inside functions included) has no circle, no module imports one of a
higher layer (the README's Layout), and an import inside a function is there only to
keep TensorFlow out of a TensorFlow-free path, saying so in a ``# lazy:`` comment."""
import ast
import functools
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dgg_tf"

#: Layers, bottom first (README, Layout), one folder each. A module may import its own
#: layer or lower ones.
LAYERS = [
    ("core", ["core", "core.*"]),
    ("report", ["report", "report.*"]),
    ("backend", ["backend", "backend.*"]),
    ("numerics", ["numerics", "numerics.*"]),
    ("train", ["train", "train.*"]),
    ("stages", ["stages", "stages.*"]),
    ("audit", ["audit", "audit.*"]),
    ("api", ["api", "api.*", "__init__"]),
    ("sweep", ["sweep", "sweep.*"]),
    ("cli", ["cli", "cli.*", "sweep.run", "*.__main__"]),
]

#: The layers that run without TensorFlow, Keras or JAX: they import none of them and
#: no module of another layer that does, at the top or inside a function; the
#: ``sweep`` orchestrates its cells without them too, except the module that runs a
#: cell in its own process (``sweep.run``). ``backend.startup`` is the one
#: Keras-aware module they may import: it loads Keras only when asked to start it.
TF_FREE = ["core", "core.*", "report", "report.*", "sweep", "sweep.cells", "sweep.curves",
           "sweep.protocols", "sweep.results", "sweep.summary", "cli.commands", "cli.report"]
TF_FREE_MAY_IMPORT = ["backend", "backend.startup"]


def _modules():
    """{dotted name relative to dgg_tf ('' for the package): path}."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _target(node, module, is_package, names):
    """The dgg_tf modules an import node loads (relative to dgg_tf)."""
    if isinstance(node, ast.Import):
        found = [a.name for a in node.names]
        found = [n[len("dgg_tf."):] if n.startswith("dgg_tf.") else
                 ("" if n == "dgg_tf" else None) for n in found]
        return [n for n in found if n is not None and n in names]
    if node.level:
        base = module.split(".") if module else []
        base = base if is_package else base[:-1]
        base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
        mod = ".".join(base + ([node.module] if node.module else []))
    elif node.module == "dgg_tf" or (node.module or "").startswith("dgg_tf."):
        mod = node.module[len("dgg_tf."):] if node.module != "dgg_tf" else ""
    else:
        return []
    subs = [f"{mod}.{a.name}".lstrip(".") for a in node.names]
    hits = [s for s in subs if s in names]      # "from . import x" loads module x
    return hits or ([mod] if mod in names else [])


@functools.lru_cache(maxsize=None)
def _imports():
    """((module, target, lineno, inside a function), ...) for every dgg_tf import; parsed
    once per process (the tests below ask for it once per module)."""
    names = _modules()
    out = []
    for module, path in names.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in _target(node, module, path.name == "__init__.py", names):
                    if t != module:
                        out.append((module, t, node.lineno, id(node) not in top))
    return tuple(out)


def _layer(module):
    import fnmatch
    best = None
    for rank, (_, patterns) in enumerate(LAYERS):
        for p in patterns:
            if module == p or fnmatch.fnmatch(module, p) or (module == "" and p == "__init__"):
                # the most specific pattern wins: exact names over wildcards
                score = (module == p or (module == "" and p == "__init__"), rank)
                best = max(best, score) if best else score
    assert best is not None, f"dgg_tf.{module} is in no layer of the README's Layout"
    return best[1]


def test_every_module_has_a_layer():
    for module in _modules():
        _layer(module)


def test_import_graph_has_no_circle():
    graph = {}
    for src, dst, _, _ in _imports():
        graph.setdefault(src, set()).add(dst)
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                circle = path[path.index(nxt):] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_no_module_imports_a_higher_layer():
    bad = [f"dgg_tf.{s} ({LAYERS[_layer(s)][0]}) imports dgg_tf.{d} ({LAYERS[_layer(d)][0]})"
           for s, d, _, _ in _imports() if _layer(d) > _layer(s)]
    assert not bad, "\n".join(bad)


def test_imports_inside_functions_say_why():
    bad = []
    for module, path in _modules().items():
        lines = path.read_text().splitlines()
        for src, _, lineno, inside in _imports():
            if src == module and inside and "# lazy:" not in lines[lineno - 1]:
                bad.append(f"{path.relative_to(ROOT)}:{lineno}: {lines[lineno - 1].strip()}")
    assert not bad, ("imports inside functions without a '# lazy: why' comment:\n"
                     + "\n".join(sorted(set(bad))))


def test_tensorflow_imported_inside_functions_says_why():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        lines = path.read_text().splitlines()
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and id(node) not in top and any(
                    a.name.split(".")[0] in ("tensorflow", "keras") for a in node.names):
                if "# lazy:" not in lines[node.lineno - 1]:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, "TensorFlow imported inside a function without '# lazy: why': " + \
        ", ".join(bad)


def _tf_free(module):
    import fnmatch
    return not module.endswith("__main__") and any(
        module == p or fnmatch.fnmatch(module, p) for p in TF_FREE)


def _third_party_imports(path):
    """[(top-level package, lineno, inside a function)] of a module's non-dgg_tf imports."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name.split(".")[0], node.lineno, id(node) not in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.append((node.module.split(".")[0], node.lineno, id(node) not in top))
    return out


def test_tensorflow_free_layers_need_no_lazy_import():
    """The TF-free layers import neither Keras, TensorFlow nor JAX, nor a module that
    does, and import nothing inside a function: the folder boundary keeps them free."""
    bad = []
    for module, path in _modules().items():
        if not _tf_free(module):
            continue
        for pkg, lineno, inside in _third_party_imports(path):
            if pkg in ("keras", "tensorflow", "jax"):
                bad.append(f"dgg_tf.{module}:{lineno} imports {pkg}")
        for src, dst, lineno, inside in _imports():
            if src != module:
                continue
            if inside:
                bad.append(f"dgg_tf.{module}:{lineno} imports dgg_tf.{dst} inside a function")
            elif not (_tf_free(dst) or dst in TF_FREE_MAY_IMPORT):
                bad.append(f"dgg_tf.{module}:{lineno} imports dgg_tf.{dst}, which needs Keras")
    assert not bad, "\n".join(bad)


def test_tensorflow_free_modules_load_without_keras():
    """Importing every TF-free module leaves Keras, TensorFlow and JAX unloaded."""
    import subprocess
    import sys
    names = sorted(f"dgg_tf.{m}" if m else "dgg_tf" for m in _modules() if _tf_free(m)
                   and not m.endswith("__main__"))
    code = ("import importlib, sys\n"
            f"for n in {names!r}: importlib.import_module(n)\n"
            "loaded = [m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
