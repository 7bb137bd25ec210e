"""`python -m lockgate`: the same command line as the `lockgate` console script."""

from lockgate.cli import main

raise SystemExit(main())
