"""Imports point downwards only: cli, serve > train, evaluate, infer > data, methods, models, domains > config > utils."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "src" / "tunelab"
RANK = {"utils": 0, "config": 1, "data": 2, "methods": 2, "models": 2, "domains": 2,
        "train": 3, "evaluate": 3, "infer": 3, "cli": 4, "serve": 4}
# Same-rank imports allowed where one part is built from another's schema, never the reverse.
ALLOWED_SIDEWAYS = {("domains", "data"), ("methods", "models"), ("evaluate", "infer"), ("train", "evaluate"), ("train", "infer"), ("cli", "serve")}


def imports_of(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tunelab."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("tunelab.")}
    return out


def test_every_package_has_a_rank():
    pkgs = {p.name for p in PKG.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert pkgs <= set(RANK), f"give {pkgs - set(RANK)} a layer in this test"


def test_imports_point_downwards():
    bad = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).parts
        if len(rel) < 2:
            continue
        layer = rel[0]
        for dep in imports_of(path):
            if dep == layer or dep not in RANK:
                continue
            if RANK[dep] > RANK[layer] or (RANK[dep] == RANK[layer] and (layer, dep) not in ALLOWED_SIDEWAYS):
                bad.append(f"{path.relative_to(PKG)} imports tunelab.{dep}")
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def module_imports(path: Path) -> set[str]:
    """tunelab modules a module imports, at its top or inside its functions (a deferred import that closes a
    circle only hides it)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tunelab"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # `from pkg import module`
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("tunelab")}
    return out


def test_no_import_circle_between_modules():
    modules = {module_name(p): p for p in PKG.rglob("*.py")}
    graph = {m: {d for d in module_imports(p) if d in modules and d != m} for m, p in modules.items()}
    for m in list(graph):  # importing a.b.c runs a and a.b first; a module's own packages are already running
        graph[m] |= {".".join(d.split(".")[:i]) for d in set(graph[m]) for i in range(2, d.count(".") + 1)}
        graph[m] = {d for d in graph[m] if d != m and not m.startswith(d + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (cycle := visit(d)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            raise AssertionError("import circle: " + " -> ".join(cycle))
