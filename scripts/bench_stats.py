"""Aggregation shared by the benchmark reports (bench-node.sh, bench-gateway.sh).

Each configuration is measured in several rounds, interleaved with its baselines, so that a
change in machine load during the run affects every server alike. A configuration's result is
its median-throughput round (the whole wrk record of that round, so p50/p99 stay consistent
with the throughput), plus the spread of all rounds.
"""
def errors(run):
    """Socket errors plus non-2xx answers of one wrk run."""
    return run["err_connect"] + run["err_read"] + run["err_write"] + run["err_status"] + run["err_timeout"]


def median_runs(runs, keys):
    """Groups wrk runs by the fields in `keys`; returns {key tuple: median run}.

    The median run carries `rps_rounds` (every round's req/s, in order), `rps_min`, `rps_max`,
    and `errors_total` (summed over all rounds).
    """
    groups = {}
    for run in runs:
        groups.setdefault(tuple(run[k] for k in keys), []).append(run)
    out = {}
    for key, group in groups.items():
        ordered = sorted(group, key=lambda r: r["rps"])
        median = dict(ordered[(len(ordered) - 1) // 2])
        median["rps_rounds"] = [r["rps"] for r in group]
        median["rps_min"] = ordered[0]["rps"]
        median["rps_max"] = ordered[-1]["rps"]
        median["errors_total"] = sum(errors(r) for r in group)
        out[key] = median
    return out


def spread(run):
    """'min-max' of a median run's rounds, for the report."""
    return f"{run['rps_min']:,.0f}-{run['rps_max']:,.0f}"
