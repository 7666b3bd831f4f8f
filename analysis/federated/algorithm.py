"""The vantage6 algorithm: two site functions and one central function.

- ``site_summaries`` (one round): the site harmonises its own raw files with its own specs
  and returns statistics and aggregates, never a row of participant data
  (:mod:`analysis.federated.site`).
- ``site_likelihoods`` (each Newton round): the site's profile log-likelihood, gradient and
  Hessian of each mixed logistic model at the parameters the centre sends.
- ``central``: asks the sites, fits every model, and returns the results tables.

A site finds its data as a vantage6 *folder* database (``specs/`` and ``raw/``; the folder's
path in ``<LABEL>_DATABASE_URI``) and its disclosure thresholds in its own environment
(``IPD_MIN_CELL``, ``IPD_MIN_EVENTS``); with vantage6's MockAlgorithmClient both come from
the one-row station table the mock passes as ``mock_data``.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
from vantage6.algorithm.tools.decorators import algorithm_client

from analysis.errors import InputError
from analysis.federated.disclosure import SiteSettings
from analysis.federated.site import build_site, site_models

__all__ = ["site_summaries", "site_likelihoods", "central", "site_data"]

# A site's memory between rounds in one process (the mock runs every site in one process;
# on a real node each round is a new container and the site rebuilds its models).
_SITES: dict = {}


def site_data(func):
    """Give a site function its data folder, name and disclosure settings.

    On a vantage6 node: the first database the task requests (a folder database) and the
    node's environment. Under the MockAlgorithmClient: the station table passed as
    ``mock_data`` (the mock passes it to functions marked ``wrapped_in_data_decorator``)."""

    @functools.wraps(func)
    def wrapper(*args, mock_data=None, **kwargs):
        if mock_data is not None:
            row = mock_data[0].iloc[0]
            folder, name, settings = Path(row["folder"]), str(row["name"]), SiteSettings.from_row(row)
        else:
            label = os.environ["USER_REQUESTED_DATABASE_LABELS"].split(",")[0]
            folder = Path(os.environ[f"{label.upper()}_DATABASE_URI"])
            name = os.environ.get("IPD_SITE_NAME", folder.name)
            settings = SiteSettings.from_environment()
        return func(folder, name, settings, *args, **kwargs)

    wrapper.wrapped_in_data_decorator = True
    return wrapper


def _failure(name: str, exc: Exception) -> dict:
    """A site that cannot take part says why without quoting its data: the problem, file,
    trial, column and what was expected, never the values found."""
    if isinstance(exc, InputError):
        redacted = InputError(exc.problem, file=Path(exc.file).name if exc.file else None, trial=exc.trial,
                              column=exc.column, expected=exc.expected, hint=exc.hint)
        message = redacted.message()
    else:
        message = f"{type(exc).__name__} while analysing the site's data"
    return {"site": name, "ok": False, "error": message}


def _site(folder: Path, settings: SiteSettings, run: str):
    key = (run, str(folder.resolve()), settings)
    if key not in _SITES:
        for old in [k for k in _SITES if k[0] != run]:  # keep only the current run's sites
            del _SITES[old]
        site = build_site(folder, settings)
        _SITES[key] = (site, site_models(site))
    return _SITES[key]


@site_data
def site_summaries(folder: Path, name: str, settings: SiteSettings, run: str = "") -> dict:
    try:
        site, _ = _site(folder, settings, run)
    except Exception as exc:  # noqa: BLE001 (a site must answer, and never with a traceback of its data)
        return _failure(name, exc)
    return {"site": name, "ok": True, "settings": {"min_cell": settings.min_cell, "min_events": settings.min_events},
            **site.public()}


@site_data
def site_likelihoods(folder: Path, name: str, settings: SiteSettings, run: str = "", requests: dict | None = None):
    try:
        _, models = _site(folder, settings, run)
        out = {}
        for key, req in (requests or {}).items():
            if key in models:
                p = models[key].profile(np.asarray(req["phi"], float), bool(req["adaptive"]))
                out[key] = {"loglik": p.loglik, "grad": p.grad.tolist(), "hess": p.hess.tolist(),
                            "separated": p.separated}
    except Exception as exc:  # noqa: BLE001
        return _failure(name, exc)
    return {"site": name, "ok": True, "models": out}


def _size(obj) -> int:
    return len(json.dumps(obj, allow_nan=True).encode())


@algorithm_client
def central(client, organizations: list | None = None, run: str = "", max_rounds: int = 500) -> dict:
    """Ask every site, fit every model and return the results tables (JSON-ready)."""
    from analysis.federated.results import assemble  # the analyses are only needed here

    if organizations is None:
        organizations = [o["id"] for o in client.organization.list()]
    traffic: dict = {}

    def ask(method, kwargs, orgs):
        task = client.task.create(input_={"method": method, "kwargs": kwargs}, organizations=orgs,
                                  name=f"ipd-{method}", description="IPD meta-analysis: site statistics")
        results = client.wait_for_results(task_id=task["id"])
        sent = _size(kwargs)
        for r in results:
            t = traffic.setdefault(r["site"], {"bytes_sent": 0, "bytes_received": 0, "tasks": 0})
            t["bytes_sent"] += sent
            t["bytes_received"] += _size(r)
            t["tasks"] += 1
        return results

    summaries = ask("site_summaries", {"run": run}, organizations)
    ok = [r for r in summaries if r["ok"]]
    ok_orgs = [org for org, r in zip(organizations, summaries) if r["ok"]]

    def likelihoods(requests):
        answers = ask("site_likelihoods", {"run": run, "requests": requests}, ok_orgs)
        failed = [a for a in answers if not a["ok"]]
        if failed:
            raise RuntimeError("; ".join(f"site {a['site']}: {a['error']}" for a in failed))
        return [a["models"] for a in answers]

    tables, rounds = assemble(ok, likelihoods, max_rounds=max_rounds)
    failures = [{"site": r["site"], "error": r["error"]} for r in summaries if not r["ok"]]
    federation = {
        "complete": not failures, "failures": failures, "rounds": rounds,
        "sites": [{"site": r["site"], "trials": r.get("trial_ids", []), "ok": r["ok"],
                   "digest": r.get("digest"), "settings": r.get("settings"), **traffic.get(r["site"], {})}
                  for r in summaries],
    }
    return {"tables": {name: _table(df) for name, df in tables.items()}, "federation": federation}


def _table(df) -> dict:
    """A table as JSON: columns and rows of plain Python values, at full precision, with
    NaN and infinity kept (vantage6 serialises with Python's json, which keeps both; pandas'
    ``to_json`` would round to 15 digits and turn infinity into null)."""
    rows = [[v.item() if isinstance(v, np.generic) else v for v in row] for row in df.astype(object).to_numpy()]
    return {"columns": [str(c) for c in df.columns], "data": rows}
