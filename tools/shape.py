"""Report the size limits the code keeps (docs/architecture.md) for a tree of Python files.

usage: python3 tools/shape.py [PATH ...]   (default: src/xpevents)

Prints modules over 400 lines, classes over 350 lines and functions over 60 lines of
code (a function's lines without its docstring, blank lines and comment-only lines),
then a summary. Exit status 1 when anything is over.
"""

import ast
import sys
from pathlib import Path

MODULE, CLASS, FUNCTION = 400, 350, 60


def _is_docstring(node: ast.stmt) -> bool:
    value = getattr(node, "value", None)
    return (
        isinstance(node, ast.Expr)
        and isinstance(value, ast.Constant)
        and isinstance(value.value, str)
    )


def code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    """Lines of a function without its docstring, blank lines and comment-only lines."""
    body = node.body
    skip: set[int] = set()
    if body and _is_docstring(body[0]):
        skip = set(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    count = 0
    for number in range(node.lineno, (node.end_lineno or node.lineno) + 1):
        if number in skip:
            continue
        text = lines[number - 1].strip()
        if not text or text.startswith("#"):
            continue
        count += 1
    return count


def main() -> int:
    roots = [Path(p) for p in sys.argv[1:]] or [Path("src/xpevents")]
    files = sorted({f for r in roots for f in ([r] if r.is_file() else r.rglob("*.py"))})
    over = 0
    biggest_fn = (0, "")
    biggest_cls = (0, "")
    biggest_mod = (0, "")
    for path in files:
        text = path.read_text()
        lines = text.splitlines()
        n = len(lines)
        biggest_mod = max(biggest_mod, (n, str(path)))
        if n > MODULE:
            print(f"module   {n:5d}  {path}")
            over += 1
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                biggest_cls = max(biggest_cls, (size, f"{path}:{node.lineno} {node.name}"))
                if size > CLASS:
                    print(f"class    {size:5d}  {path}:{node.lineno} {node.name}")
                    over += 1
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = code_lines(node, lines)
                biggest_fn = max(biggest_fn, (size, f"{path}:{node.lineno} {node.name}"))
                if size > FUNCTION:
                    print(f"function {size:5d}  {path}:{node.lineno} {node.name}")
                    over += 1
    print(
        f"-- {len(files)} files; largest module {biggest_mod[0]} ({biggest_mod[1]}); "
        f"largest class {biggest_cls[0]} ({biggest_cls[1]}); longest function "
        f"{biggest_fn[0]} code lines ({biggest_fn[1]}); {over} over the limits"
    )
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
