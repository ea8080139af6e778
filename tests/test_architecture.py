"""The layout rules of the developers' guide, enforced by an AST walk (no extra dependency)."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "tracer_core"
PAGE_ALLOWED = {"streamlit", "pandas", "tracer_core.api", "tracer_core.charts", "__future__",
                "datetime", "time", "json", "math", "io", "typing", "pathlib"}
MAX_LINES = 400
# Files allowed over the cap for a while (path -> their ceiling), e.g. owned by work in flight when the cap
# went down; split when next touched. None right now: everything keeps to MAX_LINES.
OVER_CAP: dict[str, int] = {}


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute module names imported anywhere in a file (function-level "lazy" imports included; relative
    imports resolved against its package). ``from a import b`` yields both ``a`` and ``a.b``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = _module_name(path, root) if path.name == "__init__.py" else _module_name(path, root).rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)   # `from tracer_core import store`
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)                             # `pd = lazy("pandas")` (tracer_core.lazy)
    return names


def _py(folder: Path):
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _hits(names: set[str], forbidden: str) -> list[str]:
    return [n for n in names if n == forbidden or n.startswith(forbidden + ".")]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """module -> the modules of ``package`` its imports execute: the named module and each enclosing package
    that is not already an enclosing package of the importer (importing ``a.b.c`` runs ``a.b``'s __init__)."""
    files = {_module_name(f, root): f for f in _py(root / package)}
    graph = {}
    for mod, f in files.items():
        ancestors = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)}
        if f.name == "__init__.py":
            ancestors.add(mod)
        edges = set()
        for name in _imports(f, root):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in files and target not in ancestors and target != mod:
                    edges.add(target)
        graph[mod] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [m0, m1, ..., m0], or [] when the graph is acyclic (iterative DFS, colours)."""
    colour = dict.fromkeys(graph, 0)               # 0 unseen, 1 on the current path, 2 finished
    for start in sorted(graph):
        if colour[start]:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        colour[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = 2
                stack.pop()
            elif colour.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt) == 0:
                colour[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return []


def test_core_import_graph_has_no_cycle():
    graph = import_graph(ROOT, "tracer_core")
    assert len(graph) > 50 and graph["tracer_core.api"], "the graph must cover the package"
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_cycle_check_finds_a_planted_cycle(tmp_path):
    """A lazy (function-level) back-import, the shape the old api/charts split hid behind __getattr__."""
    pkg = tmp_path / "planted"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .b import helper\n")
    (pkg / "a.py").write_text("from planted.sub import helper\n")
    (pkg / "sub" / "b.py").write_text("def helper():\n    from .. import a   # lazy\n    return a\n")
    (pkg / "c.py").write_text("import planted.a\n")
    cycle = find_cycle(import_graph(tmp_path, "planted"))
    assert cycle[0] == cycle[-1] and set(cycle) == {"planted.a", "planted.sub", "planted.sub.b"}, cycle
    (pkg / "sub" / "b.py").write_text("def helper():\n    return 1\n")
    assert find_cycle(import_graph(tmp_path, "planted")) == []


def test_no_module_getattr_in_the_ui_layer():
    """api and charts export their names explicitly: no PEP 562 __getattr__ hiding a back-import."""
    for f in _py(CORE / "api") + _py(CORE / "charts"):
        tree = ast.parse(f.read_text())
        assert not any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body), f


def test_pages_only_use_api_and_charts():
    files = [ROOT / "app.py"] + _py(ROOT / "views")
    files = [f for f in files if f.exists()]
    assert len(files) > 1, "app.py and views/ must exist"
    for f in files:
        for name in _imports(f):
            ok = any(name == a or name.startswith(a + ".") for a in PAGE_ALLOWED)
            assert ok, f"{f.relative_to(ROOT)} imports {name}; pages may use only tracer_core.api/charts"


def test_no_pages_folder_next_to_app():
    """A ``pages/`` folder beside app.py puts Streamlit in its old multipage mode for the whole server: a deep
    link such as /runs as the first request then runs the page script alone, without app.py's frame (no
    services: KeyError 'svc'). The pages live in views/ and are routed by st.navigation only."""
    assert not (ROOT / "pages").exists(), "move pages/*.py to views/ (see app.py)"


def test_core_never_imports_streamlit():
    for f in _py(CORE):
        assert not _hits(_imports(f), "streamlit"), f"{f.relative_to(ROOT)} imports streamlit"


def test_training_never_imports_store_jobs_api_or_analysis():
    for f in _py(CORE / "training"):
        names = _imports(f)
        for bad in ("tracer_core.store", "tracer_core.jobs", "tracer_core.api", "tracer_core.analysis"):
            assert not _hits(names, bad), f"{f.relative_to(ROOT)} imports {bad}"


def test_methods_never_import_training():
    for f in _py(CORE / "methods"):
        assert not _hits(_imports(f), "tracer_core.training"), f"{f.relative_to(ROOT)} imports training"


def test_charts_never_import_api():
    for f in _py(CORE / "charts"):
        assert not _hits(_imports(f), "tracer_core.api"), f"{f.relative_to(ROOT)} imports the api"


def test_only_the_runstore_opens_duckdb():
    owners = [f.relative_to(ROOT).as_posix() for f in _py(CORE) if _hits(_imports(f), "duckdb")]
    assert owners == ["tracer_core/store/runstore.py"], owners


def test_api_import_is_torch_free():
    code = "import sys, tracer_core.api, tracer_core.charts; bad=[m for m in ('torch','open_clip','streamlit') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_api_import_leaves_heavy_libraries_to_first_use():
    """``import tracer_core.api`` alone pays for none of plotly, pandas, numpy, DuckDB or pyarrow (issue 17's cold
    import: they were ~85 % of it); they load on first use through tracer_core.lazy. The store still works."""
    code = ("import sys, tracer_core.api; heavy=('plotly','torch','pandas','numpy','duckdb','pyarrow'); "
            "bad=[m for m in heavy if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_file_and_page_sizes():
    for f in _py(CORE) + _py(ROOT / "tests"):
        n, rel = len(f.read_text().splitlines()), f.relative_to(ROOT).as_posix()
        cap = OVER_CAP.get(rel, MAX_LINES)
        assert n <= cap, f"{rel} has {n} lines (keep files under {MAX_LINES}: split it by responsibility)"
    for f in _py(ROOT / "views"):
        n = len(f.read_text().splitlines())
        assert n <= 160, f"{f.relative_to(ROOT)} has {n} lines (keep pages under ~150)"
