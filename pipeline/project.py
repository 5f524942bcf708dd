"""Finding the project (its params and trained model) from any folder, so analysts can score anywhere.

`stance score ~/Downloads/oped.html` works from any directory: the project is the first of
1. `--project DIR` (a folder holding `params.yaml`),
2. the `STANCE_PROJECT` environment variable,
3. the nearest folder, from the current one upwards, that holds `params.yaml`,
4. the project this package was installed from (an editable install of the repository).
The params' relative paths are then read relative to that project, not the current folder.
`--model DIR` scores with a model folder copied elsewhere (`model.joblib`, `model.json` and
`reference.npz`): the sha256 recorded in `model.json` travels with it and is checked before loading.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from pipeline.errors import StanceError
from pipeline.files import load_params

PARAMS_FILE = "params.yaml"
MODEL_FILES = ("model.joblib", "model.json")


def installed_project() -> Path:
    return Path(__file__).resolve().parent.parent


def find_params(project: Path | None = None, start: Path | None = None) -> Path:
    """The params file of the project, looked for in the documented order; one line when none."""
    tried = []
    if project is not None:
        candidate = Path(project).expanduser() / PARAMS_FILE
        if candidate.is_file():
            return candidate
        raise StanceError(f"--project {project}: no {PARAMS_FILE} there")
    if os.environ.get("STANCE_PROJECT"):
        candidate = Path(os.environ["STANCE_PROJECT"]).expanduser() / PARAMS_FILE
        if candidate.is_file():
            return candidate
        tried.append(f"STANCE_PROJECT={os.environ['STANCE_PROJECT']}")
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / PARAMS_FILE).is_file():
            return folder / PARAMS_FILE
    tried.append(f"{start} and its parents")
    candidate = installed_project() / PARAMS_FILE
    if candidate.is_file():
        return candidate
    tried.append(f"the installed package's folder {installed_project()}")
    raise StanceError(f"no stance project found (no {PARAMS_FILE} in {'; '.join(tried)}); "
                      "use --project DIR or set STANCE_PROJECT")


def rooted(params: dict, root: Path) -> dict:
    """A copy of `params` whose relative file paths are taken relative to `root`."""
    params = copy.deepcopy(params)

    def absolute(value):
        return str(value if Path(value).is_absolute() else root / value) if isinstance(value, str) else value

    params["paths"] = {key: absolute(value) for key, value in (params.get("paths") or {}).items()}
    embedding = params.get("embedding") or {}
    if embedding.get("export_dir"):
        embedding["export_dir"] = absolute(embedding["export_dir"])
    return params


def with_model_dir(params: dict, model_dir: Path) -> dict:
    """Params that load the model (and its reference set) from a copied model folder."""
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise StanceError(f"--model {model_dir}: not a folder (expected one holding {' and '.join(MODEL_FILES)})")
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise StanceError(f"--model {model_dir}: {', '.join(missing)} missing")
    params = copy.deepcopy(params)
    params["paths"] = {**params.get("paths", {}), "model": str(model_dir / "model.joblib"),
                       "model_meta": str(model_dir / "model.json"), "reference": str(model_dir / "reference.npz")}
    return params


def project_params(params_file: Path | None = None, project: Path | None = None, model_dir: Path | None = None) -> dict:
    """The settings for scoring: an explicit params file as given, else the found project's, rooted."""
    if params_file is not None:
        params = load_params(params_file)
        root = Path(params_file).resolve().parent
    else:
        found = find_params(project)
        params, root = load_params(found), found.parent
    params = rooted(params, root)
    if model_dir is not None:
        params = with_model_dir(params, model_dir)
    return params
