"""The dry-run view printed by `gameday plan`."""

from __future__ import annotations

from chaoslib_ext.drivers.base import Driver
from chaoslib_ext.plan.blast import blast_radius
from chaoslib_ext.plan.make import Plan
from chaoslib_ext.spec.model import Experiment
from chaoslib_ext.units import format_clock, format_duration, format_percent

LOSS = {"abort": "the run aborts (load.on_worker_loss)", "continue": "the run goes on with less load"}


def render_plan(plan: Plan, driver: Driver) -> str:
    experiment = plan.experiment
    lines = [f"Plan: {experiment.title}", f"  file: {experiment.path}", "", *driver.setup_lines()]
    load = experiment.load
    lines += [
        "",
        f"Load: {load.locustfile.name} -> {load.host}, {load.users_text} (spawn rate {load.spawn_rate:g}/s), "
        f"request timeout {format_duration(load.request_timeout)}",
    ]
    processes = load.process_count()
    if load.workers is not None:
        workers = load.workers
        lines += [
            f"  Locust master on {workers.bind}: waits up to {format_duration(workers.join_timeout)} for "
            f"{workers.expect} worker(s), each started with",
            f"    gameday worker --master {workers.master_address} -f {load.locustfile}",
            f"  refused: another locustfile, gameday or Locust version, or a clock more than "
            f"{format_duration(workers.max_clock_offset)} off the master's",
        ]
    elif processes > 1:
        auto = " (auto: one per core)" if load.processes == "auto" else ""
        lines.append(f"  {processes} Locust worker processes{auto}, their seconds merged by a master")
    if processes > 1 or load.workers is not None:
        lines.append(f"  a worker lost mid-run: {LOSS[load.on_worker_loss]}")
    if load.front:
        field, name = load.front
        through = "their fault proxies" if field == "proxied" else "them directly"
        lines.append(
            f"  gameday's front for {name}: each new connection goes to the next of its "
            f"{experiment.services[name].replicas} replica(s), through {through}"
        )
    lines += ["", "Timeline (from the moment all users are spawned):"]
    for phase in plan.phases:
        judged = "judged" if phase.name in experiment.slo.judge else "not judged"
        start, end = format_clock(phase.start, tenths=True), format_clock(phase.end, tenths=True)
        lines.append(f"  {start} - {end}  {phase.name:<9} ({judged})")
        for action in plan.actions:
            if phase.start <= action.at < phase.end or (action.kind == "revert" and action.at == phase.start):
                at = format_clock(action.at, tenths=True)
                verb = "inject" if action.kind == "apply" else "revert"
                lines.append(f"    {at}  {verb} fault #{action.fault_index + 1} {action.fault.kind}")
    lines += ["", "Faults and their targets:"]
    if not plan.faults:
        lines.append("  none")
    for fault in plan.faults:
        lines.append(f"  #{fault.index + 1} {fault.description}")
        if fault.candidates:
            lines.append(f"     candidates: {', '.join(fault.candidates)}")
        if fault.seed_given and fault.first_victims != fault.candidates:
            lines.append(f"     first injection hits: {', '.join(fault.first_victims)} (seed {fault.seed})")
    lines += ["", "Objectives:"] + [f"  {text}" for text in objective_texts(experiment)]
    limit = experiment.blast_limit
    radii = blast_radius(plan)
    lines += ["", "Blast radius (targets held at once, at most):"]
    lines += [f"  {radius.describe()}" for radius in radii] or ["  nothing: no fault holds a target"]
    if limit is not None:
        lines.append(f"  limit: target.max_share {format_percent(limit.share)}")
    else:
        every = any(radius.at_most == radius.of for radius in radii)
        lines.append(
            "  limit: none (target.max_share is not set)"
            + (": a fault may hold every target of a group at once" if every else "")
        )
    warnings = [warning for fault in plan.faults for warning in fault.warnings] + driver.host_warnings()
    if warnings:
        lines += ["", "Warnings:"] + [f"  ! {warning}" for warning in warnings]
    lines += ["", "Guards (abort and revert at once):"]
    lines += [f"  {guard.describe()}" for guard in experiment.guards] or ["  none"]
    lines += ["", f"Total: {format_duration(plan.duration)} of load. Nothing was changed (dry run)."]
    return "\n".join(lines)


def objective_texts(experiment: Experiment) -> list[str]:
    slo = experiment.slo
    texts = []
    if slo.availability is not None:
        texts.append(f"availability >= {format_percent(slo.availability)}")
    texts += [f"{name} latency <= {format_duration(limit)}" for name, limit in slo.latency.items()]
    if slo.throughput_min is not None:
        texts.append(f"throughput >= {slo.throughput_min:g} req/s")
    if slo.recovery_within is not None:
        texts.append(
            f"recovered within {format_duration(slo.recovery_within)} after the fault ends "
            f"(SLO holding for {format_duration(slo.recovery_window)})"
        )
    return texts
