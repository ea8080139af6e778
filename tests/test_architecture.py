"""The layout rules of the developers' guide, enforced by an AST walk (no extra dependency)."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "tracer_core"
PAGE_ALLOWED = {"streamlit", "pandas", "tracer_core.api", "tracer_core.charts", "__future__",
                "datetime", "time", "json", "math", "io", "typing", "pathlib"}


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by a file (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
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
    return names


def _py(folder: Path):
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _hits(names: set[str], forbidden: str) -> list[str]:
    return [n for n in names if n == forbidden or n.startswith(forbidden + ".")]


def test_pages_only_use_api_and_charts():
    files = [ROOT / "app.py"] + _py(ROOT / "pages")
    files = [f for f in files if f.exists()]
    assert files, "app.py and pages/ must exist"
    for f in files:
        for name in _imports(f):
            ok = any(name == a or name.startswith(a + ".") for a in PAGE_ALLOWED)
            assert ok, f"{f.relative_to(ROOT)} imports {name}; pages may use only tracer_core.api/charts"


def test_core_never_imports_streamlit():
    for f in _py(CORE):
        assert not _hits(_imports(f), "streamlit"), f"{f.relative_to(ROOT)} imports streamlit"


def test_training_never_imports_store_or_jobs():
    for f in _py(CORE / "training"):
        names = _imports(f)
        for bad in ("tracer_core.store", "tracer_core.jobs", "tracer_core.api"):
            assert not _hits(names, bad), f"{f.relative_to(ROOT)} imports {bad}"


def test_only_the_runstore_opens_duckdb():
    owners = [f.relative_to(ROOT).as_posix() for f in _py(CORE) if _hits(_imports(f), "duckdb")]
    assert owners == ["tracer_core/store/runstore.py"], owners


def test_api_import_is_torch_free():
    code = "import sys, tracer_core.api, tracer_core.charts; bad=[m for m in ('torch','open_clip','streamlit') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_file_and_page_sizes():
    for f in _py(CORE) + _py(ROOT / "tests"):
        n = len(f.read_text().splitlines())
        assert n <= 450, f"{f.relative_to(ROOT)} has {n} lines (keep files under ~400)"
    for f in _py(ROOT / "pages"):
        n = len(f.read_text().splitlines())
        assert n <= 160, f"{f.relative_to(ROOT)} has {n} lines (keep pages under ~150)"
