"""CSV import speed (`python -m bench.intake [--rows N]`), on SQLite, printed as a table.

One generated file of N leads (1,000,000 by default: ten columns, about 110 MB, with the dirt of
real lists — 0.5 % malformed addresses, 1 % rows repeating an earlier lead in other case, consent
columns) is imported by `flowbuilder import` into an empty store, against a reference that does
the least any importer must: Python's csv module reading the same file and one raw `executemany`
inserting the same rows (lower-cased email, attributes as JSON) into the same `leads` table of an
empty store, with no checks, no typing, no merging and no consent records.

Memory must not grow with the file: the import runs in a child process of its own, and its peak
resident size is printed beside the same import of a file a tenth the size.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.table import Row, print_rows

HEADER = [
    "Email",
    "First Name",
    "Last Name",
    "Company",
    "industry",
    "employees",
    "timezone",
    "consent",
    "consent_date",
    "city",
]
FIRST = ["Ann", "Bob", "Cy", "Dee", "Eve", "Min-jun", "Seo-yeon", "지훈", "서연", "Jack"]
LAST = ["Kim", "Lee", "Park", "Choi", "Smith", "Jones", "정", "강", "Müller", "O'Neil"]
INDUSTRIES = ["saas", "fintech", "commerce", "manufacturing", "education"]
ZONES = ["Asia/Seoul", "Europe/Berlin", "America/New_York", ""]
CITIES = ["Seoul", "Busan", "Berlin", "New York", "Pangyo, Seongnam", ""]


def generate(path: Path, rows: int, seed: int = 5) -> None:
    """A leads file with realistic dirt; the same seed gives the same bytes."""
    rng = random.Random(seed)
    domains = [f"company{i}.example.com" for i in range(5000)] + ["gmail.com", "naver.com"]
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(HEADER)
        for i in range(rows):
            roll = rng.random()
            if roll < 0.005:
                email = f"broken{i}.example.com"
            elif roll < 0.015 and i > 10:
                j = rng.randrange(i)
                email = f"Lead{j}.Name@{domains[j % len(domains)]}".upper()
            else:
                email = f"lead{i}.name@{domains[i % len(domains)]}"
            consent = rng.choice(["yes", "no", "", "", "yes"])
            out.writerow(
                [
                    email,
                    rng.choice(FIRST),
                    rng.choice(LAST),
                    f"Company {i % 5000}",
                    rng.choice(INDUSTRIES),
                    rng.randrange(1, 5000),
                    rng.choice(ZONES),
                    consent,
                    f"2025-{rng.randrange(1, 13):02d}-{rng.randrange(1, 28):02d}"
                    if consent
                    else "",
                    rng.choice(CITIES),
                ]
            )


def reference(path: Path, db: Path) -> float:
    """csv + executemany of the same rows into the same table; seconds."""
    _empty_store(db)
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
    start = time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        batch: list[tuple[object, ...]] = []
        sql = (
            "INSERT OR IGNORE INTO leads (email, attributes, timezone, account, stage, score, "
            "tags, consent, unsubscribed, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, NULL, 0, '[]', ?, 0, ?, ?)"
        )
        for cells in reader:
            email = cells[0].lower()
            attributes = json.dumps(dict(zip(header[1:], cells[1:], strict=False)))
            batch.append(
                (email, attributes, cells[6] or None, email.rpartition("@")[2], "unknown", now, now)
            )
            if len(batch) >= 1000:
                conn.executemany(sql, batch)
                batch.clear()
        conn.executemany(sql, batch)
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - start


def _empty_store(db: Path) -> None:
    from flowbuilder.store.db import open_store

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    open_store(f"sqlite:///{db}").dispose()


def imported(path: Path, db: Path) -> tuple[float, int, str]:
    """`flowbuilder import` in a child process: seconds, peak resident KiB, its summary line."""
    _empty_store(db)
    code = (
        "import resource, sys, time\n"
        "from pathlib import Path\n"
        "from flowbuilder.lead_import import import_csv\n"
        "from flowbuilder.store.db import open_store\n"
        "engine = open_store(sys.argv[2])\n"
        "start = time.perf_counter()\n"
        "r = import_csv(engine, Path(sys.argv[1]))\n"
        "seconds = time.perf_counter() - start\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(seconds, peak, f'{r.created} created, {r.merged} merged, {r.rejected} rejected, "
        "{r.consents} consents')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), f"sqlite:///{db}"],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, peak, summary = done.stdout.strip().split(" ", 2)
    return float(seconds), int(peak), summary


def rows(count: int = 1_000_000) -> list[Row]:
    with tempfile.TemporaryDirectory() as folder:
        small, big = Path(folder) / "small.csv", Path(folder) / "big.csv"
        generate(small, count // 10)
        generate(big, count)
        db = Path(folder) / "fb.db"
        _, small_peak, _ = imported(small, db)
        seconds, peak, summary = imported(big, db)
        ref = reference(big, Path(folder) / "ref.db")
        size_mb = big.stat().st_size / 1e6
    print(f"import of {count:,} rows ({size_mb:.0f} MB): {summary}", file=sys.stderr)
    print(
        f"peak memory: {peak / 1024:.0f} MiB for {count:,} rows, "
        f"{small_peak / 1024:.0f} MiB for {count // 10:,}",
        file=sys.stderr,
    )
    return [
        Row(
            f"CSV import, {count:,} rows (peak {peak / 1024:.0f} MiB; "
            f"{small_peak / 1024:.0f} MiB at {count // 10:,})",
            seconds / count,
            "csv module + raw executemany",
            ref / count,
            "≥ 0.2×",
            ref / seconds >= 0.2,
            per="rows",
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    print_rows(rows(args.rows), "CSV import")
