"""Synthetic-data generator throughput, against the cost of writing the same rows.

    python bench/synth.py [--enterprises 1000000] [--persons 200000]

Baseline (same run, same stores, same StagedLoad): writing pre-built Arrow tables of the same
datasets and row counts. The ratio is generation overhead on top of pure write cost.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from catalog import load_catalog  # noqa: E402
from sandbox.data.stores import DataStores, StagedLoad  # noqa: E402
from sandbox.data.synth import synthesize  # noqa: E402


def _stores(folder: Path) -> DataStores:
    return DataStores.open(f"sqlite:///{folder}/lookup.sqlite", f"duckdb:///{folder}/scan.duckdb")


def _baseline(folder: Path, rows: dict[str, int], sample_folder: Path) -> float:
    """Write the same row counts by repeating one real 50k-row block per dataset."""
    catalog = load_catalog(ROOT / "policies")
    sample = _stores(sample_folder)
    blocks: dict[str, pa.Table] = {}
    with sample.scan.connect() as conn:
        raw = conn.connection.driver_connection
        for name, dataset in catalog.datasets.items():
            blocks[name] = raw.sql(f'SELECT * FROM "{dataset.table_name}" LIMIT 50000').to_arrow_table()
    sample.dispose()
    stores = _stores(folder)
    started = time.perf_counter()
    with StagedLoad(stores, list(catalog.datasets.values())) as load:
        for name, total in rows.items():
            block = blocks[name]
            left = total
            while left > 0 and block.num_rows:
                piece = block.slice(0, min(left, block.num_rows))
                load.write(name, piece)
                left -= piece.num_rows
    seconds = time.perf_counter() - started
    stores.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enterprises", type=int, default=1_000_000)
    parser.add_argument("--persons", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    catalog = load_catalog(ROOT / "policies")
    with tempfile.TemporaryDirectory() as synth_dir, tempfile.TemporaryDirectory() as base_dir:
        stores = _stores(Path(synth_dir))
        started = time.perf_counter()
        rows = synthesize(stores, catalog, enterprises=args.enterprises, persons=args.persons, seed=args.seed)
        synth_seconds = time.perf_counter() - started
        stores.dispose()
        total = sum(rows.values())
        print(
            f"generated {total:,} rows in {synth_seconds:.1f} s; measuring the write-only baseline…",
            flush=True,
        )
        base_seconds = _baseline(Path(base_dir), rows, Path(synth_dir))
    total = sum(rows.values())
    print(f"synthetic data: {args.enterprises:,} enterprises, {args.persons:,} persons, seed {args.seed}")
    for name, count in sorted(rows.items()):
        print(f"  {name:<24}{count:>12,} rows")
    print(f"  {'total':<24}{total:>12,} rows")
    print(f"generate + write   {synth_seconds:8.1f} s   {total / synth_seconds:>12,.0f} rows/s")
    print(f"write only (base)  {base_seconds:8.1f} s   {total / base_seconds:>12,.0f} rows/s")
    print(
        f"ratio              {synth_seconds / base_seconds:8.2f}x  (generation overhead over pure write cost)"
    )


if __name__ == "__main__":
    main()
