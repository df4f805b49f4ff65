"""Many scans into one output folder: jobs, workers, resume, tables, DICOM SEG, endpoint.

Public entry points (also reachable as ``lesionquant.run_batch``):

* :func:`run_batch` - quantify every CT series under some inputs into ``OUT/``;
* :func:`write_tables` - rebuild ``OUT/results.csv`` / ``OUT/errors.csv`` from the results;
* :func:`compute_endpoint` - per-patient change from baseline, ``OUT/endpoint.csv``
  (:func:`endpoint_rows` computes the same rows from ``result.json`` records, without files);
* :func:`iter_results` - the ``result.json`` record of every completed scan of ``OUT``;
* :func:`expand_inputs` - the jobs (one per CT series) that some inputs hold, with their ids;
* :class:`ExecutorError` - the executor asked for (Dask: ``run_batch(..., client=...)``)
  cannot run the batch.

The output layout and every column are documented in ``docs/batch.md``.
"""

from __future__ import annotations

from lesionquant.batch._endpoint import compute_endpoint, endpoint_rows
from lesionquant.batch._executor import ExecutorError
from lesionquant.batch._jobs import Job, JobError, expand_inputs
from lesionquant.batch._pseudonym import SALT_ENV
from lesionquant.batch._runner import BatchSummary, run_batch
from lesionquant.batch._tables import iter_results, write_tables

__all__ = [
    "SALT_ENV",
    "BatchSummary",
    "ExecutorError",
    "Job",
    "JobError",
    "compute_endpoint",
    "endpoint_rows",
    "expand_inputs",
    "iter_results",
    "run_batch",
    "write_tables",
]
