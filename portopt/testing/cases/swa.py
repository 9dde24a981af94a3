"""Conformance cases of swa_utils: AveragedModel with every averaging rule, with and
without buffers, and update_bn after it (see ``portopt/testing/_swa.py``)."""

from __future__ import annotations

from .._swa import SwaCase

SWA_CASES: list[SwaCase] = [
    SwaCase("swa"),                          # the default rule (per tensor on the CPU)
    SwaCase("swa-avg-fn", average="swa-fn"),
    SwaCase("ema-avg-fn", average="ema-fn"),
    SwaCase("swa-multi", average="swa-multi"),  # torch's float32-rounded 1/(n+1) weight
    SwaCase("ema-multi", average="ema-multi"),
    SwaCase("custom-avg-fn", average="custom"),
    SwaCase("swa-buffers", use_buffers=True),  # integer num_batches_tracked averaged too
    SwaCase("ema-buffers", average="ema-fn", use_buffers=True),
    SwaCase("ema-multi-buffers", average="ema-multi", use_buffers=True),
    SwaCase("swa-multi-buffers", average="swa-multi", use_buffers=True),  # torch raises
    SwaCase("swa", update_bn="tuples"),
    SwaCase("swa-arrays", update_bn="arrays"),
    SwaCase("ema", average="ema-fn", update_bn="tuples"),
]
