"""The Prometheus HTTP API's wire forms: parameters (query string or form body), times, durations, and
the JSON answers (``{"status": "success", "data": ...}`` / ``{"status": "error", "errorType", "error"}``)."""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from urllib.parse import parse_qs

import msgspec
import numpy as np
import promql_parser as pp

from tea.http import Request, Response
from tea.prom.engine import Labels, Scalar, Value, Vector
from tea.prom.plan import PromError

JSON = b"application/json"
FORM = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 1024 * 1024
MAX_POINTS = 11_000  # per series, as Prometheus refuses finer range queries
_MIN_TIME = -(2**62) // 1000  # (Prometheus's "min"/"max" times: far past and future, in µs here)
_MAX_TIME = 2**62 // 1000


class Params:
    """The request's parameters: query string and, for a form POST, its body (both, as Prometheus reads them)."""

    def __init__(self, values: dict[str, list[str]]) -> None:
        self.values = values

    @classmethod
    async def read(cls, request: Request) -> "Params":
        values = {k: list(v) for k, v in request.query.items()}
        if request.method == "POST":
            if request.media_type not in (FORM, ""):
                raise PromError(f"unsupported Content-Type {request.media_type!r}; send {FORM}")
            body = await request.body(MAX_FORM_BYTES)
            try:
                form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                raise PromError("the form body is not UTF-8") from None
            for key, items in form.items():
                values.setdefault(key, []).extend(items)
        return cls(values)

    def one(self, name: str) -> str | None:
        items = self.values.get(name)
        return items[-1] if items else None

    def all(self, name: str) -> list[str]:
        return self.values.get(name, [])

    def required(self, name: str) -> str:
        value = self.one(name)
        if value is None or value == "":
            raise PromError(f"invalid parameter \"{name}\": missing")
        return value

    def time(self, name: str, default_us: int) -> int:
        value = self.one(name)
        return default_us if value is None or value == "" else parse_time(value, name)


def parse_time(text: str, name: str) -> int:
    """Unix seconds (a float) or RFC 3339, to µs rounded to milliseconds as Prometheus keeps them."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not (math.isfinite(seconds) and _MIN_TIME <= seconds * 1e6 <= _MAX_TIME):
            raise PromError(f"invalid parameter \"{name}\": cannot parse \"{text}\" to a valid timestamp")
        return round(seconds * 1000) * 1000
    if text in ("min", "max"):  # (what the Go client sends for an open range)
        return _MIN_TIME if text == "min" else _MAX_TIME
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PromError(f"invalid parameter \"{name}\": cannot parse \"{text}\" to a valid timestamp") from None
    if parsed.tzinfo is None:
        raise PromError(f"invalid parameter \"{name}\": cannot parse \"{text}\" to a valid timestamp")
    return round(parsed.timestamp() * 1000) * 1000


def parse_step(text: str) -> int:
    """A step as seconds (float) or a Prometheus duration (``15s``, ``1m30s``), in µs; > 0."""
    try:
        seconds = float(text)
        us = round(seconds * 1000) * 1000 if math.isfinite(seconds) else 0
    except ValueError:
        try:
            us = pp.parse_duration(text) // timedelta(microseconds=1)
        except ValueError:
            raise PromError(f"invalid parameter \"step\": cannot parse \"{text}\" to a valid duration") from None
    if us <= 0:
        raise PromError("zero or negative query resolution step widths are not accepted. Try a positive integer")
    if us > _MAX_TIME:  # (past any range's width: the bucket arithmetic stays within 64 bits)
        raise PromError(f"invalid parameter \"step\": cannot parse \"{text}\" to a valid duration")
    return us


def steps_of(start_us: int, end_us: int, step_us: int) -> np.ndarray:
    if end_us < start_us:
        raise PromError("end timestamp must not be before start time")
    count = (end_us - start_us) // step_us + 1
    if count > MAX_POINTS:
        raise PromError(f"exceeded maximum resolution of {MAX_POINTS:,} points per timeseries. Try decreasing the "
                        "query resolution (?step=XX)")
    return start_us + np.arange(count, dtype=np.int64) * step_us


def sample_text(value: float) -> str:
    """A sample value as Prometheus writes it (strconv.FormatFloat(v, 'f', -1, 64)): the shortest digits
    that read back as the same float, never an exponent."""
    text = repr(value)
    if text.endswith(".0"):
        return text[:-2]
    if "e" in text or text in ("nan", "inf", "-inf"):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return np.format_float_positional(value, unique=True, trim="-")
    return text


def seconds(us: int) -> float:
    return round(us / 1000) / 1000


def _metric(labels: Labels) -> dict[str, str]:
    return dict(labels)


def instant_data(value: Value, at_us: int) -> dict[str, object]:
    t = seconds(at_us)
    if isinstance(value, Scalar):
        return {"resultType": "scalar", "result": [t, sample_text(float(value.values[0]))]}
    result = [{"metric": _metric(k), "value": [t, sample_text(float(v[0]))]}
              for k, v in sorted(value.series.items()) if not math.isnan(v[0])]
    return {"resultType": "vector", "result": result}


def texts(values: np.ndarray) -> list[str]:
    """``sample_text`` of every value at once: msgspec writes the shortest digits of all of them in one
    call, cut apart here (per value in Python only when an exponent or infinity shows up)."""
    if not len(values):
        return []
    if np.isinf(values).any():
        return [sample_text(v) for v in values.tolist()]
    text = msgspec.json.encode(values.tolist()).decode()[1:-1] + ","
    if "e" in text:
        return [sample_text(v) for v in values.tolist()]
    return text.replace(".0,", ",")[:-1].split(",")


def range_data(value: Value, steps: np.ndarray) -> dict[str, object]:
    times = np.round(steps / 1000) / 1000
    series = value.series.items() if isinstance(value, Vector) else [((), value.values)]
    result = []
    for labels, values in sorted(series):
        present = ~np.isnan(values)
        if present.any():
            points = list(zip(times[present].tolist(), texts(values[present])))  # (tuples: JSON arrays)
            result.append({"metric": _metric(labels), "values": points})
    return {"resultType": "matrix", "result": result}


def success(data: object) -> Response:
    return Response(msgspec.json.encode({"status": "success", "data": data}), 200, JSON)


def failure(message: str, kind: str = "bad_data", status: int = 400) -> Response:
    body = {"status": "error", "errorType": kind, "error": message}
    return Response(msgspec.json.encode(body), status, JSON)
