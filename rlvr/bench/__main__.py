"""``python -m rlvr.bench SPEC.json``: one contender's child process (see rlvr.bench.child)."""

import sys

from rlvr.bench.child import main

sys.exit(main(sys.argv[1:]))
