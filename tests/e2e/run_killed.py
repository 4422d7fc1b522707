"""`kamibot run` (the CLI's logging, then bot.server.serve) that SIGKILLs itself at a named checkpoint (crash tests).

`python -m tests.e2e.run_killed KILL_AT KILL_ON_NTH` with KAMIBOT_* env; e.g. `payment.taken 1`: the first payment
taken from Telegram (fetched by getUpdates or pushed to the webhook) and not yet recorded.
"""

from __future__ import annotations

import asyncio
import sys

from bot.logs import configure_logging
from bot.server import serve
from bot.settings import Settings
from tests.e2e.crash_worker import KillAt

if __name__ == "__main__":
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(serve(settings, checkpoints=KillAt(sys.argv[1], int(sys.argv[2]))))
