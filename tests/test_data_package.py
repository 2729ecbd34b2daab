"""The `vl4pose_jax.data` package as a whole: the API its users call, and an import graph without
circles (read from the sources: module-level imports between data modules form no cycle, and no
function imports a data module to dodge one)."""
import ast
import pathlib

from vl4pose_jax import data

DATA = pathlib.Path(data.__file__).parent
# What simulate, rank, export, experiments and studies call as `data.X`.
API = ["spec", "SPECS", "OOD_KINDS", "load", "make_loader", "Source", "build", "get_builder",
       "prepare_command", "DatasetNotPreparedError", "CorruptImageError", "default_data_dir",
       "normalised_uvd_to_xyz_mm", "xyz_mm_to_normalised_uvd", "INTRINSICS", "register",
       "DatasetSpec"]


def _module_name(path: pathlib.Path) -> str:
    parts = ("vl4pose_jax", "data") + path.relative_to(DATA).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict:
    return {_module_name(p): p for p in sorted(DATA.rglob("*.py"))}


def _imported(node, modules) -> list:
    """The data modules an import statement loads: `from package import module` loads the
    module (the package is its parent, already being imported), `from module import name` the
    module."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in modules]
    base = node.module or ""
    out = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
    if base in modules and len(out) < len(node.names):
        out.append(base)
    return out


def test_public_api():
    missing = [name for name in API if not hasattr(data, name)]
    assert not missing
    assert callable(data.spec) and data.spec("lsp").kind == "human"


def test_no_import_cycle_between_data_modules():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        graph[name] = {m for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
                       for m in _imported(node, modules) if m != name}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles
    # A package's __init__ only gathers its modules; the leaf imports nothing of the package.
    assert graph["vl4pose_jax.data.spec"] == set()


def test_functions_import_only_optional_third_party_modules():
    allowed = {"PIL", "scipy", "jax"}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import):
                        roots = {a.name.split(".")[0] for a in inner.names}
                    elif isinstance(inner, ast.ImportFrom):
                        roots = {(inner.module or "").split(".")[0]}
                    else:
                        continue
                    assert roots <= allowed, (name, node.name, roots)
