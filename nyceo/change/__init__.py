"""Change layers: month-over-month and year-over-year, gated by a measured noise floor.

Modules: ``codes`` (transition codes, colours), ``gate`` (per-pixel gating of two prediction
months), ``noise`` (null statistics and thresholds), ``null_model`` (measures the null with the
real model; imports torch lazily), ``persistence`` (provisional / confirmed / dropped),
``areas`` (km² per borough with expected false-change area), ``pairs`` (which months to compare),
``publish`` (COGs, quicklooks), ``stage`` (the run) and ``contract`` (STAGE).
"""
