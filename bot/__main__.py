"""`python -m bot …` is the same as the `kamibot` console script."""

from bot.cli import main

raise SystemExit(main())
