"""The MIUB depth profile: per-module figures averaged by layer index, plotted and tabulated."""

import json
import math

import pytest

from orchestrator.analysis import depth


def _row(rank, seed, q, v):
    layers = {f"model.layers.{i}.self_attn.q_proj": x for i, x in enumerate(q)}
    layers.update({f"model.layers.{i}.self_attn.v_proj": x for i, x in enumerate(v)})
    return {"rank": rank, "seed": seed, "miub_layers": list(layers.items())}  # pyarrow's map form


ROWS = [_row(2, 0, [0.60, 0.62], [0.50, 0.55]), _row(2, 1, [0.64, 0.62], [0.52, 0.57]),
        _row(8, 0, [0.58, 0.59], [0.45, math.nan])]


def test_layer_position_reads_the_index_and_module_kind():
    assert depth.layer_position("model.layers.11.mlp.down_proj") == (11, "down_proj")
    assert depth.layer_position("transformer.h.0.attn.c_attn") == (0, "c_attn")
    assert depth.layer_position("lm_head") is None


def test_profile_means_and_sds_over_seeds_per_group_kind_and_depth():
    profile = depth.depth_profile(ROWS, by=("rank",))
    cell = {(r["group"]["rank"], r["module"], r["depth"]): r for r in profile}
    assert cell[(2, "q_proj", 0)]["mean"] == pytest.approx(0.62)
    assert cell[(2, "q_proj", 0)]["sd"] == pytest.approx(math.sqrt(0.0008))
    assert cell[(2, "v_proj", 1)]["n"] == 2
    assert cell[(8, "q_proj", 1)]["sd"] is None  # one seed
    assert (8, "v_proj", 1) not in cell  # NaN left out
    assert len(profile) == 7


def test_write_gives_a_png_json_and_a_table(tmp_path):
    lines = depth.write(ROWS, tmp_path, by=("rank",))
    assert (tmp_path / "depth_miub.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads((tmp_path / "depth_miub.json").read_text())) == 7
    table = "\n".join(lines)
    assert "| rank=2 q_proj | 0.6200 ± 0.0283 | 0.6200 ± 0.0000 |" in table
    assert depth.write([{"miub_layers": None}], tmp_path / "none") == []
