"""Medians, ratios against the baselines of the same run, and the Markdown report."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

MB = 1e6
MIB = 1024 * 1024


@dataclass(frozen=True)
class Run:
    """One timed (or warm-up) run of one contender, with what was wrong with it."""

    section: str
    contender: str
    kind: str
    rep: int
    warmup: bool
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_kb: int
    server_cpu_s: float
    rc: int
    problems: list[str]
    argv: list[str]
    session: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Row:
    """The median of a contender's timed runs in one section."""

    section: str
    contender: str
    kind: str
    n: int
    wire_bytes: int
    runs: int
    failed: int
    wall_s: float
    wall_min: float
    wall_max: float
    rss_mib: float
    rss_max_mib: float
    cpu_s: float
    server_cpu_s: float
    problems: list[str] = field(default_factory=list)

    @property
    def msg_s(self) -> float:
        return self.n / self.wall_s if self.wall_s else float("nan")

    @property
    def mb_s(self) -> float:
        return self.wire_bytes / self.wall_s / MB if self.wall_s else float("nan")

    @property
    def valid(self) -> bool:
        """Whether the numbers count: every run of ours correct; a peer, one or more.

        A peer's failed run (getmail6 6.18 sometimes misses its delivery child's SIGCHLD
        and gives up after its timeout) is retried once, left out of the median, and
        reported.
        """
        ok = self.runs - self.failed
        return ok > 0 and (self.failed == 0 or self.kind == "peer")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(runs: list[Run], section: str, n: int, wire_bytes: int) -> list[Row]:
    rows = []
    names = list(dict.fromkeys(r.contender for r in runs if r.section == section))
    for name in names:
        timed = [r for r in runs if r.section == section and r.contender == name and not r.warmup]
        ok = [r for r in timed if r.ok]
        walls = [r.wall_s for r in ok]
        rss = [r.maxrss_kb / 1024 for r in ok]
        rows.append(
            Row(
                section=section,
                contender=name,
                kind=timed[0].kind if timed else "",
                n=n,
                wire_bytes=wire_bytes,
                runs=len(timed),
                failed=len(timed) - len(ok),
                wall_s=_median(walls),
                wall_min=min(walls, default=float("nan")),
                wall_max=max(walls, default=float("nan")),
                rss_mib=_median(rss),
                rss_max_mib=max(rss, default=float("nan")),
                cpu_s=_median([r.user_s + r.sys_s for r in ok]),
                server_cpu_s=_median([r.server_cpu_s for r in ok]),
                problems=sorted({p for r in timed for p in r.problems}),
            )
        )
    return rows


@dataclass(frozen=True)
class Target:
    """One goal of issue 6: ``value`` (a ratio, or MB) against ``limit``."""

    name: str
    value: float | None
    limit: float
    unit: str
    detail: str

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "not measured (a run failed its checks)"
        return "met" if self.value <= self.limit else "MISSED"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def ratio_target(
    name: str, rows: list[Row], ours: str, base: str, *, limit: float, detail: str
) -> Target | None:
    """``ours`` wall / ``base`` wall from the same section, or None if either was not run."""
    by_name = {r.contender: r for r in rows}
    if ours not in by_name or base not in by_name:
        return None
    a, b = by_name[ours], by_name[base]
    value = a.wall_s / b.wall_s if a.valid and b.valid else None
    return Target(name, value, limit, "x", detail)


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| contender | N | wall s, median (min-max) | msg/s | MB/s | peak RSS MiB | "
        "CPU s | Dovecot CPU s | runs ok |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = f"**{r.contender}**" if r.kind == "ours" else r.contender
        ok = f"{r.runs - r.failed}/{r.runs}"
        if r.failed:
            ok += " (a failed run was retried)" if r.valid else " **FAILED**"
        lines.append(
            f"| {name} | {r.n} | {r.wall_s:.2f} ({r.wall_min:.2f}-{r.wall_max:.2f}) | "
            f"{_rate(r.msg_s, r.n, '.0f')} | {_rate(r.mb_s, r.n, '.1f')} | {r.rss_mib:.0f} | "
            f"{r.cpu_s:.2f} | "
            f"{r.server_cpu_s:.2f} | {ok} |"
        )
    return lines


def _rate(value: float, n: int, fmt: str) -> str:
    return "-" if n == 0 else format(value, fmt)


def targets_table(targets: list[Target]) -> list[str]:
    lines = ["| target | measured | goal | verdict |", "|---|---|---|---|"]
    for t in targets:
        value = "-" if t.value is None else f"{t.value:.2f}{t.unit}"
        lines.append(f"| {t.name} ({t.detail}) | {value} | <= {t.limit:g}{t.unit} | {t.verdict} |")
    return lines


def problems(rows: list[Row]) -> list[str]:
    bad = [r for r in rows if r.problems]
    if not bad:
        return []
    lines = [
        "",
        "### Problems (a run with any of these counts as failed, and is not in a median)",
        "",
    ]
    for r in bad:
        lines += [f"- {r.section} / {r.contender}: {p}" for p in r.problems]
    return lines
