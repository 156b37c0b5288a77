"""What a sweep came to, read from the store after the run, and the exit status it means.

- 0: every trial completed, or was stopped early by the scheduler;
- 1: some trials errored or diverged (one line names them and where their logs are);
- 130: the run was interrupted (a trial still ``running``, or fewer trials than planned);
  the message gives the exact ``lorasweep run ... --resume`` command.

Bad input (exit 2) never gets this far. The store is the record: what it says after the run
is what a user sees with ``lorasweep query --latest``, so the exit status cannot disagree
with it.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


@dataclass
class Outcome:
    planned: int
    statuses: dict[str, str] = field(default_factory=dict)  # trial_id -> latest row's status
    reasons: dict[str, str] = field(default_factory=dict)  # trial_id -> error or stop reason

    @property
    def failed(self) -> list[str]:
        return sorted(t for t, s in self.statuses.items() if s in ("error", "diverged"))

    @property
    def interrupted(self) -> bool:
        return "running" in self.statuses.values() or len(self.statuses) < self.planned

    def exit_status(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failed else EXIT_OK

    def failure_line(self, experiment_dir: str) -> str:
        """One line: how many failed, each with its status and reason, and where the logs are."""
        parts = [f"{t} {self.statuses[t]} ({self.reasons.get(t) or 'no message'})" for t in self.failed]
        return (f"{len(self.failed)} of {len(self.statuses)} trials failed: {'; '.join(parts)}; "
                f"logs: {experiment_dir}/trial_<id>/ (error.txt for errors)")


def planned_trials(spec) -> int:
    """How many trials a complete run of ``spec`` has."""
    from orchestrator.search.rules import replicate_seeds
    from orchestrator.spec.trials import expand_grid

    if spec.search.algorithm == "grid":
        return len(expand_grid(spec))
    seeds = replicate_seeds(spec)
    return spec.search.num_samples * (len(seeds) if seeds else 1)


def read_outcome(spec) -> Outcome:
    """Each trial's latest status in the store, against the number of trials planned."""
    import pyarrow.compute as pc

    from orchestrator.store import final_rows, read_results

    outcome = Outcome(planned=planned_trials(spec))
    try:
        table = read_results(spec.results.path, filter=pc.field("experiment") == spec.name)
    except FileNotFoundError:
        return outcome
    latest = final_rows(table)
    names = set(latest.column_names)
    for row in latest.select([c for c in ("trial_id", "status", "error", "stop_reason") if c in names]).to_pylist():
        outcome.statuses[row["trial_id"]] = row["status"]
        outcome.reasons[row["trial_id"]] = row.get("error") or row.get("stop_reason") or ""
    return outcome


def resume_command(args) -> str:
    """The exact command that continues this run."""
    words = ["lorasweep", "run", args.spec]
    for override in args.overrides:
        words += ["--set", override]
    if args.address:
        words += ["--address", args.address]
    if args.num_cpus is not None:
        words += ["--num-cpus", str(args.num_cpus)]
    return shlex.join(words + ["--resume"])
