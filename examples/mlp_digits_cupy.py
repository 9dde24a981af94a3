"""The digits MLP of ``mlp_digits.py`` on the GPU, with CuPy.

This is ``python examples/mlp_digits.py --backend cupy``, under a name of its own. Nothing
in the model or the training loop changes: the digits and the weights are created as CuPy
arrays on the current CUDA device, the layers compute with whatever namespace their arrays
have (``array_api_compat.array_namespace``), and portopt's AdamW, OneCycleLR,
``clip_grad_norm_``, AveragedModel, SWALR and ``update_bn`` work on the CuPy arrays where
they are. The losses and gradient norms stay on the device until the end of the run, so
the GPU is not made to wait after every step.

Where CuPy or a CUDA device is missing, it says which and how to get it, and exits with
status 0: there is nothing wrong with the example, only nothing to run it on.

Run it with::

    python examples/mlp_digits_cupy.py                  # the options of mlp_digits.py
    python examples/mlp_digits_cupy.py --check-torch    # and compare with torch.optim

It needs CuPy (``pip install cupy-cuda12x`` for CUDA 12, or ``"portopt[cupy]"``), an NVIDIA
GPU, and scikit-learn and matplotlib (``pip install "portopt[examples]"``).
"""

from __future__ import annotations

import sys

from mlp_digits import main  # examples/mlp_digits.py, next to this file

if __name__ == "__main__":
    raise SystemExit(main(["--backend", "cupy", *sys.argv[1:]]))
