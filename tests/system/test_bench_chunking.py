"""The chunking benchmark: full against chunked hypernetworks, measured one subprocess at a time."""

from __future__ import annotations

import json
from pathlib import Path

from bench.chunking import format_table, main, variant_config


def test_chunking_benchmark_measures_every_variant_against_the_full_hypernetwork(mirror: Path, tmp_path: Path,
                                                                                 monkeypatch) -> None:
    monkeypatch.setenv("HYPERMASK_DATA_MIRROR", str(mirror))
    out = tmp_path / "chunking.json"
    main(["--methods", "hnet", "--chunk-sizes", "0", "42000", "--repeats", "1", "--warmup", "1",
          "--threads", "1", "--device", "cpu", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["chunk_size"], r["task"]) for r in rows] == [(0, 0), (42000, 0), (0, 4), (42000, 4)]
    full, chunked = rows[0], rows[1]
    assert full["time_vs_full"] == 1.0 and full["parameters_vs_full"] == 1.0
    # HNET's published chunked hypernetwork is far smaller than one emitting every target weight at once
    assert chunked["hypernetwork_parameters"] < full["hypernetwork_parameters"] / 5
    assert chunked["parameters_vs_full"] < 0.2 and chunked["time_vs_full"] > 0 and chunked["peak_mb"] > 0
    assert all(r["threads"] == 1 and r["device"] == "cpu" for r in rows)
    assert "| hnet | 42000 | 0 |" in format_table(rows)
    assert variant_config("hnet", 0).chunk_embedding_size == 96  # only the chunk size differs
