"""`import portopt` and finding a backend never import a framework (checked in a fresh process)."""

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def test_import_portopt_imports_neither_torch_nor_cupy():
    out = _run("""
        import sys
        import portopt, portopt.optim, portopt.functional, portopt.backends, portopt.testing
        import portopt.cli, portopt.checkpoint
        print(sorted(m for m in ("torch", "cupy", "array_api_strict") if m in sys.modules))
    """)
    assert out == "[]"


def test_stepping_numpy_params_imports_no_framework():
    out = _run("""
        import sys
        import numpy as np
        import portopt
        from portopt.backends import get_backend
        w = portopt.Parameter(np.zeros(3))
        opt = portopt.optim.Adam([w], lr=0.1)
        w.grad = np.ones(3)
        opt.step()
        get_backend(np.zeros(2))
        print(sorted(m for m in ("torch", "cupy", "array_api_strict") if m in sys.modules))
    """)
    assert out == "[]"


def test_unknown_array_type_does_not_import_frameworks():
    out = _run("""
        import sys
        from portopt.backends import get_backend
        class Fake: pass
        try:
            get_backend(Fake())
        except TypeError as exc:
            print(type(exc).__name__, "torch" in sys.modules, "cupy" in sys.modules)
    """)
    assert out == "TypeError False False"
