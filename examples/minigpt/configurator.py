"""nanoGPT's "poor man's configurator": `--key=value` arguments override train.py's globals.

Run as `exec(open('configurator.py').read())` from train.py, exactly like nanoGPT.
"""

import sys
from ast import literal_eval

for arg in sys.argv[1:]:
    if not arg.startswith("--") or "=" not in arg:
        raise SystemExit(f"configurator: expected --key=value, got {arg!r}")
    key, val = arg[2:].split("=", 1)
    if key not in globals():
        raise SystemExit(f"configurator: unknown config key {key!r}")
    try:
        attempt = literal_eval(val)
    except (SyntaxError, ValueError):
        attempt = val
    if type(attempt) is not type(globals()[key]):
        raise SystemExit(f"configurator: {key} needs a {type(globals()[key]).__name__}, got {val!r}")
    print(f"Overriding: {key} = {attempt}")
    globals()[key] = attempt
