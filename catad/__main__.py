"""`python -m catad` is the `catad` command."""

from catad.cli import main

raise SystemExit(main())
