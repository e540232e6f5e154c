"""No function in mmlt/ has a body over 60 lines (issue 28): a longer one is
split into helpers with one job each."""
import ast
import os.path as osp
from pathlib import Path

MMLT = Path(__file__).resolve().parents[2] / 'mmlt'
MAX_BODY_LINES = 60

def body_lines(function: ast.AST) -> int:
    """Lines from the first statement after the docstring to the end."""
    body = function.body
    if (isinstance(body[0], ast.Expr) and isinstance(body[0].value,
                                                     ast.Constant)
            and isinstance(body[0].value.value, str)):
        body = body[1:]
    if not body:
        return 0
    return body[-1].end_lineno - body[0].lineno + 1


def functions(tree: ast.AST, prefix: str = ''):
    """``(qualified name, node)`` of every function, nested ones too."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = prefix + node.name
            yield name, node
            yield from functions(node, name + '.')
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, prefix + node.name + '.')
        else:
            yield from functions(node, prefix)


def long_functions():
    for path in sorted(MMLT.rglob('*.py')):
        relative = osp.relpath(path, MMLT).replace(osp.sep, '/')
        tree = ast.parse(path.read_text(encoding='utf-8'), str(path))
        for name, node in functions(tree):
            lines = body_lines(node)
            if lines > MAX_BODY_LINES:
                yield relative, name, lines


def test_body_lines_skip_the_docstring():
    source = 'def f():\n    """Doc\n\n    string."""\n    a = 1\n\n    ' \
        'return a\n'
    (_, node), = functions(ast.parse(source))
    assert body_lines(node) == 3


def test_nested_functions_and_methods_are_named_and_measured():
    source = ('class A:\n    def f(self):\n        def g():\n'
              '            pass\n        return g\n')
    names = [name for name, _ in functions(ast.parse(source))]
    assert names == ['A.f', 'A.f.g']


def test_no_function_body_over_60_lines():
    assert (MMLT / '__init__.py').exists(), MMLT
    too_long = list(long_functions())
    assert not too_long, (
        f'function bodies over {MAX_BODY_LINES} lines (split them into '
        f'helpers with one job each): {too_long}')

