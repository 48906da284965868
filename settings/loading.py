"""Reading the settings files and ``--set`` overrides into one validated :class:`Settings`.

The contract every stage follows:

* ``--settings DIR`` names a folder holding any of ``data.json``, ``model.json``, ``training.json``
  and ``upsampling.json``; a missing file means "all defaults". A folder named on the command line
  that does not exist is an error (a typo must not fall back to defaults in silence); without
  ``--settings``, ``./settings`` is read when it exists, else the built-in defaults.
* ``--set FILE.KEY=VALUE`` overrides one key (dotted for nested keys, ``data.splits.train=0.5``).
  The value is parsed as JSON when it parses (numbers, ``true``, ``null``, ``[1, 2]``), as a list
  when it holds commas (``training.speed=1.0,1.25``), and taken as a plain string otherwise, then
  validated with the rest. A misspelled key gets the closest real one suggested.
* Any problem is raised as :class:`SettingsError` whose message is one line naming the file (or the
  ``--set``), the field and the problem.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from pydantic import BaseModel, ValidationError

from .schema import SETTINGS_MODELS, Settings

DEFAULT_DIR = Path("settings")


class SettingsError(ValueError):
    """A settings file or override that cannot be used; the message is one line."""


def _scalar(text: str) -> object:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text


def parse_override(text: str) -> tuple[str, list[str], object]:
    """``"data.splits.train=0.5"`` -> ``("data", ["splits", "train"], 0.5)``; ``a=1,2`` -> ``[1, 2]``."""
    if "=" not in text:
        raise SettingsError(f"--set {text}: expected FILE.KEY=VALUE")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or parts[0] not in SETTINGS_MODELS or not all(parts):
        hint = difflib.get_close_matches(parts[0], list(SETTINGS_MODELS), n=1)
        raise SettingsError(
            f"--set {text}: key must start with one of {', '.join(SETTINGS_MODELS)} and name a field, as data.factor=4"
            + (f" (did you mean {hint[0]}.{'.'.join(parts[1:])}?)" if hint and len(parts) > 1 else "")
        )
    value = _scalar(raw)
    if isinstance(value, str) and "," in raw and not raw.lstrip().startswith(("[", "{", '"')):
        value = [_scalar(item.strip()) for item in raw.split(",")]
    return parts[0], parts[1:], value


def _read_json(path: Path) -> dict:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SettingsError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise SettingsError(f"{path}: JSON nested too deeply to be settings") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"{path}: cannot read settings file: {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(loaded, dict):
        raise SettingsError(f"{path}: expected a JSON object, got {type(loaded).__name__}")
    return loaded


def _field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys a model accepts at ``loc`` (the path of an unknown key, the key itself last)."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _format_errors(origin: str, name: str, model: type[BaseModel], error: ValidationError, overridden: set[str]) -> str:
    problems = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"])
        from_set = sorted(k for k in overridden if not field or k == field or k.startswith(field + ".") or field.startswith(k + "."))
        if field and from_set:
            # a check across several keys (hop against n_fft) names every --set that fed it
            where = "--set " + ", ".join(f"{name}.{k}" for k in (from_set if field not in from_set else [field]))
        elif field:
            where = f"{origin}: {name}.{field}"
        else:
            where = f"{origin}: {name}" + (f" (with --set {', '.join(f'{name}.{k}' for k in from_set)})" if from_set else "")
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(item["loc"][-1]), _field_names(model, item["loc"]), n=1)
            prefix = ".".join(str(p) for p in item["loc"][:-1])
            msg = "unknown key" + (f" (did you mean {name}.{prefix + '.' if prefix else ''}{close[0]}?)" if close else "")
        problems.append(f"{where}: {msg}")
    return "; ".join(problems)


def _settings_folder(settings_dir: str | Path | None) -> Path | None:
    """The folder to read, or None for built-in defaults only (see the module docstring)."""
    if settings_dir is None:
        return DEFAULT_DIR if DEFAULT_DIR.is_dir() else None
    folder = Path(settings_dir)
    if not folder.exists():
        raise SettingsError(f"{folder}: --settings folder does not exist (leave --settings out for the built-in defaults)")
    if not folder.is_dir():
        raise SettingsError(f"{folder}: --settings must be a folder holding data.json, model.json, ...")
    return folder


def load_settings(settings_dir: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Settings:
    """Read ``settings_dir/{data,model,training,upsampling}.json`` (missing files: defaults), apply
    ``--set`` overrides and validate. Raises :class:`SettingsError` with a one-line message."""
    folder = _settings_folder(settings_dir)
    raw: dict[str, dict] = {}
    origins: dict[str, str] = {}
    for name in SETTINGS_MODELS:
        path = folder / f"{name}.json" if folder is not None else None
        if path is not None and path.exists() and not path.is_file():
            raise SettingsError(f"{path}: not a file; a settings file must be a JSON file (or absent, for defaults)")
        present = path is not None and path.is_file()
        origins[name] = str(path) if present else f"{name}.json (built-in defaults)"
        raw[name] = _read_json(path) if present else {}

    overridden: dict[str, set[str]] = {name: set() for name in SETTINGS_MODELS}
    for text in overrides:
        name, keys, value = parse_override(text)
        node = raw[name]
        for k in keys[:-1]:
            child = node.get(k)
            if not isinstance(child, dict):
                child = {}
                node[k] = child
            node = child
        node[keys[-1]] = value
        overridden[name].add(".".join(keys))

    validated = {}
    for name, model in SETTINGS_MODELS.items():
        try:
            validated[name] = model.model_validate(raw[name])
        except ValidationError as e:
            raise SettingsError(_format_errors(origins[name], name, model, e, overridden[name])) from None
        except RecursionError:
            raise SettingsError(f"{origins[name]}: {name} settings nested too deeply") from None
    return Settings(**validated)


def write_default_settings(settings_dir: str | Path) -> list[Path]:
    """Write every settings file with its defaults (how ``settings/*.json`` in the repo are made)."""
    settings_dir = Path(settings_dir)
    settings_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in SETTINGS_MODELS.items():
        path = settings_dir / f"{name}.json"
        path.write_text(json.dumps(model().model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written
