"""Generates the runs of W&B sweep configs with W&B's open-source sweep engine (`sweeps`).

Run with the sweeps environment's python (make_sweeps_env.sh), not the project's:
    python sweep_engine.py SWEEP.yaml ... > runs.json
Prints ``{path: [run parameters as the agent receives them: {key: {"value": v}}]}``: every
run of a grid, and ``--runs`` runs of a random or bayes search, each fed back as finished with
a made-up value of the sweep's metric so that bayes fits its model to earlier runs.
"""

import argparse
import json

import sweeps
import yaml

parser = argparse.ArgumentParser()
parser.add_argument("paths", nargs="+")
parser.add_argument("--runs", type=int, default=4, help="runs per random / bayes sweep")
parser.add_argument("--max-grid", type=int, default=100)
args = parser.parse_args()

out = {}
for path in args.paths:
    with open(path) as f:
        config = yaml.safe_load(f)
    limit = args.max_grid if config["method"] == "grid" else args.runs
    runs = []
    while len(runs) < limit:
        run = sweeps.next_run(config, runs, validate=True)
        if run is None:  # a grid is exhausted
            break
        value = 0.1 + 0.05 * len(runs)
        run.state = sweeps.RunState.finished
        if "metric" in config:
            run.summary_metrics = {config["metric"]["name"]: value}
            run.history = [{config["metric"]["name"]: value}]
        runs.append(run)
    out[path] = [run.config for run in runs]
print(json.dumps(out))
