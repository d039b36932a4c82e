"""Prometheus text exposition of the models' statistics (``GET /metrics``).

A small writer of our own rather than ``prometheus_client``: the statistics are already kept
per model (``ModelStats``), and the hot path then pays for plain arithmetic only.

Families, each labelled with ``model`` and ``version``:

- ``neuropod_inference_requests_total{outcome="success"|"failure"}``: requests that reached a model;
- ``neuropod_inference_count_total`` / ``neuropod_inference_exec_count_total``: inferences run;
- ``neuropod_inference_request_duration_seconds``: histogram of whole requests;
- ``neuropod_inference_queue_duration_seconds``: histogram of the wait for a free model slot;
- ``neuropod_inference_compute_duration_seconds``: histogram of the model's ``infer``;
- ``neuropod_model_ready``: 1 for a model that is loaded and ready, else 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from neuropod.protocol.infer import VERSION
from neuropod.serving.stats import Histogram, ModelStats

#: The content type of the exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HISTOGRAMS = (
    ("neuropod_inference_request_duration_seconds", "request_latency", "Whole inference requests."),
    ("neuropod_inference_queue_duration_seconds", "queue_latency", "Wait for a free slot of the model."),
    ("neuropod_inference_compute_duration_seconds", "compute_latency", "The model's infer call."),
)


def render(stats: Iterable[ModelStats], ready: Mapping[str, bool]) -> str:
    """The exposition text of every model's statistics.

    Args:
        stats: the statistics of the models that have any.
        ready: every known model's name -> whether it is ready.

    Returns:
        The ``/metrics`` body.
    """
    stats = list(stats)
    for s in stats:
        s.fold()
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("neuropod_model_ready", "gauge", "Whether the model is loaded and ready (1) or not (0).")
    for name, is_ready in sorted(ready.items()):
        lines.append(f"neuropod_model_ready{{{_labels(name)}}} {int(is_ready)}")
    family("neuropod_inference_requests_total", "counter", "Inference requests that reached a model.")
    for s in stats:
        lines.append(
            f'neuropod_inference_requests_total{{{_labels(s.name)},outcome="success"}} {s.success.count}'
        )
        lines.append(
            f'neuropod_inference_requests_total{{{_labels(s.name)},outcome="failure"}} {s.fail.count}'
        )
    family("neuropod_inference_count_total", "counter", "Successful inferences.")
    for s in stats:
        lines.append(f"neuropod_inference_count_total{{{_labels(s.name)}}} {s.inference_count}")
    family("neuropod_inference_exec_count_total", "counter", "Calls of the model's infer.")
    for s in stats:
        lines.append(f"neuropod_inference_exec_count_total{{{_labels(s.name)}}} {s.execution_count}")
    for metric, attribute, help_text in _HISTOGRAMS:
        family(metric, "histogram", help_text)
        for s in stats:
            histogram: Histogram = getattr(s, attribute)
            labels = _labels(s.name)
            for bound, count in histogram.cumulative():
                lines.append(f'{metric}_bucket{{{labels},le="{bound}"}} {count}')
            lines.append(f"{metric}_sum{{{labels}}} {histogram.total!r}")
            lines.append(f"{metric}_count{{{labels}}} {histogram.count}")
    return "\n".join(lines) + "\n"


def _labels(model: str) -> str:
    escaped = model.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'model="{escaped}",version="{VERSION}"'
