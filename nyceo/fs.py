"""The one filesystem factory: fsspec URLs + ``storage_options`` from the configuration.

``configure(config)`` (called by ``load_config``, so in every process that loads a configuration:
the flow, dask workers, the CLI) registers ``run.storage_options`` — and ``mosaic.storage_options``
for ``mosaic.output_root`` — as fsspec's defaults for their protocols. Every read and write of every
stage (chip index, stacks and block records, prediction stores, COGs, STAC, summaries, locks) goes
through ``fsspec.core.url_to_fs`` / zarr's fsspec store and therefore gets them; :func:`filesystem`
is the explicit form. One endpoint per protocol and process: an output root and a mosaic root on two
different S3 endpoints would need two processes.
"""

from __future__ import annotations

from typing import Any

import fsspec
import fsspec.config

from nyceo.config import PipelineConfig
from nyceo.io import is_remote


def _protocol(url: str) -> str:
    return url.split("://", 1)[0]


def configure(config: PipelineConfig) -> None:
    """Register the configured storage options as fsspec defaults for the output roots' protocols."""
    pairs = [(config.run.output_root, config.run.storage_options)]
    if config.mosaic.output_root:
        pairs.append((config.mosaic.output_root, config.mosaic.storage_options or config.run.storage_options))
    for root, options in pairs:
        if is_remote(root) and options:
            proto = _protocol(root)
            fsspec.config.conf[proto] = {**fsspec.config.conf.get(proto, {}), **options}
            if proto == "s3":  # zarr opens s3 asynchronously; s3fs reads the same defaults
                fsspec.config.conf.setdefault("s3", {}).update(options)


def storage_options(config: PipelineConfig, url: str) -> dict[str, Any]:
    if not is_remote(url):
        return {}
    if config.mosaic.output_root and url.startswith(config.mosaic.output_root):
        return dict(config.mosaic.storage_options or config.run.storage_options)
    return dict(config.run.storage_options)


def filesystem(config: PipelineConfig, url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path) for ``url`` with the configured options."""
    return fsspec.core.url_to_fs(url, **storage_options(config, url))
