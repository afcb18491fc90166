"""One number per fact (issue 29): on the sim suite, the text report's layer table, the
verdict's sentence and the JSON come from the same values: the table's ratio is the one the
sentence says, and the JSON's latency and reference give it; no "-0%", no numbers run into
each other, no plateau before its jump."""

import json
import re

import pytest

import gpuwatch
from gpuwatch.renderers.text import TextRenderer
from tests.helpers import record_sim


@pytest.fixture(scope="module")
def suite(tmp_path_factory, t4_analysis, cause_traces):
    d = tmp_path_factory.mktemp("one")
    capped = record_sim(d / "capped.parquet", profile="capped", iters=300)
    return {"t4": t4_analysis, "capped": gpuwatch.analyze(capped),
            **{p: gpuwatch.analyze(t) for p, t in cause_traces.items()}}


def test_the_table_the_sentence_and_the_json_agree(suite):
    for name, a in suite.items():
        text = TextRenderer().render(a)
        d = json.loads(a.to_json())
        layers = {(r["engine"], r["condition"]): r for r in d["layers"]}
        for v in d["verdicts"]:
            if v["episode"] is not None or v["reference_ms"] is None:
                continue
            ratio = v["latency_ms"] / v["reference_ms"]
            lay = layers[(v["engine"], v["condition"])]
            assert lay["ratio_to_baseline"] == pytest.approx(ratio, rel=1e-9), (name, v)
            said = re.search(r"\((\d+\.\d\d)x\)", v["sentence"])
            assert said and said.group(1) == f"{ratio:.2f}", (name, v["sentence"])
            row = next(line for line in text.splitlines()
                       if line.startswith("   ") and f"  {v['condition']}  " in line
                       and line.rstrip().endswith(f"{lay['n_layers']}"))
            assert f"{ratio:.2f}x" in row, (name, row)
        assert "-0%" not in text, name
        # (a number running into the next: "359.9277.17x")
        assert not re.search(r"\d\.\d\d\d+\.\d\dx", text), name
        for r in a.layers.itertuples():
            if r.layered:
                assert r.stable_iter >= r.onset_iter, (name, r)
