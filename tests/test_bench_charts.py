"""The charts of the bench scripts (``bench/svg_chart.py``): well-formed SVG, one bar per value."""

import sys
import xml.dom.minidom
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from svg_chart import Panel, write_svg


def test_a_chart_is_well_formed_svg_with_a_labelled_bar_per_value(tmp_path):
    panels = [
        Panel("us per call", ["torchscript", "onnx <&>"], {"raw": [7.5, 6.1], "neuropod": [11.4, None]}),
        Panel("ms per call", ["torchscript"], {"raw": [180.0], "neuropod": [0.5]}, log=True),
    ]
    path = write_svg(tmp_path / "chart.svg", "overhead", panels)
    document = xml.dom.minidom.parse(str(path))
    bars = [rect for rect in document.getElementsByTagName("rect") if rect.getElementsByTagName("title")]
    titles = [bar.getElementsByTagName("title")[0].firstChild.data for bar in bars]
    assert titles == ["raw: 7.50", "neuropod: 11.4", "raw: 6.10", "raw: 180", "neuropod: 0.50"]
    widths = [float(bar.getAttribute("width")) for bar in bars]
    assert widths[1] > widths[0] > widths[2]  # linear: longer bars for larger values
    assert "onnx &lt;&amp;&gt;" in path.read_text()


def test_a_series_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="series 'raw' has 1 values for 2 rows"):
        Panel("us", ["a", "b"], {"raw": [1.0]})
