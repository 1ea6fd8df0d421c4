"""The package's architecture, checked from its source with ``ast``: the module import
graph (imports inside functions included) has no circle, no module imports one of a
higher layer (the README's Layout), and an import inside a function is there only to
keep TensorFlow out of a TensorFlow-free path, saying so in a ``# lazy:`` comment."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dgg_tf"

#: Layers, bottom first (README, Layout). A module may import its own layer or lower.
LAYERS = [
    ("bottom", ["config", "files", "metrics", "tables", "rundir", "stopping", "devices",
                "data", "console", "run_summary", "knn", "backend", "backend.*"]),
    ("numerics", ["models", "objective", "objective_numpy", "graph", "optimizers", "step_metrics",
                  "weights", "evaluation"]),
    ("training", ["train", "train.*"]),
    ("stages", ["pretrain", "siamese", "initialise", "training", "collapse", "neighbors",
                "timing"]),
    ("report", ["report", "report.*"]),
    ("entrances", ["pipeline", "estimator", "sweep", "sweep.*", "__init__"]),
    ("commands", ["commands", "mnist_run", "report.cli", "sweep.run", "*.__main__"]),
]


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


def _imports():
    """[(module, target, lineno, inside a function)] for every dgg_tf import."""
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
    return out


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
