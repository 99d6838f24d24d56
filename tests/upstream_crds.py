"""Workload CRDs for the integration tests from their operators' own Go modules, where the Go module proxy
serves them, so the tests' objects meet the real schemas (required fields, pruning of unknown ones).

Each module is fetched once with `go mod download -json module@version` into a throw-away module cache; the
CRD files are copied to ~/.cache/kaisched/crds/<module>@<version>/ (`KAISCHED_CRD_CACHE` overrides the
folder) and read from there afterwards. A CRD whose module cannot be fetched (no `go`, no network, or a
module the proxy does not serve) falls back to the minimal definition in tests/integration/crds, and the
reason is kept so a test can say so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MINIMAL_CRDS = Path(__file__).parent / "integration" / "crds"
FETCH_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class Upstream:
    """One operator module and the CRD files (paths inside the module) the tests take from it."""

    module: str
    version: str
    files: tuple[str, ...]


# the versions, pinned here only
UPSTREAM = (
    Upstream("github.com/ray-project/kuberay/ray-operator", "v1.5.0", ("config/crd/bases/ray.io_rayclusters.yaml",)),
    Upstream("github.com/kubeflow/training-operator", "v1.8.1", ("manifests/base/crds/kubeflow.org_pytorchjobs.yaml",)),
    # the proxy lists no version of these two (403 on @v/list) but serves exact versions
    Upstream("sigs.k8s.io/jobset", "v0.10.1", ("config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml",)),
    Upstream("sigs.k8s.io/lws", "v0.7.0", ("config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml",)),
)
# CRDs whose operator module the Go module proxy does not serve (its answer: 403, "not available", for the
# module's list and for every exact version tried: v0.4.1, v0.5.0 of deploy/cloud/operator, v0.7.0 of deploy/operator)
NOT_SERVED = {
    "dynamographdeployments.nvidia.com": "the Dynamo operator",
}


def cache_root() -> Path:
    override = os.environ.get("KAISCHED_CRD_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "kaisched" / "crds"


def fetch(up: Upstream) -> Path | str:
    """The folder holding `up`'s CRD files (fetched now if not cached), or why they could not be had."""
    target = cache_root() / f"{up.module}@{up.version}"
    if all((target / Path(f).name).is_file() for f in up.files):
        return target
    go = shutil.which("go")
    if go is None:
        return f"{up.module}@{up.version}: no go command to fetch it with"
    with tempfile.TemporaryDirectory(prefix="kaisched-crds-", ignore_cleanup_errors=True) as tmp:
        env = {**os.environ, "GOMODCACHE": f"{tmp}/mod", "GOFLAGS": "-mod=mod", "GOWORK": "off"}
        try:
            run = subprocess.run(
                [go, "mod", "download", "-json", f"{up.module}@{up.version}"],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                timeout=FETCH_TIMEOUT_S,
            )
            info: dict[str, Any] = json.loads(run.stdout) if run.stdout.strip() else {}
            if run.returncode != 0 or "Dir" not in info:
                why = info.get("Error") or run.stderr.strip()[-300:] or f"exit {run.returncode}"
                return f"{up.module}@{up.version}: go mod download failed: {why}"
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=_made(target.parent)))
            for f in up.files:
                src = Path(info["Dir"]) / f
                if not src.is_file():
                    shutil.rmtree(staging, ignore_errors=True)
                    return f"{up.module}@{up.version}: the module has no {f}"
                shutil.copyfile(src, staging / src.name)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)  # whole, or not at all: a concurrent run sees either
        except subprocess.TimeoutExpired:
            return f"{up.module}@{up.version}: go mod download took over {FETCH_TIMEOUT_S:.0f}s"
        finally:  # the module cache is read-only: let go remove it
            subprocess.run([go, "clean", "-modcache"], cwd=tmp, env=env, capture_output=True, timeout=120)
    return target


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True, slots=True)
class CrdSet:
    folder: Path  # one YAML file per CRD, for tests.kubecluster.apply_crds
    upstream: dict[str, str]  # CRD name -> module@version it came from
    fallbacks: dict[str, str]  # CRD name -> why the minimal definition is used


def _crd_name(file: str) -> str:
    group, _, plural = Path(file).stem.partition("_")  # controller-gen's file name: <group>_<plural>.yaml
    return f"{plural}.{group}"


def workload_crds(out: Path) -> CrdSet:
    """Writes into `out` every workload CRD of tests/integration/crds, each replaced by its upstream
    definition (copied as it is) where that could be fetched."""
    upstream: dict[str, tuple[Path, str]] = {}
    failures: dict[str, str] = {}
    for up in UPSTREAM:
        got = fetch(up)
        for f in up.files:
            if isinstance(got, str):
                failures[_crd_name(f)] = got
            else:
                upstream[_crd_name(f)] = (got / Path(f).name, f"{up.module}@{up.version}")
    out.mkdir(parents=True, exist_ok=True)
    used: dict[str, str] = {}
    fallbacks: dict[str, str] = {}
    for path in sorted(MINIMAL_CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            if name in upstream:
                source, used[name] = upstream[name]
                shutil.copyfile(source, out / f"{name}.yaml")
                continue
            served = NOT_SERVED.get(name)
            fallbacks[name] = (
                f"{served} is not served by the Go module proxy"
                if served
                else failures.get(name, "no upstream source pinned in tests/upstream_crds.py")
            )
            (out / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return CrdSet(out, used, fallbacks)
