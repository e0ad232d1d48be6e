import sys

from pipeline.cli import main

try:
    raise SystemExit(main())
except KeyboardInterrupt:  # before the build started (imports, config): nothing was written
    print("\ninterrupted before the build started; nothing was written", file=sys.stderr)
    raise SystemExit(130)
