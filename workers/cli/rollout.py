"""`ontime models rollout|rollback|canary|promote|abort|status`: change what a stage serves, live.

Each command publishes the stage's next plan on the control topic and waits for every live
replica's answer (workers/tools/rollout.py); the exit code is 0 only when all of them serve it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from workers.loop.plans import Ack, Plan
from workers.tools.rollout import ControlTopic, current_plan, next_plan, revert_of

ACTIONS = {
    "rollout": "serve VERSION of the stage's model on every replica, swapped between batches",
    "rollback": "serve the version the last rollout or promote replaced",
    "canary": "answer a sticky --share of devices with VERSION beside the serving version",
    "promote": "serve the canary's version on all devices",
    "abort": "end the canary; the serving version answers every device again",
}


def add_lifecycle(models_verbs: Any) -> None:
    """Add the lifecycle verbs next to `models verify`."""
    for action, help_text in ACTIONS.items():
        parser = models_verbs.add_parser(action, help=help_text)
        parser.add_argument("lifecycle_pipeline", metavar="PIPELINE", help="pipeline name or YAML path")
        parser.add_argument("stage", help="the stage whose model changes (infer)")
        if action in ("rollout", "canary"):
            parser.add_argument("version", help="a version of the stage's variant (2.0.0) or a whole ref")
        if action == "canary":
            parser.add_argument("--share", type=float, default=0.1, help="share of devices, 0-1 (0.1)")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the replicas")
        parser.add_argument("--replicas", type=int, default=0, help="wait for at least this many answers")
        parser.set_defaults(func=_cmd_change, action=action)
    status = models_verbs.add_parser("status", help="the plan each stage serves and its replicas' answers")
    status.add_argument("lifecycle_pipeline", metavar="PIPELINE", help="pipeline name or YAML path")
    status.set_defaults(func=_cmd_status)


def _cmd_change(args: argparse.Namespace) -> int:
    settings = args.load_settings(args.lifecycle_pipeline)
    control = ControlTopic(settings)
    try:
        state = control.read_to_end()
        current = current_plan(settings, state, args.stage)
        plan = next_plan(current, args.action, getattr(args, "version", None), getattr(args, "share", 0.0))
        where = f"{settings.pipeline.name}/{plan.stage}"
        print(f"{args.action} {plan.rollout} {where}: {_describe(current)} → {_describe(plan)}")
        replicas = state.live(plan.stage, plan.at_ms)
        control.publish(plan)
        answers = control.wait_acks(plan, replicas, args.replicas, args.timeout)
        print(_table(answers))
        refused = [a for a in answers.values() if not a.ok]
        missing = sorted(replicas - set(answers))
        if refused:
            control.publish(revert_of(current, plan))
            print(
                f"\nREFUSED by {len(refused)} of {len(answers)} replicas; the plan is reverted to "
                f"{_describe(current)}, which they kept serving",
                file=sys.stderr,
            )
            return 1
        if missing or len(answers) < args.replicas:
            print(
                f"\nNO ANSWER within {args.timeout:.0f} s from "
                f"{', '.join(missing) or 'the replicas expected'}; "
                "the plan stands (they apply it when they can, or `ontime models rollback`)",
                file=sys.stderr,
            )
            return 1
        if not answers:
            print("no live replica of the stage; a replica that starts serves the new plan")
        else:
            print(f"\nall {len(answers)} replicas serve {_describe(plan)}")
        return 0
    finally:
        control.close()


def _cmd_status(args: argparse.Namespace) -> int:
    settings = args.load_settings(args.lifecycle_pipeline)
    control = ControlTopic(settings)
    try:
        state = control.read_to_end()
        for stage in settings.pipeline.stages:
            plan = current_plan(settings, state, stage)
            print(f"{stage:11} {_describe(plan)}  (rollout {plan.rollout}, previous {plan.previous or '-'})")
            acks = {r: a for (s, r), a in state.acks.items() if s == stage}
            if acks:
                print(_table(acks, indent="  "))
        return 0
    finally:
        control.close()


def _describe(plan: Plan) -> str:
    canary = f" + canary {plan.candidate} for {plan.share:.0%} of devices" if plan.candidate else ""
    return f"{plan.serving}{canary}"


def _table(answers: dict[str, Ack], indent: str = "") -> str:
    width = max((len(r) for r in answers), default=7)
    lines = [f"{indent}{'replica':{width}}  {'answer':8} serving"]
    for replica, ack in sorted(answers.items()):
        answer = "ok" if ack.ok else "REFUSED"
        serving = ack.serving.rsplit(":", 1)[0]  # name:version, the sha256 is in the ack record
        canary = f" + {ack.candidate.rsplit(':', 1)[0]} ({ack.share:.0%})" if ack.candidate else ""
        why = f"  {ack.refused}: {ack.reason}" if not ack.ok else ""
        lines.append(f"{indent}{replica:{width}}  {answer:8} {serving}{canary}{why}")
    return "\n".join(lines)
